//! booking-service: the flight booking API and, in the same process, the outbox
//! relay that announces every booking and cancellation on SQS and the consumer
//! that learns each booking's payment from payment-service.
//!
//! - [`config`]: every setting, from environment variables (`--help` lists them).
//! - [`startup`]: [`startup::build`] says what runs (the API, the relay, the
//!   consumer, retention); tests build one on port 0.
//! - [`domain`]: a booking request and its validation, independent of HTTP.
//! - [`flights`]: the SQL of flights, their lifecycle and idempotency keys.
//! - [`payment_events`]: the consumer's handler: payment events applied to bookings.
//! - [`api`]: the HTTP surface (`api/flights.rs`, `api/outbox.rs`), its errors as
//!   problem+json, and the OpenAPI document behind Swagger UI.
//!
//! The one promise: [`api::flights::book_flight`] writes the flight and its
//! `FlightBooked` event in one transaction, so neither exists without the other
//! ([`api::flights::cancel_flight`] likewise its status and `FlightCancelled`).

pub mod api;
pub mod config;
pub mod domain;
pub mod flights;
pub mod payment_events;
pub mod startup;
pub mod trace;
