//! What every service in this workspace shares, so neither service carries a copy.
//!
//! - [`config`]: the database and logging settings both services read from the
//!   environment (`DATABASE_URL` or the `PG*` parts ECS injects from Secrets Manager).
//! - [`db`]: connecting, creating the service's database when missing, migrating.
//! - [`telemetry`]: `tracing` set-up, JSON in production and pretty locally;
//!   [`log_json`]: the JSON lines, with the request's fields on every line.
//! - [`shutdown`]: SIGTERM / ctrl-c as one `CancellationToken`.
//! - [`problem`]: RFC 9457 `application/problem+json` responses and the fallbacks
//!   for unknown paths and methods.
//! - [`json`]: strict JSON request bodies (media type, duplicate keys, unknown
//!   fields, objects only where structs belong, NFC text without control or
//!   format characters), every broken rule named with its JSON pointer.
//! - [`admin`]: operator actions behind a bearer token (`ADMIN_TOKEN`).
//! - [`http`]: the health and metrics endpoints, paging, and the routers' shared
//!   fallbacks and middleware ([`edge`]).
//! - [`edge`]: what every request goes through: request ids, the request span and
//!   access line, security headers, problem+json for every error, body limit and
//!   timeout, concurrency cap, request timeout.
//! - [`server`]: the HTTP/1.1 server: header, idle and body timeouts per
//!   connection, hyper's own refusals as problem+json, graceful shutdown.

pub mod admin;
pub mod config;
pub mod db;
pub mod edge;
pub mod http;
pub mod json;
pub mod log_json;
pub mod messaging;
pub mod problem;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
