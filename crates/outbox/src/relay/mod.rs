//! The relay: moves committed outbox events to the broker.
//!
//! Each round is claim → send → record, one file each:
//! - `claim`: leases on *lanes* (one per aggregate with a backlog),
//!   not open transactions; see [`crate::store`] for why and for how the
//!   per-aggregate order is kept;
//! - `send`: one [`Publisher`] call per batch, only while the
//!   batch's lease outlives the send; the outage prober;
//! - `record`: each event's result written back, lanes released
//!   or backed off, metrics counted once.
//!
//! [`Relay::run_once`] does one round; [`Relay::run`] runs the three as a
//! pipeline. A committed event wakes the relay at once through `LISTEN
//! outbox_events` (the insert trigger NOTIFYs on commit); recording a batch wakes
//! it too, so the next events of the lanes just released go at once; a periodic
//! poll is only the fallback for missed notifications and for backoffs that ran out.
//!
//! Failure handling:
//! - An entry the broker refuses backs its lane off (exponential, jittered) and
//!   counts towards parking the event.
//! - A call that fails as a whole (unreachable, denied, queue gone, throttled,
//!   timed out) is an *outage*: the claimers stop claiming, and one prober per
//!   process sends the oldest lane every `probe_interval`, backoff or not. Its
//!   first success makes every lane held back by the outage due at once and
//!   wakes the claimers, so the backlog drains at full speed right away.
//! - Leases are short (10 s by default) and renewed every quarter lease while
//!   the process lives; a batch is sent only while its lease outlives the send
//!   timeout, so a crashed relay's lanes are taken over within one lease and a
//!   live relay's never are.
//!
//! Several claimers per process, and several processes, can run against one database.

mod background;
mod claim;
mod config;
mod record;
mod send;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use futures::future::join_all;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use background::backoff;
pub use config::{RelayConfig, RelayConfigBuilder, RelayConfigError};

use crate::error::Error;
use crate::metrics::RelayMetrics;
use crate::publish::{Publisher, split_batches};
use crate::store;
use claim::Batch;
use send::Sent;

/// The PostgreSQL channel the outbox trigger notifies.
pub const CHANNEL: &str = "outbox_events";

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundReport {
    /// Nothing was due.
    Idle,
    /// Events were claimed and sent; some may have failed and been rescheduled.
    Sent {
        /// Events the broker accepted.
        published: usize,
        /// Lanes whose head the broker refused (backed off or parked).
        failed: usize,
    },
    /// The broker could not be reached at all (every call failed); events rescheduled.
    Unavailable,
}

/// Moves committed outbox events to SQS; see the module docs.
pub struct Relay<P> {
    pool: PgPool,
    publisher: Arc<P>,
    config: RelayConfig,
    id: Uuid,
    metrics: RelayMetrics,
    /// SQS failed every call of the last round: claimers pause, the prober probes.
    outage: AtomicBool,
    /// When the last successful lease renewal started: every lane this relay
    /// holds is valid until then + lease.
    renewed_at: std::sync::Mutex<Option<Instant>>,
}

impl<P: Publisher> Relay<P> {
    /// A relay that publishes the outbox of `pool` through `publisher`. Nothing
    /// runs until [`Relay::run`] (or [`Relay::run_once`]).
    pub fn new(pool: PgPool, publisher: P, config: RelayConfig) -> Self {
        Self {
            pool,
            publisher: Arc::new(publisher),
            config,
            id: Uuid::new_v4(),
            metrics: RelayMetrics::default(),
            outage: AtomicBool::new(false),
            renewed_at: std::sync::Mutex::new(None),
        }
    }

