#!/usr/bin/env bash
# Tells the story of the transactional outbox, both ways, against a running system
# (scripts/run.sh):
#
#   1. a booking is CONFIRMED: POST /api/flights (PENDING_PAYMENT), payment-service
#      approves its payment and says so, and the booking learns it;
#   2. an expensive fare is REJECTED: payment-service declines it (PAYMENT_DECLINE_ABOVE);
#   3. the bookings queue is BLOCKED: a third booking is still committed (201) and
#      stays PENDING_PAYMENT while its event waits in the outbox, the relay probing
#      the queue with it and recording the error;
#   4. the queue is UNBLOCKED: the event drains, the flight is paid exactly once and
#      the booking CONFIRMED;
#   5. the first booking is CANCELLED: payment-service refunds its payment
#      (REFUNDED) and the booking learns that too; a rejected booking cannot be
#      cancelled (409).
#
# Every expectation is checked; the script exits non-zero with a message when one
# fails. Waits are polls with deadlines, never blind sleeps.
#
# Blocking the queue: no local SQS emulator enforces a queue policy, so locally
# the queue is deleted (SendMessageBatch then fails with QueueDoesNotExist) and
# re-created with the same name (both services re-resolve the name). In AWS the
# same story uses a Deny policy instead, which keeps the queue and its messages:
# infra/scripts/block-queue.sh and infra/scripts/unblock-queue.sh.
#
# Settings: the same as scripts/run.sh's, from the same place (lib.sh's
# load_settings: the environment, then .env): BOOKING_PORT (8080), PAYMENT_PORT
# (8081), QUEUE_NAME (bookings.fifo), DLQ_NAME (QUEUE-dlq.fifo), SQS_PORT (9324) or
# AWS_ENDPOINT_URL_SQS, PAYMENT_EVENTS_QUEUE_NAME (payment-events.fifo),
# PAYMENT_DECLINE_ABOVE (500000: the expensive fare is 100 minor units above it);
# BOOKING_URL / PAYMENT_URL (default http://127.0.0.1:PORT) for services
# elsewhere; ADMIN_TOKEN (the operator token, for the listings and the outbox;
# default: the one the running scripts/run.sh generated). Its own: DEMO_TIMEOUT (seconds each wait may take, 60),
# DEMO_DRAIN_TIMEOUT (seconds for the drain after unblocking, 120; the relay
# probes the queue every RELAY_PROBE_INTERVAL, 500ms, so it starts within a
# second), DEMO_STRICT_OUTBOX=1 (require the whole outbox to be empty at the end,
# not only our events; set by story-test.sh, whose system has a database of its own).
#
#   scripts/demo.sh           # the whole story, about 8 s
#   scripts/demo.sh --pace    # waits for Enter before each step and while the queue
#                             # is blocked, naming what to look at in Swagger UI
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PACE=0
case "${1:-}" in
  "") ;;
  --pace) PACE=1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (usage: scripts/demo.sh [--pace])" ;;
esac
load_settings
SQS_ENDPOINT="${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}"
export AWS_ENDPOINT_URL_SQS="$SQS_ENDPOINT"
DEMO_TIMEOUT="${DEMO_TIMEOUT:-60}"
DEMO_DRAIN_TIMEOUT="${DEMO_DRAIN_TIMEOUT:-120}"
DEMO_STRICT_OUTBOX="${DEMO_STRICT_OUTBOX:-0}"
DECLINE_ABOVE="${PAYMENT_DECLINE_ABOVE:-500000}"
DEAR_FARE=$((DECLINE_ABOVE + 100))
SWAGGER="$BOOKING_URL/swagger-ui/index.html"
OPERATOR_TOKEN="$(operator_token)"

BODY_FILE="$(mktemp /tmp/outbox-demo.XXXXXX)"
on_exit "rm -f '$BODY_FILE'"

