import * as path from 'node:path';
import { CfnOutput, CustomResource, Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
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
 * Aurora PostgreSQL engine version. Pinned, with automatic minor upgrades off on the instance:
 * with them on, AWS patches the cluster to a newer 17.x and the next deploy of this template
 * fails ("Cannot upgrade aurora-postgresql from 17.x to 17.9"). Patching is a code change here
 * followed by `cdk deploy` (in the maintenance window the template sets). AWS still upgrades a
 * minor version that reaches its end of support, after notice: set this to what the cluster
 * then runs before the next deploy.
 */
export const AURORA_ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_17_9;

/** Each service's PostgreSQL role and database: the role owns the database and nothing else. */
export const SERVICE_DATABASES = {
  booking: { role: 'booking', database: 'booking' },
  payment: { role: 'payment', database: 'payment' },
} as const;
export type ServiceKey = keyof typeof SERVICE_DATABASES;

/** Length of the generated ADMIN_TOKEN: letters and digits only, so it pastes into a header as is. */
export const ADMIN_TOKEN_LENGTH = 48;

/**
 * One Aurora PostgreSQL Serverless v2 cluster for both services, each with its own role and
 * database (created by the `ServiceRoles` custom resource through the Data API, with the admin
 * secret that only that function may read). The services connect with their own secrets.
 * Also the operators' bearer token (ADMIN_TOKEN), a secret like the others.
 */
export class DataStack extends Stack {
  readonly cluster: rds.DatabaseCluster;
  /** JSON with host, port, username, password per service: what its tasks get as PG* variables. */
  readonly serviceSecrets: Record<ServiceKey, secretsmanager.ISecret>;
  /** The bearer token of the services' operator endpoints: a plain string, their ADMIN_TOKEN. */
  readonly adminToken: secretsmanager.ISecret;

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
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: AURORA_ENGINE_VERSION }),
      credentials: rds.Credentials.fromGeneratedSecret('outbox_admin'),
      writer: rds.ClusterInstance.serverlessV2('Writer', {
        publiclyAccessible: false,
        // See AURORA_ENGINE_VERSION.
        autoMinorVersionUpgrade: false,
      }),
      serverlessV2MinCapacity: props.minCapacity,
      serverlessV2MaxCapacity: props.maxCapacity,
      vpc: props.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      securityGroups: [securityGroup],
      storageEncrypted: true,
      // Refuse unencrypted connections; the tasks connect with PGSSLMODE=verify-full.
      parameters: { 'rds.force_ssl': '1' },
      iamAuthentication: true,
      // The Data API is how the ServiceRoles resource below reaches the database from outside
      // the VPC; only that function's role is granted it.
      enableDataApi: true,
      backup: { retention: Duration.days(7), preferredWindow: '03:00-04:00' },
      preferredMaintenanceWindow: 'sun:04:30-sun:05:30',
      cloudwatchLogsExports: ['postgresql'],
      deletionProtection: props.deletionProtection,
      // Always a final snapshot, whatever deletionProtection says: deleting the stack, or a
      // change that replaces the cluster, keeps the data. (With protection on, the delete is
      // refused outright; the README's teardown turns it off first.)
      removalPolicy: RemovalPolicy.SNAPSHOT,
    });
    this.cluster.node.addDependency(postgresLogs);

    const secrets = {} as Record<ServiceKey, secretsmanager.ISecret>;
    for (const key of Object.keys(SERVICE_DATABASES) as ServiceKey[]) {
      const { role } = SERVICE_DATABASES[key];
      const secret = new rds.DatabaseSecret(this, `${capitalize(key)}DatabaseSecret`, {
        username: role,
        // The password goes into no SQL text (the function sends its SCRAM verifier), but keep
        // it free of characters that need quoting anywhere (URLs, shells, libpq strings).
        excludeCharacters: ' %+~`#$&*()|[]{}:;<>?!\'/@"\\=,^',
      });
      // Adds host, port, engine and cluster id to the secret, like the admin secret has.
      secrets[key] = secret.attach(this.cluster);
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason: 'Read once at task start (ECS secrets): rotation would break running tasks until they are replaced.',
      });
    }
    this.serviceSecrets = secrets;

    this.createServiceRoles();
    this.adminToken = this.createAdminToken();

    // The services stack of the previous version imports the admin secret's ARN; CloudFormation
    // refuses to remove an export that is still imported, so an update from that version would
    // fail before the services stack is updated. Keep exporting it (it is only an ARN; nothing
    // here imports it any more). Remove once no deployment of the previous version is left.
    this.exportValue(this.cluster.secret!.secretArn);

    const validations = Validations.of(this.cluster);
    validations.acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The tasks read their password once, at start-up, from ECS secrets; rotating it would break ' +
        'running tasks until they are replaced. Only the function that creates the roles reads the admin secret.',
    });
    if (!props.deletionProtection) {
      validations.acknowledge({
        id: 'AwsSolutions-RDS10',
        reason:
          'Deletion protection is off by default so that `cdk destroy --all` removes the demo (the ' +
          'cluster still leaves a final snapshot); deploy with `-c deletionProtection=true` to turn it on.',
      });
    }
  }

  /**
   * The per-service roles and databases. A custom resource (a small function calling the Data API)
   * rather than a one-off ECS task or the services themselves: it runs inside `cdk deploy`, before
   * the services stack, needs no database driver, no VPC access and no Rust change, and it is the
   * only holder of the admin secret. See lambda/database-roles/index.mjs.
   */
  private createServiceRoles(): void {
    const logGroup = new logs.LogGroup(this, 'ServiceRolesLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const fn = new lambda.Function(this, 'ServiceRolesFunction', {
      description: 'Creates the services\u2019 PostgreSQL roles and databases through the Aurora Data API',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(path.join(__dirname, '..', 'lambda', 'database-roles')),
      // A new cluster's Data API and fresh IAM grants can take minutes to answer; the function
      // retries until a minute before this timeout, then reports the failure.
      timeout: Duration.minutes(10),
      memorySize: 256,
      logGroup,
    });
    this.cluster.grantDataApiAccess(fn);
    for (const secret of Object.values(this.serviceSecrets)) secret.grantRead(fn);

    const resource = new CustomResource(this, 'ServiceRoles', {
      serviceToken: fn.functionArn,
      resourceType: 'Custom::ServiceDatabaseRoles',
      // Longer than the function's timeout: the answer always comes from the function.
      serviceTimeout: Duration.minutes(15),
      properties: {
        ClusterArn: this.cluster.clusterArn,
        AdminSecretArn: this.cluster.secret!.secretArn,
        Services: (Object.keys(SERVICE_DATABASES) as ServiceKey[]).map((key) => ({
          Role: SERVICE_DATABASES[key].role,
          Database: SERVICE_DATABASES[key].database,
          SecretArn: this.serviceSecrets[key].secretArn,
        })),
      },
    });
    // The writer instance must be up before the Data API answers; the grants before the call.
    resource.node.addDependency(this.cluster);
    resource.node.addDependency(fn);

    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: 'The AWS-managed basic execution policy only lets the function write its own logs.',
    });
  }

  /**
   * ADMIN_TOKEN, generated by Secrets Manager and never in the template. Here, with the other
   * secrets, rather than in the services stack: replacing the services keeps the token operators
   * already have. ECS injects it into both task definitions; people read it with
   * `aws secretsmanager get-secret-value` (the README), given the ARN this stack outputs.
   */
  private createAdminToken(): secretsmanager.ISecret {
    const secret = new secretsmanager.Secret(this, 'AdminToken', {
      description: 'ADMIN_TOKEN of booking-service and payment-service: Authorization: Bearer <token> on their operator endpoints',
      generateSecretString: { passwordLength: ADMIN_TOKEN_LENGTH, excludePunctuation: true, includeSpace: false },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'Read once at task start (ECS secrets): a rotated token only reaches tasks started afterwards, so ' +
        'rotation means a new value (put-secret-value) followed by a forced new deployment of both services.',
    });
    new CfnOutput(this, 'AdminTokenSecretArn', {
      description:
        'Secret holding ADMIN_TOKEN (the value is not an output): aws secretsmanager get-secret-value --secret-id <this ARN> --query SecretString --output text',
      value: secret.secretArn,
    });
    return secret;
  }
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
