#!/usr/bin/env bash
# docker/compose.yaml end to end, when a Docker engine answers: up (building the
# images), book a flight through booking-service, see payment-service pay it and
# the booking CONFIRMED, down. Without an engine it says so and succeeds: nothing to test here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  log "compose test skipped: no Docker engine answers (docker info failed)"
  exit 0
fi
compose() { docker compose -f docker/compose.yaml "$@"; }
on_exit 'compose down --volumes --remove-orphans >/dev/null 2>&1'
log "docker compose up --build (this builds both images)"
compose up --build --detach
for port in 8080 8081; do
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/health/ready" && break; sleep 1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/health/ready" || die "the service on $port did not become ready under compose"
done
flight="$(curl -sf -X POST -H 'Content-Type: application/json' http://127.0.0.1:8080/api/flights \
  -d '{"departureAirport":"Paris","arrivalAirport":"London","departureDateTime":"2023-09-01T08:00:00Z","arrivalDateTime":"2023-09-01T08:15:00Z"}' \
  | json_field id)" || die "booking under compose failed"
for _ in $(seq 1 60); do
  status="$(curl -sf "http://127.0.0.1:8080/api/flights/$flight" | json_field status || true)"
  if [ "$status" = CONFIRMED ] && curl -sf -o /dev/null "http://127.0.0.1:8081/api/payments/$flight"; then
    log "compose: flight $flight booked, paid and CONFIRMED"; exit 0
  fi
  sleep 1
done
die "compose: flight $flight was not paid and CONFIRMED within 60 s"