# --- narration --------------------------------------------------------------
if [ -t 1 ]; then B=$'\033[1m'; G=$'\033[1;32m'; Y=$'\033[1;33m'; R=$'\033[1;31m'; N=$'\033[0m'
else B=; G=; Y=; R=; N=; fi
STEP=0
# pause WHAT...: with --pace, prints what to look at and waits for Enter.
JUST_PAUSED=0
pause() {
  [ "$PACE" = 1 ] || return 0
  JUST_PAUSED=1
  local line
  for line in "$@"; do printf '    %s>%s %s\n' "$Y" "$N" "$line"; done
  printf '    %s[Enter] to go on%s ' "$B" "$N"
  read -r _ || true
  printf '\n'
}
step() {
  STEP=$((STEP + 1))
  [ "$STEP" = 1 ] || [ "$JUST_PAUSED" = 1 ] || pause "next: $*"
  JUST_PAUSED=0
  printf '\n%s--- Step %d: %s%s\n' "$B" "$STEP" "$*" "$N"
}
say() { printf '    %s\n' "$*"; }
ok() { printf '    %s✔%s %s\n' "$G" "$N" "$*"; }
note() { printf '    %s…%s %s\n' "$Y" "$N" "$*"; }
fail() { printf '\n%sdemo FAILED at step %d:%s %s\n' "$R" "$STEP" "$N" "$*" >&2; exit 1; }

# --- HTTP and JSON -------------------------------------------------------------
# http METHOD URL [JSON]: sets STATUS (000 when nothing answered) and BODY.
# With AS_OPERATOR=1 it sends the operator token (the listings need it).
AS_OPERATOR=0
http() {
  local args=(-s -m 10 -o "$BODY_FILE" -w '%{http_code}' -X "$1" -H 'Accept: application/json')
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data "$3")
  [ "$AS_OPERATOR" = 1 ] && [ -n "$OPERATOR_TOKEN" ] && args+=(-H "Authorization: Bearer $OPERATOR_TOKEN")
  : >"$BODY_FILE"
  STATUS="$(curl "${args[@]}" "$2" 2>/dev/null)" || STATUS=000
  BODY="$(cat "$BODY_FILE")"
}

# py 'EXPR' [ARGS...] evaluates a Python expression over the JSON in $BODY (bound
# to `d`; extra arguments are `a[0]`, `a[1]`, ...). Dicts and lists print as JSON,
# None as nothing.
py() {
  local expr="$1"; shift
  printf '%s' "$BODY" | python3 -c '
import json, sys
from datetime import datetime
d = json.loads(sys.stdin.read() or "null")
a = sys.argv[2:]
r = eval(sys.argv[1])
print(json.dumps(r) if isinstance(r, (dict, list)) else ("" if r is None else r))' "$expr" "$@"
}

now() { date +%s; }

# --- steps ------------------------------------------------------------------------
flight_body() {
  printf '{"departureAirport":"%s","arrivalAirport":"%s","departureDateTime":"%s","arrivalDateTime":"%s"%s}' \
    "$1" "$2" "$3" "$4" "${5:+,\"fare\":$5}"
}

# book LABEL JSON: POST /api/flights, expects 201; sets FLIGHT_ID.
book() {
  say "POST $BOOKING_URL/api/flights  $2"
  http POST "$BOOKING_URL/api/flights" "$2"
  [ "$STATUS" = 201 ] || fail "booking $1: expected 201 Created, got $STATUS: $BODY"
  FLIGHT_ID="$(py 'd["id"]')"
  [ -n "$FLIGHT_ID" ] || fail "booking $1: the 201 response has no id: $BODY"
  ok "201 Created: flight $FLIGHT_ID ($(py '"%s -> %s, fare %.2f %s" % (d["departureAirport"], d["arrivalAirport"], d["fare"]["amount"] / 100, d["fare"]["currency"])'))"
  say "booking and FlightBooked event were committed in one transaction"
}

