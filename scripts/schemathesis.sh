#!/usr/bin/env bash
# Schemathesis against both running services: every check (server errors, status
# codes, content types, response headers and schemas, valid requests rejected,
# invalid requests accepted, missing required headers, unsupported methods, auth
# ignored, ...) in every phase (examples, coverage, fuzzing, stateful), with a
# bounded number of examples per operation and deterministic generation, so a run
# is the same requests every time and takes a few minutes.
#
# Starts the whole system with scripts/run.sh in the background, on ports of its
# own, with a queue of its own and a throwaway PostgreSQL cluster of its own, and
# JSON logs; payment-service gets a random ADMIN_TOKEN, which Schemathesis sends
# for the operations that require it (scripts/schemathesis/schemathesis.toml).
# Installs Schemathesis (PyPI, pinned by scripts/schemathesis/requirements.txt)
# into .local/schemathesis-venv. Besides Schemathesis' own verdict, the services'
# access lines must show no 5xx answer and their logs no ERROR line.
# Reports: .local/schemathesis/{booking,payment}-service.{txt,xml}.
# Ends with "schemathesis: N passed, M failed" (one per service).
#
# Settings (environment): SCHEMATHESIS_BOOKING_PORT (38080),
# SCHEMATHESIS_PAYMENT_PORT (38081), SCHEMATHESIS_PG_PORT (a free port; 5432 uses
# the shared server instead), SCHEMATHESIS_MAX_EXAMPLES (100, per operation),
# SCHEMATHESIS_START_TIMEOUT (seconds for run.sh to be up, 600), SQS_PORT /
# AWS_ENDPOINT_URL_SQS (shared: run.sh reuses a server that answers).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

BOOKING_PORT="${SCHEMATHESIS_BOOKING_PORT:-38080}"
PAYMENT_PORT="${SCHEMATHESIS_PAYMENT_PORT:-38081}"
PG_PORT="${SCHEMATHESIS_PG_PORT:-$(free_port)}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
QUEUE_NAME="schemathesis-$(date +%s)-$$-$RANDOM.fifo"
RUN_LOG="$LOCAL_DIR/schemathesis-run.log"
REPORT_DIR="$LOCAL_DIR/schemathesis"
START_TIMEOUT="${SCHEMATHESIS_START_TIMEOUT:-600}"
CONFIG_DIR="$ROOT/scripts/schemathesis"
VENV="$LOCAL_DIR/schemathesis-venv"
PASSED=0 FAILED=0 REPORTED=0
# Interrupted (SIGTERM, Ctrl-C): still the closing line, after the clean-up below.
on_exit '[ "$REPORTED" = 1 ] || echo "schemathesis: $PASSED passed, $((FAILED + 1)) failed (interrupted)"'
failed() { printf '\033[1;31mschemathesis failed:\033[0m %s\n' "$*" >&2; RESULT=1; }
RESULT=0
started=$(date +%s)

ensure_venv "$VENV" "$CONFIG_DIR/requirements.txt"
mkdir -p "$REPORT_DIR"
ADMIN_TOKEN="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export ADMIN_TOKEN

system_ports_free || { echo "schemathesis: 0 passed, 2 failed"; exit 1; }
system_start "$RUN_LOG" LOG_FORMAT=json ADMIN_TOKEN="$ADMIN_TOKEN"
system_wait_up "$START_TIMEOUT"

# run_service NAME PORT: Schemathesis against one service; its verdict, its
# figures, and the service's own log checked for 5xx answers and ERROR lines.
run_service() {
  local name="$1" port="$2" out="$REPORT_DIR/$1.txt" rc=0 t0 figures log
  t0=$(date +%s)
  log "schemathesis: $name (report $out)"
  # In the background and waited for, so that a SIGTERM to this script is handled at once.
  # From the report directory: Schemathesis and Hypothesis keep their caches in the working directory.
  (cd "$REPORT_DIR" && PYTHONPATH="$CONFIG_DIR" SCHEMATHESIS_HOOKS=hooks exec "$VENV/bin/schemathesis" \
    --config-file "$CONFIG_DIR/schemathesis.toml" --no-color run \
    "http://127.0.0.1:$port/api-docs/openapi.json" \
    --checks all --max-examples "$MAX_EXAMPLES" \
    --report junit --report-junit-path "$REPORT_DIR/$name.xml") >"$out" 2>&1 &
  ST_PID=$!
  wait "$ST_PID" || rc=$?
  ST_PID=
  figures="$(grep -A1 '^Test cases:' "$out" | tail -n 1 | sed 's/^ *//')"
  printf '    %s: %s, %s s (exit %s)\n' "$name" "${figures:-no test cases}" "$(($(date +%s) - t0))" "$rc" >&2
  log="$LOCAL_DIR/$name-$port.log"
  local errors=0
  if [ -f "$log" ]; then
    # Access lines with a 5xx status, and ERROR lines, while Schemathesis ran.
    errors=$(python3 - "$log" <<'PY'
import json, sys
bad = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    status = entry.get("status")
    if entry.get("level") == "ERROR" or (entry.get("message") == "request completed" and isinstance(status, int) and status >= 500):
        bad += 1
        print(line.rstrip()[:400], file=sys.stderr)
print(bad)
PY
)
  else
    failed "$name: no log at $log"
    errors=1
  fi
  if [ "$rc" = 0 ] && [ "$errors" = 0 ]; then
    PASSED=$((PASSED + 1))
  else
    [ "$rc" = 0 ] || { failed "$name: Schemathesis found failures (exit $rc); the end of $out:"; sed -n '/FAILURES/,$p' "$out" | head -n 80 >&2; }
    [ "$errors" = 0 ] || failed "$name: $errors 5xx answer(s) or ERROR line(s) in $log (above)"
    FAILED=$((FAILED + 1))
  fi
}
on_exit '[ -n "${ST_PID:-}" ] && kill -0 "$ST_PID" 2>/dev/null && kill -TERM "$ST_PID" && wait "$ST_PID"'

if [ "$RESULT" = 0 ]; then
  log "up after $(($(date +%s) - started)) s"
  run_service booking-service "$BOOKING_PORT"
  run_service payment-service "$PAYMENT_PORT"
else
  FAILED=2
fi

system_stop
log "took $(($(date +%s) - started)) s"
REPORTED=1
echo "schemathesis: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] && [ "$RESULT" = 0 ]
