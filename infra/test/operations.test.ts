import * as fs from 'node:fs';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import { onlyResource, resourcesOfType, synthTemplates, Templates } from './helpers';

// What an operator lives with: alarms, the dashboard, scaling, and the options (HTTPS, WAF).
const REPO = path.join(__dirname, '..', '..');
const rustSource = (file: string) => fs.readFileSync(path.join(REPO, 'crates', file), 'utf8');

let t: Templates;
beforeAll(() => {
  t = synthTemplates();
});

const alarms = (template = t.services) => Object.entries(resourcesOfType(template, 'AWS::CloudWatch::Alarm'));
const alarmById = (prefix: string) => {
  const found = alarms().filter(([id]) => id.startsWith(`Monitoring${prefix}`));
  if (found.length !== 1) throw new Error(`expected one alarm Monitoring${prefix}*, found ${found.length}`);
  return found[0][1].Properties;
};
const expressions = (alarm: any): string[] => (alarm.Metrics ?? []).filter((m: any) => m.Expression).map((m: any) => m.Expression);

describe('alarms', () => {
  test('the services stack alarms on outbox age, ALB 5xx, unhealthy targets, missing tasks, Aurora at max, consumer lag', () => {
    const ids = alarms().map(([id]) => id.replace(/^Monitoring/, '').replace(/[0-9A-F]{8}$/, ''));
    expect(ids.sort()).toEqual(
      [
        'OutboxBacklogAge',
        'Alb5xxRate',
        'BookingUnhealthyTargets',
        'PaymentUnhealthyTargets',
        'BookingTasksBelowDesired',
        'PaymentTasksBelowDesired',
        'AuroraAtMaxCapacity',
        'ConsumerLag',
      ].sort(),
    );
    for (const [, alarm] of alarms()) expect(alarm.Properties.AlarmDescription).toBeTruthy();
  });

  test('ALB 5xx is a rate of requests, ignoring quiet minutes', () => {
    const alarm = alarmById('Alb5xxRate');
    expect(alarm.Threshold).toBe(5);
    expect(expressions(alarm)).toEqual(['IF(requests >= 20, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)']);
    const names = alarm.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric.MetricName).sort();
    expect(names).toEqual(['HTTPCode_ELB_5XX_Count', 'HTTPCode_Target_5XX_Count', 'RequestCount']);
  });

  test('unhealthy targets per target group, running below desired per service', () => {
    for (const id of ['Booking', 'Payment']) {
      expect(alarmById(`${id}UnhealthyTargets`)).toMatchObject({
        MetricName: 'UnHealthyHostCount',
        Namespace: 'AWS/ApplicationELB',
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
      });
      const missing = alarmById(`${id}TasksBelowDesired`);
      expect(expressions(missing)).toEqual(['desired - running']);
      const stats = missing.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric);
      for (const metric of stats) {
        expect(metric.Namespace).toBe('ECS/ContainerInsights');
        expect(metric.Dimensions).toContainEqual(expect.objectContaining({ Name: 'ServiceName' }));
      }
    }
  });

  test('Aurora at its maximum ACUs uses the dbMaxCapacity context', () => {
    expect(alarmById('AuroraAtMaxCapacity')).toMatchObject({
      Namespace: 'AWS/RDS',
      MetricName: 'ServerlessDatabaseCapacity',
      Threshold: 2,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    const bigger = synthTemplates({ dbMaxCapacity: 8 }).services;
    const alarm = alarms(bigger).find(([id]) => id.startsWith('MonitoringAuroraAtMaxCapacity'))![1];
    expect(alarm.Properties.Threshold).toBe(8);
  });

  test('consumer lag: backlog per payment-service task at twice the scaling target', () => {
    const alarm = alarmById('ConsumerLag');
    expect(alarm.Threshold).toBe(2000);
    expect(expressions(alarm)).toEqual(['visible / running']);
  });
});

