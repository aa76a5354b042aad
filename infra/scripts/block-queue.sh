#!/usr/bin/env bash
# Demo: make the queue refuse booking-service's sends, so new outbox events stay pending.
# Adds the statement DemoDenyBookingSend (Deny sqs:SendMessage to the booking-service task role)
# to the queue policy and keeps every other statement. Running it twice changes nothing.
#
#   infra/scripts/block-queue.sh [--queue-url URL] [--role-arn ARN]
#
# Policy changes take up to a minute to reach every SQS host. Undo with unblock-queue.sh.
source "$(dirname "${BASH_SOURCE[0]}")/queue-demo-common.sh"
parse_args "$@"
resolve_queue_url
resolve_role_arn
rewrite_policy block --role-arn "$BOOKING_ROLE_ARN"
echo "blocked: $BOOKING_ROLE_ARN may not send to $QUEUE_URL"
