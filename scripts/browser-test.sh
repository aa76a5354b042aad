#!/usr/bin/env bash
# The browser test: drives booking-service's Swagger UI in Debian's Chromium
# (scripts/browser-test/swagger.test.mjs, node's built-in test runner) against
# the whole system, started here with scripts/run.sh in the background on ports
# of its own, with a queue of its own and a throwaway PostgreSQL cluster of its
# own, and stopped afterwards. Installs Chromium (apt) and playwright-core
# (npm ci, pinned by the committed lockfile) when missing. Screenshots:
# .local/artifacts/swagger-post-flights.png and swagger-get-outbox.png.
#
# Settings (environment): BROWSER_BOOKING_PORT (28080), BROWSER_PAYMENT_PORT
# (28081), BROWSER_PG_PORT (a free port; 5432 uses the shared server instead),
# SQS_PORT / AWS_ENDPOINT_URL_SQS (shared: run.sh reuses a server that answers),
# BROWSER_START_TIMEOUT (seconds for run.sh to be up, 600).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BOOKING_PORT="${BROWSER_BOOKING_PORT:-28080}"
PAYMENT_PORT="${BROWSER_PAYMENT_PORT:-28081}"
BROWSER_PG_PORT="${BROWSER_PG_PORT:-$(free_port)}"
QUEUE_NAME="browser-$(date +%s)-$$-$RANDOM.fifo"
RUN_LOG="$LOCAL_DIR/browser-run.log"
START_TIMEOUT="${BROWSER_START_TIMEOUT:-600}"
TEST_DIR="$ROOT/scripts/browser-test"
RESULT=0
REPORTED=0
# Interrupted (SIGTERM, Ctrl-C): still the closing line, after the clean-up below.
on_exit '[ "$REPORTED" = 1 ] || echo "browser: failed (interrupted)"'
failed() { printf '\033[1;31mbrowser test failed:\033[0m %s\n' "$*" >&2; RESULT=1; }
started=$(date +%s)

# --- what the test needs ---------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  log "installing Chromium (Debian package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || die "Chromium is not installed and could not be installed"
fi
command -v node >/dev/null || die "Node.js is required for the browser test"
if [ ! -d "$TEST_DIR/node_modules/playwright-core" ] \
  || [ "$TEST_DIR/package-lock.json" -nt "$TEST_DIR/node_modules/.package-lock.json" ]; then
  log "installing playwright-core (npm ci, pinned by scripts/browser-test/package-lock.json)"
  (cd "$TEST_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed in $TEST_DIR"
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do
  if port_open "$port"; then
    printf '\033[1;31merror:\033[0m port %s is taken (another test run?); choose others (see the settings at the top of %s)\n' "$port" "$0" >&2
    echo "browser: failed"; exit 1
  fi
done
# A PostgreSQL already there is used (and left running); otherwise run.sh starts one.
PG_PORTS_TO_CHECK="$BROWSER_PG_PORT"; port_open "$BROWSER_PG_PORT" && PG_PORTS_TO_CHECK=""

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

# --- start the system ------------------------------------------------------------
log "starting scripts/run.sh: booking :$BOOKING_PORT, payment :$PAYMENT_PORT, PostgreSQL :$BROWSER_PG_PORT, queue $QUEUE_NAME (log $RUN_LOG)"
# setsid: run.sh leads a process group of its own, so whatever it leaves behind can be found.
BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" PG_PORT="$BROWSER_PG_PORT" QUEUE_NAME="$QUEUE_NAME" \
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

# --- the test --------------------------------------------------------------------
if [ "$RESULT" = 0 ]; then
  log "up after $(($(date +%s) - started)) s; node --test scripts/browser-test/swagger.test.mjs"
  # In the background and waited for, so that a SIGTERM to this script is handled at once.
  (cd "$TEST_DIR" && BOOKING_URL="http://127.0.0.1:$BOOKING_PORT" exec node --test --test-reporter=spec swagger.test.mjs) &
  NODE_PID=$!
  on_exit 'kill -0 "$NODE_PID" 2>/dev/null && kill -TERM "$NODE_PID" && wait "$NODE_PID"'
  wait "$NODE_PID"
  node_rc=$?
  [ "$node_rc" = 0 ] || failed "the Swagger UI test failed (exit $node_rc; services' log: $RUN_LOG)"
fi

stop_run
log "took $(($(date +%s) - started)) s"
REPORTED=1
if [ "$RESULT" = 0 ]; then echo "browser: passed"; else echo "browser: failed"; fi
exit "$RESULT"
