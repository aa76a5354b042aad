//! Step 2, send: one publisher call per batch, only while its lease holds; and
//! the outage prober, which sends the oldest event until the broker answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::claim::Batch;
use super::{Relay, RoundReport};
use crate::publish::{BatchOutcome, FailureReason, Publisher, SendError};
use crate::store::{self, Claimed};

/// What a lease must hold beyond one send: the time to record the result.
pub(super) const SEND_MARGIN: Duration = Duration::from_secs(1);

/// One SendMessageBatch call and what came of it (`None`: not sent, the lanes
/// are just given back).
pub(super) struct Sent {
    pub(super) rows: Vec<Claimed>,
    pub(super) result: Option<Result<BatchOutcome, SendError>>,
}
impl<P: Publisher> Relay<P> {
    /// Sends one batch, unless its lease could run out before the send is over
    /// (then another relay may already own the lanes) or the relay is stopping.
    pub(super) async fn send(&self, batch: Batch, shutdown: &CancellationToken) -> Sent {
        let Batch { claimed_at, rows } = batch;
        if shutdown.is_cancelled() || !self.lease_holds(claimed_at) {
            return Sent { rows, result: None };
        }
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.config.send_timeout, self.publisher.publish(&rows))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(SendError::new(
                    FailureReason::Unreachable,
                    format!(
                        "the publish call took longer than the send timeout ({:?})",
                        self.config.send_timeout
                    ),
                )),
            };
        self.metrics.batch_duration(started.elapsed());
        Sent {
            rows,
            result: Some(result),
        }
    }

    /// Sends batches as the claimers queue them; ends when the claimers are
    /// gone and the queue is empty.
    pub(super) async fn send_loop(
        self: Arc<Self>,
        batches: Arc<Mutex<mpsc::Receiver<Batch>>>,
        sent: mpsc::Sender<Sent>,
        shutdown: CancellationToken,
    ) {
        loop {
            let next = batches.lock().await.recv().await;
            let Some(batch) = next else { break };
            if sent.send(self.send(batch, &shutdown).await).await.is_err() {
                break;
            }
        }
    }

    /// Whether a batch claimed at `claimed_at` still holds its lease for one
    /// whole send plus the margin to record it.
    fn lease_holds(&self, claimed_at: Instant) -> bool {
        let renewed = *self.renewed_at.lock().expect("not poisoned");
        let since = renewed.map_or(claimed_at, |at| at.max(claimed_at));
        let valid_until = since + self.config.lease;
        valid_until
            .checked_duration_since(Instant::now())
            .is_some_and(|left| left > self.config.send_timeout + SEND_MARGIN)
    }

    /// Extends this relay's leases every quarter lease while the relay runs.
    pub(super) async fn renew_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = self.config.lease / 4;
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let started = Instant::now();
            match store::renew(&self.pool, self.id, self.config.lease).await {
                Ok(_) => {
                    *self.renewed_at.lock().expect("not poisoned") = Some(started);
                    if std::mem::take(&mut failing) {
                        tracing::info!("outbox leases renewed again");
                    }
                }
                // Once per outage: the claimers and the recorder say the rest.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %crate::error::chain(&e), "cannot renew outbox leases; sends stop before they run out");
                }
                Err(_) => {}
            }
        }
    }

    /// During an outage, sends the oldest lane's head every
    /// `probe_interval`, backoff or not. The first success ends the outage:
    /// every lane held back by it is due at once and the claimers wake up.
    pub(super) async fn probe_loop(
        self: Arc<Self>,
        wake: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) {
        let mut started: Option<Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.probe_interval) => {}
            }
            if !self.outage.load(Ordering::SeqCst) {
                started = None;
                continue;
            }
            let since = *started.get_or_insert_with(Instant::now);
            let claimed_at = Instant::now();
            let recovered = match self.claim(true).await {
                // Nothing waits: nothing to probe with, and nothing held back.
                Ok(rows) if rows.is_empty() => true,
                Ok(rows) => {
                    let sent = self.send(Batch { claimed_at, rows }, &shutdown).await;
                    matches!(
                        self.record(std::slice::from_ref(&sent)).await,
                        Ok(RoundReport::Sent { .. })
                    )
                }
                Err(_) => false,
            };
            if recovered {
                let released = store::end_outage(&self.pool).await.unwrap_or_default();
                self.outage.store(false, Ordering::SeqCst);
                self.metrics.sqs_available(true);
                tracing::info!(outage = ?since.elapsed(), released,
                    "SQS reachable again; draining the outbox");
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}
