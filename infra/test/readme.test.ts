import * as fs from 'node:fs';
import * as path from 'node:path';
import { onlyResource, resourcesOfType, synthTemplates, Templates } from './helpers';

// The README's Deploy section is what an operator follows: it must say what the stacks do.
const README = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
const INFRA_README = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
const CONFIG = fs.readFileSync(path.join(__dirname, '..', 'lib', 'config.ts'), 'utf8');

/** The text under a `### title` heading, up to the next heading of level 2 or 3. */
function section(title: string): string {
  const start = README.indexOf(`\n### ${title}\n`);
  if (start < 0) throw new Error(`README has no section ${title}`);
  const rest = README.slice(start + title.length + 6);
  const end = rest.search(/\n##{1,2} /);
  return end < 0 ? rest : rest.slice(0, end);
}

/** The backticked names in one column (1 = first) of the markdown table rows in a section. */
function firstColumnNames(text: string, column = 1): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...line.split('|')[column].matchAll(/`([^`]+)`/g)].map((m) => m[1]));
}

let t: Templates;
beforeAll(() => {
  t = synthTemplates();
});

describe('README', () => {
  test('teardown: protection off first, then destroy; the final snapshot is found by the real cluster id', () => {
    const teardown = section('Tear down');
    const off = teardown.indexOf('npx cdk deploy OutboxData --exclusively -c deletionProtection=false');
    const destroy = teardown.indexOf('npx cdk destroy --all');
    expect(off).toBeGreaterThan(-1);
    expect(destroy).toBeGreaterThan(off);
    // Whatever the flag, the template keeps the snapshot, so the procedure above really leaves one.
    for (const deletionProtection of ['true', 'false']) {
      synthTemplates({ deletionProtection }).data.hasResource('AWS::RDS::DBCluster', {
        DeletionPolicy: 'Snapshot',
        UpdateReplacePolicy: 'Snapshot',
      });
    }
    const cluster = onlyResource(t.data, 'AWS::RDS::DBCluster');
    expect(cluster.properties.DBClusterIdentifier).toBe('outboxdata-aurora');
    expect(teardown).toContain("DBClusterIdentifier=='outboxdata-aurora'");
    expect(teardown).not.toMatch(/no final snapshot/i);
  });

  test('the options table names every context key config.ts reads', () => {
    const keys = [...CONFIG.matchAll(/(?:tryGetContext|toNumber\(node,|toBoolean\(node,)\s*\(?'(\w+)'/g)].map((m) => m[1]);
    expect(new Set(keys)).toEqual(
      new Set(['natGateways', 'dbMinCapacity', 'dbMaxCapacity', 'cpuArchitecture', 'alarmEmail', 'certificateArn', 'domainName', 'deletionProtection', 'waf']),
    );
    const documented = firstColumnNames(section('Deploy'));
    for (const key of keys) expect(documented).toContain(key);
  });

  test('the alarm table lists exactly the alarms the stacks create', () => {
    const created = [t.messaging, t.services]
      .flatMap((template) => Object.keys(resourcesOfType(template, 'AWS::CloudWatch::Alarm')))
      .map((id) => id.replace(/^Monitoring/, '').replace(/[0-9A-F]{8}$/, ''))
      .sort();
    expect(firstColumnNames(section('Alarms')).sort()).toEqual(created);
  });

  test('the outputs table lists exactly the stacks\u2019 outputs', () => {
    const outputs = [t.data, t.messaging, t.services].flatMap((template) =>
      Object.keys(template.toJSON().Outputs).filter((name) => !name.startsWith('Export')),
    );
    expect(firstColumnNames(section('Outputs'), 2).sort()).toEqual(outputs.sort());
  });

  test('the operator token: how to read it from the secret whose ARN the data stack outputs', () => {
    const command = 'aws secretsmanager get-secret-value --secret-id <arn from output> --query SecretString --output text';
    expect(README).toContain(command);
    expect(INFRA_README).toContain(command);
    t.data.hasOutput('AdminTokenSecretArn', {});
    // The one-liner names the stack and output that really exist.
    expect(README).toContain("--stack-name OutboxData --query \"Stacks[0].Outputs[?OutputKey=='AdminTokenSecretArn'].OutputValue\"");
  });

  test('prerequisites: the ECS service-linked role and a supported Node.js LTS', () => {
    const prerequisites = section('Prerequisites');
    expect(prerequisites).toContain('aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com');
    expect(prerequisites).toMatch(/Node\.js 22 or 24/);
  });
});
