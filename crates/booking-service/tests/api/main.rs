//! booking-service integration tests: HTTP in, rows and messages out, against a
//! real PostgreSQL (a fresh database per test) and a real SQS-compatible server
//! (a fresh queue per test). `scripts/test.sh` provides both.

mod flights;
mod helpers;
mod lifecycle;
mod outbox_api;
mod relay;
mod saga;
mod schema;
mod settings;
mod validation;