# wait_payment FLIGHT_ID TIMEOUT [STATUS]: polls GET /api/payments/{id} until it
# answers 200 (with that status, when given).
wait_payment() {
  local id="$1" deadline=$(($(now) + $2)) want="${3:-}" t0="${EPOCHREALTIME/./}"
  say "waiting (up to $2 s) for GET $PAYMENT_URL/api/payments/$id${want:+ to say $want}"
  while :; do
    http GET "$PAYMENT_URL/api/payments/$id"
    case "$STATUS" in
      200) [ -z "$want" ] || [ "$(py 'd["status"]')" = "$want" ] && break ;;
      404) ;;
      *) note "payment-service answered $STATUS; retrying" ;;
    esac
    [ "$(now)" -lt "$deadline" ] || fail "no ${want:-payment} for flight $id after $2 s (last answer $STATUS: $BODY)"
    sleep 0.3
  done
  [ "$(py 'd["flightId"]')" = "$id" ] || fail "the payment is for another flight: $BODY"
  local waited=$(( (${EPOCHREALTIME/./} - t0) / 100000 ))
  ok "payment $(py 'd["status"]'): $(py '"%.2f %s, event %s, processed at %s" % (d["amount"] / 100, d["currency"], d["eventId"], d["processedAt"])')$(py '" (" + d["reason"] + ")" if d.get("reason") else ""')$(py '", refunded at " + d["refundedAt"] if d.get("refundedAt") else ""') (after $((waited / 10)).$((waited % 10)) s)"
}

# wait_booking FLIGHT_ID STATUS TIMEOUT [PAYMENT_STATUS]: polls GET /api/flights/{id}
# until the booking is STATUS (and its payment PAYMENT_STATUS, when given); fails at
# once when it settles on another status.
wait_booking() {
  local id="$1" want="$2" timeout="$3" want_payment="${4:-}" deadline=$(($(now) + $3)) t0="${EPOCHREALTIME/./}" status payment
  say "waiting (up to $timeout s) for GET $BOOKING_URL/api/flights/$id to say $want${want_payment:+ with its payment $want_payment}"
  while :; do
    http GET "$BOOKING_URL/api/flights/$id"
    [ "$STATUS" = 200 ] || fail "GET /api/flights/$id answered $STATUS: $BODY"
    status="$(py 'd["status"]')" payment="$(py 'd.get("payment", {}).get("status")')"
    [ "$status" = "$want" ] && { [ -z "$want_payment" ] || [ "$payment" = "$want_payment" ]; } && break
    [ "$status" = PENDING_PAYMENT ] || [ "$status" = "$want" ] \
      || fail "flight $id is $status, expected $want: $BODY"
    [ "$(now)" -lt "$deadline" ] || fail "flight $id is still $status (payment ${payment:-unknown}) after $timeout s: $BODY"
    sleep 0.2
  done
  local waited=$(( (${EPOCHREALTIME/./} - t0) / 100000 ))
  ok "booking $status, payment ${payment:-unknown} (after $((waited / 10)).$((waited % 10)) s; status changed at $(py 'd["statusChangedAt"]'))"
}

# outbox_entry AGGREGATE_ID: reads every page of GET /api/outbox; sets ENTRY (the
# JSON of the flight's event, empty when absent) and OUTBOX_TOTAL.
outbox_entry() {
  # The operator token too: the outbox listing is an operator action.
  local cursor="" count found AS_OPERATOR=1
  ENTRY=""; OUTBOX_TOTAL=0
  for _ in $(seq 1 200); do
    http GET "$BOOKING_URL/api/outbox?limit=100${cursor:+&cursor=$cursor}"
    [ "$STATUS" = 200 ] || fail "GET /api/outbox answered $STATUS: $BODY"
    IFS=$'\x1f' read -r count found cursor < <(py '"\x1f".join([str(len(d["items"])), next((json.dumps(e) for e in d["items"] if e["aggregateId"] == a[0]), ""), d.get("nextCursor") or ""])' "$1")
    OUTBOX_TOTAL=$((OUTBOX_TOTAL + count))
    [ -n "$ENTRY" ] || ENTRY="$found"
    [ -n "$cursor" ] || return 0
  done
  fail "GET /api/outbox: more than 200 pages"
}

entry() { BODY="$ENTRY" py "$1"; }

