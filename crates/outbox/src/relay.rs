//! The relay: moves committed outbox rows to SQS.
//!
//! Each worker loops claim → send → record ([`Relay::run_once`]). Claims are
//! leases, not open transactions (see [`crate::store`] for why and for how the
//! per-aggregate order is kept). A committed event wakes the relay at once
//! through `LISTEN outbox_events` (the insert trigger NOTIFYs on commit); a
//! periodic poll is the fallback for missed notifications and for rows whose
//! backoff ran out. Several workers per instance, and several instances, can run
//! against one database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use service_kit::config::parse_duration;
use futures::future::join_all;
use rand::Rng;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::RelayMetrics;
use crate::sqs::{Publisher, SendError, split_batches};
use crate::store::{self, Claimed, Failure};

/// The Postgres channel the outbox trigger notifies.
pub const CHANNEL: &str = "outbox_events";

/// Relay settings.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Run the relay inside this process.
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,
    /// Concurrent claim→send→record loops in this process.
    #[arg(long, env = "RELAY_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub relay_workers: u16,
    /// SendMessageBatch calls in flight at once in this process.
    #[arg(long, env = "RELAY_BATCHES_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub relay_batches_in_flight: u16,
    /// Events one worker claims per database round trip (sent as batches of up to 10).
    #[arg(long, env = "RELAY_CLAIM_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub relay_claim_size: u16,
    /// Attempts before an event is parked for an operator.
    #[arg(long, env = "RELAY_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
    pub relay_max_attempts: i32,
    /// Fallback poll when no notification arrives.
    #[arg(long, env = "RELAY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub relay_poll_interval: Duration,
    /// How long a claim lasts; a crashed relay's events are retried after this.
    #[arg(long, env = "RELAY_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub relay_lease: Duration,
    /// First retry delay after a failed send; doubles per attempt, with jitter.
    #[arg(long, env = "RELAY_BACKOFF_BASE", default_value = "500ms", value_parser = parse_duration)]
    pub relay_backoff_base: Duration,
    /// Longest retry delay.
    #[arg(long, env = "RELAY_BACKOFF_MAX", default_value = "60s", value_parser = parse_duration)]
    pub relay_backoff_max: Duration,
    /// How long published rows are kept before deletion.
    #[arg(long, env = "OUTBOX_RETENTION", default_value = "4h", value_parser = parse_duration)]
    pub outbox_retention: Duration,
}

impl RelayArgs {
    /// Defaults, as if no variable were set (tests and benchmarks start here).
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            relay: RelayArgs,
        }
        <Only as clap::Parser>::parse_from(["relay"]).relay
    }
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// Rows were claimed and sent; some may have failed and been rescheduled.
    Sent { published: usize, failed: usize },
    /// SQS could not be reached at all (every call failed); rows rescheduled.
    Unavailable,
}

pub struct Relay<P> {
    pool: PgPool,
    publisher: Arc<P>,
    args: RelayArgs,
    id: Uuid,
    metrics: RelayMetrics,
    in_flight: Arc<Semaphore>,
}

