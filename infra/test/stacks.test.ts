import * as fs from 'node:fs';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import {
  allowedActions,
  containerOf,
  envOf,
  onlyResource,
  sqsGrantsOf,
  resourcesOfType,
  synthTemplates,
  Templates,
  taskRoleOf,
} from './helpers';

// One synthesis with the cdk.json defaults serves every test that does not vary the context.
let t: Templates;
beforeAll(() => {
  t = synthTemplates();
});

// Each saga direction: its queue, its DLQ, and the prefix of its alarm and output ids (none for
// bookings, whose ids predate the second queue).
const QUEUES = [
  { queue: 'bookings.fifo', dlq: 'bookings-dlq.fifo', prefix: '' },
  { queue: 'payment-events.fifo', dlq: 'payment-events-dlq.fifo', prefix: 'PaymentEvents' },
] as const;

describe('messaging', () => {
  test.each(QUEUES)('$queue redrives to the FIFO dead-letter queue $dlq after 5 receives', ({ queue: name, dlq: dlqName }) => {
    const dlq = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === dlqName);
    expect(dlq.properties).toMatchObject({ FifoQueue: true, MessageRetentionPeriod: 14 * 24 * 3600 });
    expect(dlq.properties.RedrivePolicy).toBeUndefined();

    const queue = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === name);
    expect(queue.properties).toMatchObject({
      FifoQueue: true,
      ContentBasedDeduplication: false,
      VisibilityTimeout: 60,
      MessageRetentionPeriod: 4 * 24 * 3600,
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [dlq.logicalId, 'Arn'] },
        maxReceiveCount: 5,
      },
    });
  });

  test('exactly the four queues, with the names the services use', () => {
    const names = Object.values(resourcesOfType(t.messaging, 'AWS::SQS::Queue')).map((q) => q.Properties.QueueName);
    expect(names.sort()).toEqual(['bookings-dlq.fifo', 'bookings.fifo', 'payment-events-dlq.fifo', 'payment-events.fifo']);
  });

  test('payment-events.fifo and its DLQ are set up like bookings.fifo and its DLQ', () => {
    const props = (name: string) => {
      const { properties } = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === name);
      const { QueueName, RedrivePolicy, ...rest } = properties;
      return { ...rest, maxReceiveCount: RedrivePolicy?.maxReceiveCount };
    };
    expect(props('payment-events.fifo')).toEqual(props('bookings.fifo'));
    expect(props('payment-events-dlq.fifo')).toEqual(props('bookings-dlq.fifo'));
  });

  test('every queue uses SQS-managed server-side encryption', () => {
    const queues = Object.values(resourcesOfType(t.messaging, 'AWS::SQS::Queue'));
    expect(queues).toHaveLength(4);
    for (const queue of queues) {
      expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
    }
  });

  test('every queue policy denies every request that is not over TLS', () => {
    const queues = Object.keys(resourcesOfType(t.messaging, 'AWS::SQS::Queue'));
    expect(queues).toHaveLength(4);
    for (const logicalId of queues) {
      t.messaging.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: logicalId }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Action: 'sqs:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });

  test.each(QUEUES)('alarms on a non-empty $dlq and on old messages in $queue', ({ queue: name, dlq: dlqName, prefix }) => {
    const queue = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === name);
    const dlq = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === dlqName);
    const alarmOn = (logicalId: string, metricName: string) => {
      const found = Object.entries(resourcesOfType(t.messaging, 'AWS::CloudWatch::Alarm')).filter(
        ([, a]) =>
          a.Properties.MetricName === metricName &&
          JSON.stringify(a.Properties.Dimensions) === JSON.stringify([{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId, 'QueueName'] } }]),
      );
      expect(found).toHaveLength(1);
      return { id: found[0][0], properties: found[0][1].Properties };
    };
    const notEmpty = alarmOn(dlq.logicalId, 'ApproximateNumberOfMessagesVisible');
    expect(notEmpty.id).toMatch(new RegExp(`^${prefix}DeadLetterQueueNotEmpty`));
    expect(notEmpty.properties).toMatchObject({
      Namespace: 'AWS/SQS',
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
      TreatMissingData: 'notBreaching',
    });
    expect(notEmpty.properties.AlarmDescription).toContain(dlqName);
    const age = alarmOn(queue.logicalId, 'ApproximateAgeOfOldestMessage');
    expect(age.id).toMatch(new RegExp(`^${prefix}QueueOldestMessageAge`));
    expect(age.properties).toMatchObject({
      Namespace: 'AWS/SQS',
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 300,
      TreatMissingData: 'notBreaching',
    });
    expect(age.properties.AlarmDescription).toContain(name);
  });

  test.each(QUEUES)('$queue runs in high-throughput mode (quotas per message group)', ({ queue: name }) => {
    const queue = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === name);
    expect(queue.properties).toMatchObject({ DeduplicationScope: 'messageGroup', FifoThroughputLimit: 'perMessageGroupId' });
  });

  test('without alarmEmail there is no topic and alarms have no actions', () => {
    t.messaging.resourceCountIs('AWS::SNS::Topic', 0);
    for (const alarm of Object.values(resourcesOfType(t.messaging, 'AWS::CloudWatch::Alarm'))) {
      expect(alarm.Properties.AlarmActions).toBeUndefined();
    }
  });

  test.each(QUEUES)('outputs the URLs of $queue and $dlq', ({ queue: name, dlq: dlqName, prefix }) => {
    const queue = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === name);
    const dlq = onlyResource(t.messaging, 'AWS::SQS::Queue', (p) => p.QueueName === dlqName);
    t.messaging.hasOutput(`${prefix}QueueUrl`, { Value: { Ref: queue.logicalId } });
    t.messaging.hasOutput(`${prefix}DeadLetterQueueUrl`, { Value: { Ref: dlq.logicalId } });
  });
});

