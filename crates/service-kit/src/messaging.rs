//! The outbox crate's settings as environment variables: the `RELAY_*`,
//! `CONSUMER_*`, `SQS_QUEUE_*` and `PAYMENT_EVENTS_QUEUE_*` names both services
//! read, turned into the crate's validated configurations. An invalid value
//! stops the process at start with an error naming the variable.
//!
//! The two queues have the same names in both services: `SQS_QUEUE_*` is the
//! bookings queue (booking-service's relay publishes to it, payment-service's
//! consumer reads it), `PAYMENT_EVENTS_QUEUE_*` the payment events queue
//! (payment-service's relay publishes, booking-service's consumer reads).

use std::time::Duration;

use clap::Args;
use outbox::consumer::{ConsumerConfig, ConsumerConfigError};
use outbox::relay::{RelayConfig, RelayConfigError};
use outbox::sqs::{Queue, QueueConfigError, QueueRef};

use crate::config::parse_duration;

/// A messaging setting that cannot work, named by its variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct MessagingConfigError {
    /// The environment variable.
    pub variable: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl MessagingConfigError {
    /// The same error, naming the part of the service that needs the setting
    /// and the switch that turns that part off: what an operator can do about it.
    pub fn needed_by(self, part: &str, switch: &str) -> Self {
        Self {
            reason: format!("{} ({part} needs it; or set {switch}=false)", self.reason),
            ..self
        }
    }
}

/// Which queue to use.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Queue URL. A name ending in `.fifo` makes it a FIFO queue (the default
    /// set-up); any other is treated as a standard queue.
    #[arg(long, env = "SQS_QUEUE_URL", conflicts_with = "sqs_queue_name")]
    pub sqs_queue_url: Option<String>,
    /// Queue name, resolved with GetQueueUrl (and again after QueueDoesNotExist).
    #[arg(long, env = "SQS_QUEUE_NAME")]
    pub sqs_queue_name: Option<String>,
}

impl QueueArgs {
    /// The queue, or an error naming `SQS_QUEUE_URL` / `SQS_QUEUE_NAME`.
    pub fn queue(&self) -> Result<QueueRef, MessagingConfigError> {
        queue_ref(
            self.sqs_queue_url.as_deref(),
            self.sqs_queue_name.as_deref(),
            ("SQS_QUEUE_URL", "SQS_QUEUE_NAME"),
        )
    }
}

/// The payment events queue (`PaymentApproved`, `PaymentDeclined`,
/// `PaymentRefunded`): payment-service's relay publishes to it, booking-service's
/// consumer reads it.
#[derive(Debug, Clone, Args)]
pub struct PaymentEventsQueueArgs {
    /// Payment events queue URL (FIFO when it ends in `.fifo`).
    #[arg(
        long,
        env = "PAYMENT_EVENTS_QUEUE_URL",
        conflicts_with = "payment_events_queue_name"
    )]
    pub payment_events_queue_url: Option<String>,
    /// Payment events queue name, resolved with GetQueueUrl.
    #[arg(long, env = "PAYMENT_EVENTS_QUEUE_NAME")]
    pub payment_events_queue_name: Option<String>,
}

impl QueueArgs {
    /// At start-up: a region, and a queue SQS does not say is missing (see
    /// [`crate::aws::check_queue`]); `meanwhile` says what the service does
    /// while SQS does not answer.
    pub async fn check(&self, queue: &Queue, meanwhile: &str) -> anyhow::Result<()> {
        crate::aws::require_region(queue.client())?;
        crate::aws::check_queue(
            queue.client(),
            self.sqs_queue_url.as_deref(),
            self.sqs_queue_name.as_deref(),
            ("SQS_QUEUE_URL", "SQS_QUEUE_NAME"),
            meanwhile,
        )
        .await
    }
}

