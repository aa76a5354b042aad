import * as path from 'node:path';
import { Aws, CfnOutput, CfnParameter, Duration, RemovalPolicy, Size, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { SERVICE_DATABASES, ServiceKey } from './data-stack';
import { backlogPerTaskQueries, OutboxMonitoring, PAYMENT_BACKLOG_PER_TASK } from './monitoring';

export interface ServicesStackProps extends StackProps {
  readonly vpc: ec2.IVpc;
  readonly database: rds.DatabaseCluster;
  /** Each service's own database secret (its role, never the admin's). */
  readonly databaseSecrets: Record<ServiceKey, secretsmanager.ISecret>;
  /** ADMIN_TOKEN, the bearer token of both services' operator endpoints. */
  readonly adminToken: secretsmanager.ISecret;
  /** bookings.fifo: booking-service publishes, payment-service consumes. */
  readonly queue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  /** payment-events.fifo: payment-service publishes, booking-service consumes. */
  readonly paymentEventsQueue: sqs.IQueue;
  readonly paymentEventsDeadLetterQueue: sqs.IQueue;
  readonly alarmTopic?: sns.ITopic;
  readonly cpuArchitecture: 'arm64' | 'x86_64';
  /** Aurora's maximum ACUs, for the "at max capacity" alarm. */
  readonly dbMaxCapacity: number;
  readonly https?: { readonly certificateArn: string; readonly domainName: string };
  readonly waf: boolean;
}

/** The Docker build context: the workspace root, so the images see Cargo.lock, crates/, migrations/, .sqlx/. */
const REPO_ROOT = path.join(__dirname, '..', '..');

/** Namespace of the outbox metrics the services' relays print as CloudWatch EMF. */
export const EMF_NAMESPACE = 'TransactionalOutbox';

/** Where the images keep the RDS CA bundle (docker/*.Dockerfile downloads it there). */
export const RDS_CA_BUNDLE_PATH = '/etc/ssl/certs/rds-global-bundle.pem';

/**
 * SIGTERM to SIGKILL. After SIGTERM the consumer lets a running long poll end (up to
 * CONSUMER_WAIT_TIME, 20 s; abandoning it would hide the messages it took for the visibility
 * timeout and count a receive towards the DLQ), then finishes and commits that batch; the relay
 * lets in-flight SendMessageBatch calls end (the SDK's operation timeout is 25 s), records them
 * and releases its claims. Both services run both, side by side. Fargate's default of 30 s can
 * cut either short; 60 s covers 20 s + a batch, or 25 s + recording, with room. (Fargate allows
 * up to 120 s.)
 */
export const STOP_TIMEOUT = Duration.seconds(60);

export const PAYMENT_TASKS = { min: 1, max: 4 } as const;

/** Requests per 5 minutes from one IP before the optional WAF blocks it for a while. */
export const WAF_RATE_LIMIT = 2000;

/**
 * myPublicIP: an IPv4 CIDR of /16 to /32. /0 is the internet; anything wider than /16 is
 * not "my IP" either (a /1 is half of it).
 */
export const MY_PUBLIC_IP_PATTERN =
  '^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/(3[0-2]|2[0-9]|1[6-9])$';

interface ServiceSpec {
  readonly key: ServiceKey;
  readonly name: 'booking-service' | 'payment-service';
  readonly port: number;
}

/**
 * The stateless part: ECS cluster, both Fargate services, the ALB in front of them (optionally
 * HTTPS and WAF), scaling, and the monitoring (alarms + dashboard). Everything it needs from the
 * other stacks arrives through props.
 */
export class ServicesStack extends Stack {
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly bookingService: ecs.FargateService;
  readonly paymentService: ecs.FargateService;

  constructor(scope: Construct, id: string, props: ServicesStackProps) {
    super(scope, id, props);

    // The demo is reachable from one address (range) only: the ALB security group admits it and
    // nothing else. The optional WAF adds a per-IP rate limit on top.
    const myPublicIp = new CfnParameter(this, 'myPublicIP', {
      type: 'String',
      description: 'IPv4 CIDR allowed to reach the load balancer, e.g. 203.0.113.7/32 (prefix /16 to /32)',
      allowedPattern: MY_PUBLIC_IP_PATTERN,
      constraintDescription: 'must be an IPv4 CIDR such as 203.0.113.7/32, with a prefix length of 16 to 32',
    });

    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    const albSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc: props.vpc,
      description: props.https ? 'ALB: HTTP and HTTPS from myPublicIP only' : 'ALB: HTTP from myPublicIP only',
      // Egress to the tasks is added by the listener targets below, port by port.
      allowAllOutbound: false,
    });
    const me = ec2.Peer.ipv4(myPublicIp.valueAsString);
    albSecurityGroup.addIngressRule(me, ec2.Port.tcp(80), 'HTTP from myPublicIP');

    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroup: albSecurityGroup,
      dropInvalidHeaderFields: true,
    });

    // Opening is done by the security group above; `open: true` would add 0.0.0.0/0.
    let listener: elbv2.ApplicationListener;
    if (props.https) {
      albSecurityGroup.addIngressRule(me, ec2.Port.tcp(443), 'HTTPS from myPublicIP');
      listener = this.loadBalancer.addListener('Https', {
        port: 443,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        certificates: [elbv2.ListenerCertificate.fromArn(props.https.certificateArn)],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        open: false,
      });
      this.loadBalancer.addListener('HttpRedirect', {
        port: 80,
        open: false,
        defaultAction: elbv2.ListenerAction.redirect({ protocol: 'HTTPS', port: '443', permanent: true }),
      });
    } else {
      listener = this.loadBalancer.addListener('Http', { port: 80, open: false });
    }

    const architecture =
      props.cpuArchitecture === 'arm64'
        ? { cpu: ecs.CpuArchitecture.ARM64, platform: Platform.LINUX_ARM64 }
        : { cpu: ecs.CpuArchitecture.X86_64, platform: Platform.LINUX_AMD64 };

    const logGroups = {} as Record<ServiceKey, logs.ILogGroup>;
    const createService = (spec: ServiceSpec, desiredCount: number): ecs.FargateService => {
      const id = spec.key === 'booking' ? 'Booking' : 'Payment';
      const secret = props.databaseSecrets[spec.key];
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      logGroups[spec.key] = logGroup;
      const taskDefinition = new ecs.FargateTaskDefinition(this, `${id}Task`, {
        cpu: 256,
        memoryLimitMiB: 512,
        runtimePlatform: {
          cpuArchitecture: architecture.cpu,
          operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
        },
      });
      taskDefinition.addContainer(spec.name, {
        image: ecs.ContainerImage.fromAsset(REPO_ROOT, {
          file: `docker/${spec.name}.Dockerfile`,
          platform: architecture.platform,
        }),
        portMappings: [{ containerPort: spec.port, name: 'http' }],
        environment: {
          BIND_ADDR: `0.0.0.0:${spec.port}`,
          LOG_FORMAT: 'json',
          RUST_LOG: 'info',
          // The database exists (ServiceRoles in the data stack); the service checks that and
          // applies its migrations as the role that owns the database.
          RUN_MIGRATIONS: 'true',
          PGDATABASE: SERVICE_DATABASES[spec.key].database,
          // sqlx reads both: TLS with the server certificate checked against the RDS CA bundle in
          // the image, and the host name against PGHOST (the cluster endpoint).
          PGSSLMODE: 'verify-full',
          PGSSLROOTCERT: RDS_CA_BUNDLE_PATH,
          // Both services run a relay (their own outbox) and a consumer (the other's events):
          // booking-service publishes to bookings.fifo and consumes payment-events.fifo,
          // payment-service the other way round. Each reads the URL it needs.
          SQS_QUEUE_URL: props.queue.queueUrl,
          PAYMENT_EVENTS_QUEUE_URL: props.paymentEventsQueue.queueUrl,
          RELAY_ENABLED: 'true',
          CONSUMER_ENABLED: 'true',
          // The relay prints its outbox backlog as EMF (dimension ServiceName); the backlog alarm
          // and the dashboard read booking-service's.
          EMF_NAMESPACE,
          CONSUMER_VISIBILITY_TIMEOUT: '30s',
        },
        // The service's own secret (JSON); ECS resolves one key per variable at task start.
        // ADMIN_TOKEN is a plain-string secret of its own, the same for both services. Each
        // reference also grants the task's execution role (not the task role) read on it.
        secrets: {
          PGHOST: ecs.Secret.fromSecretsManager(secret, 'host'),
          PGPORT: ecs.Secret.fromSecretsManager(secret, 'port'),
          PGUSER: ecs.Secret.fromSecretsManager(secret, 'username'),
          PGPASSWORD: ecs.Secret.fromSecretsManager(secret, 'password'),
          ADMIN_TOKEN: ecs.Secret.fromSecretsManager(props.adminToken),
        },
        logging: ecs.LogDrivers.awsLogs({
          logGroup,
          streamPrefix: spec.name,
          // Never block the service on CloudWatch: drop log lines when the buffer is full.
          mode: ecs.AwsLogDriverMode.NON_BLOCKING,
          maxBufferSize: Size.mebibytes(4),
        }),
        // Liveness only (no database round trip), so a database failover never gets healthy
        // tasks replaced. The image has no HTTP client; bash's /dev/tcp is enough for one GET.
        // It catches a wedged process independently of the ALB, and ECS shows it per task.
        healthCheck: {
          command: [
            'CMD',
            '/bin/bash',
            '-c',
            `exec 3<>/dev/tcp/127.0.0.1/${spec.port} && printf 'GET /health/live HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '`,
          ],
          interval: Duration.seconds(15),
          timeout: Duration.seconds(5),
          retries: 3,
          // Start-up connects to the database and runs migrations before the port opens.
          startPeriod: Duration.seconds(60),
        },
        stopTimeout: STOP_TIMEOUT,
        readonlyRootFilesystem: true,
      });

      const securityGroup = new ec2.SecurityGroup(this, `${id}SecurityGroup`, {
        vpc: props.vpc,
        description: `${spec.name} tasks`,
        allowAllOutbound: false,
      });
      // HTTPS to the AWS APIs (SQS, ECR, Secrets Manager, CloudWatch Logs) through NAT. PostgreSQL
      // to Aurora is added below; DNS to the VPC resolver is never filtered by security groups.
      securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to AWS APIs');

      const service = new ecs.FargateService(this, `${id}Service`, {
        cluster,
        serviceName: spec.name,
        taskDefinition,
        desiredCount,
        securityGroups: [securityGroup],
        vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
        assignPublicIp: false,
        minHealthyPercent: 100,
        maxHealthyPercent: 200,
        circuitBreaker: { enable: true, rollback: true },
        // Start-up connects to the database and runs migrations before /health/live answers.
        healthCheckGracePeriod: Duration.seconds(60),
        propagateTags: ecs.PropagatedTagSource.SERVICE,
      });

      // Written from this side so the rule lands in this stack, next to the service security
      // group it names; from the database side it would make the data stack depend on this one.
      service.connections.allowToDefaultPort(props.database, `${spec.name} to Aurora`);
      return service;
    };

    this.bookingService = createService(
      {
        key: 'booking',
        name: 'booking-service',
        port: 8080,
      },
      2,
    );
    this.paymentService = createService(
      {
        key: 'payment',
        name: 'payment-service',
        port: 8081,
      },
      PAYMENT_TASKS.min,
    );

    // Least privilege through grants: a relay only sends to the queue it publishes to, a
    // consumer only receives from the queue it consumes; neither touches the other direction.
    const bookingRole = this.bookingService.taskDefinition.taskRole;
    const paymentRole = this.paymentService.taskDefinition.taskRole;
    props.queue.grantSendMessages(bookingRole);
    props.queue.grantConsumeMessages(paymentRole);
    props.paymentEventsQueue.grantSendMessages(paymentRole);
    props.paymentEventsQueue.grantConsumeMessages(bookingRole);
    // A consumer moves a poison message to its queue's DLQ at once (GetQueueUrl by the name in
    // the redrive policy, then SendMessage), so the valid messages behind it in its FIFO group
    // are not dead-lettered with it. Send only: receiving from or deleting in a DLQ is the
    // operator's redrive, never a task's.
    const dlqSend = ['sqs:SendMessage', 'sqs:GetQueueUrl'];
    props.deadLetterQueue.grant(paymentRole, ...dlqSend);
    props.paymentEventsDeadLetterQueue.grant(bookingRole, ...dlqSend);

    // Liveness, not readiness: /health/ready is a database round trip, so a failover, patching or
    // a saturated pool would mark every task unhealthy at once and ECS would replace them all
    // (booking-service cannot even start without the database). /health/ready stays for what
    // it is for: a person or a script asking whether the service can do its work right now.
    const healthCheck = (port: number): elbv2.HealthCheck => ({
      path: '/health/live',
      port: String(port),
      healthyHttpCodes: '200',
      interval: Duration.seconds(15),
      timeout: Duration.seconds(5),
      healthyThresholdCount: 2,
      unhealthyThresholdCount: 3,
    });

    // booking-service is the default: its API, Swagger UI and OpenAPI document.
    const bookingTargets = listener.addTargets('Booking', {
      port: 8080,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.bookingService],
      healthCheck: healthCheck(8080),
      deregistrationDelay: Duration.seconds(30),
    });
    // payment-service is reachable only under /api/payments*; its other routes stay private.
    const paymentTargets = listener.addTargets('Payment', {
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(['/api/payments', '/api/payments/*'])],
      port: 8081,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.paymentService],
      healthCheck: healthCheck(8081),
      deregistrationDelay: Duration.seconds(30),
    });

    const bookingScaling = this.bookingService.autoScaleTaskCount({ minCapacity: 2, maxCapacity: 4 });
    bookingScaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: 60,
      scaleInCooldown: Duration.seconds(120),
      scaleOutCooldown: Duration.seconds(60),
    });

    // payment-service follows its queue: target tracking on visible messages per running task
    // (metric math, which the CDK's L2 does not render, hence the L1 policy).
    const paymentScaling = this.paymentService.autoScaleTaskCount({
      minCapacity: PAYMENT_TASKS.min,
      maxCapacity: PAYMENT_TASKS.max,
    });
    const paymentTarget = paymentScaling.node.findChild('Target') as appscaling.ScalableTarget;
    new appscaling.CfnScalingPolicy(this, 'PaymentBacklogScaling', {
      policyName: 'payment-service-backlog-per-task',
      policyType: 'TargetTrackingScaling',
      scalingTargetId: paymentTarget.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: PAYMENT_BACKLOG_PER_TASK,
        scaleOutCooldown: 60,
        scaleInCooldown: 300,
        customizedMetricSpecification: {
          metrics: backlogPerTaskQueries({
            queueName: props.queue.queueName,
            clusterName: cluster.clusterName,
            serviceName: this.paymentService.serviceName,
          }),
        },
      },
    });

    if (props.waf) this.addWebAcl(myPublicIp.valueAsString);

    const monitoring = new OutboxMonitoring(this, 'Monitoring', {
      cluster,
      services: { booking: this.bookingService, payment: this.paymentService },
      logGroups,
      loadBalancer: this.loadBalancer,
      targetGroups: { booking: bookingTargets, payment: paymentTargets },
      queue: props.queue,
      deadLetterQueue: props.deadLetterQueue,
      database: props.database,
      dbMaxCapacity: props.dbMaxCapacity,
      alarmTopic: props.alarmTopic,
    });

    const baseUrl = props.https
      ? `https://${props.https.domainName}`
      : `http://${this.loadBalancer.loadBalancerDnsName}`;
    new CfnOutput(this, 'LoadBalancerUrl', {
      description: props.https
        ? `Base URL of both APIs (point ${props.https.domainName} at LoadBalancerDnsName; reachable from myPublicIP only)`
        : 'Base URL of both APIs (reachable from myPublicIP only)',
      value: baseUrl,
    });
    new CfnOutput(this, 'LoadBalancerDnsName', {
      description: 'The ALB\u2019s DNS name (the target of a CNAME or alias record for domainName)',
      value: this.loadBalancer.loadBalancerDnsName,
    });
    new CfnOutput(this, 'SwaggerUiUrl', {
      description: 'booking-service Swagger UI',
      value: `${baseUrl}/swagger-ui/index.html`,
    });
    new CfnOutput(this, 'PaymentsApiUrl', {
      description: 'payment-service API (the only payment-service path behind the ALB)',
      value: `${baseUrl}/api/payments`,
    });
    new CfnOutput(this, 'BookingTaskRoleArn', {
      description: 'Role booking-service\u2019s relay sends to bookings.fifo with (infra/scripts/block-queue.sh denies it)',
      value: bookingRole.roleArn,
    });
    new CfnOutput(this, 'PaymentTaskRoleArn', {
      description:
        'Role payment-service\u2019s relay sends to payment-events.fifo with (infra/scripts/block-queue.sh --queue payment-events denies it)',
      value: paymentRole.roleArn,
    });
    new CfnOutput(this, 'ClusterName', { value: cluster.clusterName });
    new CfnOutput(this, 'DashboardUrl', {
      description: 'CloudWatch dashboard: bookings, outbox, queues, payments, ALB, ECS, Aurora',
      value: `https://${Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards/dashboard/${monitoring.dashboard.dashboardName}`,
    });

    this.acknowledgeNagFindings();
  }

  /**
   * WAF in front of the ALB: myPublicIP allowed, everything else blocked, and a per-IP rate limit
   * evaluated first, so even the allowed address cannot flood the services.
   */
  private addWebAcl(myPublicIp: string): void {
    const visibility = (metricName: string) => ({
      cloudWatchMetricsEnabled: true,
      metricName,
      sampledRequestsEnabled: true,
    });
    const ipSet = new wafv2.CfnIPSet(this, 'MyPublicIpSet', {
      scope: 'REGIONAL',
      ipAddressVersion: 'IPV4',
      addresses: [myPublicIp],
      description: 'myPublicIP',
    });
    const webAcl = new wafv2.CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      defaultAction: { block: {} },
      visibilityConfig: visibility('outbox-web-acl'),
      rules: [
        {
          name: 'RateLimitPerIp',
          priority: 0,
          action: { block: {} },
          statement: { rateBasedStatement: { limit: WAF_RATE_LIMIT, aggregateKeyType: 'IP' } },
          visibilityConfig: visibility('outbox-rate-limit'),
        },
        {
          name: 'AllowMyPublicIp',
          priority: 1,
          action: { allow: {} },
          statement: { ipSetReferenceStatement: { arn: ipSet.attrArn } },
          visibilityConfig: visibility('outbox-allow-my-ip'),
        },
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', {
      resourceArn: this.loadBalancer.loadBalancerArn,
      webAclArn: webAcl.attrArn,
    });
  }

  private acknowledgeNagFindings(): void {
    Validations.of(this.loadBalancer.connections.securityGroups[0]).acknowledge({
      id: 'AwsSolutions-EC23',
      reason:
        'The only ingress is from the myPublicIP parameter, which cdk-nag cannot resolve at synth ' +
        'time; its AllowedPattern accepts IPv4 CIDRs with a prefix of /16 to /32, never 0.0.0.0/0.',
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason:
        'Access logs need the region-specific ELB log-delivery account, and this app is ' +
        'environment-agnostic (synthesised offline, deployable to any region); the ALB is ' +
        'reachable from one IP only. Add loadBalancer.logAccessLogs(bucket) for a fixed-region deployment.',
    });
    for (const service of [this.bookingService, this.paymentService]) {
      Validations.of(service.taskDefinition.obtainExecutionRole()).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ecr:GetAuthorizationToken, added by CDK for pulling the image, supports no resource-level ' +
          'permissions; every other statement of the execution role names its resource.',
      });
      Validations.of(service.taskDefinition).acknowledge({
        id: 'AwsSolutions-ECS2',
        reason:
          'Only non-secret settings (addresses, log format, queue URLs, database name, CA path) are plain ' +
          'environment variables; the database credentials and ADMIN_TOKEN come from Secrets Manager as ECS secrets.',
      });
    }
  }
}
