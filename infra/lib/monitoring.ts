import { Aws, Duration } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { alarmActions } from './alarms';
import type { ServiceKey } from './data-stack';

/** Namespace of booking-service's EMF lines (EMF_NAMESPACE) and of the log-derived counts below. */
const NAMESPACE = 'TransactionalOutbox';
const SERVICE_DIMENSION = { ServiceName: 'booking-service' };

/**
 * payment-service scales to keep about this many visible messages per running task. A 0.25-vCPU
 * task handles well over 100 payments/s against Aurora (5,450/s on two local cores), so this is
 * under ten seconds of work per task; beyond it, another task halves the wait.
 */
export const PAYMENT_BACKLOG_PER_TASK = 1000;
/** The consumer-lag alarm: twice the scaling target, for 15 minutes. */
export const CONSUMER_LAG_THRESHOLD = 2 * PAYMENT_BACKLOG_PER_TASK;

export interface OutboxMonitoringProps {
  readonly cluster: ecs.ICluster;
  readonly services: Record<ServiceKey, ecs.FargateService>;
  readonly logGroups: Record<ServiceKey, logs.ILogGroup>;
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly targetGroups: Record<ServiceKey, elbv2.ApplicationTargetGroup>;
  readonly queue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly database: rds.DatabaseCluster;
  readonly dbMaxCapacity: number;
  readonly alarmTopic?: sns.ITopic;
}

/**
 * Visible messages in the queue per running payment-service task: what payment-service scales on
 * (target tracking) and what the consumer-lag alarm watches. Container Insights reports the
 * running task count; the service never runs fewer than one task, so the division is safe.
 */
export function backlogPerTaskQueries(ids: {
  queueName: string;
  clusterName: string;
  serviceName: string;
}): appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty[] {
  return [
    {
      id: 'visible',
      metricStat: {
        metric: {
          namespace: 'AWS/SQS',
          metricName: 'ApproximateNumberOfMessagesVisible',
          dimensions: [{ name: 'QueueName', value: ids.queueName }],
        },
        stat: 'Sum',
      },
      returnData: false,
    },
    {
      id: 'running',
      metricStat: {
        metric: {
          namespace: 'ECS/ContainerInsights',
          metricName: 'RunningTaskCount',
          dimensions: [
            { name: 'ClusterName', value: ids.clusterName },
            { name: 'ServiceName', value: ids.serviceName },
          ],
        },
        stat: 'Average',
      },
      returnData: false,
    },
    { id: 'backlogPerTask', expression: 'visible / running', label: 'Visible messages per payment-service task', returnData: true },
  ];
}

/**
 * Alarms and the dashboard. The metric names are the services' own: booking-service's EMF
 * backlog metrics (crates/outbox/src/metrics.rs), and two counts made from the JSON log lines the
 * services already write for every booking ("flight booked") and every payment ("payment
 * recorded"). Publish rate and consumption come from SQS's own metrics.
 */
export class OutboxMonitoring extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: OutboxMonitoringProps) {
    super(scope, id);
    const { payment } = props.services;
    const minute = Duration.minutes(1);

    // ---- metrics ------------------------------------------------------------------------------
    const emf = (metricName: string, unit: cloudwatch.Unit) =>
      new cloudwatch.Metric({
        namespace: NAMESPACE,
        metricName,
        dimensionsMap: SERVICE_DIMENSION,
        unit,
        statistic: cloudwatch.Stats.MAXIMUM,
        period: minute,
      });
    const oldestPendingAge = emf('OutboxOldestPendingAgeSeconds', cloudwatch.Unit.SECONDS);
    const pendingEvents = emf('OutboxPendingEvents', cloudwatch.Unit.COUNT);
    const parkedEvents = emf('OutboxParkedEvents', cloudwatch.Unit.COUNT);

    const logCount = (logGroup: logs.ILogGroup, filterId: string, message: string, metricName: string) =>
      new logs.MetricFilter(this, filterId, {
        logGroup,
        filterPattern: logs.FilterPattern.stringValue('$.message', '=', message),
        metricNamespace: NAMESPACE,
        metricName,
        metricValue: '1',
        unit: cloudwatch.Unit.COUNT,
      }).metric({ statistic: cloudwatch.Stats.SUM, period: minute });
    const flightsBooked = logCount(props.logGroups.booking, 'FlightsBookedFilter', 'flight booked', 'FlightsBooked');
    const paymentsRecorded = logCount(props.logGroups.payment, 'PaymentsRecordedFilter', 'payment recorded', 'PaymentsRecorded');

    // Each rate names its input after itself: ids must be unique within one graph.
    const perSecond = (metric: cloudwatch.IMetric, id: string, label: string) =>
      new cloudwatch.MathExpression({
        expression: `FILL(${id}, 0) / PERIOD(${id})`,
        usingMetrics: { [id]: metric },
        label,
        period: minute,
      });

