import { Stack, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { createOutboxStacks } from '../lib/outbox-app';
import { newApp } from './helpers';

// The same wiring as bin/app.ts: cdk-nag 3 is a policy-validation plugin, and synthesis
// throws when it reports a finding that nobody acknowledged.
function synthWithNag(context: Record<string, unknown>, extra?: (app: ReturnType<typeof newApp>) => void) {
  const app = newApp(context);
  createOutboxStacks(app);
  extra?.(app);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return app.synth();
}

describe('cdk-nag AwsSolutions', () => {
  test('the default app has no unacknowledged finding', () => {
    expect(() => synthWithNag({})).not.toThrow();
  });

  test('nor the variant with every option on: deletion protection, alarm topic, HTTPS, WAF', () => {
    expect(() =>
      synthWithNag({
        deletionProtection: true,
        alarmEmail: 'ops@example.com',
        certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
        domainName: 'outbox.example.com',
        waf: true,
      }),
    ).not.toThrow();
  });

  test('an unacknowledged finding fails synthesis', () => {
    // A queue without a DLQ and without a TLS-only policy: AwsSolutions-SQS3 and SQS4.
    const addBadQueue = (app: ReturnType<typeof newApp>) =>
      new sqs.Queue(new Stack(app, 'Bad'), 'NoDlq', { encryption: sqs.QueueEncryption.SQS_MANAGED });
    expect(() => synthWithNag({}, addBadQueue)).toThrow(/AwsSolutions-SQS3/);
  });
});