describe('payment-service scaling', () => {
  test('target tracking on visible messages per running task, 1 to 4 tasks', () => {
    const target = onlyResource(t.services, 'AWS::ApplicationAutoScaling::ScalableTarget', (p) =>
      JSON.stringify(p.ResourceId).includes('PaymentService'),
    );
    expect(target.properties).toMatchObject({ MinCapacity: 1, MaxCapacity: 4, ScalableDimension: 'ecs:service:DesiredCount' });
    const policy = onlyResource(t.services, 'AWS::ApplicationAutoScaling::ScalingPolicy', (p) =>
      JSON.stringify(p.ScalingTargetId).includes(target.logicalId),
    );
    const config = policy.properties.TargetTrackingScalingPolicyConfiguration;
    expect(config.TargetValue).toBe(1000);
    const metrics = config.CustomizedMetricSpecification.Metrics;
    expect(metrics.find((m: any) => m.ReturnData !== false)).toMatchObject({ Expression: 'visible / running' });
    const byId = Object.fromEntries(metrics.filter((m: any) => m.MetricStat).map((m: any) => [m.Id, m.MetricStat.Metric]));
    expect(byId.visible).toMatchObject({ Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible' });
    expect(byId.running).toMatchObject({ Namespace: 'ECS/ContainerInsights', MetricName: 'RunningTaskCount' });
    // The same service's desired count is no longer fixed at 1.
    const service = onlyResource(t.services, 'AWS::ECS::Service', (p) => p.ServiceName === 'payment-service');
    expect(service.properties.DesiredCount).toBe(1);
  });
});

describe('dashboard', () => {
  const body = () => {
    const dashboard = onlyResource(t.services, 'AWS::CloudWatch::Dashboard');
    return JSON.stringify(dashboard.properties.DashboardBody);
  };

  test('is created and its URL is an output', () => {
    const dashboard = onlyResource(t.services, 'AWS::CloudWatch::Dashboard');
    expect(JSON.stringify(dashboard.properties.DashboardName)).toContain('TransactionalOutbox-');
    t.services.hasOutput('DashboardUrl', {
      Value: { 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('#dashboards/dashboard/')])] },
    });
  });

  test('shows the outbox EMF metrics under the names booking-service prints', () => {
    const emf = rustSource('outbox/src/emf.rs');
    for (const name of ['OutboxOldestPendingAgeSeconds', 'OutboxPendingEvents', 'OutboxParkedEvents']) {
      expect(emf).toContain(`"Name": "${name}"`);
      expect(body()).toContain(name);
    }
    expect(body()).toContain('TransactionalOutbox');
  });

  test('counts bookings and payments from the log lines the services write', () => {
    expect(rustSource('booking-service/src/api/flights.rs')).toContain('"flight booked"');
    expect(rustSource('payment-service/src/handler.rs')).toContain('"payment recorded"');
    t.services.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ $.message = "flight booked" }',
      MetricTransformations: [Match.objectLike({ MetricNamespace: 'TransactionalOutbox', MetricName: 'FlightsBooked' })],
    });
    t.services.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ $.message = "payment recorded" }',
      MetricTransformations: [Match.objectLike({ MetricNamespace: 'TransactionalOutbox', MetricName: 'PaymentsRecorded' })],
    });
    expect(body()).toContain('FlightsBooked');
    expect(body()).toContain('PaymentsRecorded');
  });

  test('has queues (main and DLQ), ALB, ECS and Aurora widgets', () => {
    const text = body();
    for (const needle of [
      'ApproximateNumberOfMessagesVisible',
      'ApproximateAgeOfOldestMessage',
      'NumberOfMessagesSent',
      'NumberOfMessagesDeleted',
      'RequestCount',
      'HTTPCode_Target_5XX_Count',
      'TargetResponseTime',
      'p99',
      'CPUUtilization',
      'MemoryUtilization',
      'RunningTaskCount',
      'ServerlessDatabaseCapacity',
      'DatabaseConnections',
      'SQS refused an entry; will retry',
    ]) {
      expect(text).toContain(needle);
    }
    // Both queues: the DLQ's name comes from the messaging stack's export.
    expect(text).toMatch(/DeadLetterQueue/);
    expect(text).toMatch(/BookingsQueue/);
  });
});

