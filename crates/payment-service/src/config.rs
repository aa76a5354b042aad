//! payment-service settings, all from environment variables (or the matching
//! flags). `payment-service --help` lists them with their defaults.

use std::net::SocketAddr;

use clap::Parser;
use service_kit::config::{DatabaseArgs, HttpArgs, LogArgs};
use service_kit::messaging::{ConsumerArgs, PaymentEventsQueueArgs, QueueArgs, RelayArgs};

/// The name of this service's database when only the PG* parts are given.
pub const DEFAULT_DATABASE: &str = "payment";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "payment-service",
    version,
    about = "Consumes booking events from SQS, records each payment and refund exactly once, and announces them"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:8081")]
    pub bind_addr: SocketAddr,
    /// Fares above this many minor units are declined (the demo's deterministic rule).
    #[arg(long, env = "PAYMENT_DECLINE_ABOVE", default_value_t = 500_000,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub payment_decline_above: i64,
    /// When set, print the outbox backlog as CloudWatch EMF lines in this namespace.
    #[arg(long, env = "EMF_NAMESPACE")]
    pub emf_namespace: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// The consumer applies FlightBooked and FlightCancelled from the bookings queue.
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// The relay publishes PaymentApproved, PaymentDeclined and PaymentRefunded
    /// to the payment events queue.
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub payment_events: PaymentEventsQueueArgs,
    #[command(flatten)]
    pub admin: service_kit::admin::AdminArgs,
}

impl Config {
    /// Refuses settings that cannot work, naming the variable (checked at
    /// start-up, before anything is connected).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.database.validate()?;
        self.consumer.validate()?;
        self.relay.validate()?;
        Ok(())
    }
}