impl PaymentEventsQueueArgs {
    /// As [`QueueArgs::check`], for the payment events queue.
    pub async fn check(&self, queue: &Queue, meanwhile: &str) -> anyhow::Result<()> {
        crate::aws::require_region(queue.client())?;
        crate::aws::check_queue(
            queue.client(),
            self.payment_events_queue_url.as_deref(),
            self.payment_events_queue_name.as_deref(),
            ("PAYMENT_EVENTS_QUEUE_URL", "PAYMENT_EVENTS_QUEUE_NAME"),
            meanwhile,
        )
        .await
    }

    /// The queue, or an error naming `PAYMENT_EVENTS_QUEUE_URL` / `PAYMENT_EVENTS_QUEUE_NAME`.
    pub fn queue(&self) -> Result<QueueRef, MessagingConfigError> {
        queue_ref(
            self.payment_events_queue_url.as_deref(),
            self.payment_events_queue_name.as_deref(),
            ("PAYMENT_EVENTS_QUEUE_URL", "PAYMENT_EVENTS_QUEUE_NAME"),
        )
    }
}

/// A queue by URL or name, validated here so the error names the variable.
fn queue_ref(
    url: Option<&str>,
    name: Option<&str>,
    (url_variable, name_variable): (&str, &str),
) -> Result<QueueRef, MessagingConfigError> {
    let which = match (url, name) {
        (Some(url), _) => QueueRef::Url(url.to_owned()),
        (None, Some(name)) => QueueRef::Name(name.to_owned()),
        (None, None) => {
            return Err(MessagingConfigError {
                variable: url_variable.into(),
                reason: format!("no queue configured: set {url_variable} or {name_variable}"),
            });
        }
    };
    let variable = match &which {
        QueueRef::Url(_) => url_variable,
        QueueRef::Name(_) => name_variable,
    };
    let invalid = match &which {
        QueueRef::Url(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            Some(QueueConfigError::BadUrl(url.clone()))
        }
        QueueRef::Name(name) if name.trim().is_empty() => Some(QueueConfigError::EmptyName),
        _ => None,
    };
    match invalid {
        Some(e) => Err(MessagingConfigError {
            variable: variable.into(),
            reason: e.to_string(),
        }),
        None => Ok(which),
    }
}

/// The queue on the SDK's default client (the task role in AWS;
/// `AWS_ENDPOINT_URL_SQS` for a local server).
async fn sqs_queue(queue: QueueRef) -> Result<Queue, MessagingConfigError> {
    let variable = match &queue {
        QueueRef::Url(_) => "the queue URL",
        QueueRef::Name(_) => "the queue name",
    };
    Queue::new(outbox::sqs::client().await, queue).map_err(|e| MessagingConfigError {
        variable: variable.into(),
        reason: e.to_string(),
    })
}

