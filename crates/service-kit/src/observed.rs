//! The relay as a service runs it: `outbox::relay::Relay` with its publisher
//! observed, so `/health/status` can say whether the relay runs and when SQS
//! last took one of its events (state the outbox crate does not expose
//! itself), and, with OTLP export on, each event's send is a `publish` span in
//! the trace of the request that wrote it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use outbox::publish::{BatchOutcome, Publisher, SendError};
use outbox::store::Claimed;

/// What `/health/status` reports of this process's relay.
#[derive(Debug, Default)]
pub struct RelayState {
    running: AtomicBool,
    last_publish_at: Mutex<Option<DateTime<Utc>>>,
}

impl RelayState {
    /// Whether the relay's task runs.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// When SQS last accepted an event of this process's relay.
    pub fn last_publish_at(&self) -> Option<DateTime<Utc>> {
        *self
            .last_publish_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the relay running until the returned guard is dropped (when its
    /// task ends, normally or by a panic).
    pub fn run_guard(self: &Arc<Self>) -> RunningGuard {
        self.running.store(true, Ordering::SeqCst);
        RunningGuard(Arc::clone(self))
    }
}

/// See [`RelayState::run_guard`].
pub struct RunningGuard(Arc<RelayState>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

/// A publisher that records, in a [`RelayState`], when SQS accepted an event.
pub struct ObservedPublisher<P> {
    inner: P,
    state: Arc<RelayState>,
}

impl<P> ObservedPublisher<P> {
    /// `inner`, recording its successes in `state`.
    pub fn new(inner: P, state: Arc<RelayState>) -> Self {
        Self { inner, state }
    }
}

impl<P: Publisher> Publisher for ObservedPublisher<P> {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        // One span per event, in its booking's trace, open for the send.
        let spans: Vec<tracing::Span> = if crate::trace::enabled() {
            batch
                .iter()
                .map(|event| {
                    let span = tracing::info_span!("publish",
                        event_id = %event.event_id, aggregate_id = %event.aggregate_id,
                        event_type = %event.event_type, attempt = event.attempts + 1,
                        trace_id = tracing::field::Empty, outcome = tracing::field::Empty);
                    crate::trace::continue_trace(&span, event.traceparent.as_deref());
                    span
                })
                .collect()
        } else {
            Vec::new()
        };
        let outcome = self.inner.publish(batch).await;
        for (i, span) in spans.iter().enumerate() {
            let said = match &outcome {
                Err(e) => format!("not sent: {e}"),
                Ok(results) => match results.get(i) {
                    Some(Ok(())) => "accepted".to_owned(),
                    Some(Err(e)) => format!("refused: {e}"),
                    None => "unknown".to_owned(),
                },
            };
            span.record("outcome", said);
        }
        if outcome
            .as_ref()
            .is_ok_and(|results| results.iter().any(Result::is_ok))
        {
            *self
                .state
                .last_publish_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Utc::now());
        }
        outcome
    }
}

/// A service's relay on its own pool, publishing to `queue` through an
/// [`ObservedPublisher`]; returns it with the state `/health/status` reads.
pub fn relay(
    pool: sqlx::PgPool,
    queue: outbox::sqs::Queue,
    config: outbox::RelayConfig,
    metrics: outbox::metrics::RelayMetrics,
) -> (
    Arc<outbox::Relay<ObservedPublisher<outbox::sqs::SqsPublisher>>>,
    Arc<RelayState>,
) {
    let state = Arc::new(RelayState::default());
    let publisher =
        ObservedPublisher::new(outbox::sqs::SqsPublisher::new(queue), Arc::clone(&state));
    let relay = outbox::Relay::new(pool, publisher, config).with_metrics(metrics);
    (Arc::new(relay), state)
}
