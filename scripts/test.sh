#!/usr/bin/env bash
# Every check and test: formatting, lints, the Rust tests against a real
# PostgreSQL and a real SQS-compatible server, and the infrastructure checks.
# Works on a fresh machine: starts what it needs, stops what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

require_rust
ensure_postgres
ensure_sqs
# The server of PGHOST/PGPORT/PGUSER/PGPASSWORD (default 127.0.0.1:5432 as postgres).
export TEST_DATABASE_URL="$(pg_url)"

# Each test makes its own database, named with this run's prefix; on exit (passed,
# failed or interrupted) exactly those are dropped. Nothing else on the server is
# touched (scripts/quickstart-test.sh checks it).
test_databases_begin

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$LOCAL_DIR/cargo-test.log"
log "outbox crate on its own: docs without warnings, no workspace dependency, the example runs"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p outbox --all-features --locked --quiet
if cargo tree -p outbox -e normal --prefix none --locked | grep -E '^(service-kit|contracts|booking-service|payment-service) '; then
  die "the outbox crate depends on a crate of this workspace"
fi
cargo build -p outbox --no-default-features --locked --quiet
example_db="${TEST_DATABASE_PREFIX}example"
psql_admin -c "create database \"$example_db\"" >/dev/null
DATABASE_URL="$(pg_url)/$example_db" cargo run -q -p outbox --example minimal --locked | tee "$LOCAL_DIR/example.log"
grep -q "consumed 1 time(s)" "$LOCAL_DIR/example.log" || die "the outbox example did not consume its event exactly once"
bash scripts/story-test.sh
bash scripts/quickstart-test.sh
bash scripts/browser-test.sh
bash scripts/schemathesis.sh
bash scripts/compose-test.sh
log "chaos suite (short): every fault, every booking paid exactly once"
bash scripts/chaos.sh --short

if [ -f infra/check.sh ]; then
  log "infrastructure checks (jest, cdk-nag, synth, cfn-lint)"
  bash infra/check.sh
fi
log "all checks passed"