describe('HTTPS option', () => {
  const certificateArn = 'arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';

  test('off by default: one HTTP listener on 80 forwarding to booking-service', () => {
    const listeners = Object.values(resourcesOfType(t.services, 'AWS::ElasticLoadBalancingV2::Listener'));
    expect(listeners).toHaveLength(1);
    expect(listeners[0].Properties).toMatchObject({ Port: 80, Protocol: 'HTTP' });
  });

  test('certificateArn + domainName: HTTPS on 443, 80 redirects, URLs use the domain', () => {
    const services = synthTemplates({ certificateArn, domainName: 'outbox.example.com' }).services;
    services.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: certificateArn }],
      SslPolicy: Match.stringLikeRegexp('^ELBSecurityPolicy-TLS13'),
    });
    services.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 80,
      DefaultActions: [{ Type: 'redirect', RedirectConfig: Match.objectLike({ Protocol: 'HTTPS', Port: '443', StatusCode: 'HTTP_301' }) }],
    });
    const albSg = Object.values(resourcesOfType(services, 'AWS::EC2::SecurityGroup')).find((sg) =>
      String(sg.Properties.GroupDescription).startsWith('ALB'),
    )!;
    expect(albSg.Properties.SecurityGroupIngress.map((r: any) => [r.FromPort, r.CidrIp])).toEqual([
      [80, { Ref: 'myPublicIP' }],
      [443, { Ref: 'myPublicIP' }],
    ]);
    services.hasOutput('SwaggerUiUrl', { Value: 'https://outbox.example.com/swagger-ui/index.html' });
  });

  test('refuses half a configuration and malformed values', () => {
    expect(() => synthTemplates({ certificateArn })).toThrow(/certificateArn and domainName go together/);
    expect(() => synthTemplates({ domainName: 'outbox.example.com' })).toThrow(/go together/);
    expect(() => synthTemplates({ certificateArn: 'arn:aws:iam::123456789012:role/x', domainName: 'a.example.com' })).toThrow(
      /ACM certificate ARN/,
    );
    expect(() => synthTemplates({ certificateArn, domainName: 'https://a.example.com' })).toThrow(/DNS name/);
  });
});

describe('WAF option', () => {
  test('off by default', () => {
    t.services.resourceCountIs('AWS::WAFv2::WebACL', 0);
    t.services.resourceCountIs('AWS::WAFv2::IPSet', 0);
  });

  test('waf=true: blocks all but myPublicIP, rate-limits per IP first, guards the ALB', () => {
    const services = synthTemplates({ waf: 'true' }).services;
    const ipSet = onlyResource(services, 'AWS::WAFv2::IPSet');
    expect(ipSet.properties).toMatchObject({ Scope: 'REGIONAL', IPAddressVersion: 'IPV4', Addresses: [{ Ref: 'myPublicIP' }] });
    const acl = onlyResource(services, 'AWS::WAFv2::WebACL');
    expect(acl.properties.DefaultAction).toEqual({ Block: {} });
    const rules = [...acl.properties.Rules].sort((a: any, b: any) => a.Priority - b.Priority);
    expect(rules.map((r: any) => [r.Name, Object.keys(r.Action)[0]])).toEqual([
      ['RateLimitPerIp', 'Block'],
      ['AllowMyPublicIp', 'Allow'],
    ]);
    expect(rules[0].Statement.RateBasedStatement).toEqual({ Limit: 2000, AggregateKeyType: 'IP' });
    expect(rules[1].Statement.IPSetReferenceStatement.Arn).toEqual({ 'Fn::GetAtt': [ipSet.logicalId, 'Arn'] });
    const alb = onlyResource(services, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    services.hasResourceProperties('AWS::WAFv2::WebACLAssociation', {
      ResourceArn: { Ref: alb.logicalId },
      WebACLArn: { 'Fn::GetAtt': [acl.logicalId, 'Arn'] },
    });
  });
});
