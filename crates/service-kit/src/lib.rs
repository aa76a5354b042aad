//! What every service in this workspace shares, so neither service carries a copy.
//!
//! - [`app`]: running a service: the HTTP API and its background parts (relay,
//!   consumer, retention loops) under one shutdown story.
//! - [`config`]: the database and logging settings both services read from the
//!   environment (`DATABASE_URL` or the `PG*` parts ECS injects from Secrets Manager).
//! - [`db`]: connecting, creating the service's database when missing, migrating
//!   (or, with migrations off, checking they are all applied); the session
//!   timeouts every pooled connection carries.
//! - [`aws`]: the start-up checks of a region and of the queue.
//! - [`telemetry`]: `tracing` set-up, JSON in production and pretty locally, and
//!   the OTLP span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
//!   [`log_json`]: the JSON lines, with the request's fields on every line.
//! - [`trace`]: one booking, one trace: continuing a `traceparent` across HTTP,
//!   the outbox and SQS.
//! - [`shutdown`]: SIGTERM / ctrl-c as one `CancellationToken`.
//! - [`error`]: one error story: domain errors free of HTTP ([`error::Invalid`]),
//!   the one HTTP error enum ([`error::ApiError`]) and its one mapping to problems.
//! - [`problem`]: RFC 9457 `application/problem+json` responses and the fallbacks
//!   for unknown paths and methods.
//! - [`json`]: strict JSON request bodies (media type, duplicate keys, unknown
//!   fields, objects only where structs belong, NFC text without control or
//!   format characters), every broken rule named with its JSON pointer.
//! - [`admin`]: operator actions behind a bearer token (`ADMIN_TOKEN`).
//! - [`status`]: `/health/status`, each part's state in one shape for both services;
//!   [`observed`]: the relay observed for it (running, last publish).
//! - [`http`]: the health and metrics endpoints, paging, and the routers' shared
//!   fallbacks and middleware ([`edge`]).
//! - [`edge`]: what every request goes through: request ids, the request span and
//!   access line, security headers, problem+json for every error, body limit and
//!   timeout, concurrency cap, request timeout.
//! - [`server`]: the HTTP/1.1 server: header, idle and body timeouts per
//!   connection, hyper's own refusals as problem+json, graceful shutdown.
//! - [`messaging`]: the `RELAY_*`, `CONSUMER_*` and queue settings.
//! - `testing` (feature `testing`): the services' test harness.

pub mod admin;
pub mod app;
pub mod aws;
pub mod config;
pub mod db;
pub mod edge;
pub mod error;
pub mod http;
pub mod json;
pub mod log_json;
pub mod messaging;
pub mod observed;
pub mod problem;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
