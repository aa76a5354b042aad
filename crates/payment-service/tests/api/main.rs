//! payment-service integration tests against a real PostgreSQL and a real
//! SQS-compatible server; each test has its own database and queues.

mod consumer;
mod database;
mod end_to_end;
mod faults;
mod groups;
mod helpers;
mod inputs;
mod lifecycle;
mod openapi;
mod schema;
mod settings;
mod startup;
