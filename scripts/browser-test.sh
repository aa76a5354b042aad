#!/usr/bin/env bash
# The browser test: drives booking-service's Swagger UI in Debian's Chromium
# (scripts/browser-test/swagger.test.mjs, node's built-in test runner) against
# the whole system, started here with scripts/run.sh in the background on ports
# of its own, with queues of its own and a throwaway PostgreSQL cluster of its
# own, and stopped afterwards. Installs Chromium (apt) and playwright-core
# (npm ci, pinned by the committed lockfile) when missing. Screenshots in
# .local/artifacts/: swagger-post-flights.png (201, PENDING_PAYMENT),
# swagger-get-flight-confirmed.png (the status change to CONFIRMED),
# swagger-post-cancel.png (CANCELLED), swagger-get-flights.png (after "Authorize"
# with the system's ADMIN_TOKEN) and swagger-get-outbox.png.
#
# Settings (environment): BROWSER_BOOKING_PORT (28080), BROWSER_PAYMENT_PORT
# (28081), BROWSER_PG_PORT (a free port; 5432 uses the shared server instead),
# SQS_PORT / AWS_ENDPOINT_URL_SQS (shared: run.sh reuses a server that answers),
# BROWSER_START_TIMEOUT (seconds for run.sh to be up, 600).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

BOOKING_PORT="${BROWSER_BOOKING_PORT:-28080}"
PAYMENT_PORT="${BROWSER_PAYMENT_PORT:-28081}"
PG_PORT="${BROWSER_PG_PORT:-$(free_port)}"
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

system_ports_free || { echo "browser: failed"; exit 1; }
system_start "$RUN_LOG"
system_wait_up "$START_TIMEOUT"

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

system_stop
log "took $(($(date +%s) - started)) s"
REPORTED=1
if [ "$RESULT" = 0 ]; then echo "browser: passed"; else echo "browser: failed"; fi
exit "$RESULT"
