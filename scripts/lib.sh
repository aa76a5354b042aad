# Shared by run.sh, test.sh and bench.sh: find or start PostgreSQL and the local
# SQS server, and stop on exit only what we started. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${LOCAL_DIR:-$ROOT/.local}"
mkdir -p "$LOCAL_DIR"

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
SQS_PORT="${SQS_PORT:-9324}"

_cleanups=()
on_exit() { _cleanups+=("$1"); }
_run_cleanups() {
  local i
  for ((i=${#_cleanups[@]}-1; i>=0; i--)); do eval "${_cleanups[$i]}" || true; done
}
trap _run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$dir" ] && echo "$dir"
}

# Uses the PostgreSQL answering on PG_HOST:PG_PORT, or starts a throwaway
# cluster there (stopped on exit). Exports PG_SERVER_URL (no database name).
ensure_postgres() {
  if ! command -v pg_isready >/dev/null 2>&1 && [ -z "$(pg_bin)" ]; then
    log "installing PostgreSQL (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
      || die "PostgreSQL is not installed and could not be installed"
  fi
  local bin; bin="$(pg_bin)"
  if "${bin:+$bin/}pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    log "PostgreSQL answers on $PG_HOST:$PG_PORT"
  else
    PG_TMP_DIR="$(mktemp -d /tmp/outbox-pg.XXXXXX)"; PG_BIN="$bin"
    log "no PostgreSQL on $PG_HOST:$PG_PORT: starting a throwaway cluster in $PG_TMP_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_TMP_DIR"
    as_postgres "$bin/initdb -D $PG_TMP_DIR/data -A trust -U postgres -E UTF8 --no-sync >$PG_TMP_DIR/initdb.log 2>&1" \
      || die "initdb failed (see $PG_TMP_DIR/initdb.log)"
    PG_OPTIONS="-c listen_addresses=$PG_HOST -p $PG_PORT -k $PG_TMP_DIR -c fsync=off -c max_connections=300"
    as_postgres "$bin/pg_ctl -D $PG_TMP_DIR/data -l $PG_TMP_DIR/server.log -w -o '$PG_OPTIONS' start >/dev/null" \
      || die "PostgreSQL did not start (see $PG_TMP_DIR/server.log)"
    on_exit stop_postgres
  fi
  export PG_SERVER_URL="postgres://postgres@$PG_HOST:$PG_PORT"
}

# initdb refuses to run as root.
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }

stop_postgres() {
  as_postgres "$PG_BIN/pg_ctl -D $PG_TMP_DIR/data -m fast stop >/dev/null" || true
  rm -rf "$PG_TMP_DIR"
}

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_SERVER_URL/postgres" "$@"; }

# Uses the SQS-compatible server on 127.0.0.1:SQS_PORT, or installs (from the
# committed lockfile) and starts one (stopped on exit). Exports the standard AWS
# variables that point the SDK at it.
ensure_sqs() {
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
  export AWS_EC2_METADATA_DISABLED=true
  if [ -n "${AWS_ENDPOINT_URL_SQS:-}" ]; then
    # Another SQS-compatible server (LocalStack, say), chosen by the user.
    sqs_answers || die "nothing answers at AWS_ENDPOINT_URL_SQS=$AWS_ENDPOINT_URL_SQS"
    log "using the SQS server at $AWS_ENDPOINT_URL_SQS"
    return
  fi
  export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$SQS_PORT"
  if sqs_answers; then
    log "SQS server answers on $AWS_ENDPOINT_URL_SQS"
    return
  fi
  start_sqs
  on_exit "stop_sqs"
}

# One SQS JSON-protocol call: sqs_call Action '{"json":"body"}'. Prints the answer.
sqs_call() {
  curl -s -m 10 -X POST -H 'Content-Type: application/x-amz-json-1.0' -H "X-Amz-Target: AmazonSQS.$1" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0' \
    -d "$2" "${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}/"
}

sqs_answers() { sqs_call ListQueues '{}' >/dev/null 2>&1; }

# Creates (idempotently) the FIFO queue QUEUE and its FIFO DLQ with a redrive
# policy after MAX_RECEIVES (5) receives, visibility timeout VISIBILITY (30) s;
# prints the queue URL.
create_queues() {
  local queue="$1" dlq="$2" max_receives="${3:-5}" visibility="${4:-30}"
  local dlq_url dlq_arn queue_url
  dlq_url="$(sqs_call CreateQueue "{\"QueueName\":\"$dlq\",\"Attributes\":{\"FifoQueue\":\"true\"}}" | json_field QueueUrl)" \
    || die "could not create the DLQ $dlq"
  dlq_arn="$(sqs_call GetQueueAttributes "{\"QueueUrl\":\"$dlq_url\",\"AttributeNames\":[\"QueueArn\"]}" | json_field Attributes.QueueArn)" \
    || die "could not read the DLQ's ARN"
  local redrive="{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":$max_receives}"
  queue_url="$(sqs_call CreateQueue "{\"QueueName\":\"$queue\",\"Attributes\":{\"FifoQueue\":\"true\",\"VisibilityTimeout\":\"$visibility\",\"RedrivePolicy\":\"$redrive\"}}" | json_field QueueUrl)" \
    || die "could not create the queue $queue"
  echo "$queue_url"
}

