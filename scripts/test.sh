#!/usr/bin/env bash
# Every check and test: formatting, lints, the Rust tests against a real
# PostgreSQL and a real SQS-compatible server, and the infrastructure checks.
# Works on a fresh machine: starts what it needs, stops what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_postgres
ensure_sqs
export TEST_DATABASE_URL="$PG_SERVER_URL"

# Databases of earlier test runs (each test makes its own).
psql_admin -At -c "select datname from pg_database where datname like 't\_%'" | while read -r db; do
  psql_admin -c "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
done

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$LOCAL_DIR/cargo-test.log"
bash scripts/story-test.sh
bash scripts/browser-test.sh
log "chaos suite (short): every fault, every booking paid exactly once"
bash scripts/chaos.sh --short

if [ -f infra/check.sh ]; then
  log "infrastructure checks (jest, cdk-nag, synth, cfn-lint)"
  bash infra/check.sh
fi
log "all checks passed"
