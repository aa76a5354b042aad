#!/usr/bin/env bash
# Runs the whole system locally: PostgreSQL (found or started), a local
# SQS-compatible server with both FIFO queues and their DLQs (bookings: booking ->
# payment; payment events: payment -> booking), booking-service and
# payment-service, each running its relay and its consumer. Ctrl-C (or SIGTERM)
# stops everything this script started, and only that.
#
#   scripts/run.sh            # start it all; prints the URLs
#   scripts/run.sh --reset    # drop the databases and queues run.sh made, then exit
#
# Settings (environment, or a .env file at the repository root; every one is in
# .env.example): BOOKING_PORT (8080), PAYMENT_PORT (8081), QUEUE_NAME
# (bookings.fifo), PAYMENT_EVENTS_QUEUE_NAME (payment-events.fifo), BOOKING_DB /
# PAYMENT_DB (booking / payment: two runs on one
# PostgreSQL need their own databases, or one relay publishes the other's events),
# SQS_PORT (9324), AWS_ENDPOINT_URL_SQS (use another SQS server, e.g. LocalStack,
# instead of starting fauxqs).
# PostgreSQL: the standard libpq variables PGHOST (127.0.0.1), PGPORT (5432),
# PGUSER (postgres), PGPASSWORD, or DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT
# (a base URL: each service gets its own database on that server).
# The services' own settings (RELAY_*, CONSUMER_*, PAYMENT_DECLINE_ABOVE,
# LOG_FORMAT, ...) pass through, to both services.
# ADMIN_TOKEN: the operator token of both services (listing all bookings,
# payments and outbox events, the DLQ redrive); when unset, run.sh generates one
# and prints it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

MODE=run
case "${1:-}" in
  "") ;;
  --reset) MODE=reset ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (usage: scripts/run.sh [--reset])" ;;
esac

load_settings
if [ -n "${DATABASE_URL:-}" ]; then
  pg_from_url "$DATABASE_URL"
  unset DATABASE_URL # each service gets its own, below
fi

services_running() {
  local port
  for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do
    port_open "$port" && return 0
  done
  return 1
}

# --- --reset: drop what run.sh made ------------------------------------------------
if [ "$MODE" = reset ]; then
  ! services_running || die "something answers on port $BOOKING_PORT or $PAYMENT_PORT: stop scripts/run.sh first"
  if "$(command -v pg_isready || echo "$(pg_bin)/pg_isready")" -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    ensure_postgres
    for db in "$BOOKING_DB" "$PAYMENT_DB"; do
      psql_admin -c "drop database if exists \"$db\" with (force)" 2>&1 | grep -v "does not exist, skipping" >&2 || true
      log "database $db: dropped (if it existed) on $PG_HOST:$PG_PORT"
    done
  else
    log "no PostgreSQL on $PG_HOST:$PG_PORT: no databases to drop (a throwaway cluster of run.sh is gone with it)"
  fi
  export AWS_ENDPOINT_URL_SQS="${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}"
  if sqs_answers; then
    for queue in "$QUEUE_NAME" "$DLQ_NAME" "$PAYMENT_EVENTS_QUEUE_NAME" "$PAYMENT_EVENTS_DLQ_NAME"; do
      delete_queue "$queue"
    done
  else
    log "no SQS server at $AWS_ENDPOINT_URL_SQS: no queues to delete"
  fi
  log "reset done"
  exit 0
fi

# --- run ----------------------------------------------------------------------------
! services_running || die "port $BOOKING_PORT or $PAYMENT_PORT is taken (another run.sh?); set BOOKING_PORT / PAYMENT_PORT"

require_rust
# PostgreSQL first: a refused password stops us now, not after a long first build.
ensure_postgres
ensure_sqs
create_queues "$QUEUE_NAME" "$DLQ_NAME" 5 >/dev/null
log "queue $QUEUE_NAME with DLQ $DLQ_NAME (redrive after 5 receives): booking-service -> payment-service"
create_queues "$PAYMENT_EVENTS_QUEUE_NAME" "$PAYMENT_EVENTS_DLQ_NAME" 5 >/dev/null
log "queue $PAYMENT_EVENTS_QUEUE_NAME with DLQ $PAYMENT_EVENTS_DLQ_NAME (redrive after 5 receives): payment-service -> booking-service"

log "building the services"
cargo build --locked --bins
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

