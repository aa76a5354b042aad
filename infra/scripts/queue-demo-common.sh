# Shared by block-queue.sh and unblock-queue.sh (sourced, not run).
#
# --queue picks the direction: bookings (the default: bookings.fifo, booking-service's relay) or
# payment-events (payment-events.fifo, payment-service's relay). Targets come from, in order:
# --queue-url / --role-arn, the QUEUE_URL / BOOKING_ROLE_ARN (PAYMENT_ROLE_ARN for
# payment-events) variables, the stack outputs (stacks OutboxMessaging and OutboxServices, or
# MESSAGING_STACK / SERVICES_STACK). The AWS CLI uses its usual region and credentials.

set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MESSAGING_STACK="${MESSAGING_STACK:-OutboxMessaging}"
SERVICES_STACK="${SERVICES_STACK:-OutboxServices}"
QUEUE=bookings
QUEUE_URL="${QUEUE_URL:-}"
ROLE_ARN=""

usage() {
  echo "usage: $(basename "$0") [--queue bookings|payment-events] [--queue-url URL] [--role-arn ARN]" >&2
  exit 2
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --queue) [ $# -ge 2 ] || usage; QUEUE="$2"; shift 2 ;;
      --queue-url) [ $# -ge 2 ] || usage; QUEUE_URL="$2"; shift 2 ;;
      --role-arn) [ $# -ge 2 ] || usage; ROLE_ARN="$2"; shift 2 ;;
      -h|--help) usage ;;
      *) echo "unknown argument: $1" >&2; usage ;;
    esac
  done
  # Per direction: the stack outputs, the variable for the role, the service whose relay
  # publishes, and the Sid of the demo statement (one per queue, so neither removes the other).
  case "$QUEUE" in
    bookings)
      QUEUE_OUTPUT=QueueUrl ROLE_OUTPUT=BookingTaskRoleArn SID=DemoDenyBookingSend PRODUCER=booking-service
      [ -n "$ROLE_ARN" ] || ROLE_ARN="${BOOKING_ROLE_ARN:-}" ;;
    payment-events)
      QUEUE_OUTPUT=PaymentEventsQueueUrl ROLE_OUTPUT=PaymentTaskRoleArn SID=DemoDenyPaymentSend PRODUCER=payment-service
      [ -n "$ROLE_ARN" ] || ROLE_ARN="${PAYMENT_ROLE_ARN:-}" ;;
    *) echo "unknown queue: $QUEUE (bookings or payment-events)" >&2; usage ;;
  esac
}

stack_output() { # STACK KEY
  local value
  value=$(aws cloudformation describe-stacks --stack-name "$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text)
  if [ -z "$value" ] || [ "$value" = "None" ]; then
    echo "stack $1 has no output $2: deploy first, or pass it as an argument" >&2
    exit 1
  fi
  printf '%s\n' "$value"
}

resolve_queue_url() {
  [ -n "$QUEUE_URL" ] || QUEUE_URL=$(stack_output "$MESSAGING_STACK" "$QUEUE_OUTPUT")
}

resolve_role_arn() {
  [ -n "$ROLE_ARN" ] || ROLE_ARN=$(stack_output "$SERVICES_STACK" "$ROLE_OUTPUT")
}

# Read the policy, let queue_policy.py edit it, write it back. ARGS go to queue_policy.py.
rewrite_policy() {
  local attributes new_attributes
  attributes=$(aws sqs get-queue-attributes --queue-url "$QUEUE_URL" \
    --attribute-names Policy QueueArn --output json)
  new_attributes=$(printf '%s' "$attributes" | python3 "$SCRIPTS_DIR/queue_policy.py" "$@" --sid "$SID")
  aws sqs set-queue-attributes --queue-url "$QUEUE_URL" --attributes "$new_attributes"
}
