//! payment-service settings, all from environment variables (or the matching
//! flags). `payment-service --help` lists them with their defaults.

use std::net::SocketAddr;

use clap::Parser;
use service_kit::config::{DatabaseArgs, HttpArgs, LogArgs};
use service_kit::messaging::{ConsumerArgs, QueueArgs};

/// The name of this service's database when only the PG* parts are given.
pub const DEFAULT_DATABASE: &str = "payment";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "payment-service",
    version,
    about = "Consumes FlightBooked events from SQS and records each payment exactly once"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:8081")]
    pub bind_addr: SocketAddr,
    /// Fares above this many minor units are declined (the demo's deterministic rule).
    #[arg(long, env = "PAYMENT_DECLINE_ABOVE", default_value_t = 500_000,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub payment_decline_above: i64,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Connections of the consumer's own pool (one per receive loop, plus its
    /// database prober). Default: CONSUMER_CONCURRENCY + 2.
    #[arg(long, env = "CONSUMER_DATABASE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub consumer_database_max_connections: Option<u32>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub admin: service_kit::admin::AdminArgs,
}

impl Config {
    /// The consumer pool's size: `CONSUMER_DATABASE_MAX_CONNECTIONS`, else
    /// CONSUMER_CONCURRENCY + 2.
    pub fn consumer_pool_size(&self) -> u32 {
        self.consumer_database_max_connections
            .unwrap_or(u32::from(self.consumer.consumer_concurrency) + 2)
    }

    /// Refuses settings that cannot work, naming the variable (checked at
    /// start-up, before anything is connected).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.database.validate()?;
        if self.consumer.consumer_enabled {
            if self.consumer.consumer_wait_time < std::time::Duration::from_secs(1) {
                // SQS waits whole seconds: under 1 s is short polling, one
                // billed receive call after another on an empty queue.
                anyhow::bail!(
                    "CONSUMER_WAIT_TIME must be at least 1s (got {:?}): shorter is short polling, a busy loop of receive calls",
                    self.consumer.consumer_wait_time
                );
            }
            let needed = u32::from(self.consumer.consumer_concurrency) + 1;
            if self.consumer_pool_size() < needed {
                // A receive loop waiting for a connection would fail its
                // messages and could open the breaker on a healthy database.
                anyhow::bail!(
                    "CONSUMER_DATABASE_MAX_CONNECTIONS ({}) must be at least CONSUMER_CONCURRENCY + 1 ({needed}): \
                     each receive loop holds one connection while it applies a receive, and the breaker's probe needs one",
                    self.consumer_pool_size()
                );
            }
        }
        Ok(())
    }
}
