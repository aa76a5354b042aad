#!/usr/bin/env bash
# The demo's story (scripts/demo.sh) as an automated test: starts the whole
# system with scripts/run.sh in the background, on ports of its own, with a
# queue of its own and a throwaway PostgreSQL cluster of its own (no other
# booking-service's relay, sharing the `booking` database, can publish its
# events), tells the story against it, stops it, and checks nothing is left.
# Ends with "story: 1 passed, 0 failed" (exit 0) or "story: 0 passed, 1 failed" (exit 1).
#
# Settings (environment): STORY_BOOKING_PORT (18080), STORY_PAYMENT_PORT (18081),
# STORY_PG_PORT (a free port; set it to 5432 to use the shared server instead),
# SQS_PORT / AWS_ENDPOINT_URL_SQS (the SQS server is shared: run.sh reuses one
# that answers), STORY_START_TIMEOUT (seconds for run.sh to be up, 600: it may
# have to build the services).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BOOKING_PORT="${STORY_BOOKING_PORT:-18080}"
PAYMENT_PORT="${STORY_PAYMENT_PORT:-18081}"
STORY_PG_PORT="${STORY_PG_PORT:-$(free_port)}"
QUEUE_NAME="story-$(date +%s)-$$-$RANDOM.fifo"
RUN_LOG="$LOCAL_DIR/story-run.log"
DEMO_LOG="$LOCAL_DIR/story-demo.log"
START_TIMEOUT="${STORY_START_TIMEOUT:-600}"

REPORTED=0
result() {
  REPORTED=1
  if [ "$1" = 0 ]; then echo "story: 1 passed, 0 failed"; else echo "story: 0 passed, 1 failed"; fi
}
# Interrupted (SIGTERM, Ctrl-C): still the closing line, after the clean-up below.
on_exit '[ "$REPORTED" = 1 ] || { echo "story: interrupted" >&2; result 1; }'
failed() { printf '\033[1;31mstory failed:\033[0m %s\n' "$*" >&2; RESULT=1; }
RESULT=0
started=$(date +%s)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do
  if port_open "$port"; then
    printf '\033[1;31merror:\033[0m port %s is taken (another test run?); choose others (see the settings at the top of %s)\n' "$port" "$0" >&2
    result 1; exit 1
  fi
done
# A PostgreSQL already there is used (and left running); otherwise run.sh starts one.
PG_PORTS_TO_CHECK="$STORY_PG_PORT"; port_open "$STORY_PG_PORT" && PG_PORTS_TO_CHECK=""

# Its queues are this run's alone: deleted at the end (after run.sh has stopped).
delete_queues() {
  local name url
  for name in "$QUEUE_NAME" "${QUEUE_NAME%.fifo}-dlq.fifo"; do
    url="$(sqs_call GetQueueUrl "{\"QueueName\":\"$name\"}" | json_field QueueUrl)" \
      && sqs_call DeleteQueue "{\"QueueUrl\":\"$url\"}" >/dev/null
  done
  return 0
}
on_exit delete_queues

# --- start ----------------------------------------------------------------------
log "starting scripts/run.sh: booking :$BOOKING_PORT, payment :$PAYMENT_PORT, PostgreSQL :$STORY_PG_PORT, queue $QUEUE_NAME (log $RUN_LOG)"
# setsid: run.sh leads a process group of its own, so whatever it leaves behind can be found.
BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" PG_PORT="$STORY_PG_PORT" \
  QUEUE_NAME="$QUEUE_NAME" RELAY_BACKOFF_MAX="${RELAY_BACKOFF_MAX:-2s}" \
  setsid bash scripts/run.sh >"$RUN_LOG" 2>&1 </dev/null &
RUN_PID=$!

stop_run() {
  [ -n "${RUN_PID:-}" ] || return 0
  local pid="$RUN_PID" i left=""
  RUN_PID=
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping scripts/run.sh (SIGTERM to $pid)"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # Anything of run.sh's process group still alive was not stopped by it.
  for _ in $(seq 1 50); do
    left="$(pgrep -g "$pid" 2>/dev/null | tr '\n' ' ')"
    [ -z "$left" ] && break
    sleep 0.1
  done
  if [ -n "$left" ]; then
    failed "left running after run.sh stopped: $(ps -o pid=,args= -p "${left// /,}" 2>/dev/null | tr '\n' ';')"
    kill -KILL -- "-$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  for port in "$BOOKING_PORT" "$PAYMENT_PORT" $PG_PORTS_TO_CHECK; do
    if port_open "$port"; then failed "port $port still answers after run.sh stopped"; fi
  done
}
on_exit stop_run

deadline=$(($(date +%s) + START_TIMEOUT))
until grep -q "The outbox system is up." "$RUN_LOG" 2>/dev/null; do
  if ! kill -0 "$RUN_PID" 2>/dev/null; then
    failed "scripts/run.sh exited before the system was up; the end of $RUN_LOG:"
    tail -n 30 "$RUN_LOG" >&2
    break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    failed "the system was not up after $START_TIMEOUT s; the end of $RUN_LOG:"
    tail -n 30 "$RUN_LOG" >&2
    break
  fi
  sleep 0.2
done

# --- the story ------------------------------------------------------------------
if [ "$RESULT" = 0 ]; then
  log "up after $(($(date +%s) - started)) s; telling the story (log $DEMO_LOG)"
  # DEMO_TIMEOUT 75: payment-service's SQS client gives up on a call after 10 s while
  # its long poll waits 20 s, so a message can be handed to a receive nobody reads
  # any more; it comes back after the 30 s visibility timeout (seen locally, twice in a row once).
  BOOKING_URL="http://127.0.0.1:$BOOKING_PORT" PAYMENT_URL="http://127.0.0.1:$PAYMENT_PORT" \
    QUEUE_NAME="$QUEUE_NAME" DEMO_STRICT_OUTBOX=1 DEMO_TIMEOUT=75 DEMO_DRAIN_TIMEOUT=30 \
    bash scripts/demo.sh > >(tee "$DEMO_LOG") 2>&1 &
  # In the background and waited for, so that a SIGTERM to this script is handled at once.
  DEMO_PID=$!
  on_exit 'kill -0 "$DEMO_PID" 2>/dev/null && kill -TERM "$DEMO_PID" && wait "$DEMO_PID"'
  wait "$DEMO_PID"
  demo_rc=$?
  [ "$demo_rc" = 0 ] || failed "scripts/demo.sh exited with $demo_rc (services' log: $RUN_LOG)"
fi

stop_run
grep -q "a service exited" "$RUN_LOG" && failed "a service exited on its own during the story (see $RUN_LOG)"
log "took $(($(date +%s) - started)) s"
result "$RESULT"
exit "$RESULT"