# payments_of IDS...: pages GET /api/payments (newest first) back to the start of
# the demo; prints "flightId count" for each id.
payments_of() {
  local cursor="" counts="{}" AS_OPERATOR=1
  for _ in $(seq 1 500); do
    http GET "$PAYMENT_URL/api/payments?limit=100${cursor:+&cursor=$cursor}"
    case "$STATUS" in
      200) ;;
      401|403|503) fail "GET /api/payments answered $STATUS, listing all payments is an operator action: set ADMIN_TOKEN to the services' token (scripts/run.sh prints it): $BODY" ;;
      *) fail "GET /api/payments answered $STATUS: $BODY" ;;
    esac
    counts="$(py '{i: json.loads(a[0]).get(i, 0) + sum(p["flightId"] == i for p in d["items"]) for i in a[1:]}' "$counts" "$@")"
    cursor="$(py 'd.get("nextCursor")')"
    # Older pages cannot hold payments of flights booked by this run.
    if [ -z "$cursor" ] || [ "$(py 'datetime.fromisoformat(d["items"][-1]["processedAt"]).timestamp() < float(a[0]) - 60' "$STARTED_AT")" = True ]; then
      BODY="$counts" py '"\n".join(f"{i} {d.get(i, 0)}" for i in a)' "$@"
      return 0
    fi
  done
  fail "GET /api/payments: more than 500 pages"
}

# --- the story --------------------------------------------------------------------
STARTED_AT="$(now)"
printf '%sThe transactional outbox, step by step%s\n' "$B" "$N"
say "booking-service $BOOKING_URL, payment-service $PAYMENT_URL"
say "SQS $SQS_ENDPOINT, queues $QUEUE_NAME (DLQ $DLQ_NAME) and $PAYMENT_EVENTS_QUEUE_NAME (DLQ $PAYMENT_EVENTS_DLQ_NAME)"

step "both services are up"
for url in "$BOOKING_URL" "$PAYMENT_URL"; do
  http GET "$url/health/ready"
  [ "$STATUS" = 200 ] || fail "$url/health/ready answered $STATUS (is scripts/run.sh running?)"
  ok "$url/health/ready: 200"
done
queue_url="$(queue_url "$QUEUE_NAME")" \
  || fail "the queue $QUEUE_NAME does not exist at $SQS_ENDPOINT (blocked? scripts/queue.sh unblock re-creates it; scripts/run.sh creates it at start)"
ok "queue $QUEUE_NAME exists: $queue_url (booking-service -> payment-service)"
events_url="$(queue_url "$PAYMENT_EVENTS_QUEUE_NAME")" \
  || fail "the queue $PAYMENT_EVENTS_QUEUE_NAME does not exist at $SQS_ENDPOINT (blocked? scripts/queue.sh unblock --queue payment-events; scripts/run.sh creates it at start)"
ok "queue $PAYMENT_EVENTS_QUEUE_NAME exists: $events_url (payment-service -> booking-service)"

step "book Paris -> London: PENDING_PAYMENT, then CONFIRMED once its payment is approved"
book first "$(flight_body Paris London 2023-09-01T08:00:00.000Z 2023-09-01T08:15:00.000Z)"
FLIGHT1="$FLIGHT_ID"
say "the relay publishes FlightBooked; payment-service pays it (inbox + payment + PaymentApproved, one"
say "transaction); its relay publishes PaymentApproved; booking-service applies it (inbox + status)"
wait_payment "$FLIGHT1" "$DEMO_TIMEOUT" APPROVED
wait_booking "$FLIGHT1" CONFIRMED "$DEMO_TIMEOUT"

step "book a fare above PAYMENT_DECLINE_ABOVE ($DECLINE_ABOVE): payment-service declines it, the booking is REJECTED"
[ "$DEAR_FARE" -le 10000000 ] || fail "PAYMENT_DECLINE_ABOVE=$DECLINE_ABOVE: no fare the API accepts (at most 10000000) is above it"
book second "$(flight_body London Paris 2023-09-02T18:00:00.000Z 2023-09-02T18:15:00.000Z "{\"amount\":$DEAR_FARE,\"currency\":\"EUR\"}")"
FLIGHT2="$FLIGHT_ID"
wait_payment "$FLIGHT2" "$DEMO_TIMEOUT" DECLINED
# Deleting the queue (our local "block") would also delete a message still in it,
# so the story waits until this booking went both ways. AWS's Deny policy keeps them.
wait_booking "$FLIGHT2" REJECTED "$DEMO_TIMEOUT"

