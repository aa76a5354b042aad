//! Prometheus metrics of the relay and the consumer, plus CloudWatch embedded
//! metric format (EMF) lines for the outbox backlog alarm in AWS.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The relay's metrics. Counters move as the relay works; the backlog gauges are
/// read from the table when scraped ([`RelayMetrics::refresh`]), so every replica
/// reports the same, true backlog.
#[derive(Clone)]
pub struct RelayMetrics {
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

impl Default for RelayMetrics {
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

impl RelayMetrics {
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
    pub async fn refresh(&self, pool: &PgPool) -> anyhow::Result<store::Stats> {
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
pub struct ConsumerMetrics {
    pub received: Counter,
    pub processed: Counter,
    pub duplicates: Counter,
    pub failed: Family<ReasonLabel, Counter>,
    pub handling_latency: Histogram,
    pub breaker_open: Gauge,
}

impl Default for ConsumerMetrics {
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

impl ConsumerMetrics {
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

/// Prints the outbox backlog every `every` as a CloudWatch EMF line on stdout,
/// where the awslogs driver picks it up and CloudWatch turns it into metrics the
/// backlog alarm watches. No SDK call and no extra IAM permission needed.
pub async fn emit_emf(
    pool: PgPool,
    namespace: String,
    service: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store::stats(&pool).await {
            Ok(stats) => println!(
                "{}",
                emf_line(
                    &namespace,
                    &service,
                    &stats,
                    chrono::Utc::now().timestamp_millis()
                )
            ),
            Err(e) => tracing::warn!(error = %e, "failed to read outbox statistics for EMF"),
        }
    }
}

fn emf_line(namespace: &str, service: &str, stats: &store::Stats, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["ServiceName"]],
                "Metrics": [
                    {"Name": "OutboxOldestPendingAgeSeconds", "Unit": "Seconds"},
                    {"Name": "OutboxPendingEvents", "Unit": "Count"},
                    {"Name": "OutboxParkedEvents", "Unit": "Count"}
                ]
            }]
        },
        "ServiceName": service,
        "OutboxOldestPendingAgeSeconds": stats.oldest_pending_age_seconds,
        "OutboxPendingEvents": stats.pending,
        "OutboxParkedEvents": stats.parked,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_metrics_and_dimension() {
        let stats = store::Stats {
            pending: 3,
            parked: 1,
            oldest_pending_age_seconds: 12.5,
        };
        let line: serde_json::Value = serde_json::from_str(&emf_line(
            "TransactionalOutbox",
            "booking-service",
            &stats,
            1,
        ))
        .unwrap();
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "TransactionalOutbox"
        );
        assert_eq!(line["ServiceName"], "booking-service");
        assert_eq!(line["OutboxOldestPendingAgeSeconds"], 12.5);
        assert_eq!(line["OutboxPendingEvents"], 3);
    }
}
