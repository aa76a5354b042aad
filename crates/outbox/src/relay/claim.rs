//! Step 1, claim: lease the oldest due lanes and read their first events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Relay;
use crate::error::Error;
use crate::publish::{Publisher, split_batches};
use crate::store::{self, ClaimSize, Claimed};

/// Claimed events on their way to SQS: one SendMessageBatch.
pub(super) struct Batch {
    /// When the claim was made (the lease started).
    pub(super) claimed_at: Instant,
    pub(super) rows: Vec<Claimed>,
}

impl<P: Publisher> Relay<P> {
    /// Claims due lanes (with `probe`: the oldest one, outage or not).
    pub(super) async fn claim(&self, probe: bool) -> Result<Vec<Claimed>, Error> {
        let started = Instant::now();
        let size = if probe {
            ClaimSize { lanes: 1, run: 1 }
        } else {
            self.config.claim_size()
        };
        let rows = store::claim(&self.pool, self.id, size, self.config.lease, probe).await?;
        self.metrics.claim_duration(started.elapsed());
        Ok(rows)
    }

    /// Claims while the relay runs and queues the runs as batches for the
    /// senders; sleeps until woken (a commit, a recording) or the poll interval.
    pub(super) async fn claim_loop(
        self: Arc<Self>,
        batches: mpsc::Sender<Batch>,
        mut wake: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut db_failures = 0u32;
        while !shutdown.is_cancelled() {
            // Seen before claiming: a wake-up that lands while we claim wakes the next wait.
            wake.borrow_and_update();
            // During an outage only the prober sends; it wakes us when SQS is back.
            if !self.outage.load(Ordering::SeqCst) {
                let claimed_at = Instant::now();
                match self.claim(false).await {
                    Ok(rows) if !rows.is_empty() => {
                        db_failures = 0;
                        for rows in split_batches(rows) {
                            if batches.send(Batch { claimed_at, rows }).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Ok(_) => db_failures = 0,
                    Err(e) => {
                        db_failures += 1;
                        if db_failures == 1 || db_failures.is_multiple_of(30) {
                            tracing::warn!(error = %crate::error::chain(&e), "relay cannot claim from the outbox; retrying");
                        }
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = wake.changed(), if db_failures == 0 => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }
}