export LOG_FORMAT="${LOG_FORMAT:-pretty}"
# The same two settings for both services: each relays to one and consumes the other.
export SQS_QUEUE_NAME="$QUEUE_NAME" PAYMENT_EVENTS_QUEUE_NAME
if [ -z "${ADMIN_TOKEN:-}" ]; then
  ADMIN_TOKEN="$(new_admin_token)"
  # For demo.sh in another terminal; only while this run lasts.
  (umask 077 && printf '%s\n' "$ADMIN_TOKEN" >"$ADMIN_TOKEN_FILE")
  on_exit "rm -f '$ADMIN_TOKEN_FILE'"
fi
export ADMIN_TOKEN
names=() pids=()
stop_services() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
on_exit stop_services

# Each service's output goes to the terminal, prefixed, and to .local/NAME-PORT.log,
# so that a service that dies at start-up can be reported with its last lines.
start_service() {
  local name="$1" port="$2" database="$3"
  BIND_ADDR="127.0.0.1:$port" DATABASE_URL="$(pg_url "$database")" \
    "$BIN_DIR/$name" > >(tee "$LOCAL_DIR/$name-$port.log" | sed -u "s/^/[$name] /") 2>&1 &
  names+=("$name") pids+=($!)
}
log "starting booking-service (:$BOOKING_PORT, database $BOOKING_DB) and payment-service (:$PAYMENT_PORT, database $PAYMENT_DB)"
start_service booking-service "$BOOKING_PORT" "$BOOKING_DB"
start_service payment-service "$PAYMENT_PORT" "$PAYMENT_DB"

# exited_at_start I: reports service I, which exited, with its last lines; exits.
exited_at_start() {
  local name="${names[$1]}" rc=0
  wait "${pids[$1]}" || rc=$?
  sleep 0.2 # let tee write the last lines
  {
    printf '\033[1;31merror:\033[0m %s exited during start-up (exit code %s). Its last lines (%s):\n' \
      "$name" "$rc" "$LOCAL_DIR/$name-${ports[$1]}.log"
    # The error, not a backtrace (RUST_BACKTRACE=1 appends one) nor colour codes.
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^Stack backtrace:/,$d' "$LOCAL_DIR/$name-${ports[$1]}.log" \
      | grep -v '^[[:space:]]*$' | tail -n 10 | sed 's/^/    /'
  } >&2
  exit 1
}

ports=("$BOOKING_PORT" "$PAYMENT_PORT")
deadline=$((SECONDS + ${RUN_START_TIMEOUT:-60}))
for i in 0 1; do
  until curl -sf -o /dev/null -m 2 "http://127.0.0.1:${ports[$i]}/health/ready"; do
    for j in 0 1; do kill -0 "${pids[$j]}" 2>/dev/null || exited_at_start "$j"; done
    [ "$SECONDS" -lt "$deadline" ] \
      || die "${names[$i]} is running but not ready on port ${ports[$i]} after ${RUN_START_TIMEOUT:-60} s (GET /health/ready checks its database; see $LOCAL_DIR/${names[$i]}-${ports[$i]}.log)"
    sleep 0.2
  done
done

cat <<TXT

  The outbox system is up.

  booking-service   http://127.0.0.1:$BOOKING_PORT/swagger-ui/index.html
  payment-service   http://127.0.0.1:$PAYMENT_PORT/swagger-ui/index.html
  SQS (local)       $AWS_ENDPOINT_URL_SQS
                    $QUEUE_NAME (DLQ $DLQ_NAME): booking-service -> payment-service
                    $PAYMENT_EVENTS_QUEUE_NAME (DLQ $PAYMENT_EVENTS_DLQ_NAME): payment-service -> booking-service

  Operator token    $ADMIN_TOKEN
                    (ADMIN_TOKEN of both services: "Authorize" in Swagger UI, or
                    Authorization: Bearer ... for GET /api/flights, GET /api/payments,
                    GET /api/outbox and its retry, the DLQ redrive)

  Try first: in booking-service's Swagger UI, POST /api/flights -> "Try it out" -> "Execute"
  with the sample body: PENDING_PAYMENT; GET /api/flights/{id} a moment later: CONFIRMED, and
  GET http://127.0.0.1:$PAYMENT_PORT/api/payments shows its payment. POST /api/flights/{id}/cancel
  refunds it (its payment then says REFUNDED).
  Or, in another terminal, tell the whole story:  scripts/demo.sh  (scripts/demo.sh --pace: step by step)
  Block the queue by hand:  scripts/queue.sh block | unblock | status

  Ctrl-C stops everything this script started; scripts/run.sh --reset then drops its databases and queues.

TXT
wait -n "${pids[@]}" || true
log "a service exited; stopping the rest"