describe('data', () => {
  test('Aurora PostgreSQL 17 Serverless v2, encrypted, with generated credentials', () => {
    const { properties } = onlyResource(t.data, 'AWS::RDS::DBCluster');
    expect(properties).toMatchObject({
      Engine: 'aurora-postgresql',
      ServerlessV2ScalingConfiguration: { MinCapacity: 0.5, MaxCapacity: 2 },
      StorageEncrypted: true,
      BackupRetentionPeriod: 7,
      DeletionProtection: false,
    });
    expect(properties.EngineVersion).toMatch(/^17\./);
    t.data.hasResourceProperties('AWS::RDS::DBInstance', { DBInstanceClass: 'db.serverless', PubliclyAccessible: false });
    t.data.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: Match.objectLike({ GenerateStringKey: 'password' }),
    });
  });

  test('the cluster refuses connections without TLS', () => {
    const { properties } = onlyResource(t.data, 'AWS::RDS::DBCluster');
    const group = t.data.toJSON().Resources[properties.DBClusterParameterGroupName.Ref];
    expect(group.Type).toBe('AWS::RDS::DBClusterParameterGroup');
    expect(group.Properties).toMatchObject({ Family: 'aurora-postgresql17', Parameters: { 'rds.force_ssl': '1' } });
  });

  test('the database lives in the isolated subnets', () => {
    const { properties } = onlyResource(t.data, 'AWS::RDS::DBSubnetGroup');
    for (const subnet of properties.SubnetIds) {
      expect(JSON.stringify(subnet)).toMatch(/dbSubnet/);
    }
  });

  test('the data stack opens the database to nobody by itself', () => {
    const { properties } = onlyResource(t.data, 'AWS::EC2::SecurityGroup');
    expect(properties.SecurityGroupIngress).toBeUndefined();
    t.data.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
  });

  test.each([
    [false, {}],
    [false, { deletionProtection: 'false' }],
    [true, { deletionProtection: 'true' }],
    [true, { deletionProtection: true }],
  ])('deletionProtection=%s: the cluster leaves a final snapshot on delete and on replacement (%j)', (expected, context) => {
    const data = Object.keys(context).length === 0 ? t.data : synthTemplates(context).data;
    data.hasResource('AWS::RDS::DBCluster', {
      Properties: Match.objectLike({ DeletionProtection: expected }),
      DeletionPolicy: 'Snapshot',
      UpdateReplacePolicy: 'Snapshot',
    });
  });

  test('the engine version is pinned and the instance takes no automatic minor upgrades', () => {
    // Both halves of one choice (see AURORA_ENGINE_VERSION): with upgrades on, AWS moves the
    // cluster past the pinned version and the next deploy fails.
    const { properties } = onlyResource(t.data, 'AWS::RDS::DBCluster');
    expect(properties.EngineVersion).toBe('17.9');
    const instances = Object.values(resourcesOfType(t.data, 'AWS::RDS::DBInstance'));
    expect(instances).toHaveLength(1);
    expect(instances[0].Properties.AutoMinorVersionUpgrade).toBe(false);
  });

  test('one secret per service, each for its own role, attached to the cluster', () => {
    for (const [id, username] of [['BookingDatabaseSecret', 'booking'], ['PaymentDatabaseSecret', 'payment']]) {
      const secret = onlyResource(t.data, 'AWS::SecretsManager::Secret', (p) =>
        JSON.stringify(p.GenerateSecretString ?? {}).includes(`\\"username\\":\\"${username}\\"`),
      );
      expect(secret.logicalId).toMatch(new RegExp(`^${id}`));
      t.data.hasResourceProperties('AWS::SecretsManager::SecretTargetAttachment', {
        SecretId: { Ref: secret.logicalId },
        TargetType: 'AWS::RDS::DBCluster',
      });
    }
  });

  test('ADMIN_TOKEN: one generated secret of 48 letters and digits; its ARN is an output, its value never', () => {
    const token = onlyResource(t.data, 'AWS::SecretsManager::Secret', (p) => p.GenerateSecretString && !p.GenerateSecretString.GenerateStringKey);
    expect(token.logicalId).toMatch(/^AdminToken/);
    // Generated by Secrets Manager: no value in the template, no JSON around it.
    expect(token.properties.GenerateSecretString).toEqual({ PasswordLength: 48, ExcludePunctuation: true, IncludeSpace: false });
    expect(token.properties.SecretString).toBeUndefined();
    t.data.hasOutput('AdminTokenSecretArn', { Value: { Ref: token.logicalId } });
    for (const template of [t.network, t.data, t.messaging, t.services]) {
      expect(JSON.stringify(template.toJSON().Outputs ?? {})).not.toContain('resolve:secretsmanager');
    }
  });

  test('an update from the previous version can deploy: the admin-secret export its services stack imported stays', () => {
    // Name generated by CDK for the Ref of the secret attachment, as in the previous version's template.
    expect(t.data.toJSON().Outputs.ExportsOutputRefAuroraSecretAttachmentEAAB0558D3F1C641).toEqual({
      Value: { Ref: 'AuroraSecretAttachmentEAAB0558' },
      Export: { Name: 'OutboxData:ExportsOutputRefAuroraSecretAttachmentEAAB0558D3F1C641' },
    });
    expect(JSON.stringify(t.services.toJSON())).not.toContain('AuroraSecretAttachment');
  });

  test('a custom resource creates the roles and databases through the Data API, after the writer is up', () => {
    const cluster = onlyResource(t.data, 'AWS::RDS::DBCluster');
    expect(cluster.properties.EnableHttpEndpoint).toBe(true);
    const resources = t.data.toJSON().Resources;
    const [roleId, roles] = Object.entries(resources).find(([, r]: [string, any]) => r.Type === 'Custom::ServiceDatabaseRoles') as [string, any];
    expect(roles.Properties.Services).toEqual([
      { Role: 'booking', Database: 'booking', SecretArn: { Ref: expect.stringMatching(/^BookingDatabaseSecretAttachment/) } },
      { Role: 'payment', Database: 'payment', SecretArn: { Ref: expect.stringMatching(/^PaymentDatabaseSecretAttachment/) } },
    ]);
    expect(roles.DependsOn).toEqual(expect.arrayContaining([cluster.logicalId, expect.stringMatching(/^AuroraWriter/)]));
    expect(roles.DeletionPolicy ?? 'Delete').toBe('Delete');
    void roleId;

    // Only that function may use the Data API and read the admin secret.
    const fn = onlyResource(t.data, 'AWS::Lambda::Function', (p) => JSON.stringify(p).includes('Data API'));
    expect(fn.properties.Runtime).toMatch(/^nodejs2\d\.x$/);
    const fnRole = fn.properties.Role['Fn::GetAtt'][0];
    const actions = allowedActions(t.data, fnRole);
    expect(actions).toEqual(expect.arrayContaining(['rds-data:ExecuteStatement', 'secretsmanager:GetSecretValue']));
    const dataApiRoles = Object.values(resourcesOfType(t.data, 'AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.PolicyDocument).includes('rds-data:'))
      .flatMap((p) => p.Properties.Roles.map((r: any) => r.Ref));
    expect(dataApiRoles).toEqual([fnRole]);
  });
});

