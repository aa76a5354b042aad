#!/usr/bin/env bash
# Demo: remove the statement block-queue.sh added (DemoDenyBookingSend; with --queue
# payment-events, DemoDenyPaymentSend); the relay then publishes the backlog.
# Every other statement of the queue policy is kept. Running it twice changes nothing.
#
#   infra/scripts/unblock-queue.sh [--queue bookings|payment-events] [--queue-url URL]
source "$(dirname "${BASH_SOURCE[0]}")/queue-demo-common.sh"
parse_args "$@"
resolve_queue_url
rewrite_policy unblock
echo "unblocked: $QUEUE_URL accepts $PRODUCER's sends again"
