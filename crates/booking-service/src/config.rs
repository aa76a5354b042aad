//! booking-service settings, all from environment variables (or the matching
//! flags). `booking-service --help` lists them with their defaults.

use std::net::SocketAddr;

use clap::Parser;
use service_kit::config::{DatabaseArgs, HttpArgs, LogArgs};
use service_kit::messaging::{ConsumerArgs, PaymentEventsQueueArgs, QueueArgs, RelayArgs};

/// The name of this service's database when only the PG* parts are given.
pub const DEFAULT_DATABASE: &str = "booking";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "booking-service",
    version,
    about = "Flight booking API with a transactional outbox relayed to Amazon SQS, learning each booking's payment from payment-service's events"
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
    /// The relay publishes FlightBooked and FlightCancelled to the bookings queue.
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// The consumer applies PaymentApproved, PaymentDeclined and PaymentRefunded
    /// from the payment events queue.
    #[command(flatten)]
    pub consumer: ConsumerArgs,
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
        service_kit::config::require_positive(&[(
            "IDEMPOTENCY_KEY_TTL",
            self.idempotency_key_ttl,
        )])?;
        self.relay.validate()?;
        self.consumer.validate()?;
        Ok(())
    }
}
