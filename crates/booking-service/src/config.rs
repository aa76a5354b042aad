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
    /// Connections of the relay's own pool (its LISTEN connection holds one for
    /// good; each claimer and the recorder need one). Default: RELAY_WORKERS + 4.
    #[arg(long, env = "RELAY_DATABASE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub relay_database_max_connections: Option<u32>,
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
    #[command(flatten)]
    pub admin: service_kit::admin::AdminArgs,
}

impl Config {
    /// The relay pool's size: `RELAY_DATABASE_MAX_CONNECTIONS`, else RELAY_WORKERS + 4.
    pub fn relay_pool_size(&self) -> u32 {
        self.relay_database_max_connections
            .unwrap_or(u32::from(self.relay.relay_workers) + 4)
    }

    /// Refuses settings that cannot work, naming the variable (checked at
    /// start-up, before anything is connected).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.database.validate()?;
        service_kit::config::require_positive(&[(
            "IDEMPOTENCY_KEY_TTL",
            self.idempotency_key_ttl,
        )])?;
        if self.relay.relay_enabled {
            self.relay.config()?;
            let needed = u32::from(self.relay.relay_workers) + 2;
            if self.relay_pool_size() < needed {
                anyhow::bail!(
                    "RELAY_DATABASE_MAX_CONNECTIONS ({}) must be at least RELAY_WORKERS + 2 ({needed}): \
                     the relay's LISTEN connection holds one for good, and each claimer and the recorder need one",
                    self.relay_pool_size()
                );
            }
        }
        Ok(())
    }
}
