import { App, Stack } from 'aws-cdk-lib';
import { readConfig } from './config';
import { DataStack } from './data-stack';
import { MessagingStack } from './messaging-stack';
import { NetworkStack } from './network-stack';
import { ServicesStack } from './services-stack';

export interface OutboxStacks {
  readonly network: NetworkStack;
  readonly data: DataStack;
  readonly messaging: MessagingStack;
  readonly services: ServicesStack;
}

/** Stack names: `cdk deploy --parameters OutboxServices:myPublicIP=...` uses the last one. */
export const STACK_NAMES = {
  network: 'OutboxNetwork',
  data: 'OutboxData',
  messaging: 'OutboxMessaging',
  services: 'OutboxServices',
} as const;

/**
 * Builds the four stacks. Stateful resources (VPC, Aurora, queues) live apart from the
 * stateless services so the services can be replaced without touching data.
 *
 * No `env`: the stacks are environment-agnostic, so `cdk synth` works offline without
 * credentials and the same templates deploy to whatever account and region the CLI uses.
 */
export function createOutboxStacks(app: App): OutboxStacks {
  const config = readConfig(app.node);
  const tags = { project: 'transactional-outbox' };

  const network = new NetworkStack(app, STACK_NAMES.network, {
    description: 'Transactional outbox demo: VPC over two AZs, NAT, flow logs',
    natGateways: config.natGateways,
    tags,
  });
  const data = new DataStack(app, STACK_NAMES.data, {
    description: 'Transactional outbox demo: Aurora PostgreSQL Serverless v2, one role and database per service, the operator token',
    vpc: network.vpc,
    minCapacity: config.dbMinCapacity,
    maxCapacity: config.dbMaxCapacity,
    deletionProtection: config.deletionProtection,
    tags,
  });
  const messaging = new MessagingStack(app, STACK_NAMES.messaging, {
    description: 'Transactional outbox demo: SQS FIFO queues (bookings, payment events), their dead-letter queues, queue alarms',
    alarmEmail: config.alarmEmail,
    tags,
  });
  const services = new ServicesStack(app, STACK_NAMES.services, {
    description: 'Transactional outbox demo: ECS Fargate services behind an ALB, scaling, alarms, dashboard',
    vpc: network.vpc,
    database: data.cluster,
    databaseSecrets: data.serviceSecrets,
    adminToken: data.adminToken,
    queue: messaging.queue,
    deadLetterQueue: messaging.deadLetterQueue,
    paymentEventsQueue: messaging.paymentEventsQueue,
    paymentEventsDeadLetterQueue: messaging.paymentEventsDeadLetterQueue,
    alarmTopic: messaging.alarmTopic,
    cpuArchitecture: config.cpuArchitecture,
    dbMaxCapacity: config.dbMaxCapacity,
    https: config.https,
    waf: config.waf,
    tags,
  });
  return { network, data, messaging, services };
}

export function allStacks(stacks: OutboxStacks): Stack[] {
  return [stacks.network, stacks.data, stacks.messaging, stacks.services];
}
