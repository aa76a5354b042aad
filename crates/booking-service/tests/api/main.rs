//! booking-service integration tests: HTTP in, rows and messages out, against a
//! real PostgreSQL (a fresh database per test) and a real SQS-compatible server
//! (a fresh queue per test). `scripts/test.sh` provides both.

mod database;
mod edge;
mod flights;
mod helpers;
mod lifecycle;
mod logs;
mod openapi;
mod operator;
mod outbox_api;
mod relay;
mod saga;
mod schema;
mod settings;
mod startup;
mod status;
mod validation;
