import { Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

export interface DataStackProps extends StackProps {
  readonly vpc: ec2.IVpc;
  readonly minCapacity: number;
  readonly maxCapacity: number;
  readonly deletionProtection: boolean;
}

/**
 * One Aurora PostgreSQL Serverless v2 cluster for both services. Each service connects with the
 * generated master secret and creates its own database (`booking`, `payment`) at start-up, so the
 * two keep separate schemas and migrations without a second cluster.
 */
export class DataStack extends Stack {
  readonly cluster: rds.DatabaseCluster;
  /** JSON with host, port, username, password: what the tasks get as PG* variables. */
  readonly secret: secretsmanager.ISecret;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);

    // No ingress here: the services stack adds one rule per service security group, so this
    // stack does not depend on the services stack (that would be a cycle).
    const securityGroup = new ec2.SecurityGroup(this, 'DatabaseSecurityGroup', {
      vpc: props.vpc,
      description: 'Aurora PostgreSQL: ingress only from the service tasks',
      allowAllOutbound: false,
    });

    // A known identifier lets us create the log group up front with a retention period,
    // instead of RDS creating one that keeps logs forever.
    const clusterIdentifier = `${this.stackName}-aurora`.toLowerCase();
    const postgresLogs = new logs.LogGroup(this, 'PostgresLogs', {
      logGroupName: `/aws/rds/cluster/${clusterIdentifier}/postgresql`,
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.cluster = new rds.DatabaseCluster(this, 'Aurora', {
      clusterIdentifier,
      engine: rds.DatabaseClusterEngine.auroraPostgres({
        version: rds.AuroraPostgresEngineVersion.VER_17_9,
      }),
      credentials: rds.Credentials.fromGeneratedSecret('outbox_admin'),
      writer: rds.ClusterInstance.serverlessV2('Writer', {
        publiclyAccessible: false,
        autoMinorVersionUpgrade: true,
      }),
      serverlessV2MinCapacity: props.minCapacity,
      serverlessV2MaxCapacity: props.maxCapacity,
      vpc: props.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      securityGroups: [securityGroup],
      storageEncrypted: true,
      // Refuse unencrypted connections; the tasks connect with PGSSLMODE=require.
      parameters: { 'rds.force_ssl': '1' },
      iamAuthentication: true,
      backup: { retention: Duration.days(7), preferredWindow: '03:00-04:00' },
      preferredMaintenanceWindow: 'sun:04:30-sun:05:30',
      cloudwatchLogsExports: ['postgresql'],
      deletionProtection: props.deletionProtection,
      // A demo is torn down with `cdk destroy`; a protected cluster leaves a final snapshot.
      removalPolicy: props.deletionProtection ? RemovalPolicy.SNAPSHOT : RemovalPolicy.DESTROY,
    });
    this.cluster.node.addDependency(postgresLogs);
    this.secret = this.cluster.secret!;

    const validations = Validations.of(this.cluster);
    validations.acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The tasks read the password once, at start-up, from ECS secrets; rotating it would break ' +
        'running tasks until they are replaced. Only the two task execution roles are granted read.',
    });
    if (!props.deletionProtection) {
      validations.acknowledge({
        id: 'AwsSolutions-RDS10',
        reason:
          'Deletion protection is off by default so that `cdk destroy --all` removes the demo; ' +
          'deploy with `-c deletionProtection=true` to turn it on.',
      });
    }
  }
}
