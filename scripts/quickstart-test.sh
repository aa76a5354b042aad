#!/usr/bin/env bash
# The README's quick start as a test, on a machine like a newcomer's: a
# PostgreSQL that wants a password (a throwaway cluster with scram-sha-256 on a
# free port, started here). Checks:
#   1. run.sh without the password stops at once and says which variables to set;
#   2. the quick start with PGHOST/PGPORT/PGUSER/PGPASSWORD on non-default ports:
#      run.sh comes up, demo.sh --pace (Enter fed from a pipe) tells the story with
#      the same settings and no URL, run.sh --reset then drops its databases and queues;
#   3. run.sh with a DATABASE_URL base URL and a booking-service that cannot start
#      reports the exit and its error line within a few seconds;
#   4. test.sh's database clean-up drops only its own run's databases: t_keep_me,
#      which it did not create, is left untouched, also when the run fails.
# Ends with "quickstart: N passed, M failed" (exit 1 on any failure).
# Needs the services built (scripts/test.sh has built them; run.sh's cargo build
# is then a no-op). Settings: QUICKSTART_START_TIMEOUT (seconds for run.sh to be up, 600).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

PASSED=0 FAILED=0 RESULT=0
failed() { printf '\033[1;31mquickstart failed:\033[0m %s\n' "$*" >&2; RESULT=1; }
check() { # check NAME: counts the check that just ran (RESULT) and resets it
  if [ "$RESULT" = 0 ]; then PASSED=$((PASSED + 1)); log "passed: $1"; else FAILED=$((FAILED + 1)); fi
  RESULT=0
}
REPORTED=0
on_exit '[ "$REPORTED" = 1 ] || echo "quickstart: interrupted ($PASSED passed, $FAILED failed)"'
DIR="$(mktemp -d /tmp/outbox-quickstart.XXXXXX)"
chmod 711 "$DIR"  # the cluster below runs as postgres when we are root
[ -n "${QUICKSTART_KEEP:-}" ] || on_exit "rm -rf '$DIR'"  # QUICKSTART_KEEP=1 keeps the logs
started=$(date +%s)

# --- a PostgreSQL with scram-sha-256 password auth on a free port --------------------
BIN="$(pg_bin)"
[ -x "${BIN:-/nonexistent}/initdb" ] || install_package postgresql "the quick-start test starts a PostgreSQL cluster of its own"
PASSWORD='n3w:c0mer@pass/word'   # characters that must be encoded in a URL
PORT="$(free_port)"
mkdir -p "$DIR/pg" && printf '%s\n' "$PASSWORD" >"$DIR/pg/pw"
[ "$(id -u)" = 0 ] && chown -R postgres "$DIR/pg"
as_postgres "$BIN/initdb -D $DIR/pg/data -U postgres -A scram-sha-256 --pwfile=$DIR/pg/pw -E UTF8 --no-sync >$DIR/pg/initdb.log 2>&1" \
  || die "initdb failed (see $DIR/pg/initdb.log)"
as_postgres "$BIN/pg_ctl -D $DIR/pg/data -l $DIR/pg/server.log -w -o '-c listen_addresses=127.0.0.1 -p $PORT -k $DIR/pg -c fsync=off' start >/dev/null" \
  || die "PostgreSQL did not start (see $DIR/pg/server.log)"
on_exit "as_postgres '$BIN/pg_ctl -D $DIR/pg/data -m fast stop >/dev/null'"
log "PostgreSQL with scram-sha-256 on 127.0.0.1:$PORT (user postgres, a password)"
q() { PGPASSWORD="$PASSWORD" psql -X -qAt -w -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c "$1"; }
[ "$(q 'select 1')" = 1 ] || die "cannot connect to the test cluster with its password"
# The test's own environment must not leak into the runs below.
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE DATABASE_URL BOOKING_URL PAYMENT_URL
export ENV_FILE=/dev/null