describe('services', () => {
  test('the ALB admits port 80 from the myPublicIP parameter and nothing else', () => {
    const alb = onlyResource(t.services, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    const albSg = alb.properties.SecurityGroups[0]['Fn::GetAtt'][0];
    const sg = t.services.toJSON().Resources[albSg];
    expect(sg.Properties.SecurityGroupIngress).toEqual([
      expect.objectContaining({ CidrIp: { Ref: 'myPublicIP' }, IpProtocol: 'tcp', FromPort: 80, ToPort: 80 }),
    ]);
    const extraIngress = Object.values(resourcesOfType(t.services, 'AWS::EC2::SecurityGroupIngress')).filter(
      (r) => JSON.stringify(r.Properties.GroupId).includes(albSg),
    );
    expect(extraIngress).toHaveLength(0);
  });

  test('no security group in the services stack is open to the world', () => {
    const inline = Object.values(resourcesOfType(t.services, 'AWS::EC2::SecurityGroup')).flatMap(
      (r) => r.Properties.SecurityGroupIngress ?? [],
    );
    const separate = Object.values(resourcesOfType(t.services, 'AWS::EC2::SecurityGroupIngress')).map((r) => r.Properties);
    for (const rule of [...inline, ...separate]) {
      expect(rule.CidrIp).not.toBe('0.0.0.0/0');
      expect(rule.CidrIpv6).toBeUndefined();
    }
  });

  test('myPublicIP accepts an IPv4 CIDR of /16 to /32 and refuses wider prefixes and garbage', () => {
    const parameter = t.services.toJSON().Parameters.myPublicIP;
    expect(parameter.Type).toBe('String');
    const pattern = new RegExp(parameter.AllowedPattern);
    for (const ok of ['203.0.113.7/32', '198.51.100.0/24', '172.16.0.0/16', '203.0.113.0/28']) expect(ok).toMatch(pattern);
    for (const bad of ['0.0.0.0/0', '0.0.0.0/1', '128.0.0.0/1', '10.0.0.0/8', '172.16.0.0/15', '203.0.113.7', '256.1.1.1/32',
      '203.0.113.7/33', 'abc', '1.2.3.4/32 ']) {
      expect(bad).not.toMatch(pattern);
    }
  });

  // What grantSendMessages and grantConsumeMessages give, and nothing more.
  const SEND = ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'];
  const CONSUME = ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'];
  // A consumer's poison move: resolve the DLQ's URL by name, send to it. Nothing else on a DLQ.
  const DEAD_LETTER = ['sqs:GetQueueUrl', 'sqs:SendMessage'];

  test('each relay may send only to the queue it publishes to, each consumer consume only its queue and send to its DLQ', () => {
    // toEqual: no other queue (the other direction's DLQ included), no other resource, no other SQS action.
    expect(sqsGrantsOf(t, 'booking-service')).toEqual({
      'bookings.fifo': SEND,
      'payment-events.fifo': CONSUME,
      'payment-events-dlq.fifo': DEAD_LETTER,
    });
    expect(sqsGrantsOf(t, 'payment-service')).toEqual({
      'bookings.fifo': CONSUME,
      'bookings-dlq.fifo': DEAD_LETTER,
      'payment-events.fifo': SEND,
    });
  });

  test('no task role may receive from, delete in or send to a DLQ other than its own queue’s', () => {
    const booking = sqsGrantsOf(t, 'booking-service');
    const payment = sqsGrantsOf(t, 'payment-service');
    expect(booking['bookings-dlq.fifo']).toBeUndefined();
    expect(payment['payment-events-dlq.fifo']).toBeUndefined();
    for (const actions of [booking['payment-events-dlq.fifo'], payment['bookings-dlq.fifo']]) {
      for (const action of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:PurgeQueue']) {
        expect(actions).not.toContain(action);
      }
    }
  });

  test('neither service may publish into the other direction or take the other\u2019s messages', () => {
    const booking = sqsGrantsOf(t, 'booking-service');
    const payment = sqsGrantsOf(t, 'payment-service');
    expect(booking['payment-events.fifo']).not.toContain('sqs:SendMessage');
    expect(booking['bookings.fifo']).not.toContain('sqs:ReceiveMessage');
    expect(booking['bookings.fifo']).not.toContain('sqs:DeleteMessage');
    expect(payment['bookings.fifo']).not.toContain('sqs:SendMessage');
    expect(payment['payment-events.fifo']).not.toContain('sqs:ReceiveMessage');
    expect(payment['payment-events.fifo']).not.toContain('sqs:DeleteMessage');
    for (const name of ['booking-service', 'payment-service']) {
      const actions = allowedActions(t.services, taskRoleOf(t.services, name));
      for (const wildcard of ['sqs:*', '*']) expect(actions).not.toContain(wildcard);
    }
  });

  /** The data-stack logical id behind an import of one of its exports. */
  const dataExport = (name: string): string => {
    const output = Object.values<any>(t.data.toJSON().Outputs).find((o) => o.Export?.Name === name);
    if (!output) throw new Error(`the data stack exports no ${name}`);
    return output.Value.Ref;
  };

  test('each execution role may read its own service’s database secret and ADMIN_TOKEN; no other role reads secrets', () => {
    const readers: Record<string, string[]> = {};
    for (const policy of Object.values(resourcesOfType(t.services, 'AWS::IAM::Policy'))) {
      for (const statement of policy.Properties.PolicyDocument.Statement) {
        if (![statement.Action].flat().includes('secretsmanager:GetSecretValue')) continue;
        for (const role of policy.Properties.Roles.map((r: any) => r.Ref)) {
          readers[role] = [...(readers[role] ?? []), ...[statement.Resource].flat().map((r: any) => dataExport(r['Fn::ImportValue']))];
        }
      }
    }
    const roles = Object.keys(readers).sort();
    expect(roles).toEqual([expect.stringMatching(/^BookingTaskExecutionRole/), expect.stringMatching(/^PaymentTaskExecutionRole/)]);
    const [bookingRole, paymentRole] = roles;
    const token = onlyResource(t.data, 'AWS::SecretsManager::Secret', (p) => p.GenerateSecretString && !p.GenerateSecretString.GenerateStringKey);
    expect(readers[bookingRole].sort()).toEqual([token.logicalId, expect.stringMatching(/^BookingDatabaseSecretAttachment/)]);
    expect(readers[paymentRole].sort()).toEqual([token.logicalId, expect.stringMatching(/^PaymentDatabaseSecretAttachment/)]);
  });

  test('both containers get ADMIN_TOKEN as an ECS secret (the generated one), never as a plain variable', () => {
    const token = onlyResource(t.data, 'AWS::SecretsManager::Secret', (p) => p.GenerateSecretString && !p.GenerateSecretString.GenerateStringKey);
    for (const name of ['booking-service', 'payment-service']) {
      const container = containerOf(t.services, name);
      const secrets = container.Secrets.filter((s: any) => s.Name === 'ADMIN_TOKEN');
      expect(secrets).toHaveLength(1);
      // The whole secret string (no JSON key), from the data stack's secret.
      expect(dataExport(secrets[0].ValueFrom['Fn::ImportValue'])).toBe(token.logicalId);
      expect(Object.keys(envOf(container))).not.toContain('ADMIN_TOKEN');
    }
  });

  test('the database admits exactly the two service security groups', () => {
    const dbIngress = Object.values(resourcesOfType(t.services, 'AWS::EC2::SecurityGroupIngress'))
      .map((r) => r.Properties)
      .filter((p) => JSON.stringify(p.GroupId).includes('DatabaseSecurityGroup'));
    const sources = dbIngress.map((p) => p.SourceSecurityGroupId['Fn::GetAtt'][0]).sort();
    expect(sources).toEqual(['BookingSecurityGroup', 'PaymentSecurityGroup'].map((s) => expect.stringMatching(`^${s}`)));
    for (const rule of dbIngress) expect(rule.CidrIp).toBeUndefined();
  });

  test('both target groups check liveness (/health/live), not the database-bound readiness', () => {
    const groups = Object.values(resourcesOfType(t.services, 'AWS::ElasticLoadBalancingV2::TargetGroup'));
    expect(groups.map((g) => g.Properties.Port).sort()).toEqual([8080, 8081]);
    for (const group of groups) {
      expect(group.Properties).toMatchObject({ HealthCheckPath: '/health/live', TargetType: 'ip' });
    }
  });

  test('the health paths exist in the services (service-kit health_routes)', () => {
    const http = fs.readFileSync(path.join(__dirname, '..', '..', 'crates', 'service-kit', 'src', 'http.rs'), 'utf8');
    expect(http).toContain('"/health/live"');
    expect(http).toContain('"/health/ready"');
  });

  test('containers check /health/live themselves and get 60 s to stop', () => {
    for (const [name, port] of [['booking-service', 8080], ['payment-service', 8081]] as const) {
      const container = containerOf(t.services, name);
      expect(container.StopTimeout).toBe(60);
      expect(container.HealthCheck.Command.slice(0, 2)).toEqual(['CMD', '/bin/bash']);
      expect(container.HealthCheck.Command[3]).toContain(`/dev/tcp/127.0.0.1/${port}`);
      expect(container.HealthCheck.Command[3]).toContain('GET /health/live');
      expect(container.HealthCheck).toMatchObject({ Interval: 15, Timeout: 5, Retries: 3, StartPeriod: 60 });
    }
  });

  test('payment-service is routed only for /api/payments*', () => {
    const rules = Object.values(resourcesOfType(t.services, 'AWS::ElasticLoadBalancingV2::ListenerRule'));
    expect(rules).toHaveLength(1);
    const rule = rules[0].Properties;
    expect(rule.Conditions).toEqual([
      { Field: 'path-pattern', PathPatternConfig: { Values: ['/api/payments', '/api/payments/*'] } },
    ]);
    const paymentGroup = onlyResource(t.services, 'AWS::ElasticLoadBalancingV2::TargetGroup', (p) => p.Port === 8081);
    expect(rule.Actions).toEqual([{ Type: 'forward', TargetGroupArn: { Ref: paymentGroup.logicalId } }]);
    // The listener's default goes to booking-service.
    const bookingGroup = onlyResource(t.services, 'AWS::ElasticLoadBalancingV2::TargetGroup', (p) => p.Port === 8080);
    t.services.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 80,
      DefaultActions: [{ Type: 'forward', TargetGroupArn: { Ref: bookingGroup.logicalId } }],
    });
  });

  test('tasks run on ARM64 Fargate in private subnets without public IPs', () => {
    const taskDefinitions = Object.values(resourcesOfType(t.services, 'AWS::ECS::TaskDefinition'));
    expect(taskDefinitions).toHaveLength(2);
    for (const td of taskDefinitions) {
      expect(td.Properties.RuntimePlatform).toEqual({ CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' });
      expect(td.Properties.RequiresCompatibilities).toEqual(['FARGATE']);
    }
    for (const service of Object.values(resourcesOfType(t.services, 'AWS::ECS::Service'))) {
      expect(service.Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp).toBe('DISABLED');
    }
  });

  test('containers get the contract: database name, both queue URLs, relay and consumer on, JSON logs, EMF', () => {
    const bookingsUrl = { 'Fn::ImportValue': expect.stringMatching(/ExportsOutputRefBookingsQueue/) };
    const paymentEventsUrl = { 'Fn::ImportValue': expect.stringMatching(/ExportsOutputRefPaymentEventsQueue/) };
    // Both services run a relay (their own outbox) and a consumer (the other's events).
    const saga = {
      SQS_QUEUE_URL: bookingsUrl,
      PAYMENT_EVENTS_QUEUE_URL: paymentEventsUrl,
      RELAY_ENABLED: 'true',
      CONSUMER_ENABLED: 'true',
      EMF_NAMESPACE: 'TransactionalOutbox',
      CONSUMER_VISIBILITY_TIMEOUT: '30s',
    };
    const booking = containerOf(t.services, 'booking-service');
    expect(envOf(booking)).toMatchObject({
      BIND_ADDR: '0.0.0.0:8080',
      LOG_FORMAT: 'json',
      PGDATABASE: 'booking',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '/etc/ssl/certs/rds-global-bundle.pem',
      ...saga,
    });
    expect(booking.PortMappings).toEqual([expect.objectContaining({ ContainerPort: 8080 })]);

    const payment = containerOf(t.services, 'payment-service');
    expect(envOf(payment)).toMatchObject({
      BIND_ADDR: '0.0.0.0:8081',
      LOG_FORMAT: 'json',
      PGDATABASE: 'payment',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '/etc/ssl/certs/rds-global-bundle.pem',
      ...saga,
    });

    for (const container of [booking, payment]) {
      expect(container.Secrets.map((s: any) => s.Name).sort()).toEqual(['ADMIN_TOKEN', 'PGHOST', 'PGPASSWORD', 'PGPORT', 'PGUSER']);
      const database = container.Secrets.filter((s: any) => s.Name.startsWith('PG'));
      const keys = Object.fromEntries(
        database.map((s: any) => [s.Name, JSON.stringify(s.ValueFrom).match(/:(\w+)::"/)![1]]),
      );
      expect(keys).toEqual({ PGHOST: 'host', PGPORT: 'port', PGUSER: 'username', PGPASSWORD: 'password' });
      // The service's own secret, imported from the data stack: never the admin secret.
      const secretRefs = new Set(database.map((s: any) => JSON.stringify(s.ValueFrom).match(/ImportValue":"([^"]+)"/)![1]));
      expect(secretRefs.size).toBe(1);
      const [secretRef] = [...secretRefs] as string[];
      expect(secretRef).toMatch(container.Name === 'booking-service' ? /BookingDatabaseSecret/ : /PaymentDatabaseSecret/);
      expect(secretRef).not.toMatch(/AuroraSecret/);
      expect(container.LogConfiguration.LogDriver).toBe('awslogs');
      // No credentials in plain environment variables.
      expect(Object.keys(envOf(container))).not.toContain('PGPASSWORD');
      expect(Object.keys(envOf(container))).not.toContain('DATABASE_URL');
    }
  });

  test('booking-service scales on CPU between 2 and 4 tasks', () => {
    t.services.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 2,
      MaxCapacity: 4,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    t.services.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      }),
    });
  });

  test('Container Insights is on', () => {
    t.services.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
  });

  test('alarms when the outbox backlog ages, from the EMF metric of booking-service', () => {
    t.services.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'TransactionalOutbox',
      MetricName: 'OutboxOldestPendingAgeSeconds',
      Dimensions: [{ Name: 'ServiceName', Value: 'booking-service' }],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 60,
      TreatMissingData: 'breaching',
    });
  });

  test('outputs what a person and the block script need', () => {
    for (const output of ['LoadBalancerUrl', 'SwaggerUiUrl', 'PaymentsApiUrl', 'BookingTaskRoleArn', 'PaymentTaskRoleArn']) {
      t.services.hasOutput(output, {});
    }
    t.services.hasOutput('SwaggerUiUrl', {
      Value: { 'Fn::Join': ['', ['http://', Match.anyValue(), '/swagger-ui/index.html']] },
    });
  });

  test('cpuArchitecture=x86_64 switches the task platform', () => {
    const x86 = synthTemplates({ cpuArchitecture: 'x86_64' }).services;
    for (const td of Object.values(resourcesOfType(x86, 'AWS::ECS::TaskDefinition'))) {
      expect(td.Properties.RuntimePlatform.CpuArchitecture).toBe('X86_64');
    }
  });
});

