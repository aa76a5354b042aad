#!/usr/bin/env bash
# Operator action: move the messages of a DLQ back to its queue, with SQS's own message-move
# task (StartMessageMoveTask): by default bookings-dlq.fifo to bookings.fifo, with --queue
# payment-events payment-events-dlq.fifo to payment-events.fifo. The consumer's inbox makes
# a redriven event that was already processed a no-op, so redriving is always safe;
# do it once the cause of the failures is fixed (see the README, "Dead letters").
#
#   infra/scripts/redrive-dlq.sh --dry-run       # how many messages wait, nothing moved
#   infra/scripts/redrive-dlq.sh                 # start the move and follow it to the end
#   infra/scripts/redrive-dlq.sh [--queue bookings|payment-events] [--queue-url URL] [--dlq-url URL]
#
# Targets: --queue-url / --dlq-url, the QUEUE_URL / DLQ_URL variables, or the stack
# outputs of OutboxMessaging (QueueUrl and DeadLetterQueueUrl; PaymentEventsQueueUrl and
# PaymentEventsDeadLetterQueueUrl with --queue payment-events). Where the message-move task
# is not available (some regions or emulators), the consuming service's
# POST /api/admin/dlq/redrive (ADMIN_TOKEN) does the same move through the API.
set -euo pipefail
MESSAGING_STACK="${MESSAGING_STACK:-OutboxMessaging}"
QUEUE=bookings QUEUE_URL="${QUEUE_URL:-}" DLQ_URL="${DLQ_URL:-}" DRY_RUN=0

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --queue) QUEUE="$2"; shift 2 ;;
    --queue-url) QUEUE_URL="$2"; shift 2 ;;
    --dlq-url) DLQ_URL="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$QUEUE" in
  bookings) prefix= ;;
  payment-events) prefix=PaymentEvents ;;
  *) echo "unknown queue: $QUEUE (bookings or payment-events)" >&2; exit 2 ;;
esac

output() { aws cloudformation describe-stacks --stack-name "$MESSAGING_STACK" \
  --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text; }
[ -n "$QUEUE_URL" ] || QUEUE_URL="$(output "${prefix}QueueUrl")"
[ -n "$DLQ_URL" ] || DLQ_URL="$(output "${prefix}DeadLetterQueueUrl")"
arn_of() { aws sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn --query 'Attributes.QueueArn' --output text; }
QUEUE_ARN="$(arn_of "$QUEUE_URL")" DLQ_ARN="$(arn_of "$DLQ_URL")"

waiting="$(aws sqs get-queue-attributes --queue-url "$DLQ_URL" \
  --attribute-names ApproximateNumberOfMessages --query 'Attributes.ApproximateNumberOfMessages' --output text)"
echo "$waiting message(s) in $DLQ_ARN"
if [ "$DRY_RUN" = 1 ] || [ "$waiting" = 0 ]; then exit 0; fi

handle="$(aws sqs start-message-move-task --source-arn "$DLQ_ARN" --destination-arn "$QUEUE_ARN" \
  --query TaskHandle --output text)"
echo "moving to $QUEUE_ARN (task $handle)"
while :; do
  read -r status moved total < <(aws sqs list-message-move-tasks --source-arn "$DLQ_ARN" --max-results 1 \
    --query 'Results[0].[Status, ApproximateNumberOfMessagesMoved, ApproximateNumberOfMessagesToMove]' --output text)
  echo "  $status: $moved of $total moved"
  case "$status" in
    COMPLETED) exit 0 ;;
    FAILED|CANCELLED) echo "the move task ended $status" >&2; exit 1 ;;
  esac
  sleep 5
done
