//! What every service in this workspace shares, so neither service carries a copy.
//!
//! - [`config`]: the database and logging settings both services read from the
//!   environment (`DATABASE_URL` or the `PG*` parts ECS injects from Secrets Manager).
//! - [`db`]: connecting, creating the service's database when missing, migrating
//!   (or, with migrations off, checking they are all applied); the session
//!   timeouts every pooled connection carries.
//! - [`aws`]: the start-up checks of a region and of the queue.
//! - [`telemetry`]: `tracing` set-up, JSON in production and pretty locally, and
//!   the OTLP span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`trace`]: one booking, one trace: continuing a `traceparent` across HTTP,
//!   the outbox and SQS.
//! - [`shutdown`]: SIGTERM / ctrl-c as one `CancellationToken`.
//! - [`error`]: one error story: domain errors free of HTTP ([`error::Invalid`]),
//!   the one HTTP error enum ([`error::ApiError`]) and its one mapping to problems.
//! - [`problem`]: RFC 9457 `application/problem+json` responses and the fallbacks
//!   for unknown paths and methods.
//! - [`admin`]: operator actions behind a bearer token (`ADMIN_TOKEN`).
//! - [`status`]: `/health/status`, each part's state in one shape for both services.
//! - [`http`]: the middleware stack (request ids, tracing spans, panics) and the
//!   health and metrics endpoints.

pub mod admin;
pub mod aws;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod problem;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod testing;
pub mod trace;
