#!/usr/bin/env bash
# The chaos suite: the whole system (release builds) under a steady booking load
# with client retries (same Idempotency-Key), one fault at a time, and after
# each the promise checked: every booking that got a 201 is paid exactly once
# and learns it (CONFIRMED), both outboxes are empty, the bookings DLQ holds only
# the poison we sent and the payment events DLQ nothing, and no ERROR was logged
# that the fault does not explain. Prints a table; exits 1 on any loss,
# duplicate or unexplained ERROR.
#
#   scripts/chaos.sh           # short: 150 bookings per fault, ~3 minutes (run by scripts/test.sh)
#   scripts/chaos.sh --full    # long: 2,000 bookings per fault, outages of 20-180 s (~20 minutes)
#
# The short run uses the debug build the tests already made (CI builds nothing
# twice); the full run builds and uses the release binaries. CHAOS_PROFILE=debug|release
# chooses.
#
# Everything is its own: a throwaway PostgreSQL cluster (so it can be stopped),
# a local SQS server (so it can be frozen), free ports, queues of its own.
# Settings: CHAOS_BOOKINGS, CHAOS_RATE (bookings/s), CHAOS_DIR (logs, default .local/chaos).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

MODE="${1:---short}"
case "$MODE" in
  --short)
    PROFILE="${CHAOS_PROFILE:-debug}" BOOKINGS="${CHAOS_BOOKINGS:-150}" RATE="${CHAOS_RATE:-25}"
    SQS_FREEZE=8 DB_STOP=6 CONSUMER_DB_OUT=20 MAX_RECEIVES=3 VISIBILITY=4 DRAIN_TIMEOUT=120 ;;
  --full)
    PROFILE="${CHAOS_PROFILE:-release}" BOOKINGS="${CHAOS_BOOKINGS:-2000}" RATE="${CHAOS_RATE:-40}"
    SQS_FREEZE=60 DB_STOP=20 CONSUMER_DB_OUT=180 MAX_RECEIVES=5 VISIBILITY=30 DRAIN_TIMEOUT=900 ;;
  *) die "usage: scripts/chaos.sh [--short|--full]" ;;
esac
DIR="${CHAOS_DIR:-$LOCAL_DIR/chaos}"
rm -rf "$DIR" && mkdir -p "$DIR"

# Our own PostgreSQL and SQS server, on free ports.
unset AWS_ENDPOINT_URL_SQS
PG_PORT="$(free_port)" SQS_PORT="$(free_port)"
BOOKING_PORT="$(free_port)" PAYMENT_PORT="$(free_port)"
QUEUE="chaos-$$-$RANDOM.fifo" DLQ="chaos-$$-$RANDOM-dlq.fifo"
EVENTS="chaos-$$-$RANDOM-payment-events.fifo" EVENTS_DLQ="chaos-$$-$RANDOM-payment-events-dlq.fifo"

log "building the services ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -p booking-service -p payment-service 2>&1 | tail -n 1
else
  cargo build --locked -p booking-service -p payment-service 2>&1 | tail -n 1
fi
BIN="target/$PROFILE"
ensure_postgres
[ -n "${PG_TMP_DIR:-}" ] || die "expected a throwaway PostgreSQL cluster on port $PG_PORT"
ensure_sqs
[ -n "${SQS_PID:-}" ] || die "expected a local SQS server of our own on port $SQS_PORT"
QUEUE_URL="$(create_queues "$QUEUE" "$DLQ" "$MAX_RECEIVES" "$VISIBILITY")" || die "could not create the queues"
DLQ_URL="$(sqs_call GetQueueUrl "{\"QueueName\":\"$DLQ\"}" | json_field QueueUrl)"
EVENTS_URL="$(create_queues "$EVENTS" "$EVENTS_DLQ" "$MAX_RECEIVES" "$VISIBILITY")" || die "could not create the payment events queues"
EVENTS_DLQ_URL="$(sqs_call GetQueueUrl "{\"QueueName\":\"$EVENTS_DLQ\"}" | json_field QueueUrl)"
log "queue $QUEUE, DLQ after $MAX_RECEIVES receives of ${VISIBILITY}s: redrive threshold $((MAX_RECEIVES * VISIBILITY)) s"

