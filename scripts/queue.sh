#!/usr/bin/env bash
# Blocks and unblocks the local queue by hand, the way scripts/demo.sh does, to
# watch the outbox at work (GET /api/outbox in booking-service's Swagger UI):
#
#   scripts/queue.sh status     # do the queues exist, and how many messages are in them and their DLQs
#   scripts/queue.sh block      # delete the queue: sends fail with QueueDoesNotExist, events wait in the outbox
#   scripts/queue.sh unblock    # re-create it with its DLQ and redrive policy: the outbox drains
#
# The queue is the bookings queue (booking-service's events); with
# `--queue payment-events` it is the payment events queue (payment-service's
# PaymentApproved / PaymentDeclined / PaymentRefunded: bookings then stay
# PENDING_PAYMENT until it is unblocked).
#
# No local SQS server enforces a queue policy, so "blocked" means deleted; a
# message still in the queue is deleted with it, so `block` refuses while the
# queue holds messages (--force deletes anyway). In AWS: infra/scripts/block-queue.sh.
#
# Settings: the same as scripts/run.sh's (QUEUE_NAME, DLQ_NAME, SQS_PORT or
# AWS_ENDPOINT_URL_SQS, BOOKING_PORT for the Swagger URL).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage="usage: scripts/queue.sh block [--force] | unblock | status  [--queue bookings|payment-events]"
load_settings
# --queue payment-events: act on the way back instead.
args=() which=bookings
while [ $# -gt 0 ]; do
  case "$1" in
    --queue) which="${2:-}"; shift 2 || die "$usage" ;;
    --queue=*) which="${1#--queue=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]}"
case "$which" in
  bookings) OTHER_QUEUE="$PAYMENT_EVENTS_QUEUE_NAME" OTHER_DLQ="$PAYMENT_EVENTS_DLQ_NAME" ;;
  payment-events)
    OTHER_QUEUE="$QUEUE_NAME" OTHER_DLQ="$DLQ_NAME"
    QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" DLQ_NAME="$PAYMENT_EVENTS_DLQ_NAME" ;;
  *) die "unknown queue $which ($usage)" ;;
esac
export AWS_ENDPOINT_URL_SQS="${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}"
sqs_answers || die "no SQS server answers at $AWS_ENDPOINT_URL_SQS (is scripts/run.sh running?)"
if [ "$which" = bookings ]; then
  OUTBOX="$BOOKING_URL/swagger-ui/index.html (GET /api/outbox)"
else
  OUTBOX="$PAYMENT_URL/metrics (outbox_pending_events) and $BOOKING_URL/api/flights (bookings stay PENDING_PAYMENT)"
fi

depth_of() {
  local url visible inflight
  url="$(queue_url "$1")" || { echo "does not exist"; return; }
  read -r visible inflight < <(queue_depth "$url")
  echo "exists, ${visible:-?} message(s) waiting, ${inflight:-?} in flight"
}

case "${1:-}" in
  status)
    echo "queue $QUEUE_NAME: $(depth_of "$QUEUE_NAME")$(queue_url "$QUEUE_NAME" >/dev/null || echo " (blocked: scripts/queue.sh unblock --queue $which)")"
    echo "DLQ   $DLQ_NAME: $(depth_of "$DLQ_NAME")"
    echo "queue $OTHER_QUEUE: $(depth_of "$OTHER_QUEUE")$(queue_url "$OTHER_QUEUE" >/dev/null || echo ' (blocked)')"
    echo "DLQ   $OTHER_DLQ: $(depth_of "$OTHER_DLQ")"
    echo "SQS   $AWS_ENDPOINT_URL_SQS"
    ;;
  block)
    url="$(queue_url "$QUEUE_NAME")" || die "the queue $QUEUE_NAME does not exist (already blocked?)"
    read -r visible inflight < <(queue_depth "$url")
    if [ "$((${visible:-0} + ${inflight:-0}))" -gt 0 ] && [ "${2:-}" != --force ]; then
      die "the queue holds $visible waiting and $inflight in-flight message(s); deleting it would lose them. Wait until its consumer has taken them (scripts/queue.sh status), or: scripts/queue.sh block --force --queue $which"
    fi
    queue_block "$QUEUE_NAME" || die "could not delete the queue $QUEUE_NAME"
    log "queue $QUEUE_NAME is blocked (deleted): new bookings succeed and their events wait in the outbox"
    log "look at $OUTBOX; then: scripts/queue.sh unblock --queue $which"
    ;;
  unblock)
    url="$(queue_unblock "$QUEUE_NAME" "$DLQ_NAME")" || die "could not re-create the queue $QUEUE_NAME"
    log "queue $QUEUE_NAME is back ($url), DLQ $DLQ_NAME after 5 receives: the relay drains the outbox within a second"
    ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "$usage" ;;
esac
