import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { createOutboxStacks, OutboxStacks } from '../lib/outbox-app';

/** The context of cdk.json (feature flags and defaults), so tests see what `cdk synth` sees. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
  return cdkJson.context;
}

export function newApp(context: Record<string, unknown> = {}): App {
  return new App({ context: { ...cdkJsonContext(), ...context } });
}

export interface Templates {
  readonly stacks: OutboxStacks;
  readonly network: Template;
  readonly data: Template;
  readonly messaging: Template;
  readonly services: Template;
}

export function synthTemplates(context: Record<string, unknown> = {}): Templates {
  const stacks = createOutboxStacks(newApp(context));
  return {
    stacks,
    network: Template.fromStack(stacks.network),
    data: Template.fromStack(stacks.data),
    messaging: Template.fromStack(stacks.messaging),
    services: Template.fromStack(stacks.services),
  };
}

type Resources = Record<string, { Type: string; Properties?: any }>;

export function resourcesOfType(template: Template, type: string): Resources {
  return template.findResources(type) as Resources;
}

/** The single resource of a type whose properties satisfy `pick`; fails the test otherwise. */
export function onlyResource(template: Template, type: string, pick: (props: any) => boolean = () => true) {
  const matches = Object.entries(resourcesOfType(template, type)).filter(([, r]) => pick(r.Properties ?? {}));
  if (matches.length !== 1) {
    throw new Error(`expected exactly one ${type}, found ${matches.length}`);
  }
  const [logicalId, resource] = matches[0];
  return { logicalId, properties: resource.Properties ?? {} };
}

/** Every IAM action granted (Effect Allow) by the AWS::IAM::Policy resources attached to a role. */
export function allowedActions(template: Template, roleLogicalId: string): string[] {
  const actions: string[] = [];
  for (const policy of Object.values(resourcesOfType(template, 'AWS::IAM::Policy'))) {
    const roles: unknown[] = policy.Properties.Roles ?? [];
    if (!roles.some((r: any) => r.Ref === roleLogicalId)) continue;
    for (const statement of policy.Properties.PolicyDocument.Statement) {
      if (statement.Effect !== 'Allow') continue;
      actions.push(...[statement.Action].flat());
    }
  }
  return actions;
}

/** Logical id of the task role of the task definition whose container has this name. */
export function taskRoleOf(template: Template, containerName: string): string {
  const { properties } = onlyResource(template, 'AWS::ECS::TaskDefinition', (p) =>
    p.ContainerDefinitions.some((c: any) => c.Name === containerName),
  );
  return properties.TaskRoleArn['Fn::GetAtt'][0];
}

export function containerOf(template: Template, containerName: string): any {
  const { properties } = onlyResource(template, 'AWS::ECS::TaskDefinition', (p) =>
    p.ContainerDefinitions.some((c: any) => c.Name === containerName),
  );
  return properties.ContainerDefinitions.find((c: any) => c.Name === containerName);
}

export function envOf(container: any): Record<string, unknown> {
  return Object.fromEntries((container.Environment ?? []).map((e: any) => [e.Name, e.Value]));
}

/**
 * The SQS actions a container's task role is allowed, per queue name. Resources are resolved
 * through the messaging stack's exports (the services stack imports the queue ARNs); a statement
 * on anything that is not one of those queues (a wildcard, say) shows up under its JSON.
 */
export function sqsGrantsOf(t: Templates, containerName: string): Record<string, string[]> {
  const messaging = t.messaging.toJSON();
  const queueNameByExport = new Map<string, string>();
  for (const output of Object.values<any>(messaging.Outputs ?? {})) {
    const target = output.Value?.['Fn::GetAtt'];
    if (!output.Export || !target || target[1] !== 'Arn') continue;
    queueNameByExport.set(output.Export.Name, messaging.Resources[target[0]].Properties.QueueName);
  }
  const role = taskRoleOf(t.services, containerName);
  const grants: Record<string, Set<string>> = {};
  for (const policy of Object.values(resourcesOfType(t.services, 'AWS::IAM::Policy'))) {
    if (!(policy.Properties.Roles ?? []).some((r: any) => r.Ref === role)) continue;
    for (const statement of policy.Properties.PolicyDocument.Statement) {
      if (statement.Effect !== 'Allow') continue;
      const actions = [statement.Action].flat().filter((a: string) => a === '*' || a.startsWith('sqs:'));
      if (actions.length === 0) continue;
      for (const resource of [statement.Resource].flat()) {
        const key = queueNameByExport.get(resource?.['Fn::ImportValue']) ?? JSON.stringify(resource);
        grants[key] ??= new Set();
        for (const action of actions) grants[key].add(action);
      }
    }
  }
  return Object.fromEntries(Object.entries(grants).map(([queue, actions]) => [queue, [...actions].sort()]));
}