BOOKING_PID="" PAYMENT_PID=""
start_booking() {
  BIND_ADDR="127.0.0.1:$BOOKING_PORT" DATABASE_URL="$PG_SERVER_URL/booking" SQS_QUEUE_URL="$QUEUE_URL" \
    PAYMENT_EVENTS_QUEUE_URL="$EVENTS_URL" CONSUMER_VISIBILITY_TIMEOUT="${VISIBILITY}s" CONSUMER_WAIT_TIME=2s \
    LOG_FORMAT=json RUST_LOG=info "$BIN/booking-service" >>"$DIR/booking.log" 2>&1 &
  BOOKING_PID=$!
}
start_payment() {
  BIND_ADDR="127.0.0.1:$PAYMENT_PORT" DATABASE_URL="$PG_SERVER_URL/payment" SQS_QUEUE_URL="$QUEUE_URL" \
    PAYMENT_EVENTS_QUEUE_URL="$EVENTS_URL" CONSUMER_VISIBILITY_TIMEOUT="${VISIBILITY}s" CONSUMER_WAIT_TIME=2s \
    LOG_FORMAT=json RUST_LOG=info "$BIN/payment-service" >>"$DIR/payment.log" 2>&1 &
  PAYMENT_PID=$!
}
stop_services() {
  local pid
  for pid in "$BOOKING_PID" "$PAYMENT_PID"; do [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; done
  for pid in "$BOOKING_PID" "$PAYMENT_PID"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null; done
  return 0
}
on_exit stop_services
wait_ready() {
  local port="$1"
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health/live" && return 0
    sleep 0.1
  done
  die "the service on port $port did not start (see $DIR)"
}
start_booking; start_payment
wait_ready "$BOOKING_PORT"; wait_ready "$PAYMENT_PORT"

q() { psql -X -qAt -v ON_ERROR_STOP=1 "$PG_SERVER_URL/$1" -c "$2"; }
pg_ctl_() { as_postgres "$PG_BIN/pg_ctl -D $PG_TMP_DIR/data -l $PG_TMP_DIR/server.log -w -m fast -o '$PG_OPTIONS' $1 >/dev/null"; }

# --- the faults ---------------------------------------------------------------
fault_none() { :; }
fault_kill_booking() {
  kill -KILL "$BOOKING_PID"; wait "$BOOKING_PID" 2>/dev/null
  sleep 1; start_booking
}
fault_kill_payment() {
  kill -KILL "$PAYMENT_PID"; wait "$PAYMENT_PID" 2>/dev/null
  sleep 1; start_payment
}
fault_freeze_sqs() { kill -STOP "$SQS_PID"; sleep "$SQS_FREEZE"; kill -CONT "$SQS_PID"; }
fault_stop_database() { pg_ctl_ stop; sleep "$DB_STOP"; pg_ctl_ start; }
fault_payment_database() {
  q postgres "alter database payment with allow_connections false" >/dev/null
  q postgres "select pg_terminate_backend(pid) from pg_stat_activity where datname = 'payment'" >/dev/null
  sleep "$CONSUMER_DB_OUT"
  q postgres "alter database payment with allow_connections true" >/dev/null
}
POISON=0
fault_poison() {
  # Into the groups of bookings just made (busy groups), three kinds of poison.
  local group i body
  for i in 1 2 3; do
    group="$(sed -n "${i}p" "$IDS")"
    [ -n "$group" ] || group="$(python3 -c 'import uuid; print(uuid.uuid4())')"
    case $i in
      1) body='not json' ;;
      2) body='{"eventId":"'"$(python3 -c 'import uuid; print(uuid.uuid4())')"'","eventType":"FlightTeleported","eventVersion":1,"aggregateType":"flight","aggregateId":"'"$group"'","occurredAt":"2026-01-01T00:00:00Z","payload":{}}' ;;
      3) body='{"eventId":"'"$(python3 -c 'import uuid; print(uuid.uuid4())')"'","eventType":"FlightBooked","eventVersion":99,"aggregateType":"flight","aggregateId":"'"$group"'","occurredAt":"2026-01-01T00:00:00Z","payload":{}}' ;;
    esac
    sqs_call SendMessage "$(python3 -c 'import json,sys,uuid; print(json.dumps({"QueueUrl": sys.argv[1], "MessageBody": sys.argv[2], "MessageGroupId": sys.argv[3], "MessageDeduplicationId": str(uuid.uuid4())}))' "$QUEUE_URL" "$body" "$group")" >/dev/null
    POISON=$((POISON + 1))
  done
}