    /// Counts into `metrics` (a handle: clones share the counters).
    pub fn with_metrics(mut self, metrics: RelayMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// This relay's id: the owner written on the lanes it claims.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Its settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// One step, start to end: claim due lanes, send their runs in batches
    /// concurrently, record each event's result. An event is marked published
    /// only if SQS accepted its entry. (The running relay does the same three
    /// steps as a pipeline, see [`Relay::run`]; tests drive this to take one step
    /// at a time.)
    #[tracing::instrument(skip_all, fields(relay_id = %self.id))]
    pub async fn run_once(&self) -> Result<RoundReport, Error> {
        let claimed_at = Instant::now();
        let rows = self.claim(false).await?;
        if rows.is_empty() {
            return Ok(RoundReport::Idle);
        }
        let in_flight = tokio::sync::Semaphore::new(self.config.batches_in_flight.into());
        let sent = join_all(split_batches(rows).into_iter().map(|rows| async {
            let _permit = in_flight.acquire().await.expect("never closed");
            self.send(Batch { claimed_at, rows }, &CancellationToken::new())
                .await
        }))
        .await;
        self.record(&sent).await
    }

    /// Runs until `shutdown`, then gives back any lanes still held.
    ///
    /// The three steps of [`Relay::run_once`] run here as a pipeline, so SQS
    /// always has batches in flight while the database claims the next lanes and
    /// records the last results:
    /// - [`workers`](RelayConfigBuilder::workers) claimers claim
    ///   [`claim_size`](RelayConfigBuilder::claim_size) lanes at a time and queue
    ///   them as batches (waiting when `batches_in_flight` are queued);
    /// - [`batches_in_flight`](RelayConfigBuilder::batches_in_flight) senders publish;
    /// - one recorder writes the results back, many batches per transaction, and
    ///   wakes the claimers: the lanes it released have their next events due;
    /// - a renewer extends the leases of every lane held, a prober tests SQS
    ///   during an outage, a listener turns NOTIFY into wake-ups, and retention
    ///   deletes old published rows.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let wake_tx = Arc::new(wake_tx);
        let listener = tokio::spawn(background::listen(
            self.pool.clone(),
            Arc::clone(&wake_tx),
            shutdown.clone(),
        ));
        let retention = {
            let (pool, retention) = (self.pool.clone(), self.config.retention);
            tokio::spawn(crate::retention::purge_periodically(
                "published outbox events",
                retention,
                shutdown.clone(),
                move || {
                    let pool = pool.clone();
                    async move {
                        store::purge_published(&pool, retention, crate::retention::BATCH).await
                    }
                },
            ))
        };
        // Stopped after the recorder, so leases hold while the last results are recorded.
        let renewing = CancellationToken::new();
        let renewer = tokio::spawn(Arc::clone(&self).renew_loop(renewing.clone()));
        let prober =
            tokio::spawn(Arc::clone(&self).probe_loop(Arc::clone(&wake_tx), shutdown.clone()));

        let in_flight = usize::from(self.config.batches_in_flight);
        // Claimers → senders → recorder: bounded, so claiming waits while enough
        // is queued and nothing piles up in memory when the database is slow.
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(in_flight);
        let batch_rx = Arc::new(Mutex::new(batch_rx));
        let (sent_tx, sent_rx) = mpsc::channel::<Sent>(2 * in_flight);
        let claimers: Vec<_> = (0..self.config.workers)
            .map(|_| {
                tokio::spawn(Arc::clone(&self).claim_loop(
                    batch_tx.clone(),
                    wake_rx.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        drop(batch_tx);
        let senders: Vec<_> = (0..in_flight)
            .map(|_| {
                tokio::spawn(Arc::clone(&self).send_loop(
                    Arc::clone(&batch_rx),
                    sent_tx.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        drop(sent_tx);
        let recorder = tokio::spawn(Arc::clone(&self).record_loop(
            sent_rx,
            Arc::clone(&wake_tx),
            shutdown.clone(),
        ));
        tracing::info!(relay_id = %self.id, claimers = claimers.len(), senders = senders.len(), "relay started");

        shutdown.cancelled().await;
        tracing::info!(relay_id = %self.id,
            "relay stopping: finishing the sends in flight and recording them, then releasing its lanes");
        for task in claimers.into_iter().chain(senders) {
            let _ = task.await;
        }
        let _ = recorder.await;
        renewing.cancel();
        for task in [renewer, prober, listener, retention] {
            let _ = task.await;
        }
        match store::release(&self.pool, self.id).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released lanes on shutdown"),
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "failed to release lanes; they expire with the lease")
            }
        }
        tracing::info!(relay_id = %self.id, "relay stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let d = backoff(base, max, attempt);
            assert!(
                d >= Duration::from_millis(full / 2) && d <= Duration::from_millis(full),
                "{attempt}: {d:?}"
            );
        }
    }
}
