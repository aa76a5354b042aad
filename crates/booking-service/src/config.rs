//! booking-service settings, all from environment variables (or the matching
//! flags). `booking-service --help` lists them with their defaults.

use std::net::SocketAddr;

use clap::Parser;
use service_kit::config::{DatabaseArgs, LogArgs};
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
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(256..=10_485_760))]
    pub max_body_bytes: u32,
    /// How long an Idempotency-Key is remembered.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL", default_value = "24h", value_parser = service_kit::config::parse_duration)]
    pub idempotency_key_ttl: std::time::Duration,
    /// When set, print the outbox backlog as CloudWatch EMF lines in this namespace.
    #[arg(long, env = "EMF_NAMESPACE")]
    pub emf_namespace: Option<String>,
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
}
