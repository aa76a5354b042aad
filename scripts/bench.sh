#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail): the relay's drain rate and latency, and
# the consumer's payments/s, each next to the local SQS server's raw ceiling
# measured in the same run. Starts PostgreSQL and the SQS server when needed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_postgres
ensure_sqs
export TEST_DATABASE_URL="$PG_SERVER_URL" RUST_LOG="${RUST_LOG:-warn}"
cargo bench --locked -p booking-service --bench relay
cargo bench --locked -p payment-service --bench consumer
