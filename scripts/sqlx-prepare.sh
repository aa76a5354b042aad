#!/usr/bin/env bash
# Regenerates .sqlx/ (the compile-time query data that lets builds run without a
# database) after SQL changed: applies both migration sets to a scratch database
# and rebuilds the crates with queries online, writing their data to .sqlx/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_postgres
db="sqlx_prepare"
psql_admin -c "drop database if exists $db with (force)" -c "create database $db" >/dev/null
cat migrations/booking/*.sql migrations/payment/*.sql | psql -X -q -v ON_ERROR_STOP=1 "$PG_SERVER_URL/$db" >/dev/null
rm -rf .sqlx && mkdir .sqlx
cargo clean -p outbox -p booking-service -p payment-service
DATABASE_URL="$PG_SERVER_URL/$db" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$ROOT/.sqlx" \
  cargo build --workspace --all-targets --locked
psql_admin -c "drop database $db with (force)" >/dev/null
log "regenerated .sqlx/ ($(ls .sqlx | wc -l) queries)"
