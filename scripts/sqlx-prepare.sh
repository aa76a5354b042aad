#!/usr/bin/env bash
# Regenerates the compile-time query data that lets builds run without a
# database, after SQL changed: applies every migration set to a scratch database
# and rebuilds the crates with queries online. The outbox crate keeps its own
# data in crates/outbox/.sqlx (it must build outside this workspace); the
# services' goes to .sqlx/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_postgres
db="sqlx_prepare"
psql_admin -c "drop database if exists $db with (force)" -c "create database $db" >/dev/null
{ echo "create schema outbox;"; cat crates/outbox/migrations/*.sql migrations/booking/*.sql migrations/payment/*.sql; } |
  psql -X -q -v ON_ERROR_STOP=1 "$PG_SERVER_URL/$db" >/dev/null
rm -rf .sqlx crates/outbox/.sqlx && mkdir .sqlx crates/outbox/.sqlx
cargo clean -p outbox -p booking-service -p payment-service
DATABASE_URL="$PG_SERVER_URL/$db" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$ROOT/crates/outbox/.sqlx" \
  cargo build -p outbox --all-targets --all-features --locked
DATABASE_URL="$PG_SERVER_URL/$db" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$ROOT/.sqlx" \
  cargo build --workspace --all-targets --locked
# The second build may compile the outbox crate again (features unify
# differently across the workspace): its queries belong to its own directory only.
for f in crates/outbox/.sqlx/*; do rm -f ".sqlx/$(basename "$f")"; done
psql_admin -c "drop database $db with (force)" >/dev/null
log "regenerated .sqlx/ ($(ls .sqlx | wc -l) queries) and crates/outbox/.sqlx/ ($(ls crates/outbox/.sqlx | wc -l) queries)"
