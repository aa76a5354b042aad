//! payment-service: consumes `FlightBooked` events from SQS and records one
//! payment per booking, however often the event arrives.
//!
//! - [`config`]: settings from environment variables (`--help` lists them).
//! - [`startup`]: [`startup::Application`] wires the pool, the consumer and the API.
//! - [`handler`]: one message → one transaction: inbox record + payment.
//! - [`payments`]: the payment rule and the SQL of payments.
//! - [`api`]: `GET /api/payments`, health, metrics, Swagger UI.

pub mod api;
pub mod config;
pub mod handler;
pub mod payments;
pub mod startup;