step "BLOCK the bookings queue (locally: delete it, as scripts/queue.sh block does; in AWS: infra/scripts/block-queue.sh)"
queue_block "$QUEUE_NAME" || fail "could not delete the queue $QUEUE_NAME (or it still exists after DeleteQueue)"
ok "DeleteQueue $queue_url: the queue is gone; sends now fail with QueueDoesNotExist"
# Leave no deleted queue behind when the story stops before it unblocks.
UNBLOCKED=0
unblock_on_exit() {
  [ "$UNBLOCKED" = 1 ] && return
  (queue_unblock "$QUEUE_NAME" "$DLQ_NAME" >/dev/null) && echo "demo: re-created the queue $QUEUE_NAME on the way out" >&2
}
on_exit unblock_on_exit

step "book a third flight, Paris -> Berlin, while the queue is blocked"
book third "$(flight_body Paris Berlin 2023-09-03T07:00:00.000Z 2023-09-03T08:45:00.000Z)"
FLIGHT3="$FLIGHT_ID"
http GET "$BOOKING_URL/api/flights/$FLIGHT3"
[ "$STATUS" = 200 ] || fail "GET /api/flights/$FLIGHT3 answered $STATUS: the booking should be committed"
ok "GET /api/flights/$FLIGHT3: 200, $(py 'd["status"]'): committed although SQS is unavailable"

step "its event waits in GET /api/outbox; the relay probes the queue with it until SQS answers"
deadline=$(($(now) + DEMO_TIMEOUT)); last_seen=""
while :; do
  outbox_entry "$FLIGHT3"
  [ -n "$ENTRY" ] || fail "the event of flight $FLIGHT3 left the outbox although the queue is blocked"
  IFS=$'\x1f' read -r attempts state EVENT3 next_at last_error < <(entry '"\x1f".join("" if d[k] is None else str(d[k]) for k in ("attempts", "state", "eventId", "nextAttemptAt", "lastError"))')
  [ -n "$attempts" ] || fail "cannot read the outbox entry: $ENTRY"
  if [ "$attempts $state" != "$last_seen" ]; then
    say "event $EVENT3: state $state, attempts $attempts, next attempt at $next_at"
    [ "$attempts" -gt 0 ] && say "  last error: $last_error"
    last_seen="$attempts $state"
  fi
  [ "$attempts" -ge 2 ] && break
  [ "$(now)" -lt "$deadline" ] || fail "the relay did not retry the event twice in $DEMO_TIMEOUT s (attempts $attempts)"
  sleep 0.3
done
[ -n "$last_error" ] || fail "the outbox entry has $attempts attempts but no lastError"
ok "$attempts failed attempts recorded, with the last error; the outbox holds $OUTBOX_TOTAL unpublished event(s)"
http GET "$PAYMENT_URL/api/payments/$FLIGHT3"
[ "$STATUS" = 404 ] || fail "GET /api/payments/$FLIGHT3 answered $STATUS while the queue is blocked (expected 404)"
ok "GET /api/payments/$FLIGHT3: 404, not paid yet"
http GET "$BOOKING_URL/api/flights/$FLIGHT3"
[ "$(py 'd["status"]')" = PENDING_PAYMENT ] || fail "flight $FLIGHT3 is $(py 'd["status"]') while its event waits (expected PENDING_PAYMENT)"
ok "GET /api/flights/$FLIGHT3: still PENDING_PAYMENT"
pause "the queue stays blocked until you press Enter; look now:" \
  "$SWAGGER  ->  GET /api/outbox  ->  Try it out  ->  Execute" \
  "  event $EVENT3 (flight $FLIGHT3): state, attempts, lastError; Execute again to see attempts grow" \
  "$SWAGGER  ->  GET /api/flights/{id} with $FLIGHT3: PENDING_PAYMENT" \
  "$PAYMENT_URL/swagger-ui/index.html  ->  GET /api/payments/{flightId} with $FLIGHT3: 404" \
  "next: UNBLOCK the queue; the event drains, the flight is paid and the booking CONFIRMED"

step "UNBLOCK the queue (locally: re-create it and its DLQ, as scripts/queue.sh unblock does; in AWS: infra/scripts/unblock-queue.sh)"
queue_url="$(queue_unblock "$QUEUE_NAME" "$DLQ_NAME")" || fail "could not re-create the queue $QUEUE_NAME"
UNBLOCKED=1
ok "queue $QUEUE_NAME is back: $queue_url"

