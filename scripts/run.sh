#!/usr/bin/env bash
# Runs the whole system locally: PostgreSQL (found or started), a local
# SQS-compatible server with the FIFO queue and its DLQ, booking-service and
# payment-service. Ctrl-C stops everything this script started, and only that.
#
# Settings (environment): BOOKING_PORT (8080), PAYMENT_PORT (8081), PG_PORT
# (5432), SQS_PORT (9324), AWS_ENDPOINT_URL_SQS (use another SQS server, e.g.
# LocalStack, instead of starting fauxqs), QUEUE_NAME (bookings.fifo),
# BOOKING_DB / PAYMENT_DB (booking / payment: two runs on one PostgreSQL need
# their own databases, or one relay publishes the other's events).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

BOOKING_PORT="${BOOKING_PORT:-8080}"
PAYMENT_PORT="${PAYMENT_PORT:-8081}"
QUEUE_NAME="${QUEUE_NAME:-bookings.fifo}"
DLQ_NAME="${DLQ_NAME:-${QUEUE_NAME%.fifo}-dlq.fifo}"
BOOKING_DB="${BOOKING_DB:-booking}"
PAYMENT_DB="${PAYMENT_DB:-payment}"

for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do
  if curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"; then
    die "port $port is taken (another run.sh?); set BOOKING_PORT / PAYMENT_PORT"
  fi
done

log "building the services"
cargo build --locked --bins

ensure_postgres
ensure_sqs
create_queues "$QUEUE_NAME" "$DLQ_NAME" 5 >/dev/null
log "queue $QUEUE_NAME with DLQ $DLQ_NAME (redrive after 5 receives)"

export LOG_FORMAT="${LOG_FORMAT:-pretty}"
export SQS_QUEUE_NAME="$QUEUE_NAME"
pids=()
stop_services() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
on_exit stop_services

start_service() {
  local name="$1" port="$2" database="$3"
  BIND_ADDR="127.0.0.1:$port" DATABASE_URL="$PG_SERVER_URL/$database" \
    "target/debug/$name" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}
start_service booking-service "$BOOKING_PORT" "$BOOKING_DB"
start_service payment-service "$PAYMENT_PORT" "$PAYMENT_DB"

for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health/ready" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "http://127.0.0.1:$port/health/ready" || die "the service on port $port did not become ready"
done

cat <<TXT

  The outbox system is up.

  booking-service   http://127.0.0.1:$BOOKING_PORT/swagger-ui/index.html
  payment-service   http://127.0.0.1:$PAYMENT_PORT/swagger-ui/index.html
  SQS (local)       $AWS_ENDPOINT_URL_SQS   queue $QUEUE_NAME, DLQ $DLQ_NAME

  Try first: in booking-service's Swagger UI, POST /api/flights -> "Try it out" -> "Execute"
  with the sample body; then GET http://127.0.0.1:$PAYMENT_PORT/api/payments shows its payment.
  Or, in another terminal, tell the whole story:  scripts/demo.sh

  Ctrl-C stops everything this script started.

TXT
wait -n "${pids[@]}" || true
log "a service exited; stopping the rest"
