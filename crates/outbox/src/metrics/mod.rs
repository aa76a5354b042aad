//! Metrics of the relay and the consumer. Both always count through these
//! handles; with the feature `prometheus` the counts are Prometheus metrics
//! ([`RelayMetrics::register`]), without it they cost nothing.
//!
//! A handle is cheap to clone and clones share their counts: give the relay
//! (or consumer) one and keep a clone for the `/metrics` endpoint.

#[cfg(feature = "prometheus")]
mod prom;

use std::time::Duration;

#[cfg(feature = "prometheus")]
pub use prom::ReasonLabel;
#[cfg(feature = "prometheus")]
use prometheus_client::registry::Registry;

/// The relay's metrics (prefix `outbox_`): published, failures by reason,
/// parked, out of order, broker availability, and the durations of claims,
/// sends and commit-to-publish; the backlog gauges are read from the table when
/// scraped ([`RelayMetrics::refresh`]), so every replica reports the true backlog.
#[derive(Clone, Default)]
pub struct RelayMetrics {
    #[cfg(feature = "prometheus")]
    inner: prom::RelayCounters,
}

#[allow(unused_variables)]
impl RelayMetrics {
    /// Registers the metrics (prefix `outbox_`).
    #[cfg(feature = "prometheus")]
    pub fn register(&self, registry: &mut Registry) {
        self.inner.register(registry);
    }

    /// Reads the backlog gauges from the table; returns what it read.
    #[cfg(feature = "prometheus")]
    pub async fn refresh(&self, pool: &sqlx::PgPool) -> Result<crate::store::Stats, crate::Error> {
        self.inner.refresh(pool).await
    }

    /// Events parked so far by this process.
    #[cfg(feature = "prometheus")]
    pub fn parked_total(&self) -> u64 {
        self.inner.parked.get()
    }

    /// Events SQS accepted after refusing an earlier one of their aggregate in
    /// the same batch, so far, by this process.
    #[cfg(feature = "prometheus")]
    pub fn out_of_order_total(&self) -> u64 {
        self.inner.out_of_order.get()
    }

    /// Whether the last call to the broker answered (1 in `outbox_sqs_available`).
    #[cfg(feature = "prometheus")]
    pub fn sqs_available_now(&self) -> bool {
        self.inner.sqs_available.get() == 1
    }

    pub(crate) fn published(&self, count: u64) {
        #[cfg(feature = "prometheus")]
        self.inner.published.inc_by(count);
    }

    pub(crate) fn failure(&self, reason: &str, count: u64) {
        #[cfg(feature = "prometheus")]
        self.inner.failure(reason, count);
    }

    pub(crate) fn parked(&self) {
        #[cfg(feature = "prometheus")]
        self.inner.parked.inc();
    }

    pub(crate) fn out_of_order(&self) {
        #[cfg(feature = "prometheus")]
        self.inner.out_of_order.inc();
    }

    pub(crate) fn sqs_available(&self, available: bool) {
        #[cfg(feature = "prometheus")]
        self.inner.sqs_available.set(i64::from(available));
    }

    pub(crate) fn claim_duration(&self, took: Duration) {
        #[cfg(feature = "prometheus")]
        self.inner.claim_duration.observe(took.as_secs_f64());
    }

    pub(crate) fn batch_duration(&self, took: Duration) {
        #[cfg(feature = "prometheus")]
        self.inner.batch_duration.observe(took.as_secs_f64());
    }

    pub(crate) fn commit_to_publish(&self, took: Duration) {
        #[cfg(feature = "prometheus")]
        self.inner.commit_to_publish.observe(took.as_secs_f64());
    }
}

/// The consumer's metrics (prefix `consumer_`): received, processed,
/// duplicates skipped, failures by reason, handling time, breaker state.
#[derive(Clone, Default)]
pub struct ConsumerMetrics {
    #[cfg(feature = "prometheus")]
    inner: prom::ConsumerCounters,
}

#[allow(unused_variables)]
#[cfg_attr(not(feature = "sqs"), allow(dead_code))]
impl ConsumerMetrics {
    /// Registers the metrics (prefix `consumer_`).
    #[cfg(feature = "prometheus")]
    pub fn register(&self, registry: &mut Registry) {
        self.inner.register(registry);
    }

    pub(crate) fn received(&self, count: u64) {
        #[cfg(feature = "prometheus")]
        self.inner.received.inc_by(count);
    }

    pub(crate) fn processed(&self) {
        #[cfg(feature = "prometheus")]
        self.inner.processed.inc();
    }

    pub(crate) fn duplicate(&self) {
        #[cfg(feature = "prometheus")]
        self.inner.duplicates.inc();
    }

    pub(crate) fn failure(&self, reason: &str) {
        #[cfg(feature = "prometheus")]
        self.inner.failure(reason);
    }

    pub(crate) fn handling(&self, seconds: f64) {
        #[cfg(feature = "prometheus")]
        self.inner.handling_latency.observe(seconds);
    }

    pub(crate) fn breaker_open(&self, open: bool) {
        #[cfg(feature = "prometheus")]
        self.inner.breaker_open.set(i64::from(open));
    }
}
