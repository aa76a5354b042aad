//! payment-service: consumes `FlightBooked` and `FlightCancelled` events from
//! SQS, records one payment per booking (and one refund per cancelled, approved
//! one), however often an event arrives, and announces each in its own outbox
//! (`PaymentApproved`, `PaymentDeclined`, `PaymentRefunded`), relayed to a
//! second queue for booking-service.
//!
//! - [`config`]: settings from environment variables (`--help` lists them).
//! - [`startup`]: [`startup::build`] says what runs (the API, the consumer, the
//!   relay); tests build one on port 0.
//! - [`handler`]: one message → one transaction: inbox record + payment or
//!   refund + its event.
//! - [`payments`]: the payment rule, the lifecycle and the SQL of payments.
//! - [`api`]: `GET /api/payments`, health, metrics, Swagger UI.

pub mod api;
pub mod config;
pub mod handler;
pub mod payments;
pub mod startup;