impl<P: Publisher> Relay<P> {
    pub fn new(pool: PgPool, publisher: P, args: RelayArgs, metrics: RelayMetrics) -> Self {
        let in_flight = Arc::new(Semaphore::new(args.relay_batches_in_flight.into()));
        Self {
            pool,
            publisher: Arc::new(publisher),
            args,
            id: Uuid::new_v4(),
            metrics,
            in_flight,
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// One step: claim due rows, send them in batches concurrently, record each
    /// row's result. A row is marked published only if SQS accepted its entry.
    #[tracing::instrument(skip_all, fields(relay_id = %self.id))]
    pub async fn run_once(&self) -> anyhow::Result<Outcome> {
        let rows = store::claim(
            &self.pool,
            self.id,
            self.args.relay_claim_size.into(),
            self.args.relay_lease,
        )
        .await?;
        if rows.is_empty() {
            return Ok(Outcome::Idle);
        }
        let batches = split_batches(&rows);
        let results = join_all(batches.iter().map(|batch| self.send(batch))).await;

        let mut published: Vec<&Claimed> = Vec::with_capacity(rows.len());
        let mut failures = Vec::new();
        let mut calls_failed = 0;
        let mut last_call_error: Option<SendError> = None;
        for (batch, result) in batches.iter().zip(results) {
            match result {
                Ok(outcome) => {
                    for (row, entry) in batch.iter().zip(outcome) {
                        match entry {
                            Ok(()) => published.push(row),
                            Err(e) => {
                                self.metrics.failure(e.reason.as_str(), 1);
                                tracing::warn!(event_id = %row.event_id, error = %e, "SQS refused an entry; will retry");
                                failures.push(self.failure(row, &e));
                            }
                        }
                    }
                }
                Err(e) => {
                    calls_failed += 1;
                    self.metrics.failure(e.reason.as_str(), batch.len() as u64);
                    failures.extend(batch.iter().map(|row| self.failure(row, &e)));
                    last_call_error = Some(e);
                }
            }
        }

        let seqs: Vec<i64> = published.iter().map(|r| r.seq).collect();
        store::mark_published(&self.pool, &seqs).await?;
        let now = chrono::Utc::now();
        for row in &published {
            let latency = (now - row.created_at).to_std().unwrap_or_default();
            self.metrics
                .commit_to_publish
                .observe(latency.as_secs_f64());
        }
        self.metrics.published.inc_by(published.len() as u64);

        let recorded =
            store::mark_failed(&self.pool, &failures, self.args.relay_max_attempts).await?;
        for parked in recorded.iter().filter(|r| r.parked) {
            self.metrics.parked.inc();
            tracing::error!(event_id = %parked.event_id, attempts = parked.attempts,
                "event parked after the maximum attempts; POST /api/outbox/{{eventId}}/retry resumes it");
        }

        if calls_failed == batches.len() {
            let error = last_call_error.map(|e| e.to_string()).unwrap_or_default();
            tracing::debug!(events = rows.len(), %error, "SQS unavailable; events stay in the outbox");
            return Ok(Outcome::Unavailable);
        }
        tracing::debug!(
            published = published.len(),
            failed = failures.len(),
            "relayed"
        );
        Ok(Outcome::Sent {
            published: published.len(),
            failed: failures.len(),
        })
    }

    async fn send(&self, batch: &[Claimed]) -> Result<Vec<Result<(), SendError>>, SendError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let result = self.publisher.publish(batch).await;
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        result
    }

    fn failure(&self, row: &Claimed, error: &SendError) -> Failure {
        Failure {
            seq: row.seq,
            error: error.to_string(),
            retry_in: self.backoff(row.attempts + 1),
        }
    }

    /// Exponential backoff with jitter, capped: base·2^(attempt-1), scaled by a
    /// random factor in [0.5, 1] so replicas retrying the same outage spread out.
    fn backoff(&self, attempt: i32) -> Duration {
        let exp = self
            .args
            .relay_backoff_base
            .saturating_mul(1u32 << (attempt - 1).clamp(0, 20) as u32);
        let capped = exp.min(self.args.relay_backoff_max);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Runs the workers, the notification listener and retention until
    /// `shutdown`; then gives back any claims still held.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let listener = tokio::spawn(listen(self.pool.clone(), wake_tx, shutdown.clone()));
        let retention = tokio::spawn(retain(
            self.pool.clone(),
            self.args.outbox_retention,
            shutdown.clone(),
        ));
        let workers: Vec<_> = (0..self.args.relay_workers)
            .map(|_| tokio::spawn(Arc::clone(&self).work(wake_rx.clone(), shutdown.clone())))
            .collect();
        tracing::info!(relay_id = %self.id, workers = workers.len(), "relay started");
        for worker in workers {
            let _ = worker.await;
        }
        let _ = listener.await;
        let _ = retention.await;
        match store::release(&self.pool, self.id).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released claims on shutdown"),
            Err(e) => {
                tracing::warn!(error = %e, "failed to release claims; they expire with the lease")
            }
        }
        tracing::info!(relay_id = %self.id, "relay stopped");
    }