# --- 1. no password: a clear refusal, at once -------------------------------------------
log "1. run.sh without PGPASSWORD"
t0=$(date +%s)
out="$(PGHOST=127.0.0.1 PGPORT="$PORT" BOOKING_PORT="$(free_port)" PAYMENT_PORT="$(free_port)" \
  timeout 60 bash scripts/run.sh 2>&1 </dev/null)"
rc=$?
[ "$rc" = 1 ] || failed "run.sh without a password exited with $rc, expected 1: $out"
grep -q "refused user postgres" <<<"$out" && grep -q "PGPASSWORD" <<<"$out" \
  || failed "run.sh without a password did not name PGPASSWORD: $out"
[ $(($(date +%s) - t0)) -le 10 ] || failed "run.sh took $(($(date +%s) - t0)) s to refuse"
check "no password: run.sh refuses at once and names PGPASSWORD"

# --- 2. the quick start, with the password, on non-default ports ---------------------------
log "2. the quick start with PGHOST/PGPORT/PGUSER/PGPASSWORD"
BOOKING_PORT="$(free_port)" PAYMENT_PORT="$(free_port)" PG_PORT="$PORT"
QUEUE_NAME="quickstart-$(date +%s)-$$.fifo"
system_ports_free || failed "ports taken"
system_start "$DIR/run.log" PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=postgres PGPASSWORD="$PASSWORD"
system_wait_up "${QUICKSTART_START_TIMEOUT:-600}"
if [ "$RESULT" = 0 ]; then
  [ "$(q "select count(*) from pg_database where datname in ('booking', 'payment')")" = 2 ] \
    || failed "the services did not create their databases booking and payment"
  # The demo gets the same settings as run.sh, and no URL: it must find the services by itself.
  BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" QUEUE_NAME="$QUEUE_NAME" \
    PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" DEMO_STRICT_OUTBOX=1 DEMO_TIMEOUT=30 DEMO_DRAIN_TIMEOUT=30 \
    timeout 120 bash scripts/demo.sh --pace < <(yes '') >"$DIR/demo.log" 2>&1
  rc=$?
  [ "$rc" = 0 ] || { failed "demo.sh --pace on ports $BOOKING_PORT/$PAYMENT_PORT exited with $rc:"; tail -n 20 "$DIR/demo.log" >&2; }
  grep -q "The story holds" "$DIR/demo.log" || failed "demo.sh did not end with 'The story holds'"
  grep -q "http://127.0.0.1:$BOOKING_PORT/swagger-ui/index.html" "$DIR/demo.log" \
    || failed "demo.sh --pace did not point at booking-service's Swagger UI on port $BOOKING_PORT"
  [ "$(grep -c "to go on" "$DIR/demo.log")" -ge 8 ] || failed "demo.sh --pace did not wait between the steps"
  BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" QUEUE_NAME="$QUEUE_NAME" \
    PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" bash scripts/queue.sh status >"$DIR/queue-status.log" 2>&1 \
    && grep -q "queue $QUEUE_NAME: exists, 0 message(s) waiting" "$DIR/queue-status.log" \
    || failed "scripts/queue.sh status: $(cat "$DIR/queue-status.log")"
fi
system_stop
grep -q "a service exited" "$DIR/run.log" && failed "a service exited on its own during the quick start (see $DIR/run.log)"
# --reset drops what run.sh made: both databases, the four queues.
PGHOST=127.0.0.1 PGPORT="$PORT" PGPASSWORD="$PASSWORD" BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" \
  QUEUE_NAME="$QUEUE_NAME" PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" \
  bash scripts/run.sh --reset >"$DIR/reset.log" 2>&1 || failed "run.sh --reset failed: $(cat "$DIR/reset.log")"
[ "$(q "select count(*) from pg_database where datname in ('booking', 'payment')")" = 0 ] \
  || failed "run.sh --reset left the databases booking/payment"
for name in "$QUEUE_NAME" "${QUEUE_NAME%.fifo}-dlq.fifo" "$PAYMENT_EVENTS_QUEUE_NAME" "${PAYMENT_EVENTS_QUEUE_NAME%.fifo}-dlq.fifo"; do
  queue_url "$name" >/dev/null && failed "run.sh --reset left the queue $name"