/// The relay's settings (`RELAY_*`, `OUTBOX_RETENTION`).
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Run the relay inside this process.
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,
    /// Claimers in this process (each claims RELAY_CLAIM_SIZE aggregates at a time for the senders).
    #[arg(long, env = "RELAY_WORKERS", default_value_t = 2)]
    pub relay_workers: u16,
    /// SendMessageBatch calls in flight at once in this process.
    #[arg(long, env = "RELAY_BATCHES_IN_FLIGHT", default_value_t = 8)]
    pub relay_batches_in_flight: u16,
    /// Aggregates (lanes) one claimer claims per database round trip.
    #[arg(long, env = "RELAY_CLAIM_SIZE", default_value_t = 200)]
    pub relay_claim_size: u16,
    /// Consecutive events of one aggregate sent in one SendMessageBatch (FIFO keeps
    /// their order within the batch).
    #[arg(long, env = "RELAY_RUN_SIZE", default_value_t = 10)]
    pub relay_run_size: u16,
    /// Attempts before an event SQS keeps refusing is parked for an operator.
    #[arg(long, env = "RELAY_MAX_ATTEMPTS", default_value_t = 12)]
    pub relay_max_attempts: i32,
    /// Fallback poll when no notification arrives (at least 10ms).
    #[arg(long, env = "RELAY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub relay_poll_interval: Duration,
    /// How long a claim lasts unless renewed; a crashed relay's events are taken
    /// over after this. Must exceed RELAY_SEND_TIMEOUT by 2s at least.
    #[arg(long, env = "RELAY_LEASE", default_value = "10s", value_parser = parse_duration)]
    pub relay_lease: Duration,
    /// Longest one SendMessageBatch call may take before it counts as failed.
    #[arg(long, env = "RELAY_SEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub relay_send_timeout: Duration,
    /// During an SQS outage, how often the relay tries the oldest event again.
    #[arg(long, env = "RELAY_PROBE_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub relay_probe_interval: Duration,
    /// First retry delay after SQS refused an event; doubles per attempt, with jitter.
    #[arg(long, env = "RELAY_BACKOFF_BASE", default_value = "500ms", value_parser = parse_duration)]
    pub relay_backoff_base: Duration,
    /// Longest retry delay.
    #[arg(long, env = "RELAY_BACKOFF_MAX", default_value = "60s", value_parser = parse_duration)]
    pub relay_backoff_max: Duration,
    /// How long published rows are kept before deletion.
    #[arg(long, env = "OUTBOX_RETENTION", default_value = "4h", value_parser = parse_duration)]
    pub outbox_retention: Duration,
    /// Connections of the relay's own pool (its LISTEN connection holds one for
    /// good; each claimer and the recorder need one). Default: RELAY_WORKERS + 4.
    #[arg(long, env = "RELAY_DATABASE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub relay_database_max_connections: Option<u32>,
}

impl RelayArgs {
    /// The relay pool's size: `RELAY_DATABASE_MAX_CONNECTIONS`, else RELAY_WORKERS + 4.
    pub fn pool_size(&self) -> u32 {
        self.relay_database_max_connections
            .unwrap_or(u32::from(self.relay_workers) + 4)
    }

    /// Refuses relay settings that cannot work, naming the variable (when the
    /// relay is on; checked before anything is connected).
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.relay_enabled {
            return Ok(());
        }
        self.config()?;
        let needed = u32::from(self.relay_workers) + 2;
        if self.pool_size() < needed {
            anyhow::bail!(
                "RELAY_DATABASE_MAX_CONNECTIONS ({}) must be at least RELAY_WORKERS + 2 ({needed}): \
                 the relay's LISTEN connection holds one for good, and each claimer and the recorder need one",
                self.pool_size()
            );
        }
        Ok(())
    }

    /// When the relay is switched on: its settings and `queue`, the queue it
    /// publishes `what` to, validated before anything is connected. A missing
    /// queue is refused naming its variable and `RELAY_ENABLED`.
    pub async fn part(
        &self,
        queue: Result<QueueRef, MessagingConfigError>,
        what: &str,
    ) -> Result<Option<(Queue, RelayConfig)>, MessagingConfigError> {
        if !self.relay_enabled {
            return Ok(None);
        }
        let config = self.config()?;
        let queue = queue.map_err(|e| {
            e.needed_by(
                &format!("the relay (it publishes {what} there)"),
                "RELAY_ENABLED",
            )
        })?;
        Ok(Some((sqs_queue(queue).await?, config)))
    }

    /// The validated relay configuration, or an error naming the variable.
    pub fn config(&self) -> Result<RelayConfig, MessagingConfigError> {
        RelayConfig::builder()
            .workers(self.relay_workers)
            .batches_in_flight(self.relay_batches_in_flight)
            .claim_size(self.relay_claim_size)
            .run_size(self.relay_run_size)
            .max_attempts(self.relay_max_attempts)
            .poll_interval(self.relay_poll_interval)
            .lease(self.relay_lease)
            .send_timeout(self.relay_send_timeout)
            .probe_interval(self.relay_probe_interval)
            .backoff_base(self.relay_backoff_base)
            .backoff_max(self.relay_backoff_max)
            .retention(self.outbox_retention)
            .build()
            .map_err(|e: RelayConfigError| MessagingConfigError {
                variable: match e.setting() {
                    "retention" => "OUTBOX_RETENTION".into(),
                    setting => format!("RELAY_{}", setting.to_uppercase()),
                },
                reason: e.to_string(),
            })
    }
}

