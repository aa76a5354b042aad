# Shared by run.sh, demo.sh, queue.sh, test.sh, bench.sh and the test scripts:
# the platform check, the local settings, find or start PostgreSQL and the local
# SQS server, and stop on exit only what we started. Source it; do not run it.

# Requirements that every script shares, checked before anything else (this part
# must stay readable by an old bash: macOS ships 3.2).
if [ "$(uname -s 2>/dev/null)" != Linux ]; then
  echo "error: these scripts need Linux (found $(uname -s 2>/dev/null)); on macOS or Windows, use a Linux VM or container (see the README's Requirements)" >&2
  exit 1
fi
if [ -z "${BASH_VERSINFO:-}" ] || [ "${BASH_VERSINFO[0]}" -lt 5 ]; then
  echo "error: these scripts need bash 5 or newer (this is bash ${BASH_VERSION:-?})" >&2
  exit 1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${LOCAL_DIR:-$ROOT/.local}"
mkdir -p "$LOCAL_DIR"

# The PostgreSQL server: PG_HOST / PG_PORT when a script sets them, else the
# standard libpq variables PGHOST / PGPORT, else 127.0.0.1:5432. PGUSER (default
# postgres) and PGPASSWORD are used when it is already running (see ensure_postgres).
_ENV_GIVEN=" $(compgen -e | tr '\n' ' ') "  # what the caller's environment set (load_settings)
PG_HOST="${PG_HOST:-${PGHOST:-127.0.0.1}}"
PG_PORT="${PG_PORT:-${PGPORT:-5432}}"
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

# --- Requirements ---------------------------------------------------------------
# require COMMAND PACKAGE WHY: stops with the Debian/Ubuntu package to install
# when COMMAND is missing.
require() {
  command -v "$1" >/dev/null 2>&1 \
    || die "$3 needs \`$1\`: install the package $2 (Debian/Ubuntu: sudo apt-get install $2)"
}

# install_package PACKAGE WHY: installs a Debian package when we are root and
# have apt-get; otherwise stops, naming the package, before anything has started.
install_package() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $1 (Debian package; $2)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null; } \
      || die "$1 is not installed and could not be installed with apt-get ($2)"
  else
    die "$2: install the package $1 (Debian/Ubuntu: sudo apt-get install $1), then run this again"
  fi
}

# The tools every script uses: GNU coreutils/sed/grep, curl, Python 3.
require_basics() {
  require curl curl "the scripts"
  require python3 python3 "the scripts (JSON handling)"
  sed --version 2>/dev/null | grep -q GNU || die "the scripts need GNU sed (and GNU coreutils, grep): install sed coreutils grep"
  date -d @0 +%s >/dev/null 2>&1 || die "the scripts need GNU date (coreutils)"
}

# Rust (cargo), for the scripts that build the services.
require_rust() {
  command -v cargo >/dev/null 2>&1 \
    || die "building the services needs Rust (cargo): install rustup from https://rustup.rs; rust-toolchain.toml pins Rust 1.95.0, which rustup fetches on first use"
}

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$dir" ] && echo "$dir"
}

# url_encode TEXT: percent-encodes TEXT for the user or password part of a URL.
url_encode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# pg_from_url URL: takes the server from a DATABASE_URL-style URL
# (postgres://USER:PASSWORD@HOST:PORT, a database name in it is ignored): sets
# PG_HOST, PG_PORT, PGUSER, PGPASSWORD.
pg_from_url() {
  local parts
  parts="$(python3 -c '
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
if u.scheme not in ("postgres", "postgresql") or not u.hostname:
    sys.exit(1)
print("\x1f".join([u.hostname, str(u.port or 5432), urllib.parse.unquote(u.username or ""), urllib.parse.unquote(u.password or "")]))' "$1")" \
    || die "DATABASE_URL is not a postgres://USER:PASSWORD@HOST:PORT URL"
  IFS=$'\x1f' read -r PG_HOST PG_PORT PGUSER PGPASSWORD <<<"$parts"
  [ -n "$PGUSER" ] || unset PGUSER
  if [ -n "$PGPASSWORD" ]; then export PGPASSWORD; else unset PGPASSWORD; fi
  [ -z "${PGUSER:-}" ] || export PGUSER
}

