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
use futures::future::join_all;
use rand::Rng;
use service_kit::config::parse_duration;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::RelayMetrics;
use crate::sqs::{BatchOutcome, Publisher, SendError, split_batches};
use crate::store::{self, Claimed, Failure};

/// The Postgres channel the outbox trigger notifies.
pub const CHANNEL: &str = "outbox_events";

/// Relay settings.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Run the relay inside this process.
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,
    /// Claimers in this process (each claims RELAY_CLAIM_SIZE rows at a time for the senders).
    #[arg(long, env = "RELAY_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub relay_workers: u16,
    /// SendMessageBatch calls in flight at once in this process.
    #[arg(long, env = "RELAY_BATCHES_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub relay_batches_in_flight: u16,
    /// Events one worker claims per database round trip (sent as batches of up to 10).
    #[arg(long, env = "RELAY_CLAIM_SIZE", default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=1000))]
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

/// One SendMessageBatch call and what came of it.
struct Sent {
    rows: Vec<Claimed>,
    result: Result<BatchOutcome, SendError>,
}

pub struct Relay<P> {
    pool: PgPool,
    publisher: Arc<P>,
    args: RelayArgs,
    id: Uuid,
    metrics: RelayMetrics,
    /// Consecutive rounds in which SQS could not be reached (0: healthy). The
    /// claimers back off on it; the recorder sets it.
    outage_rounds: AtomicU32,
    /// When the last outage warning was logged (at most one every 30 s).
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl<P: Publisher> Relay<P> {
    pub fn new(pool: PgPool, publisher: P, args: RelayArgs, metrics: RelayMetrics) -> Self {
        Self {
            pool,
            publisher: Arc::new(publisher),
            args,
            id: Uuid::new_v4(),
            metrics,
            outage_rounds: AtomicU32::new(0),
            last_warning: std::sync::Mutex::new(None),
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// One step, start to end: claim due rows, send them in batches
    /// concurrently, record each row's result. A row is marked published only if
    /// SQS accepted its entry. (The running relay does the same three steps as
    /// a pipeline, see [`Relay::run`]; tests drive this to take one step at a time.)
    #[tracing::instrument(skip_all, fields(relay_id = %self.id))]
    pub async fn run_once(&self) -> anyhow::Result<Outcome> {
        let rows = self.claim(self.args.relay_claim_size.into()).await?;
        if rows.is_empty() {
            return Ok(Outcome::Idle);
        }
        let batches: Vec<Vec<Claimed>> = split_batches(&rows)
            .into_iter()
            .map(<[Claimed]>::to_vec)
            .collect();
        let in_flight = Semaphore::new(self.args.relay_batches_in_flight.into());
        let sent = join_all(batches.into_iter().map(|rows| async {
            let _permit = in_flight.acquire().await.expect("never closed");
            self.send(rows).await
        }))
        .await;
        self.record(&sent).await
    }

    async fn claim(&self, limit: i64) -> anyhow::Result<Vec<Claimed>> {
        store::claim(&self.pool, self.id, limit, self.args.relay_lease).await
    }

    async fn send(&self, rows: Vec<Claimed>) -> Sent {
        let started = Instant::now();
        let result = self.publisher.publish(&rows).await;
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        Sent { rows, result }
    }

    /// Writes the results of some sends back to the outbox: accepted entries
    /// published, the rest rescheduled (or parked). Returns what happened.
    async fn record(&self, sent: &[Sent]) -> anyhow::Result<Outcome> {
        let mut published: Vec<&Claimed> = Vec::new();
        let mut failures = Vec::new();
        let calls = sent.len();
        let mut calls_failed = 0;
        for Sent { rows, result } in sent {
            match result {
                Ok(outcome) => {
                    for (row, entry) in rows.iter().zip(outcome) {
                        match entry {
                            Ok(()) => published.push(row),
                            Err(e) => {
                                self.metrics.failure(e.reason.as_str(), 1);
                                tracing::warn!(event_id = %row.event_id, error = %e, "SQS refused an entry; will retry");
                                // SQS refused this entry: it counts towards parking.
                                failures.push(self.failure(row, e, true));
                            }
                        }
                    }
                }
                Err(e) => {
                    calls_failed += 1;
                    self.metrics.failure(e.reason.as_str(), rows.len() as u64);
                    // The call failed as a whole: an outage, not the events' fault.
                    failures.extend(rows.iter().map(|row| self.failure(row, e, false)));
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

        if calls > 0 && calls_failed == calls {
            let error = sent
                .iter()
                .find_map(|s| s.result.as_ref().err())
                .map(ToString::to_string)
                .unwrap_or_default();
            self.note_outage(&error);
            return Ok(Outcome::Unavailable);
        }
        if !published.is_empty() {
            self.note_recovery();
        }
        Ok(Outcome::Sent {
            published: published.len(),
            failed: failures.len(),
        })
    }

    fn failure(&self, row: &Claimed, error: &SendError, may_park: bool) -> Failure {
        Failure {
            seq: row.seq,
            error: error.to_string(),
            retry_in: self.backoff(row.attempts + 1),
            may_park,
        }
    }

    /// One warning when an outage starts, then at most one every 30 s.
    fn note_outage(&self, error: &str) {
        let rounds = self.outage_rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().expect("not poisoned");
        if rounds == 1 || last.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
            *last = Some(Instant::now());
            tracing::warn!(rounds, %error, "relay cannot publish; events stay in the outbox and are retried with backoff");
        }
    }

    fn note_recovery(&self) {
        let rounds = self.outage_rounds.swap(0, Ordering::Relaxed);
        if rounds > 0 {
            tracing::info!(rounds, "SQS reachable again; draining the outbox");
        }
    }

    /// Exponential backoff with jitter, capped: base·2^(attempt-1), scaled by a
    /// random factor in [0.5, 1] so replicas retrying the same outage spread out.
    fn backoff(&self, attempt: i32) -> Duration {
        backoff(
            self.args.relay_backoff_base,
            self.args.relay_backoff_max,
            attempt,
        )
    }

    /// Runs until `shutdown`, then gives back any claims still held.
    ///
    /// The three steps of [`Relay::run_once`] run here as a pipeline, so SQS
    /// always has batches in flight while the database claims the next rows and
    /// records the last results:
    /// - `RELAY_WORKERS` claimers claim `RELAY_CLAIM_SIZE` rows at a time and
    ///   queue them as batches (waiting when `RELAY_BATCHES_IN_FLIGHT` are queued);
    /// - `RELAY_BATCHES_IN_FLIGHT` senders call SendMessageBatch;
    /// - one recorder writes the results back, many batches per statement.
    ///
    /// Order per aggregate still holds: an aggregate's next row becomes
    /// claimable only once the recorder has marked the previous one published.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let listener = tokio::spawn(listen(self.pool.clone(), wake_tx, shutdown.clone()));
        let retention = tokio::spawn(retain(
            self.pool.clone(),
            self.args.outbox_retention,
            shutdown.clone(),
        ));

        let in_flight = usize::from(self.args.relay_batches_in_flight);
        // Claimers → senders: bounded, so claiming waits while enough is queued.
        let (batch_tx, batch_rx) = mpsc::channel::<(Instant, Vec<Claimed>)>(in_flight);
        let batch_rx = Arc::new(tokio::sync::Mutex::new(batch_rx));
        let (sent_tx, sent_rx) = mpsc::unbounded_channel::<Sent>();
        let claimers: Vec<_> = (0..self.args.relay_workers)
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
                let relay = Arc::clone(&self);
                let (batches, sent) = (Arc::clone(&batch_rx), sent_tx.clone());
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    // Ends when the claimers are gone and the queue is empty.
                    loop {
                        let next = batches.lock().await.recv().await;
                        let Some((claimed_at, rows)) = next else {
                            break;
                        };
                        // Not sent: on shutdown (ECS allows 30 s; `release` below
                        // frees the rows for the other replicas), or when the lease
                        // is nearly over (another relay may claim them any moment).
                        if shutdown.is_cancelled()
                            || claimed_at.elapsed() > relay.args.relay_lease.mul_f64(0.8)
                        {
                            continue;
                        }
                        let _ = sent.send(relay.send(rows).await);
                    }
                })
            })
            .collect();
        drop(sent_tx);
        let recorder = tokio::spawn(Arc::clone(&self).record_loop(sent_rx));
        tracing::info!(relay_id = %self.id, claimers = claimers.len(), senders = senders.len(), "relay started");

        for task in claimers.into_iter().chain(senders) {
            let _ = task.await;
        }
        let _ = recorder.await;
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

    async fn claim_loop(
        self: Arc<Self>,
        batches: mpsc::Sender<(Instant, Vec<Claimed>)>,
        mut wake: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut db_failures = 0u32;
        while !shutdown.is_cancelled() {
            // SQS is down: back off instead of claiming (and failing) the backlog.
            let rounds = self.outage_rounds.load(Ordering::Relaxed);
            if rounds > 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(self.backoff(rounds as i32)) => {}
                }
            }
            // Seen before claiming: a notification that lands while we claim wakes the next wait.
            wake.borrow_and_update();
            let claimed_at = Instant::now();
            match self.claim(self.args.relay_claim_size.into()).await {
                Ok(rows) if !rows.is_empty() => {
                    db_failures = 0;
                    for batch in split_batches(&rows) {
                        if batches.send((claimed_at, batch.to_vec())).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Ok(_) => db_failures = 0,
                Err(e) => {
                    db_failures += 1;
                    if db_failures == 1 || db_failures.is_multiple_of(30) {
                        tracing::warn!(error = %format!("{e:#}"), "relay cannot claim from the outbox; retrying");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = wake.changed(), if db_failures == 0 => {}
                () = tokio::time::sleep(self.args.relay_poll_interval) => {}
            }
        }
    }

    async fn record_loop(self: Arc<Self>, mut sent: mpsc::UnboundedReceiver<Sent>) {
        let mut pending = Vec::new();
        // Whatever arrived while the last statement ran is recorded in one go.
        while sent.recv_many(&mut pending, 256).await > 0 {
            for attempt in 1..=3u64 {
                match self.record(&pending).await {
                    Ok(_) => break,
                    Err(e) if attempt < 3 => {
                        tracing::warn!(error = %format!("{e:#}"), attempt, "failed to record send results; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    // The rows stay claimed; after their lease they are sent
                    // again (at least once, never lost).
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "failed to record send results; the rows are re-sent after their lease")
                    }
                }
            }
            pending.clear();
        }
    }
}

/// base·2^(attempt-1), capped at `max`, then scaled by a random factor in [0.5, 1].
pub fn backoff(base: Duration, max: Duration, attempt: i32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).clamp(0, 20) as u32);
    exp.min(max).mul_f64(rand::rng().random_range(0.5..=1.0))
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

    #[test]
    fn defaults_parse() {
        let args = RelayArgs::defaults();
        assert!(args.relay_enabled);
        assert_eq!(args.relay_lease, Duration::from_secs(60));
        assert_eq!(args.outbox_retention, Duration::from_secs(4 * 3600));
    }
}
