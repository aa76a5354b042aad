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