# Uses the PostgreSQL answering on PG_HOST:PG_PORT (as PGUSER, default postgres,
# with PGPASSWORD when set; checked here, so a refused password stops us before
# anything starts), or starts a throwaway cluster there (stopped on exit).
# Exports PG_SERVER_URL (no database name, no password: PGPASSWORD stays in the
# environment, where psql and the services' drivers read it); `pg_url DATABASE`
# prints a URL with the password, for a service's DATABASE_URL.
ensure_postgres() {
  case "$PG_HOST" in
    /*) die "PGHOST=$PG_HOST is a socket directory; the services connect over TCP: set PGHOST to a host name or 127.0.0.1" ;;
  esac
  if ! command -v psql >/dev/null 2>&1 && [ -z "$(pg_bin)" ]; then
    install_package postgresql "PostgreSQL (its client, and its server when none runs) is not installed"
  fi
  local bin; bin="$(pg_bin)"
  PSQL="$(command -v psql || echo "$bin/psql")"
  PG_ISREADY="$(command -v pg_isready || echo "$bin/pg_isready")"
  if "$PG_ISREADY" -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    log "PostgreSQL answers on $PG_HOST:$PG_PORT"
    PG_USER="${PGUSER:-postgres}"
    export PG_SERVER_URL="postgres://$(url_encode "$PG_USER")@$PG_HOST:$PG_PORT"
    local answer
    if ! answer="$(psql_admin -At -c "select rolcreatedb or rolsuper from pg_roles where rolname = current_user" 2>&1)"; then
      case "$answer" in
        *password*|*authentication*)
          die "PostgreSQL on $PG_HOST:$PG_PORT refused user $PG_USER: $(printf '%s' "$answer" | tail -n 1)
       Set the standard libpq variables (PGUSER, PGPASSWORD; PGHOST, PGPORT) or
       DATABASE_URL=postgres://USER:PASSWORD@HOST:PORT, e.g.  PGPASSWORD=... scripts/run.sh" ;;
        *) die "cannot use PostgreSQL on $PG_HOST:$PG_PORT as $PG_USER: $answer" ;;
      esac
    fi
    [ "$answer" = t ] || log "warning: role $PG_USER may not create databases (the services create their own); grant CREATEDB or create them first"
  else
    case "$PG_HOST" in
      127.0.0.1|localhost|::1) ;;
      *) die "no PostgreSQL answers on $PG_HOST:$PG_PORT (set PGHOST/PGPORT, or unset them to use 127.0.0.1:5432)" ;;
    esac
    if [ ! -x "$bin/initdb" ]; then
      install_package postgresql "no PostgreSQL answers on $PG_HOST:$PG_PORT and its server binaries (initdb) are not installed"
      bin="$(pg_bin)"
    fi
    PG_TMP_DIR="$(mktemp -d /tmp/outbox-pg.XXXXXX)"; PG_BIN="$bin"
    log "no PostgreSQL on $PG_HOST:$PG_PORT: starting a throwaway cluster in $PG_TMP_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_TMP_DIR"
    as_postgres "$bin/initdb -D $PG_TMP_DIR/data -A trust -U postgres -E UTF8 --no-sync >$PG_TMP_DIR/initdb.log 2>&1" \
      || die "initdb failed (see $PG_TMP_DIR/initdb.log)"
    PG_OPTIONS="-c listen_addresses=$PG_HOST -p $PG_PORT -k $PG_TMP_DIR -c fsync=off -c max_connections=300"
    as_postgres "$bin/pg_ctl -D $PG_TMP_DIR/data -l $PG_TMP_DIR/server.log -w -o '$PG_OPTIONS' start >/dev/null" \
      || die "PostgreSQL did not start (see $PG_TMP_DIR/server.log)"
    on_exit stop_postgres
    # Our own cluster: its superuser, no password (trust).
    PG_USER=postgres
    unset PGPASSWORD
    export PG_SERVER_URL="postgres://postgres@$PG_HOST:$PG_PORT"
  fi
}

# pg_url [DATABASE]: the server's URL with the password (when there is one) and
# DATABASE; for the services' DATABASE_URL (environment, never a command line).
pg_url() {
  local auth; auth="$(url_encode "$PG_USER")"
  [ -n "${PGPASSWORD:-}" ] && auth="$auth:$(url_encode "$PGPASSWORD")"
  echo "postgres://$auth@$PG_HOST:$PG_PORT${1:+/$1}"
}

# initdb refuses to run as root.
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }

stop_postgres() {
  as_postgres "$PG_BIN/pg_ctl -D $PG_TMP_DIR/data -m fast stop >/dev/null" || true
  rm -rf "$PG_TMP_DIR"
}

# -w: never prompt for a password (a refused one is an error, not a hang).
psql_admin() { "${PSQL:-psql}" -X -q -w -v ON_ERROR_STOP=1 "$PG_SERVER_URL/postgres" "$@"; }

# --- Databases of one test run ----------------------------------------------------
# test_databases_begin: gives this run a unique database-name prefix,
# TEST_DATABASE_PREFIX (the Rust tests put it in front of every database they
# create, service_kit::testing::new_database_url), and drops the databases with
# that prefix on exit, failed or not. Nothing else on the server is touched.
test_databases_begin() {
  export TEST_DATABASE_PREFIX="t_$(date +%s)_$$_"
  on_exit test_databases_drop
}

test_databases_drop() {
  [ -n "${TEST_DATABASE_PREFIX:-}" ] || return 0
  local db n=0
  while read -r db; do
    [ -n "$db" ] || continue
    psql_admin -c "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 && n=$((n + 1))
  done < <(psql_admin -At -c "select datname from pg_database
    where left(datname, length('$TEST_DATABASE_PREFIX')) = '$TEST_DATABASE_PREFIX'" 2>/dev/null)
  log "dropped this run's $n test database(s) (prefix $TEST_DATABASE_PREFIX)"
}

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
  # Not installed for you: Debian 12's and Ubuntu 24.04's nodejs packages are older than 20.
  command -v node >/dev/null 2>&1 \
    || die "the local SQS server (fauxqs) needs Node.js 20 or newer: install it (Debian 13: sudo apt-get install nodejs npm; elsewhere https://nodejs.org), or set AWS_ENDPOINT_URL_SQS to a running SQS-compatible server"
  local major; major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || die "the local SQS server (fauxqs) needs Node.js 20 or newer (found $(node --version))"
  require npm npm "installing the local SQS server"
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

# --- The local queue, blocked and unblocked by hand (queue.sh) and by demo.sh -----
# No local SQS server enforces a queue policy, so "blocked" is made real by
# deleting the queue (sends fail with QueueDoesNotExist) and "unblocked" by
# re-creating it with its DLQ and redrive policy (the services re-resolve the name).

# queue_url NAME: prints the queue's URL; fails when it does not exist.
queue_url() { sqs_call GetQueueUrl "{\"QueueName\":\"$1\"}" | json_field QueueUrl; }

# queue_depth URL: prints "visible in-flight" message counts.
queue_depth() {
  sqs_call GetQueueAttributes "{\"QueueUrl\":\"$1\",\"AttributeNames\":[\"ApproximateNumberOfMessages\",\"ApproximateNumberOfMessagesNotVisible\"]}" \
    | python3 -c '
import json, sys
a = json.load(sys.stdin)["Attributes"]
print(a.get("ApproximateNumberOfMessages", "0"), a.get("ApproximateNumberOfMessagesNotVisible", "0"))' 2>/dev/null
}

# queue_block NAME: deletes the queue (its DLQ stays). Fails when it is absent.
queue_block() {
  local url; url="$(queue_url "$1")" || return 1
  sqs_call DeleteQueue "{\"QueueUrl\":\"$url\"}" >/dev/null || return 1
  ! queue_url "$1" >/dev/null
}

# queue_unblock NAME DLQ: re-creates the queue and its DLQ with the redrive
# policy run.sh uses (5 receives); prints the queue URL.
queue_unblock() { create_queues "$1" "$2" 5; }

# --- The operator token (ADMIN_TOKEN) ------------------------------------------------
# The listings of all bookings and payments and the DLQ redrive need it. run.sh
# generates one when ADMIN_TOKEN is not set, prints it and keeps it in
# ADMIN_TOKEN_FILE while it runs, so demo.sh in another terminal finds it.
ADMIN_TOKEN_FILE="$LOCAL_DIR/admin-token"

new_admin_token() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# operator_token: ADMIN_TOKEN, else the token of the running run.sh (may be empty).
operator_token() {
  if [ -n "${ADMIN_TOKEN:-}" ]; then echo "$ADMIN_TOKEN"; else cat "$ADMIN_TOKEN_FILE" 2>/dev/null || true; fi
}

# delete_queue NAME: deletes the queue when it exists; says what it did.
delete_queue() {
  local url
  if url="$(queue_url "$1")"; then
    sqs_call DeleteQueue "{\"QueueUrl\":\"$url\"}" >/dev/null && log "queue $1: deleted"
  else
    log "queue $1: not there"
  fi
}

# --- Local settings, shared by run.sh, demo.sh, queue.sh ---------------------------
# load_settings: the settings of the local system, defined once. The environment
# wins; then ENV_FILE (default .env at the repository root, see .env.example);
# then the defaults below.
load_settings() {
  local env_file="${ENV_FILE:-$ROOT/.env}" key value line
  if [ -f "$env_file" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
      key="${BASH_REMATCH[2]}" value="${BASH_REMATCH[3]}"
      value="${value%%[[:space:]]#*}"                       # a comment after the value
      value="${value%"${value##*[![:space:]]}"}"           # trailing blanks
      value="${value%\"}"; value="${value#\"}"
      [[ "$_ENV_GIVEN" == *" $key "* ]] || export "$key=$value"
    done <"$env_file"
    # lib.sh derived these before the file was read.
    [[ "$_ENV_GIVEN" == *" PG_HOST "* ]] || PG_HOST="${PGHOST:-127.0.0.1}"
    [[ "$_ENV_GIVEN" == *" PG_PORT "* ]] || PG_PORT="${PGPORT:-5432}"
  fi
  BOOKING_PORT="${BOOKING_PORT:-8080}"
  PAYMENT_PORT="${PAYMENT_PORT:-8081}"
  BOOKING_URL="${BOOKING_URL:-http://127.0.0.1:$BOOKING_PORT}"; BOOKING_URL="${BOOKING_URL%/}"
  PAYMENT_URL="${PAYMENT_URL:-http://127.0.0.1:$PAYMENT_PORT}"; PAYMENT_URL="${PAYMENT_URL%/}"
  QUEUE_NAME="${QUEUE_NAME:-bookings.fifo}"
  DLQ_NAME="${DLQ_NAME:-${QUEUE_NAME%.fifo}-dlq.fifo}"
  # The way back: payment-service's events to booking-service (the services'
  # own setting of the same name).
  PAYMENT_EVENTS_QUEUE_NAME="${PAYMENT_EVENTS_QUEUE_NAME:-payment-events.fifo}"
  PAYMENT_EVENTS_DLQ_NAME="${PAYMENT_EVENTS_DLQ_NAME:-${PAYMENT_EVENTS_QUEUE_NAME%.fifo}-dlq.fifo}"
  BOOKING_DB="${BOOKING_DB:-booking}"
  PAYMENT_DB="${PAYMENT_DB:-payment}"
}

# --- Python tools in virtual environments -------------------------------------------
# ensure_venv DIR REQUIREMENTS: a virtual environment in DIR with exactly the pinned
# packages of REQUIREMENTS (PyPI), made again whenever that file changes (the way
# infra/check.sh keeps its checkov venv). Prints nothing; DIR/bin/... is then ready.
ensure_venv() {
  local dir="$1" requirements="$2"
  if [ -x "$dir/bin/python" ] && cmp -s "$requirements" "$dir/requirements.installed"; then
    return 0
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null \
    || install_package python3-venv "Python virtual environments (python3 -m venv) are not available"
  log "installing $(basename "$dir") (pip, pinned by ${requirements#"$ROOT"/})"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  python3 -m venv "$dir" || die "python3 -m venv $dir failed"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" \
    || die "pip install -r $requirements failed"
  cp "$requirements" "$dir/requirements.installed"
}

# --- The whole system in the background (story and browser tests) -------------
# Callers set BOOKING_PORT, PAYMENT_PORT, PG_PORT, QUEUE_NAME (the payment events
# queue is named after it) and define `failed MESSAGE`; `system_start LOG
# [VAR=VALUE...]` starts scripts/run.sh with them (plus the VAR=VALUE settings),
# `system_wait_up SECONDS` waits for it, and on exit it is stopped
# (`system_stop`: nothing of it may be left running) and its queues are deleted.

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
  # One token for the system and the test's own requests (demo.sh), so no test
  # depends on the token file of a run.sh somebody else started.
  export ADMIN_TOKEN="${ADMIN_TOKEN:-$(new_admin_token)}"
  # A PostgreSQL already there is used (and left running); otherwise run.sh starts one.
  SYSTEM_PORTS=("$BOOKING_PORT" "$PAYMENT_PORT")
  port_open "$PG_PORT" || SYSTEM_PORTS+=("$PG_PORT")
  PAYMENT_EVENTS_QUEUE_NAME="${QUEUE_NAME%.fifo}-payment-events.fifo"
  SYSTEM_QUEUES=("$QUEUE_NAME" "${QUEUE_NAME%.fifo}-dlq.fifo" "$PAYMENT_EVENTS_QUEUE_NAME" "${PAYMENT_EVENTS_QUEUE_NAME%.fifo}-dlq.fifo")
  on_exit system_delete_queues
  log "starting scripts/run.sh: booking :$BOOKING_PORT, payment :$PAYMENT_PORT, PostgreSQL :$PG_PORT, queues $QUEUE_NAME and $PAYMENT_EVENTS_QUEUE_NAME (log $SYSTEM_LOG)"
  # setsid: run.sh leads a process group of its own, so whatever it leaves behind can be found.
  # ENV_FILE=/dev/null: a developer's .env does not change a test's system.
  env ENV_FILE=/dev/null BOOKING_PORT="$BOOKING_PORT" PAYMENT_PORT="$PAYMENT_PORT" PG_HOST=127.0.0.1 PG_PORT="$PG_PORT" \
    QUEUE_NAME="$QUEUE_NAME" PAYMENT_EVENTS_QUEUE_NAME="$PAYMENT_EVENTS_QUEUE_NAME" "$@" \
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

require_basics
