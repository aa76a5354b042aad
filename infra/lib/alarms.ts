import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';

/** Notify the topic, when there is one, on ALARM and again on OK. */
export function alarmActions(alarms: cloudwatch.Alarm[], topic?: sns.ITopic): void {
  if (!topic) return;
  const action = new actions.SnsAction(topic);
  for (const alarm of alarms) {
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
  }
}