# Reads a dotted field from JSON on stdin; fails when absent.
json_field() {
  python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value[part]
print(value)' "$1" 2>/dev/null
}

start_sqs() {
  local dir="$ROOT/scripts/sqs-server"
  command -v node >/dev/null || die "Node.js is required for the local SQS server (fauxqs)"
  if [ ! -d "$dir/node_modules/fauxqs" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "installing the local SQS server (npm ci, pinned by scripts/sqs-server/package-lock.json)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed in $dir"
  fi
  log "starting the local SQS server (fauxqs) on 127.0.0.1:$SQS_PORT"
  SQS_PORT="$SQS_PORT" node "$dir/server.mjs" >"$LOCAL_DIR/sqs.log" 2>&1 &
  SQS_PID=$!
  local i
  for i in $(seq 1 100); do
    sqs_answers && return 0
    kill -0 "$SQS_PID" 2>/dev/null || die "the SQS server exited (see $LOCAL_DIR/sqs.log)"
    sleep 0.1
  done
  die "the SQS server did not answer on port $SQS_PORT (see $LOCAL_DIR/sqs.log)"
}

stop_sqs() {
  if [ -n "${SQS_PID:-}" ] && kill -0 "$SQS_PID" 2>/dev/null; then
    kill "$SQS_PID" 2>/dev/null; wait "$SQS_PID" 2>/dev/null
  fi
  SQS_PID=
}

# --- The whole system in the background (story and browser tests) -------------
# Callers set BOOKING_PORT, PAYMENT_PORT, PG_PORT, QUEUE_NAME and define
# `failed MESSAGE`; `system_start LOG [VAR=VALUE...]` starts scripts/run.sh with
# them (plus the VAR=VALUE settings), `system_wait_up SECONDS` waits for it, and
# on exit it is stopped (`system_stop`: nothing of it may be left running) and
# its queues are deleted.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fails (returns 1) when a service port is taken.
system_ports_free() {
  local port
  for port in "$BOOKING_PORT" "$PAYMENT_PORT"; do
    if port_open "$port"; then
      printf '\033[1;31merror:\033[0m port %s is taken (another test run?); choose others (see the settings at the top of %s)\n' "$port" "$0" >&2
      return 1
    fi
  done
}

system_start() {
  SYSTEM_LOG="$1"; shift
  # A PostgreSQL already there is used (and left running); otherwise run.sh starts one.
  SYSTEM_PORTS=("$BOOKING_PORT" "$PAYMENT_PORT")
  port_open "$PG_PORT" || SYSTEM_PORTS+=("$PG_PORT")
  SYSTEM_QUEUES=("$QUEUE_NAME" "${QUEUE_NAME%.fifo}-dlq.fifo")
  on_exit system_delete_queues
  log "starting scripts/run.sh: booking :$BOOKING_PORT, payment :$PAYMENT_PORT, PostgreSQL :$PG_PORT, queue $QUEUE_NAME (log $SYSTEM_LOG)"
  # setsid: run.sh leads a process group of its own, so whatever it leaves behind can be found.
  env BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" PG_PORT="$PG_PORT" QUEUE_NAME="$QUEUE_NAME" "$@" \
    setsid bash "$ROOT/scripts/run.sh" >"$SYSTEM_LOG" 2>&1 </dev/null &
  SYSTEM_PID=$!
  on_exit system_stop
}

system_wait_up() {
  local deadline=$(($(date +%s) + $1))
  until grep -q "The outbox system is up." "$SYSTEM_LOG" 2>/dev/null; do
    if ! kill -0 "$SYSTEM_PID" 2>/dev/null; then
      failed "scripts/run.sh exited before the system was up; the end of $SYSTEM_LOG:"
      tail -n 30 "$SYSTEM_LOG" >&2
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      failed "the system was not up after $1 s; the end of $SYSTEM_LOG:"
      tail -n 30 "$SYSTEM_LOG" >&2
      return 1
    fi
    sleep 0.2
  done
}

system_stop() {
  [ -n "${SYSTEM_PID:-}" ] || return 0
  local pid="$SYSTEM_PID" left="" port
  SYSTEM_PID=
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping scripts/run.sh (SIGTERM to $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
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
  for port in "${SYSTEM_PORTS[@]}"; do
    if port_open "$port"; then failed "port $port still answers after run.sh stopped"; fi
  done
}

system_delete_queues() {
  local name url
  for name in "${SYSTEM_QUEUES[@]}"; do
    url="$(sqs_call GetQueueUrl "{\"QueueName\":\"$name\"}" | json_field QueueUrl)" \
      && sqs_call DeleteQueue "{\"QueueUrl\":\"$url\"}" >/dev/null
  done
  return 0
}
