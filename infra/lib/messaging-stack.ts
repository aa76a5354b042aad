import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { alarmActions } from './alarms';

export interface MessagingStackProps extends StackProps {
  /** When set, an encrypted SNS topic with this e-mail subscription receives every alarm. */
  readonly alarmEmail?: string;
}

/** Queue names fixed by the services' contract (the same names are used locally). */
export const QUEUE_NAME = 'bookings.fifo';
export const DEAD_LETTER_QUEUE_NAME = 'bookings-dlq.fifo';
export const PAYMENT_EVENTS_QUEUE_NAME = 'payment-events.fifo';
export const PAYMENT_EVENTS_DEAD_LETTER_QUEUE_NAME = 'payment-events-dlq.fifo';

/** After this many receives SQS moves a message to its dead-letter queue. */
export const MAX_RECEIVE_COUNT = 5;

/** One direction of the saga: a FIFO queue, its dead-letter queue, their alarms and outputs. */
interface QueueSpec {
  /** Construct ids; the bookings ids predate the second queue and stay as they are. */
  readonly ids: { readonly queue: string; readonly deadLetterQueue: string; readonly prefix: string };
  readonly queueName: string;
  readonly deadLetterQueueName: string;
  readonly producer: string;
  readonly consumer: string;
}

/**
 * The two FIFO queues of the saga, each with its dead-letter queue: bookings.fifo carries
 * booking-service's FlightBooked events to payment-service, payment-events.fifo carries
 * payment-service's PaymentApproved / PaymentDeclined / PaymentRefunded back to booking-service.
 * Both services publish through their own outbox relay. Plus the alarms on the four queues and
 * the optional alarm topic.
 */
export class MessagingStack extends Stack {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly paymentEventsQueue: sqs.Queue;
  readonly paymentEventsDeadLetterQueue: sqs.Queue;
  readonly alarmTopic?: sns.ITopic;

  constructor(scope: Construct, id: string, props: MessagingStackProps = {}) {
    super(scope, id, props);

    const bookings = this.createQueue({
      ids: { queue: 'BookingsQueue', deadLetterQueue: 'DeadLetterQueue', prefix: '' },
      queueName: QUEUE_NAME,
      deadLetterQueueName: DEAD_LETTER_QUEUE_NAME,
      producer: 'booking-service',
      consumer: 'payment-service',
    });
    this.queue = bookings.queue;
    this.deadLetterQueue = bookings.deadLetterQueue;

    const paymentEvents = this.createQueue({
      ids: { queue: 'PaymentEventsQueue', deadLetterQueue: 'PaymentEventsDeadLetterQueue', prefix: 'PaymentEvents' },
      queueName: PAYMENT_EVENTS_QUEUE_NAME,
      deadLetterQueueName: PAYMENT_EVENTS_DEAD_LETTER_QUEUE_NAME,
      producer: 'payment-service',
      consumer: 'booking-service',
    });
    this.paymentEventsQueue = paymentEvents.queue;
    this.paymentEventsDeadLetterQueue = paymentEvents.deadLetterQueue;

    if (props.alarmEmail) {
      // CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key,
      // so the topic gets its own key that CloudWatch may use.
      const key = new kms.Key(this, 'AlarmTopicKey', {
        description: 'Encrypts the transactional-outbox alarm topic',
        enableKeyRotation: true,
        removalPolicy: RemovalPolicy.DESTROY,
        pendingWindow: Duration.days(7),
      });
      key.addToResourcePolicy(
        new iam.PolicyStatement({
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: ['*'],
        }),
      );
      const topic = new sns.Topic(this, 'AlarmTopic', {
        displayName: 'Transactional outbox alarms',
        masterKey: key,
        enforceSSL: true,
      });
      // enforceSSL gives the topic a policy of its own (the TLS-only Deny), which replaces SNS's
      // default policy: without this statement CloudWatch may not publish and no alarm arrives.
      topic.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'AllowCloudWatchAlarms',
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['sns:Publish'],
          resources: [topic.topicArn],
          conditions: {
            StringEquals: { 'aws:SourceAccount': this.account },
            ArnLike: { 'aws:SourceArn': `arn:${this.partition}:cloudwatch:${this.region}:${this.account}:alarm:*` },
          },
        }),
      );
      topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
      this.alarmTopic = topic;
    }

    alarmActions([...bookings.alarms, ...paymentEvents.alarms], this.alarmTopic);
  }

  private createQueue(spec: QueueSpec): { queue: sqs.Queue; deadLetterQueue: sqs.Queue; alarms: cloudwatch.Alarm[] } {
    const deadLetterQueue = new sqs.Queue(this, spec.ids.deadLetterQueue, {
      queueName: spec.deadLetterQueueName,
      fifo: true,
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const queue = new sqs.Queue(this, spec.ids.queue, {
      queueName: spec.queueName,
      fifo: true,
      // The relay sets MessageDeduplicationId to the outbox event id: a re-sent event is
      // dropped by SQS even when its body differs (e.g. a new trace context).
      contentBasedDeduplication: false,
      // High-throughput FIFO: quotas per message group instead of per queue. Ordering only
      // matters within a booking (the group id), and the default 300 calls/s per queue is what
      // two to four relays with 8 batches in flight each would hit. Deduplication by event id
      // works the same per group, as an event never changes group.
      deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
      fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      // The consumer extends visibility while it works, so this only bounds a crashed consumer.
      visibilityTimeout: Duration.seconds(60),
      retentionPeriod: Duration.days(4),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: MAX_RECEIVE_COUNT },
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // SQS publishes its metrics every five minutes and stops for an idle queue:
    // missing data means "nothing happening", not "broken".
    const dlqAlarm = new cloudwatch.Alarm(this, `${spec.ids.prefix}DeadLetterQueueNotEmpty`, {
      alarmDescription:
        `Messages reached ${spec.deadLetterQueueName}: ${spec.consumer} failed to process them ${MAX_RECEIVE_COUNT} times. ` +
        'Inspect, fix, then redrive from the SQS console.',
      metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const queueAgeAlarm = new cloudwatch.Alarm(this, `${spec.ids.prefix}QueueOldestMessageAge`, {
      alarmDescription:
        `The oldest message in ${spec.queueName} waits for more than 5 minutes: ${spec.consumer} is not consuming.`,
      metric: queue.metricApproximateAgeOfOldestMessage({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 300,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    new CfnOutput(this, `${spec.ids.prefix}QueueUrl`, {
      description: `${spec.queueName} (${spec.producer} publishes, ${spec.consumer} consumes)`,
      value: queue.queueUrl,
    });
    new CfnOutput(this, `${spec.ids.prefix}DeadLetterQueueUrl`, {
      description: spec.deadLetterQueueName,
      value: deadLetterQueue.queueUrl,
    });
    return { queue, deadLetterQueue, alarms: [dlqAlarm, queueAgeAlarm] };
  }
}
