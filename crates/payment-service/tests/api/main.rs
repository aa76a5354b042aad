//! payment-service integration tests against a real PostgreSQL and a real
//! SQS-compatible server; each test has its own database and queues.

mod consumer;
mod end_to_end;
mod faults;
mod groups;
mod helpers;
mod lifecycle;
mod schema;
mod settings;