describe('network', () => {
  test('two AZs, three tiers, one NAT gateway by default, flow logs on', () => {
    t.network.resourceCountIs('AWS::EC2::Subnet', 6);
    t.network.resourceCountIs('AWS::EC2::NatGateway', 1);
    t.network.hasResourceProperties('AWS::EC2::FlowLog', { ResourceType: 'VPC', TrafficType: 'ALL' });
  });

  test('natGateways context sets the NAT gateway count', () => {
    synthTemplates({ natGateways: 2 }).network.resourceCountIs('AWS::EC2::NatGateway', 2);
    expect(() => synthTemplates({ natGateways: 0 })).toThrow(/natGateways must be 1 or 2/);
  });
});

describe('alarm topic', () => {
  test('alarmEmail adds an encrypted, TLS-only topic that every alarm notifies', () => {
    const withTopic = synthTemplates({ alarmEmail: 'ops@example.com' });
    const topic = onlyResource(withTopic.messaging, 'AWS::SNS::Topic');
    expect(topic.properties.KmsMasterKeyId).toBeDefined();
    withTopic.messaging.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
    withTopic.messaging.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    for (const template of [withTopic.messaging, withTopic.services]) {
      const alarms = Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm'));
      expect(alarms.length).toBeGreaterThan(0);
      for (const alarm of alarms) {
        expect(alarm.Properties.AlarmActions).toHaveLength(1);
        expect(alarm.Properties.OKActions).toHaveLength(1);
      }
    }
  });

  test('the topic policy lets CloudWatch alarms of this account publish, next to the TLS-only Deny', () => {
    const withTopic = synthTemplates({ alarmEmail: 'ops@example.com' });
    const topic = onlyResource(withTopic.messaging, 'AWS::SNS::Topic');
    const policy = onlyResource(withTopic.messaging, 'AWS::SNS::TopicPolicy');
    expect(policy.properties.Topics).toEqual([{ Ref: topic.logicalId }]);
    const statements: any[] = policy.properties.PolicyDocument.Statement;
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: 'Deny',
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
    const allow = statements.find((st) => st.Effect === 'Allow');
    expect(allow).toMatchObject({
      Principal: { Service: 'cloudwatch.amazonaws.com' },
      Action: 'sns:Publish',
      Resource: { Ref: topic.logicalId },
      Condition: {
        StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
        ArnLike: { 'aws:SourceArn': { 'Fn::Join': ['', expect.arrayContaining([':cloudwatch:', ':alarm:*'])] } },
      },
    });
    // The topic's key lets CloudWatch encrypt what it publishes.
    const key = onlyResource(withTopic.messaging, 'AWS::KMS::Key');
    expect(key.properties.KeyPolicy.Statement).toContainEqual(
      expect.objectContaining({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] }),
    );
  });
});