step "the event drains from the outbox; the third flight is paid exactly once and CONFIRMED"
say "waiting (up to $DEMO_DRAIN_TIMEOUT s) for the relay's next attempt"
deadline=$(($(now) + DEMO_DRAIN_TIMEOUT)); retried=0
while :; do
  outbox_entry "$FLIGHT3"
  [ -z "$ENTRY" ] && break
  if [ "$(entry 'd["state"]')" = PARKED ] && [ "$retried" = 0 ]; then
    note "the event was parked (attempts exhausted): POST /api/outbox/$EVENT3/retry"
    AS_OPERATOR=1 http POST "$BOOKING_URL/api/outbox/$EVENT3/retry"
    case "$STATUS" in 200 | 409) ;; *) fail "retry answered $STATUS: $BODY" ;; esac
    retried=1
  fi
  [ "$(now)" -lt "$deadline" ] || fail "the event is still in the outbox $DEMO_DRAIN_TIMEOUT s after unblocking: $ENTRY"
  sleep 0.3
done
ok "event $EVENT3 was published: no longer in GET /api/outbox"
if [ "$OUTBOX_TOTAL" = 0 ]; then
  ok "GET /api/outbox: empty"
elif [ "$DEMO_STRICT_OUTBOX" = 1 ]; then
  fail "GET /api/outbox still lists $OUTBOX_TOTAL event(s): $BODY"
else
  note "GET /api/outbox still lists $OUTBOX_TOTAL event(s) that are not this demo's (earlier runs?)"
fi
wait_payment "$FLIGHT3" "$DEMO_TIMEOUT" APPROVED
[ "$(py 'd["eventId"]')" = "$EVENT3" ] || fail "the payment was made for event $(py 'd["eventId"]'), not $EVENT3"
ok "the payment was made for the event that waited in the outbox ($EVENT3)"
wait_booking "$FLIGHT3" CONFIRMED "$DEMO_TIMEOUT"

step "cancel the first booking (CONFIRMED): payment-service refunds its payment"
say "POST $BOOKING_URL/api/flights/$FLIGHT1/cancel"
http POST "$BOOKING_URL/api/flights/$FLIGHT1/cancel"
[ "$STATUS" = 200 ] || fail "cancel answered $STATUS: $BODY"
[ "$(py 'd["status"]')" = CANCELLED ] || fail "the cancelled booking is $(py 'd["status"]'): $BODY"
ok "200: CANCELLED; the status and its FlightCancelled event were committed in one transaction"
wait_payment "$FLIGHT1" "$DEMO_TIMEOUT" REFUNDED
wait_booking "$FLIGHT1" CANCELLED "$DEMO_TIMEOUT" REFUNDED
http POST "$BOOKING_URL/api/flights/$FLIGHT1/cancel"
[ "$STATUS" = 200 ] || fail "cancelling again answered $STATUS: $BODY"
ok "cancelling it again: 200, the same booking, no second event"
http POST "$BOOKING_URL/api/flights/$FLIGHT2/cancel"
[ "$STATUS" = 409 ] || fail "cancelling the REJECTED booking answered $STATUS (expected 409): $BODY"
ok "cancelling the REJECTED booking: 409, $(py 'd["detail"]')"

step "each flight was paid exactly once"
counts="$(payments_of "$FLIGHT1" "$FLIGHT2" "$FLIGHT3")"
total=0
while read -r id count; do
  say "GET /api/payments: flight $id has $count payment(s)"
  [ "$count" = 1 ] || fail "flight $id has $count payments in GET /api/payments, expected exactly 1"
  total=$((total + count))
done <<<"$counts"
[ "$total" = 3 ] || fail "the three flights have $total payments in total, expected 3"
ok "3 flights, 3 payments (one refunded, one declined): nothing lost while the queue was blocked, nothing paid twice"

printf '\n%sThe story holds.%s The booking never failed: the outbox kept the event until SQS took it, and each\n' "$G" "$N"
printf 'booking learned its payment the same way, back (%d s).\n' "$(($(now) - STARTED_AT))"