/// The consumer's settings (`CONSUMER_*`, `INBOX_RETENTION`).
#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    /// Consume the queue in this process (off: API only).
    #[arg(long, env = "CONSUMER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub consumer_enabled: bool,
    /// Receive loops running at once (each handles up to CONSUMER_MAX_MESSAGES).
    #[arg(long, env = "CONSUMER_CONCURRENCY", default_value_t = 4)]
    pub consumer_concurrency: u16,
    /// Messages per receive (1–10).
    #[arg(long, env = "CONSUMER_MAX_MESSAGES", default_value_t = 10)]
    pub consumer_max_messages: i32,
    /// Long-polling wait per receive (0–20 s).
    #[arg(long, env = "CONSUMER_WAIT_TIME", default_value = "20s", value_parser = parse_duration)]
    pub consumer_wait_time: Duration,
    /// Visibility timeout asked for on receive; extended while a message is handled.
    #[arg(long, env = "CONSUMER_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub consumer_visibility_timeout: Duration,
    /// Longest one handler may take for one message; then it counts as failed
    /// (and its visibility is no longer extended).
    #[arg(long, env = "CONSUMER_HANDLER_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub consumer_handler_timeout: Duration,
    /// How long the inbox remembers a processed event (longer than a copy can
    /// take to arrive: the queue's retention, plus the DLQ's if you redrive).
    #[arg(long, env = "INBOX_RETENTION", default_value = "15d", value_parser = parse_duration)]
    pub inbox_retention: Duration,
    /// Connections of the consumer's own pool (one per receive loop, plus its
    /// database prober). Default: CONSUMER_CONCURRENCY + 2.
    #[arg(long, env = "CONSUMER_DATABASE_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub consumer_database_max_connections: Option<u32>,
}

impl ConsumerArgs {
    /// The consumer pool's size: `CONSUMER_DATABASE_MAX_CONNECTIONS`, else
    /// CONSUMER_CONCURRENCY + 2.
    pub fn pool_size(&self) -> u32 {
        self.consumer_database_max_connections
            .unwrap_or(u32::from(self.consumer_concurrency) + 2)
    }

