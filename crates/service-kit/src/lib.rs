//! What every service in this workspace shares, so neither service carries a copy.
//!
//! - [`app`]: running a service: the HTTP API and its background parts (relay,
//!   consumer, retention loops) under one shutdown story.
//! - [`config`]: the database and logging settings both services read from the
//!   environment (`DATABASE_URL` or the `PG*` parts ECS injects from Secrets Manager).
//! - [`db`]: connecting, creating the service's database when missing, migrating.
//! - [`telemetry`]: `tracing` set-up, JSON in production and pretty locally.
//! - [`shutdown`]: SIGTERM / ctrl-c as one `CancellationToken`.
//! - [`problem`]: RFC 9457 `application/problem+json` responses and the fallbacks
//!   for unknown paths and methods.
//! - [`admin`]: operator actions behind a bearer token (`ADMIN_TOKEN`).
//! - [`http`]: the middleware stack (request ids, tracing spans, panics) and the
//!   health and metrics endpoints.
//! - [`messaging`]: the `RELAY_*`, `CONSUMER_*` and queue settings.
//! - `testing` (feature `testing`): the services' test harness.

pub mod admin;
pub mod app;
pub mod config;
pub mod db;
pub mod http;
pub mod messaging;
pub mod problem;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