done
check "quick start with a password, demo.sh --pace on ports $BOOKING_PORT/$PAYMENT_PORT, run.sh --reset"

# --- 3. a service that cannot start: reported at once, with its error ---------------------
log "3. run.sh (DATABASE_URL base URL) with services that cannot start"
BOOKING_PORT="$(free_port)" PAYMENT_PORT="$(free_port)"
url="postgres://postgres:$(url_encode "$PASSWORD")@127.0.0.1:$PORT"
DATABASE_URL="$url" BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" QUEUE_NAME="$QUEUE_NAME" \
  PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" RELAY_BACKOFF_BASE=2s RELAY_BACKOFF_MAX=1s RUST_BACKTRACE=1 setsid bash scripts/run.sh >"$DIR/fail.log" 2>&1 </dev/null &
pid=$!
deadline=$(($(date +%s) + ${QUICKSTART_START_TIMEOUT:-600}))
until grep -q "starting booking-service" "$DIR/fail.log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null \
  || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
t0="${EPOCHREALTIME/./}"
# Reported when the message is out (stopping payment-service afterwards may take its long poll).
for _ in $(seq 1 300); do grep -q "exited during start-up" "$DIR/fail.log" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
took=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
for _ in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
  failed "run.sh still running 40 s after booking-service failed to start"; kill -TERM -- "-$pid" 2>/dev/null
fi
wait "$pid"; rc=$?
[ "$rc" = 1 ] || failed "run.sh exited with $rc, expected 1"
# Both services run a relay now, so either may be the first found dead.
grep -Eq "(booking|payment)-service exited during start-up" "$DIR/fail.log" || failed "run.sh did not say which service exited: $(tail -n 15 "$DIR/fail.log")"
sed -n '/exited during start-up/,$p' "$DIR/fail.log" | grep -q "RELAY_BACKOFF_BASE: " || failed "run.sh did not print the service's error line: $(tail -n 15 "$DIR/fail.log")"
[ "$took" -le 5000 ] || failed "run.sh took $took ms to report the failed start"
log "reported $took ms after the services started"
sleep 0.5
for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do port_open "$port" && failed "port $port still answers after run.sh stopped"; done
# Its queue and databases: removed for the next check.
DATABASE_URL="$url" QUEUE_NAME="$QUEUE_NAME" PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" \
  BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" bash scripts/run.sh --reset >/dev/null 2>&1
check "a service that cannot start is reported in $took ms, with its error"

# --- 4. test.sh's clean-up leaves other databases alone ---------------------------------
log "4. test databases: only this run's are dropped"
q "create database t_keep_me" && q "create database t_1_1_t_older_run"
PGHOST=127.0.0.1 PGPORT="$PORT" PGPASSWORD="$PASSWORD" bash -c '
  set -euo pipefail
  source scripts/lib.sh
  ensure_postgres 2>/dev/null
  test_databases_begin
  psql_admin -c "create database \"${TEST_DATABASE_PREFIX}t_0123456789abcdef\""
  echo "$TEST_DATABASE_PREFIX" >"$1"
  false   # a failing run: its databases are still dropped' _ "$DIR/prefix" >"$DIR/dbs.log" 2>&1
prefix="$(cat "$DIR/prefix" 2>/dev/null)"
[ -n "$prefix" ] || failed "the simulated test run did not start: $(cat "$DIR/dbs.log")"
[ "$(q "select string_agg(datname, ',' order by datname) from pg_database where datname like 't\_%'")" = "t_1_1_t_older_run,t_keep_me" ] \
  || failed "after a test run: $(q "select string_agg(datname, ',') from pg_database where datname like 't\_%'") (expected t_1_1_t_older_run,t_keep_me; log: $(cat "$DIR/dbs.log"))"
q "drop database t_keep_me" && q "drop database t_1_1_t_older_run"
check "a failed test run dropped its own database (prefix $prefix) and left t_keep_me alone"

log "took $(($(date +%s) - started)) s"
REPORTED=1
echo "quickstart: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