    /// Refuses consumer settings that cannot work, naming the variable (when
    /// the consumer is on; checked before anything is connected).
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.consumer_enabled {
            return Ok(());
        }
        self.config()?;
        if self.consumer_wait_time < Duration::from_secs(1) {
            // SQS waits whole seconds: under 1 s is short polling, one billed
            // receive call after another on an empty queue.
            anyhow::bail!(
                "CONSUMER_WAIT_TIME must be at least 1s (got {:?}): shorter is short polling, a busy loop of receive calls",
                self.consumer_wait_time
            );
        }
        let needed = u32::from(self.consumer_concurrency) + 1;
        if self.pool_size() < needed {
            // A receive loop waiting for a connection would fail its messages
            // and could open the breaker on a healthy database.
            anyhow::bail!(
                "CONSUMER_DATABASE_MAX_CONNECTIONS ({}) must be at least CONSUMER_CONCURRENCY + 1 ({needed}): \
                 each receive loop holds one connection while it applies a receive, and the breaker's probe needs one",
                self.pool_size()
            );
        }
        Ok(())
    }

    /// When the consumer is switched on: its settings and `queue`, the queue
    /// it reads `what` from, validated before anything is connected. A missing
    /// queue is refused naming its variable and `CONSUMER_ENABLED`.
    pub async fn part(
        &self,
        queue: Result<QueueRef, MessagingConfigError>,
        what: &str,
    ) -> Result<Option<(Queue, ConsumerConfig)>, MessagingConfigError> {
        if !self.consumer_enabled {
            return Ok(None);
        }
        let config = self.config()?;
        let queue = queue.map_err(|e| {
            e.needed_by(
                &format!("the consumer (it reads {what} there)"),
                "CONSUMER_ENABLED",
            )
        })?;
        Ok(Some((sqs_queue(queue).await?, config)))
    }

    /// The validated consumer configuration, or an error naming the variable.
    pub fn config(&self) -> Result<ConsumerConfig, MessagingConfigError> {
        ConsumerConfig::builder()
            .concurrency(self.consumer_concurrency)
            .max_messages(self.consumer_max_messages)
            .wait_time(self.consumer_wait_time)
            .visibility_timeout(self.consumer_visibility_timeout)
            .handler_timeout(self.consumer_handler_timeout)
            .inbox_retention(self.inbox_retention)
            .build()
            .map_err(|e: ConsumerConfigError| MessagingConfigError {
                variable: match e.setting {
                    "inbox_retention" => "INBOX_RETENTION".into(),
                    setting => format!("CONSUMER_{}", setting.to_uppercase()),
                },
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Both {
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
    }

    #[test]
    fn defaults_are_valid_and_errors_name_the_variable() {
        let both = Both::parse_from(["test"]);
        both.relay.config().unwrap();
        both.consumer.config().unwrap();
        let lease = Both::parse_from(["test", "--relay-lease", "6s"])
            .relay
            .config();
        assert_eq!(lease.unwrap_err().variable, "RELAY_LEASE");
        let wait = Both::parse_from(["test", "--consumer-wait-time", "30s"])
            .consumer
            .config();
        assert_eq!(wait.unwrap_err().variable, "CONSUMER_WAIT_TIME");
        let retention = Both::parse_from(["test", "--outbox-retention", "0s"])
            .relay
            .config();
        assert_eq!(retention.unwrap_err().variable, "OUTBOX_RETENTION");
    }

    #[derive(Parser)]
    struct Queues {
        #[command(flatten)]
        bookings: QueueArgs,
        #[command(flatten)]
        payment_events: PaymentEventsQueueArgs,
    }

    #[test]
    fn each_queue_is_named_by_its_own_variables() {
        let none = Queues::parse_from(["test"]);
        let missing = none
            .payment_events
            .queue()
            .unwrap_err()
            .needed_by("the consumer", "CONSUMER_ENABLED");
        assert_eq!(missing.variable, "PAYMENT_EVENTS_QUEUE_URL");
        assert_eq!(
            missing.to_string(),
            "PAYMENT_EVENTS_QUEUE_URL: no queue configured: set PAYMENT_EVENTS_QUEUE_URL or PAYMENT_EVENTS_QUEUE_NAME (the consumer needs it; or set CONSUMER_ENABLED=false)"
        );
        assert_eq!(none.bookings.queue().unwrap_err().variable, "SQS_QUEUE_URL");

        let both = Queues::parse_from([
            "test",
            "--sqs-queue-name=bookings.fifo",
            "--payment-events-queue-url=http://sqs.local/1/payment-events.fifo",
        ]);
        assert_eq!(
            both.bookings.queue().unwrap(),
            QueueRef::Name("bookings.fifo".into())
        );
        assert_eq!(
            both.payment_events.queue().unwrap(),
            QueueRef::Url("http://sqs.local/1/payment-events.fifo".into())
        );
        let bad = Queues::parse_from(["test", "--payment-events-queue-url=payment-events.fifo"]);
        assert_eq!(
            bad.payment_events.queue().unwrap_err().variable,
            "PAYMENT_EVENTS_QUEUE_URL"
        );
        let blank = Queues::parse_from(["test", "--payment-events-queue-name= "]);
        assert_eq!(
            blank.payment_events.queue().unwrap_err().variable,
            "PAYMENT_EVENTS_QUEUE_NAME"
        );
    }
}
