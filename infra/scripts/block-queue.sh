#!/usr/bin/env bash
# Demo: make a queue refuse its producer's sends, so new outbox events stay pending.
# By default bookings.fifo and booking-service: adds the statement DemoDenyBookingSend (Deny
# sqs:SendMessage to the booking-service task role) to the queue policy. With --queue
# payment-events, payment-events.fifo and payment-service (statement DemoDenyPaymentSend).
# Every other statement is kept. Running it twice changes nothing.
#
#   infra/scripts/block-queue.sh [--queue bookings|payment-events] [--queue-url URL] [--role-arn ARN]
#
# Policy changes take up to a minute to reach every SQS host. Undo with unblock-queue.sh.
source "$(dirname "${BASH_SOURCE[0]}")/queue-demo-common.sh"
parse_args "$@"
resolve_queue_url
resolve_role_arn
rewrite_policy block --role-arn "$ROLE_ARN"
echo "blocked: $ROLE_ARN may not send to $QUEUE_URL"
