#!/usr/bin/env bash
# The demo's story (scripts/demo.sh) as an automated test: starts the whole
# system with scripts/run.sh in the background, on ports of its own, with a
# queues of its own and a throwaway PostgreSQL cluster of its own (no other
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

BOOKING_PORT="${STORY_BOOKING_PORT:-18080}"
PAYMENT_PORT="${STORY_PAYMENT_PORT:-18081}"
PG_PORT="${STORY_PG_PORT:-$(free_port)}"
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

system_ports_free || { result 1; exit 1; }
system_start "$RUN_LOG" RELAY_BACKOFF_MAX="${RELAY_BACKOFF_MAX:-2s}"
system_wait_up "$START_TIMEOUT"

# --- the story ------------------------------------------------------------------
if [ "$RESULT" = 0 ]; then
  log "up after $(($(date +%s) - started)) s; telling the story (log $DEMO_LOG)"
  # The same settings as run.sh got; demo.sh finds the services from the ports.
  ENV_FILE=/dev/null BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" \
    QUEUE_NAME="$QUEUE_NAME" PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" \
    DEMO_STRICT_OUTBOX=1 DEMO_TIMEOUT=30 DEMO_DRAIN_TIMEOUT=30 \
    bash scripts/demo.sh > >(tee "$DEMO_LOG") 2>&1 &
  # In the background and waited for, so that a SIGTERM to this script is handled at once.
  DEMO_PID=$!
  on_exit 'kill -0 "$DEMO_PID" 2>/dev/null && kill -TERM "$DEMO_PID" && wait "$DEMO_PID"'
  wait "$DEMO_PID"
  demo_rc=$?
  [ "$demo_rc" = 0 ] || failed "scripts/demo.sh exited with $demo_rc (services' log: $RUN_LOG)"
fi

system_stop
grep -q "a service exited" "$RUN_LOG" && failed "a service exited on its own during the story (see $RUN_LOG)"
log "took $(($(date +%s) - started)) s"
result "$RESULT"
exit "$RESULT"
