//! booking-service settings, all from environment variables (or the matching
//! flags). `booking-service --help` lists them with their defaults.

use std::net::SocketAddr;

use clap::Parser;
use service_kit::config::{DatabaseArgs, HttpArgs, LogArgs};
use service_kit::messaging::{QueueArgs, RelayArgs};

/// The name of this service's database when only the PG* parts are given.
pub const DEFAULT_DATABASE: &str = "booking";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "booking-service",
    version,
    about = "Flight booking API with a transactional outbox relayed to Amazon SQS"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:8080")]
    pub bind_addr: SocketAddr,
    /// How long an Idempotency-Key is remembered.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL", default_value = "24h", value_parser = service_kit::config::parse_duration)]
    pub idempotency_key_ttl: std::time::Duration,
    /// When set, print the outbox backlog as CloudWatch EMF lines in this namespace.
    #[arg(long, env = "EMF_NAMESPACE")]
    pub emf_namespace: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
}