    async fn work(self: Arc<Self>, mut wake: watch::Receiver<u64>, shutdown: CancellationToken) {
        let mut outage: Option<(Instant, u32)> = None; // since, consecutive failed rounds
        let mut last_warning: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            // Seen before claiming: a notification that lands while we claim wakes the next wait.
            wake.borrow_and_update();
            let pause = match self.run_once().await {
                Ok(Outcome::Sent { .. }) => {
                    if let Some((since, _)) = outage.take() {
                        tracing::info!(
                            outage_seconds = since.elapsed().as_secs(),
                            "SQS reachable again; draining the outbox"
                        );
                    }
                    continue;
                }
                Ok(Outcome::Idle) => None,
                Ok(Outcome::Unavailable) | Err(_) if shutdown.is_cancelled() => break,
                result @ (Ok(Outcome::Unavailable) | Err(_)) => {
                    let (since, rounds) = outage.get_or_insert((Instant::now(), 0));
                    *rounds += 1;
                    // One warning when an outage starts, then at most one every 30 s.
                    if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                        let error = match &result {
                            Err(e) => format!("{e:#}"),
                            _ => "SQS calls failed; events stay in the outbox and are retried with backoff".into(),
                        };
                        tracing::warn!(outage_seconds = since.elapsed().as_secs(), rounds = *rounds, %error, "relay cannot publish");
                        last_warning = Some(Instant::now());
                    }
                    Some(self.backoff(*rounds as i32))
                }
            };
            match pause {
                // Backing off from an outage: notifications do not cut it short.
                Some(delay) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                None => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        _ = wake.changed() => {}
                        () = tokio::time::sleep(self.args.relay_poll_interval) => {}
                    }
                }
            }
        }
    }
}

/// Turns `NOTIFY outbox_events` into wake-ups. sqlx reconnects the listener when
/// its connection drops (database restart, `pg_terminate_backend`); notifications
/// sent meanwhile are lost, so a reconnect also wakes the workers.
async fn listen(pool: PgPool, wake: watch::Sender<u64>, shutdown: CancellationToken) {
    let bump = |wake: &watch::Sender<u64>| wake.send_modify(|n| *n = n.wrapping_add(1));
    let mut listener: Option<PgListener> = None;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let active = match listener.as_mut() {
            Some(active) => active,
            None => {
                match async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(l)
                }
                .await
                {
                    Ok(l) => {
                        if failures > 0 {
                            tracing::info!("outbox listener connected again");
                        }
                        failures = 0;
                        bump(&wake);
                        listener.insert(l)
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %e, "outbox listener cannot connect; relying on polling meanwhile");
                        }
                        let delay = Duration::from_millis(200 * u64::from(failures.min(25)));
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(delay) => continue,
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            received = active.try_recv() => match received {
                Ok(Some(_)) => bump(&wake),
                // The connection was lost and will be re-established on the next call.
                Ok(None) => {
                    tracing::info!("outbox listener connection lost; reconnecting");
                    bump(&wake);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox listener failed; reconnecting");
                    listener = None;
                    bump(&wake);
                }
            }
        }
    }
}

/// Deletes published rows older than `retention`, in batches of 1,000 so no
/// statement holds many locks or bloats WAL in one go.
async fn retain(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        loop {
            match store::purge_published(&pool, retention, 1000).await {
                Ok(n) if n == 1000 && !shutdown.is_cancelled() => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(deleted = n, "outbox retention");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox retention failed; trying again later");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let args = RelayArgs::defaults();
        assert!(args.relay_enabled);
        assert_eq!(args.relay_lease, Duration::from_secs(60));
        assert_eq!(args.outbox_retention, Duration::from_secs(4 * 3600));
    }
}
