import * as path from 'node:path';
import { CfnOutput, CfnParameter, Duration, RemovalPolicy, Size, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { alarmActions } from './alarms';

export interface ServicesStackProps extends StackProps {
  readonly vpc: ec2.IVpc;
  readonly database: rds.DatabaseCluster;
  readonly databaseSecret: secretsmanager.ISecret;
  readonly queue: sqs.IQueue;
  readonly alarmTopic?: sns.ITopic;
  readonly cpuArchitecture: 'arm64' | 'x86_64';
}

/** The Docker build context: the workspace root, so the images see Cargo.lock, crates/, migrations/, .sqlx/. */
const REPO_ROOT = path.join(__dirname, '..', '..');

/** Namespace and dimension of the outbox metrics booking-service prints as CloudWatch EMF. */
export const EMF_NAMESPACE = 'TransactionalOutbox';

interface ServiceSpec {
  readonly name: 'booking-service' | 'payment-service';
  readonly port: number;
  readonly database: string;
  readonly environment: Record<string, string>;
}

/**
 * The stateless part: ECS cluster, both Fargate services, the ALB in front of them, and the
 * outbox alarm. Everything it needs from the other stacks arrives through props.
 */
export class ServicesStack extends Stack {
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly bookingService: ecs.FargateService;
  readonly paymentService: ecs.FargateService;

  constructor(scope: Construct, id: string, props: ServicesStackProps) {
    super(scope, id, props);

    // The demo is reachable from one address only. This is enforced by the ALB security group
    // below (no WAF: it would cost more than everything else here for a one-person demo).
    const myPublicIp = new CfnParameter(this, 'myPublicIP', {
      type: 'String',
      description: 'IPv4 CIDR allowed to reach the load balancer on port 80, e.g. 203.0.113.7/32',
      // An IPv4 address with a prefix length of 1-32: /0 (the whole internet) is refused.
      allowedPattern:
        '^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/(3[0-2]|[12][0-9]|[1-9])$',
      constraintDescription: 'must be an IPv4 CIDR such as 203.0.113.7/32 (prefix length 1-32)',
    });

    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    const albSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc: props.vpc,
      description: 'ALB: HTTP from myPublicIP only',
      // Egress to the tasks is added by the listener targets below, port by port.
      allowAllOutbound: false,
    });
    albSecurityGroup.addIngressRule(
      ec2.Peer.ipv4(myPublicIp.valueAsString),
      ec2.Port.tcp(80),
      'HTTP from myPublicIP',
    );

    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroup: albSecurityGroup,
      dropInvalidHeaderFields: true,
    });
    // Opening is done by the security group above; `open: true` would add 0.0.0.0/0.
    const listener = this.loadBalancer.addListener('Http', { port: 80, open: false });

    const architecture =
      props.cpuArchitecture === 'arm64'
        ? { cpu: ecs.CpuArchitecture.ARM64, platform: Platform.LINUX_ARM64 }
        : { cpu: ecs.CpuArchitecture.X86_64, platform: Platform.LINUX_AMD64 };

    const createService = (spec: ServiceSpec, desiredCount: number): ecs.FargateService => {
      const id = spec.name === 'booking-service' ? 'Booking' : 'Payment';
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
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
          RUN_MIGRATIONS: 'true',
          PGDATABASE: spec.database,
          // The cluster refuses unencrypted connections (rds.force_ssl). `require` encrypts
          // without checking the CA; verify-full would need the RDS CA bundle in the image.
          PGSSLMODE: 'require',
          SQS_QUEUE_URL: props.queue.queueUrl,
          ...spec.environment,
        },
        // The generated Aurora secret holds JSON; ECS resolves one key per variable at task start.
        secrets: {
          PGHOST: ecs.Secret.fromSecretsManager(props.databaseSecret, 'host'),
          PGPORT: ecs.Secret.fromSecretsManager(props.databaseSecret, 'port'),
          PGUSER: ecs.Secret.fromSecretsManager(props.databaseSecret, 'username'),
          PGPASSWORD: ecs.Secret.fromSecretsManager(props.databaseSecret, 'password'),
        },
        logging: ecs.LogDrivers.awsLogs({
          logGroup,
          streamPrefix: spec.name,
          // Never block the service on CloudWatch: drop log lines when the buffer is full.
          mode: ecs.AwsLogDriverMode.NON_BLOCKING,
          maxBufferSize: Size.mebibytes(4),
        }),
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
        // Start-up creates the database and runs migrations before /health/ready answers 200.
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
        name: 'booking-service',
        port: 8080,
        database: 'booking',
        environment: { RELAY_ENABLED: 'true', EMF_NAMESPACE },
      },
      2,
    );
    this.paymentService = createService(
      {
        name: 'payment-service',
        port: 8081,
        database: 'payment',
        environment: { CONSUMER_VISIBILITY_TIMEOUT: '30s' },
      },
      1,
    );

    // Least privilege through grants: the relay only sends, the consumer only receives.
    props.queue.grantSendMessages(this.bookingService.taskDefinition.taskRole);
    props.queue.grantConsumeMessages(this.paymentService.taskDefinition.taskRole);

    const healthCheck = (port: number): elbv2.HealthCheck => ({
      path: '/health/ready',
      port: String(port),
      healthyHttpCodes: '200',
      interval: Duration.seconds(15),
      timeout: Duration.seconds(5),
      healthyThresholdCount: 2,
      unhealthyThresholdCount: 3,
    });

    // booking-service is the default: its API, Swagger UI and OpenAPI document.
    listener.addTargets('Booking', {
      port: 8080,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.bookingService],
      healthCheck: healthCheck(8080),
      deregistrationDelay: Duration.seconds(30),
    });
    // payment-service is reachable only under /api/payments*; its other routes stay private.
    listener.addTargets('Payment', {
      priority: 10,
      conditions: [elbv2.ListenerCondition.pathPatterns(['/api/payments', '/api/payments/*'])],
      port: 8081,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.paymentService],
      healthCheck: healthCheck(8081),
      deregistrationDelay: Duration.seconds(30),
    });

    const scaling = this.bookingService.autoScaleTaskCount({ minCapacity: 2, maxCapacity: 4 });
    scaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: 60,
      scaleInCooldown: Duration.seconds(120),
      scaleOutCooldown: Duration.seconds(60),
    });

    // booking-service prints this metric as EMF every 10 s from every task, even at zero, so
    // silence means no relay is alive: missing data counts as breaching.
    const outboxAlarm = new cloudwatch.Alarm(this, 'OutboxBacklogAge', {
      alarmDescription:
        'The oldest unpublished outbox event is older than 60 s for 3 minutes (or booking-service ' +
        'stopped reporting): the relay cannot publish to SQS.',
      metric: new cloudwatch.Metric({
        namespace: EMF_NAMESPACE,
        metricName: 'OutboxOldestPendingAgeSeconds',
        dimensionsMap: { ServiceName: 'booking-service' },
        unit: cloudwatch.Unit.SECONDS,
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(1),
      }),
      threshold: 60,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarmActions([outboxAlarm], props.alarmTopic);

    const albUrl = `http://${this.loadBalancer.loadBalancerDnsName}`;
    new CfnOutput(this, 'LoadBalancerUrl', {
      description: 'Base URL of both APIs (reachable from myPublicIP only)',
      value: albUrl,
    });
    new CfnOutput(this, 'SwaggerUiUrl', {
      description: 'booking-service Swagger UI',
      value: `${albUrl}/swagger-ui/index.html`,
    });
    new CfnOutput(this, 'PaymentsApiUrl', {
      description: 'payment-service API (the only payment-service path behind the ALB)',
      value: `${albUrl}/api/payments`,
    });
    new CfnOutput(this, 'BookingTaskRoleArn', {
      description: 'Role the outbox relay sends with (infra/scripts/block-queue.sh denies it)',
      value: this.bookingService.taskDefinition.taskRole.roleArn,
    });
    new CfnOutput(this, 'ClusterName', { value: cluster.clusterName });

    this.acknowledgeNagFindings();
  }

  private acknowledgeNagFindings(): void {
    Validations.of(this.loadBalancer.connections.securityGroups[0]).acknowledge({
      id: 'AwsSolutions-EC23',
      reason:
        'The only ingress is port 80 from the myPublicIP parameter, which cdk-nag cannot resolve at ' +
        'synth time; its AllowedPattern accepts IPv4 CIDRs with a prefix of /1 to /32, never 0.0.0.0/0.',
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
          'Only non-secret settings (addresses, log format, queue URL, database name) are plain ' +
          'environment variables; the database credentials come from Secrets Manager as ECS secrets.',
      });
    }
  }
}
