#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail): the relay's drain rate and latency, and
# the consumer's payments/s, each next to the local SQS server's raw ceiling
# measured in the same run; then both services end to end, both directions
# (bookings/s until CONFIRMED, booked -> CONFIRMED latency, next to the one-way
# booked -> paid of the same run). Starts PostgreSQL and the SQS server when needed.
#
#   scripts/bench.sh          # all three
#   scripts/bench.sh saga     # only the end-to-end one (or: relay, consumer)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_postgres
ensure_sqs
export TEST_DATABASE_URL="$PG_SERVER_URL" RUST_LOG="${RUST_LOG:-warn}"
case "${1:-all}" in
  all | relay) cargo bench --locked -p booking-service --bench relay ;;&
  all | consumer) cargo bench --locked -p payment-service --bench consumer ;;&
  all | saga) cargo bench --locked -p booking-service --bench saga ;;
  relay | consumer) ;;
  *) die "usage: scripts/bench.sh [all|relay|consumer|saga]" ;;
esac