    const sum = { statistic: cloudwatch.Stats.SUM, period: minute };
    const max = { statistic: cloudwatch.Stats.MAXIMUM, period: minute };
    const queueVisible = props.queue.metricApproximateNumberOfMessagesVisible({ ...max, label: 'bookings.fifo visible' });
    const queueInFlight = props.queue.metricApproximateNumberOfMessagesNotVisible({ ...max, label: 'bookings.fifo in flight' });
    const dlqVisible = props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ ...max, label: 'bookings-dlq.fifo visible' });
    const queueAge = props.queue.metricApproximateAgeOfOldestMessage({ ...max, label: 'bookings.fifo' });
    const dlqAge = props.deadLetterQueue.metricApproximateAgeOfOldestMessage({ ...max, label: 'bookings-dlq.fifo' });
    const published = props.queue.metricNumberOfMessagesSent(sum);
    const consumed = props.queue.metricNumberOfMessagesDeleted(sum);

    const insights = (service: ecs.FargateService, metricName: string, label: string) =>
      new cloudwatch.Metric({
        namespace: 'ECS/ContainerInsights',
        metricName,
        dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: service.serviceName },
        statistic: cloudwatch.Stats.AVERAGE,
        period: minute,
        label,
      });
    const backlogPerTask = new cloudwatch.MathExpression({
      expression: 'visible / running',
      usingMetrics: {
        visible: props.queue.metricApproximateNumberOfMessagesVisible({ statistic: cloudwatch.Stats.SUM, period: minute }),
        running: insights(payment, 'RunningTaskCount', 'running'),
      },
      label: 'visible messages per payment-service task',
      period: minute,
    });

    const requests = props.loadBalancer.metrics.requestCount(sum);
    const target5xx = props.loadBalancer.metrics.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, sum);
    const elb5xx = props.loadBalancer.metrics.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, sum);
    const errorRate = new cloudwatch.MathExpression({
      // Below 20 requests a minute a single error is not a rate worth waking anyone for.
      expression: 'IF(requests >= 20, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)',
      usingMetrics: { requests, target5xx, elb5xx },
      label: '5xx % of requests',
      period: minute,
    });

    // ---- alarms ---------------------------------------------------------------------------------
    const alarm = (alarmId: string, alarmProps: cloudwatch.AlarmProps) => {
      const created = new cloudwatch.Alarm(this, alarmId, alarmProps);
      this.alarms.push(created);
      return created;
    };

    // booking-service prints this metric as EMF every 10 s from every task, even at zero, so
    // silence means no relay is alive: missing data counts as breaching.
    alarm('OutboxBacklogAge', {
      alarmDescription:
        'The oldest unpublished outbox event is older than 60 s for 3 minutes (or booking-service ' +
        'stopped reporting): the relay cannot publish to SQS.',
      metric: oldestPendingAge,
      threshold: 60,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm('Alb5xxRate', {
      alarmDescription:
        'More than 5 % of requests through the ALB ended in a 5xx (from the services or the ALB) for ' +
        '3 minutes: a service fails requests, or no healthy target is left.',
      metric: errorRate,
      threshold: 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    for (const key of ['booking', 'payment'] as const) {
      const name = `${key}-service`;
      const id = key === 'booking' ? 'Booking' : 'Payment';
      alarm(`${id}UnhealthyTargets`, {
        alarmDescription:
          `A ${name} task has failed the ALB's /health/live check for 3 minutes: the process ` +
          'is wedged or not listening (the check does not touch the database).',
        metric: props.targetGroups[key].metrics.unhealthyHostCount(max),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm(`${id}TasksBelowDesired`, {
        alarmDescription:
          `${name} has run fewer tasks than desired for 5 minutes: tasks fail to start or keep ` +
          'stopping (image pull, secrets, database, health check). See the service\u2019s events.',
        metric: new cloudwatch.MathExpression({
          expression: 'desired - running',
          usingMetrics: {
            desired: insights(props.services[key], 'DesiredTaskCount', 'desired'),
            running: insights(props.services[key], 'RunningTaskCount', 'running'),
          },
          label: `${name} tasks missing`,
          period: minute,
        }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        datapointsToAlarm: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    alarm('AuroraAtMaxCapacity', {
      alarmDescription:
        `Aurora has run at its maximum of ${props.dbMaxCapacity} ACUs for 10 minutes: queries queue ` +
        'up and latency grows. Raise dbMaxCapacity, or find the load.',
      metric: props.database.metricServerlessDatabaseCapacity(max),
      threshold: props.dbMaxCapacity,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 10,
      datapointsToAlarm: 10,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('ConsumerLag', {
      alarmDescription:
        `More than ${CONSUMER_LAG_THRESHOLD} visible messages per payment-service task for 15 minutes: scaling is at its ` +
        'maximum or the consumer is slower than the bookings (payments lag behind bookings).',
      metric: backlogPerTask,
      threshold: CONSUMER_LAG_THRESHOLD,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 15,
      datapointsToAlarm: 15,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarmActions(this.alarms, props.alarmTopic);

    // ---- dashboard ------------------------------------------------------------------------------
    const graph = (title: string, left: cloudwatch.IMetric[], extra: Partial<cloudwatch.GraphWidgetProps> = {}) =>
      new cloudwatch.GraphWidget({ title, left, width: 8, height: 6, period: minute, ...extra });
    const perService = (f: (s: ecs.FargateService) => cloudwatch.IMetric, label: string) =>
      (['booking', 'payment'] as const).map((k) => {
        const m = f(props.services[k]);
        return m instanceof cloudwatch.Metric ? m.with({ label: `${k}-service ${label}` }) : m;
      });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `TransactionalOutbox-${Aws.REGION}`,
      defaultInterval: Duration.hours(3),
    });
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown:
          '# Transactional outbox\n' +
          'Bookings go into PostgreSQL with their event (one transaction); the relay publishes the ' +
          'outbox to `bookings.fifo`; payment-service consumes it. Bookings/s and payments/s count the ' +
          'services\u2019 `flight booked` / `payment recorded` log lines; published and consumed are ' +
          'SQS\u2019s own counts.',
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      graph('Bookings/s and payments/s', [
        perSecond(flightsBooked, 'booked', 'bookings/s'),
        perSecond(paymentsRecorded, 'paid', 'payments/s'),
      ]),
      graph('Outbox: published and consumed (msg/s)', [
        perSecond(published, 'sent', 'published to bookings.fifo /s'),
        perSecond(consumed, 'deleted', 'consumed (deleted) /s'),
      ]),
      new cloudwatch.LogQueryWidget({
        title: 'Relay publish failures by error (log lines)',
        logGroupNames: [props.logGroups.booking.logGroupName],
        queryLines: [
          'fields @timestamp, message, error',
          'filter message = "SQS refused an entry; will retry" or message like /relay cannot publish/',
          'stats count(*) as lines by message, error',
          'sort lines desc',
          'limit 20',
        ],
        view: cloudwatch.LogQueryVisualizationType.TABLE,
        width: 8,
        height: 6,
      }),
    );
    this.dashboard.addWidgets(
      graph('Outbox backlog (events)', [pendingEvents.with({ label: 'pending' }), parkedEvents.with({ label: 'parked' })]),
      graph('Outbox oldest pending event (s)', [oldestPendingAge.with({ label: 'oldest pending age' })], {
        leftAnnotations: [{ value: 60, label: 'alarm' }],
      }),
      graph('Queue depth (messages)', [queueVisible, queueInFlight, dlqVisible]),
    );
    this.dashboard.addWidgets(
      graph('Queue oldest message age (s)', [queueAge, dlqAge], { leftAnnotations: [{ value: 300, label: 'alarm' }] }),
      graph('payment-service: backlog per task and tasks', [backlogPerTask], {
        right: [insights(payment, 'RunningTaskCount', 'payment-service running tasks')],
        leftAnnotations: [{ value: PAYMENT_BACKLOG_PER_TASK, label: 'scaling target' }],
      }),
      graph('ALB requests and 5xx (per minute)', [
        requests.with({ label: 'requests' }),
        target5xx.with({ label: 'target 5xx' }),
        elb5xx.with({ label: 'ALB 5xx' }),
      ]),
    );
    this.dashboard.addWidgets(
      graph(
        'ALB target response time p99 (s)',
        (['booking', 'payment'] as const).map((k) =>
          props.targetGroups[k].metrics.targetResponseTime({ statistic: 'p99', period: minute, label: `${k}-service p99` }),
        ),
      ),
      graph('ECS CPU (%)', perService((s) => s.metricCpuUtilization({ period: minute }), 'CPU')),
      graph('ECS memory (%)', perService((s) => s.metricMemoryUtilization({ period: minute }), 'memory')),
    );
    this.dashboard.addWidgets(
      graph(
        'ECS tasks: running / desired',
        (['booking', 'payment'] as const).flatMap((k) => [
          insights(props.services[k], 'RunningTaskCount', `${k}-service running`),
          insights(props.services[k], 'DesiredTaskCount', `${k}-service desired`),
        ]),
      ),
      graph('Aurora capacity (ACU)', [props.database.metricServerlessDatabaseCapacity({ ...max, label: 'ACU' })], {
        leftAnnotations: [{ value: props.dbMaxCapacity, label: 'dbMaxCapacity' }],
      }),
      graph('Aurora connections', [props.database.metricDatabaseConnections({ ...max, label: 'connections' })]),
    );
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms (this stack)', alarms: this.alarms, width: 24, height: 3 }),
    );
  }
}
