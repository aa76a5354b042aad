import { Node } from 'constructs';

/**
 * Deployment knobs, read once from CDK context (`cdk.json`, or `-c key=value` on the command line).
 * Everything else is fixed by the services' contract and lives in the stacks.
 */
export interface OutboxConfig {
  /** NAT gateways for the task subnets: 1 is cheap, 2 survives the loss of an AZ. */
  readonly natGateways: number;
  /** Aurora deletion protection. The cluster leaves a final snapshot on deletion either way. */
  readonly deletionProtection: boolean;
  /** Aurora Serverless v2 capacity range, in ACUs. */
  readonly dbMinCapacity: number;
  readonly dbMaxCapacity: number;
  /** CPU architecture of the images and Fargate tasks. */
  readonly cpuArchitecture: 'arm64' | 'x86_64';
  /** When set, alarms notify this address through an encrypted SNS topic. */
  readonly alarmEmail?: string;
  /**
   * HTTPS on the ALB: an ACM certificate (same region) for `domainName`. Both or neither; with
   * them, port 443 serves the APIs and port 80 only redirects to it.
   */
  readonly https?: { readonly certificateArn: string; readonly domainName: string };
  /** A WAF web ACL on the ALB: myPublicIP allowed, everything else blocked, a per-IP rate limit. */
  readonly waf: boolean;
}

export function readConfig(node: Node): OutboxConfig {
  const natGateways = toNumber(node, 'natGateways', 1);
  if (!Number.isInteger(natGateways) || natGateways < 1 || natGateways > 2) {
    // The tasks run in private subnets and reach SQS, ECR, Secrets Manager and CloudWatch
    // through NAT; zero would need five interface endpoints, which cost more than one NAT.
    throw new Error(`context natGateways must be 1 or 2, got ${natGateways}`);
  }

  const dbMinCapacity = toNumber(node, 'dbMinCapacity', 0.5);
  const dbMaxCapacity = toNumber(node, 'dbMaxCapacity', 2);
  if (!(dbMinCapacity >= 0 && dbMaxCapacity >= 1 && dbMaxCapacity >= dbMinCapacity)) {
    throw new Error(`context dbMinCapacity/dbMaxCapacity must satisfy 0 <= min <= max, max >= 1; got ${dbMinCapacity}/${dbMaxCapacity}`);
  }

  const cpuArchitecture = String(node.tryGetContext('cpuArchitecture') ?? 'arm64');
  if (cpuArchitecture !== 'arm64' && cpuArchitecture !== 'x86_64') {
    throw new Error(`context cpuArchitecture must be arm64 or x86_64, got ${cpuArchitecture}`);
  }

  const alarmEmail = node.tryGetContext('alarmEmail');
  if (alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+$/.test(String(alarmEmail))) {
    throw new Error(`context alarmEmail must be an e-mail address, got ${alarmEmail}`);
  }

  const certificateArn = node.tryGetContext('certificateArn');
  const domainName = node.tryGetContext('domainName');
  if ((certificateArn === undefined) !== (domainName === undefined)) {
    throw new Error('context certificateArn and domainName go together: set both for HTTPS, or neither');
  }
  if (certificateArn !== undefined && !/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[0-9a-f-]+$/.test(String(certificateArn))) {
    throw new Error(`context certificateArn must be an ACM certificate ARN, got ${certificateArn}`);
  }
  if (domainName !== undefined && !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(String(domainName))) {
    throw new Error(`context domainName must be a lower-case DNS name such as outbox.example.com, got ${domainName}`);
  }

  return {
    natGateways,
    deletionProtection: toBoolean(node, 'deletionProtection', false),
    dbMinCapacity,
    dbMaxCapacity,
    cpuArchitecture,
    alarmEmail: alarmEmail === undefined ? undefined : String(alarmEmail),
    https:
      certificateArn === undefined ? undefined : { certificateArn: String(certificateArn), domainName: String(domainName) },
    waf: toBoolean(node, 'waf', false),
  };
}

// `-c key=value` arrives as a string, cdk.json as JSON: accept both.
function toNumber(node: Node, key: string, fallback: number): number {
  const raw = node.tryGetContext(key);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (Number.isNaN(value)) throw new Error(`context ${key} must be a number, got ${raw}`);
  return value;
}

function toBoolean(node: Node, key: string, fallback: boolean): boolean {
  const raw = node.tryGetContext(key);
  if (raw === undefined) return fallback;
  if (raw === true || raw === 'true') return true;
  if (raw === false || raw === 'false') return false;
  throw new Error(`context ${key} must be true or false, got ${raw}`);
}
