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

/**
 * The FIFO queue between the booking-service outbox relay and the payment-service consumer,
 * its dead-letter queue, the alarms on both, and the optional alarm topic.
 */
export class MessagingStack extends Stack {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly alarmTopic?: sns.ITopic;

  constructor(scope: Construct, id: string, props: MessagingStackProps = {}) {
    super(scope, id, props);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      queueName: DEAD_LETTER_QUEUE_NAME,
      fifo: true,
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.queue = new sqs.Queue(this, 'BookingsQueue', {
      queueName: QUEUE_NAME,
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
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
      removalPolicy: RemovalPolicy.DESTROY,
    });

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

    // SQS publishes its metrics every five minutes and stops for an idle queue:
    // missing data means "nothing happening", not "broken".
    const dlqAlarm = new cloudwatch.Alarm(this, 'DeadLetterQueueNotEmpty', {
      alarmDescription:
        'Messages reached bookings-dlq.fifo: payment-service failed to process them 5 times. ' +
        'Inspect, fix, then redrive from the SQS console.',
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const queueAgeAlarm = new cloudwatch.Alarm(this, 'QueueOldestMessageAge', {
      alarmDescription:
        'The oldest message in bookings.fifo waits for more than 5 minutes: payment-service is not consuming.',
      metric: this.queue.metricApproximateAgeOfOldestMessage({
        period: Duration.minutes(1),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 300,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    alarmActions([dlqAlarm, queueAgeAlarm], this.alarmTopic);

    new CfnOutput(this, 'QueueUrl', { description: QUEUE_NAME, value: this.queue.queueUrl });
    new CfnOutput(this, 'DeadLetterQueueUrl', {
      description: DEAD_LETTER_QUEUE_NAME,
      value: this.deadLetterQueue.queueUrl,
    });
  }
}