# ERROR lines a fault explains (a regex over the message); anything else fails the run.
explained() {
  case "$1" in
    fault_poison) echo 'poison message' ;;
    *) echo '^$' ;;
  esac
}

dlq_bodies() { # dlq_bodies URL: empties that DLQ, one line per message: poison or VALID <body>
  python3 - "$AWS_ENDPOINT_URL_SQS" "$1" <<'PY'
import json, sys, urllib.request
endpoint, url = sys.argv[1], sys.argv[2]
def call(action, body):
    request = urllib.request.Request(endpoint + "/", data=json.dumps(body).encode(), headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS." + action,
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"})
    return json.load(urllib.request.urlopen(request, timeout=10))
count = 0
while True:
    messages = call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1, "VisibilityTimeout": 60}).get("Messages", [])
    if not messages:
        break
    for m in messages:
        body = m["Body"]
        poison = body == "not json" or "FlightTeleported" in body or '"eventVersion":99' in body
        print("poison" if poison else "VALID " + body[:120])
        call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
PY
}

ROWS=()
FAILED=0
phase() {
  local name="$1" fault="$2" slug="$3"
  IDS="$DIR/$slug.ids"; : >"$IDS"; POISON=0
  local booking_mark payment_mark flights_before
  booking_mark=$(wc -c <"$DIR/booking.log"); payment_mark=$(wc -c <"$DIR/payment.log")
  flights_before=$(q booking "select count(*) from flight")
  log "fault: $name ($BOOKINGS bookings at $RATE/s)"
  python3 scripts/chaos/load.py --base "http://127.0.0.1:$BOOKING_PORT" --count "$BOOKINGS" \
    --rate "$RATE" --out "$IDS" --give-up-after "$DRAIN_TIMEOUT" 2>"$DIR/$slug.load.err" &
  local load=$!
  sleep "$(python3 -c "print(round($BOOKINGS / $RATE / 3, 1))")"
  "$fault"
  wait "$load"; local load_rc=$?
  local healed; healed=$(date +%s)
  # Drained: every booked flight paid and CONFIRMED, nothing left in either outbox.
  local paid=0 confirmed=0 left=1 booked deadline=$(($(date +%s) + DRAIN_TIMEOUT))
  booked=$(sort -u "$IDS" | wc -l)
  among_ids() { # among_ids DATABASE SQL: how many of the phase's ids the query returns
    sort -u "$IDS" | python3 -c '
import sys, subprocess
ids = [l.strip() for l in sys.stdin if l.strip()]
out = subprocess.run(["psql", "-X", "-qAt", sys.argv[1], "-c", sys.argv[2]], capture_output=True, text=True).stdout.split()
print(len(set(ids) & set(out)))' "$PG_SERVER_URL/$1" "$2" 2>/dev/null || echo 0
  }
  while :; do
    paid=$(among_ids payment "select flight_id from payment")
    confirmed=$(among_ids booking "select id from flight where status = 'CONFIRMED'")
    left=$(( $(q booking "select count(*) from outbox.event where published_at is null" 2>/dev/null || echo 1) \
      + $(q payment "select count(*) from outbox.event where published_at is null" 2>/dev/null || echo 1) ))
    [ "$paid" = "$booked" ] && [ "$confirmed" = "$booked" ] && [ "$left" = 0 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 1
  done
  local drain=$(($(date +%s) - healed))
  # Booked -> paid, over this phase's bookings: p50 and max, seconds.
  local latency
  latency=$(sort -u "$IDS" | python3 -c '
import sys, subprocess, statistics
ids = {l.strip() for l in sys.stdin if l.strip()}
rows = subprocess.run(["psql", "-X", "-qAt", "-F", " ", sys.argv[1], "-c",
    "select flight_id, extract(epoch from processed_at - booked_at) from payment"],
    capture_output=True, text=True).stdout.split("\n")
seconds = sorted(float(r.split()[1]) for r in rows if r.strip() and r.split()[0] in ids)
print(f"{statistics.median(seconds):.1f}/{seconds[-1]:.1f}s" if seconds else "-")' "$PG_SERVER_URL/payment")
  local flights_after duplicates lost dlq_valid dlq_poison errors
  flights_after=$(q booking "select count(*) from flight")
  duplicates=$(( flights_after - flights_before - booked ))
  [ "$(q payment "select count(*) - count(distinct flight_id) from payment")" = 0 ] || duplicates=$((duplicates + 1))
  lost=$((booked - paid))
  local dlq; dlq="$(dlq_bodies "$DLQ_URL"; dlq_bodies "$EVENTS_DLQ_URL")"
  dlq_poison=$(grep -c '^poison' <<<"$dlq"); dlq_valid=$(grep -c '^VALID' <<<"$dlq")
  errors=$( { tail -c +"$((booking_mark + 1))" "$DIR/booking.log"; tail -c +"$((payment_mark + 1))" "$DIR/payment.log"; } \
    | grep '"level":"ERROR"' | grep -Ev "$(explained "$fault")" | tee "$DIR/$slug.errors" | wc -l)
  local verdict=ok
  if [ "$load_rc" != 0 ] || [ "$lost" != 0 ] || [ "$duplicates" != 0 ] || [ "$left" != 0 ] || [ "$confirmed" != "$booked" ] \
     || [ "$dlq_valid" != 0 ] || [ "$dlq_poison" != "$POISON" ] || [ "$errors" != 0 ]; then
    verdict=FAILED; FAILED=1
    [ "$load_rc" != 0 ] && log "  load generator: $(head -n 3 "$DIR/$slug.load.err" | tr '\n' ' ')"
    [ "$confirmed" != "$booked" ] && log "  $((booked - confirmed)) booking(s) not CONFIRMED"
    [ "$errors" != 0 ] && log "  unexplained ERROR lines: $DIR/$slug.errors"
    [ "$dlq_valid" != 0 ] && log "  valid messages in the DLQ: $(grep '^VALID' <<<"$dlq" | head -n 3)"
  fi
  ROWS+=("$(printf '%-44s %8s %6s %10s %5s %6s %5s %7s %14s  %s' "$name" "$booked" "$paid" "$duplicates" "$lost" "$left" \
    "$dlq_poison/$POISON" "${drain}s" "$latency" "$verdict")")
}

phase "none (baseline)" fault_none baseline
phase "kill -9 booking-service" fault_kill_booking kill-booking
phase "kill -9 payment-service" fault_kill_payment kill-payment
phase "SQS frozen ${SQS_FREEZE}s" fault_freeze_sqs freeze-sqs
phase "PostgreSQL stopped ${DB_STOP}s" fault_stop_database stop-db
phase "payment DB refusing ${CONSUMER_DB_OUT}s (> $((MAX_RECEIVES * VISIBILITY))s threshold)" fault_payment_database payment-db
phase "poison in busy groups" fault_poison poison

printf '\n%-44s %8s %6s %10s %5s %6s %5s %7s %14s  %s\n' fault bookings paid duplicates lost outbox DLQ drain "booked->paid" ""
printf '%-44s %8s %6s %10s %5s %6s %5s %7s %14s\n' "" "(201s)" "" "" "" "left" "" "" "p50/max"
printf '%s\n' "${ROWS[@]}"
echo
if [ "$FAILED" = 0 ]; then
  echo "chaos ($MODE): every booking paid exactly once and CONFIRMED under every fault"
else
  echo "chaos ($MODE): FAILED (logs in $DIR)"
fi
exit "$FAILED"
