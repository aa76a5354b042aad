//! The Prometheus side of the metrics (feature `prometheus`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::store;

/// The `reason` label of failure counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// e.g. `queue_does_not_exist`, `transient`, `panic`.
    pub reason: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The relay's metrics. Counters move as the relay works; the backlog gauges are
/// read from the table when scraped ([`super::RelayMetrics::refresh`]), so every replica
/// reports the same, true backlog.
#[derive(Clone)]
pub(super) struct RelayCounters {
    pub published: Counter,
    pub failures: Family<ReasonLabel, Counter>,
    pub parked: Counter,
    pub batch_duration: Histogram,
    pub commit_to_publish: Histogram,
    pub pending_events: Gauge,
    pub parked_events: Gauge,
    pub oldest_pending_age: Gauge<f64, AtomicU64>,
    pub out_of_order: Counter,
    pub sqs_available: Gauge,
    pub claim_duration: Histogram,
}

impl Default for RelayCounters {
    fn default() -> Self {
        Self {
            published: Counter::default(),
            failures: Family::default(),
            parked: Counter::default(),
            batch_duration: seconds_histogram(),
            commit_to_publish: seconds_histogram(),
            pending_events: Gauge::default(),
            parked_events: Gauge::default(),
            oldest_pending_age: Gauge::default(),
            out_of_order: Counter::default(),
            sqs_available: {
                let up = Gauge::default();
                up.set(1);
                up
            },
            claim_duration: seconds_histogram(),
        }
    }
}

impl RelayCounters {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("outbox");
        r.register("published", "Events SQS accepted", self.published.clone());
        r.register(
            "publish_failures",
            "Events SQS did not accept, by reason",
            self.failures.clone(),
        );
        r.register(
            "parked",
            "Events parked after the maximum attempts",
            self.parked.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "Duration of one SendMessageBatch call",
            self.batch_duration.clone(),
        );
        r.register(
            "commit_to_publish_seconds",
            "Time from the event's commit to SQS accepting it",
            self.commit_to_publish.clone(),
        );
        r.register(
            "pending_events",
            "Events not yet published (not parked)",
            self.pending_events.clone(),
        );
        r.register(
            "parked_events",
            "Events parked now, waiting for an operator",
            self.parked_events.clone(),
        );
        r.register(
            "oldest_pending_age_seconds",
            "Age of the oldest unpublished event, parked ones included",
            self.oldest_pending_age.clone(),
        );
        r.register(
            "out_of_order",
            "Events SQS accepted although an earlier event of their aggregate in the same batch failed (it follows them later)",
            self.out_of_order.clone(),
        );
        r.register(
            "sqs_available",
            "1 while SQS accepts sends, 0 during an outage (the relay probes instead of sending)",
            self.sqs_available.clone(),
        );
        r.register(
            "claim_duration_seconds",
            "Duration of one claim statement",
            self.claim_duration.clone(),
        );
    }

    /// Reads the backlog gauges from the table.
    pub async fn refresh(&self, pool: &PgPool) -> Result<store::Stats, crate::Error> {
        let stats = store::stats(pool).await?;
        self.pending_events.set(stats.pending);
        self.parked_events.set(stats.parked);
        self.oldest_pending_age
            .set(stats.oldest_pending_age_seconds);
        Ok(stats)
    }

    pub fn failure(&self, reason: &str, count: u64) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc_by(count);
    }
}

/// The consumer's metrics.
#[derive(Clone)]
pub(super) struct ConsumerCounters {
    pub received: Counter,
    pub processed: Counter,
    pub duplicates: Counter,
    pub failed: Family<ReasonLabel, Counter>,
    pub handling_latency: Histogram,
    pub breaker_open: Gauge,
}

impl Default for ConsumerCounters {
    fn default() -> Self {
        Self {
            received: Counter::default(),
            processed: Counter::default(),
            duplicates: Counter::default(),
            failed: Family::default(),
            handling_latency: seconds_histogram(),
            breaker_open: Gauge::default(),
        }
    }
}

impl ConsumerCounters {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("consumer");
        r.register(
            "received",
            "Messages received from SQS",
            self.received.clone(),
        );
        r.register(
            "processed",
            "Messages whose effect was recorded",
            self.processed.clone(),
        );
        r.register(
            "duplicates_skipped",
            "Messages already processed before",
            self.duplicates.clone(),
        );
        r.register(
            "failed",
            "Messages not processed, by reason",
            self.failed.clone(),
        );
        r.register(
            "handling_seconds",
            "Time to handle one message",
            self.handling_latency.clone(),
        );
        r.register(
            "breaker_open",
            "1 while the database is unavailable and the consumer does not receive",
            self.breaker_open.clone(),
        );
    }

    pub fn failure(&self, reason: &str) {
        self.failed
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
