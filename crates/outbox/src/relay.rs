//! The relay: moves committed outbox events to SQS.
//!
//! Each step is claim → send → record ([`Relay::run_once`]). Claims are leases on
//! *lanes* (one per aggregate with a backlog), not open transactions: see
//! [`crate::store`] for why and for how the per-aggregate order is kept. A
//! committed event wakes the relay at once through `LISTEN outbox_events` (the
//! insert trigger NOTIFYs on commit); recording a batch wakes it too, so the next
//! events of the lanes just released go at once; a periodic poll is only the
//! fallback for missed notifications and for backoffs that ran out.
//!
//! Failure handling:
//! - An entry SQS refuses backs its lane off (exponential, jittered) and counts
//!   towards parking the event.
//! - A call that fails as a whole (unreachable, denied, queue gone, throttled,
//!   timed out) is an *outage*: the claimers stop claiming, and one prober per
//!   process sends the oldest lane every `RELAY_PROBE_INTERVAL`, backoff or not.
//!   Its first success makes every lane held back by the outage due at once and
//!   wakes the claimers, so the backlog drains at full speed right away.
//! - Leases are short (`RELAY_LEASE`, 10 s) and renewed every quarter lease while
//!   the process lives; a batch is sent only while its lease outlives the send
//!   timeout, so a crashed relay's lanes are taken over within one lease and a
//!   live relay's never are.
//!
//! Several claimers per process, and several processes, can run against one database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::future::join_all;
use rand::Rng;
use service_kit::config::parse_duration;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::RelayMetrics;
use crate::sqs::{BatchOutcome, FailureReason, Publisher, SendError, split_batches};
use crate::store::{self, ClaimSize, Claimed, Failure, LaneResult};

/// The Postgres channel the outbox trigger notifies.
pub const CHANNEL: &str = "outbox_events";

/// What a lease must hold beyond one send: the time to record the result.
const SEND_MARGIN: Duration = Duration::from_secs(1);

/// Relay settings.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Run the relay inside this process.
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,
    /// Claimers in this process (each claims RELAY_CLAIM_SIZE aggregates at a time for the senders).
    #[arg(long, env = "RELAY_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub relay_workers: u16,
    /// SendMessageBatch calls in flight at once in this process.
    #[arg(long, env = "RELAY_BATCHES_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub relay_batches_in_flight: u16,
    /// Aggregates (lanes) one claimer claims per database round trip.
    #[arg(long, env = "RELAY_CLAIM_SIZE", default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub relay_claim_size: u16,
    /// Consecutive events of one aggregate sent in one SendMessageBatch (FIFO keeps
    /// their order within the batch).
    #[arg(long, env = "RELAY_RUN_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10))]
    pub relay_run_size: u16,
    /// Attempts before an event SQS keeps refusing is parked for an operator.
    #[arg(long, env = "RELAY_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..))]
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
}

/// Relay settings that cannot work, named by their variable.
#[derive(Debug, thiserror::Error)]
pub enum RelayConfigError {
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("RELAY_POLL_INTERVAL must be at least 10ms (got {0:?}): a shorter one is a busy loop")]
    PollTooShort(Duration),
    #[error(
        "RELAY_LEASE ({lease:?}) must exceed RELAY_SEND_TIMEOUT ({send_timeout:?}) by at least 2s: a lease that cannot hold one send would let another relay take the events mid-send"
    )]
    LeaseTooShort {
        lease: Duration,
        send_timeout: Duration,
    },
    #[error("RELAY_BACKOFF_BASE ({base:?}) must not exceed RELAY_BACKOFF_MAX ({max:?})")]
    Backoff { base: Duration, max: Duration },
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

    /// Refuses settings that cannot work (checked at start-up).
    pub fn validate(&self) -> Result<(), RelayConfigError> {
        for (name, value) in [
            ("RELAY_LEASE", self.relay_lease),
            ("RELAY_SEND_TIMEOUT", self.relay_send_timeout),
            ("RELAY_PROBE_INTERVAL", self.relay_probe_interval),
            ("RELAY_BACKOFF_BASE", self.relay_backoff_base),
            ("RELAY_BACKOFF_MAX", self.relay_backoff_max),
            ("OUTBOX_RETENTION", self.outbox_retention),
        ] {
            if value.is_zero() {
                return Err(RelayConfigError::Zero(name));
            }
        }
        if self.relay_poll_interval < Duration::from_millis(10) {
            return Err(RelayConfigError::PollTooShort(self.relay_poll_interval));
        }
        if self.relay_lease < self.relay_send_timeout + 2 * SEND_MARGIN {
            return Err(RelayConfigError::LeaseTooShort {
                lease: self.relay_lease,
                send_timeout: self.relay_send_timeout,
            });
        }
        if self.relay_backoff_base > self.relay_backoff_max {
            return Err(RelayConfigError::Backoff {
                base: self.relay_backoff_base,
                max: self.relay_backoff_max,
            });
        }
        Ok(())
    }

    fn claim_size(&self) -> ClaimSize {
        ClaimSize {
            lanes: self.relay_claim_size.into(),
            run: self.relay_run_size.into(),
        }
    }
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// Events were claimed and sent; some may have failed and been rescheduled.
    Sent { published: usize, failed: usize },
    /// SQS could not be reached at all (every call failed); events rescheduled.
    Unavailable,
}

/// Claimed events on their way to SQS: one SendMessageBatch.
struct Batch {
    /// When the claim was made (the lease started).
    claimed_at: Instant,
    rows: Vec<Claimed>,
}

/// One SendMessageBatch call and what came of it (`None`: not sent, the lanes
/// are just given back).
struct Sent {
    rows: Vec<Claimed>,
    result: Option<Result<BatchOutcome, SendError>>,
}

/// Moves committed outbox events to SQS; see the module docs.
pub struct Relay<P> {
    pool: PgPool,
    publisher: Arc<P>,
    args: RelayArgs,
    id: Uuid,
    metrics: RelayMetrics,
    /// SQS failed every call of the last round: claimers pause, the prober probes.
    outage: AtomicBool,
    /// When the last successful lease renewal started: every lane this relay
    /// holds is valid until then + lease.
    renewed_at: std::sync::Mutex<Option<Instant>>,
}

impl<P: Publisher> Relay<P> {
    pub fn new(pool: PgPool, publisher: P, args: RelayArgs, metrics: RelayMetrics) -> Self {
        Self {
            pool,
            publisher: Arc::new(publisher),
            args,
            id: Uuid::new_v4(),
            metrics,
            outage: AtomicBool::new(false),
            renewed_at: std::sync::Mutex::new(None),
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// One step, start to end: claim due lanes, send their runs in batches
    /// concurrently, record each event's result. An event is marked published
    /// only if SQS accepted its entry. (The running relay does the same three
    /// steps as a pipeline, see [`Relay::run`]; tests drive this to take one step
    /// at a time.)
    #[tracing::instrument(skip_all, fields(relay_id = %self.id))]
    pub async fn run_once(&self) -> anyhow::Result<Outcome> {
        let claimed_at = Instant::now();
        let rows = self.claim(false).await?;
        if rows.is_empty() {
            return Ok(Outcome::Idle);
        }
        let in_flight = tokio::sync::Semaphore::new(self.args.relay_batches_in_flight.into());
        let sent = join_all(split_batches(rows).into_iter().map(|rows| async {
            let _permit = in_flight.acquire().await.expect("never closed");
            self.send(Batch { claimed_at, rows }, &CancellationToken::new())
                .await
        }))
        .await;
        self.record(&sent).await
    }

    async fn claim(&self, probe: bool) -> anyhow::Result<Vec<Claimed>> {
        let started = Instant::now();
        let size = if probe {
            ClaimSize { lanes: 1, run: 1 }
        } else {
            self.args.claim_size()
        };
        let rows = store::claim(&self.pool, self.id, size, self.args.relay_lease, probe).await?;
        self.metrics
            .claim_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(rows)
    }

    /// Sends one batch, unless its lease could run out before the send is over
    /// (then another relay may already own the lanes) or the relay is stopping.
    async fn send(&self, batch: Batch, shutdown: &CancellationToken) -> Sent {
        let Batch { claimed_at, rows } = batch;
        if shutdown.is_cancelled() || !self.lease_holds(claimed_at) {
            return Sent { rows, result: None };
        }
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.args.relay_send_timeout, self.publisher.publish(&rows))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(SendError::new(
                    FailureReason::Unreachable,
                    format!(
                        "SendMessageBatch took longer than RELAY_SEND_TIMEOUT ({:?})",
                        self.args.relay_send_timeout
                    ),
                )),
            };
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        Sent {
            rows,
            result: Some(result),
        }
    }

    /// Whether a batch claimed at `claimed_at` still holds its lease for one
    /// whole send plus the margin to record it.
    fn lease_holds(&self, claimed_at: Instant) -> bool {
        let renewed = *self.renewed_at.lock().expect("not poisoned");
        let since = renewed.map_or(claimed_at, |at| at.max(claimed_at));
        let valid_until = since + self.args.relay_lease;
        valid_until
            .checked_duration_since(Instant::now())
            .is_some_and(|left| left > self.args.relay_send_timeout + SEND_MARGIN)
    }

    /// Turns send results into lane results: per lane, the events SQS accepted
    /// and the first one it did not.
    fn lane_results(&self, sent: &[Sent]) -> (Vec<LaneResult>, Vec<usize>) {
        let mut lanes: Vec<LaneResult> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        let mut calls_failed = Vec::new();
        for (call, Sent { rows, result }) in sent.iter().enumerate() {
            let outcome: Vec<Option<(&SendError, bool)>> = match result {
                None => vec![None; rows.len()],
                Some(Ok(outcome)) => outcome
                    .iter()
                    .map(|entry| entry.as_ref().err().map(|e| (e, true)))
                    .collect(),
                Some(Err(e)) => {
                    calls_failed.push(call);
                    vec![Some((e, false)); rows.len()]
                }
            };
            let not_sent = result.is_none();
            for (row, failed) in rows.iter().zip(outcome) {
                let slot = *index.entry(row.aggregate_id).or_insert_with(|| {
                    lanes.push(LaneResult {
                        aggregate_id: row.aggregate_id,
                        published: Vec::new(),
                        failure: None,
                    });
                    lanes.len() - 1
                });
                let lane = &mut lanes[slot];
                match failed {
                    None if not_sent => {}
                    None => {
                        if let Some(earlier) = &lane.failure {
                            // Accepted after an earlier event of its aggregate failed in
                            // the same batch: the consumer will see this one first.
                            self.metrics.out_of_order.inc();
                            tracing::error!(event_id = %row.event_id, seq = row.seq, failed_seq = earlier.seq,
                                aggregate_id = %row.aggregate_id,
                                "SQS accepted an event after refusing an earlier one of its aggregate in the same batch; the earlier one follows it");
                        }
                        lane.published.push(row.seq);
                    }
                    Some((error, may_park)) => {
                        if lane.failure.is_none() {
                            lane.failure = Some(Failure {
                                seq: row.seq,
                                error: error.to_string(),
                                retry_in: self.backoff(row.attempts + 1),
                                may_park,
                            });
                        }
                    }
                }
            }
        }
        (lanes, calls_failed)
    }

    /// Writes the results of some sends back to the outbox (see
    /// [`store::record`]) and counts them, once. Returns what happened.
    async fn record(&self, sent: &[Sent]) -> anyhow::Result<Outcome> {
        let (lanes, calls_failed) = self.lane_results(sent);
        let recorded =
            store::record(&self.pool, self.id, &lanes, self.args.relay_max_attempts).await?;
        self.count(sent, &recorded);

        let calls = sent.iter().filter(|s| s.result.is_some()).count();
        if calls > 0 && calls_failed.len() == calls {
            let error = sent
                .iter()
                .find_map(|s| s.result.as_ref().and_then(|r| r.as_ref().err()))
                .map(ToString::to_string)
                .unwrap_or_default();
            self.enter_outage(&error);
            return Ok(Outcome::Unavailable);
        }
        Ok(Outcome::Sent {
            published: recorded.published.len(),
            failed: lanes.iter().filter(|l| l.failure.is_some()).count(),
        })
    }

    /// Metrics of recorded results: only what this recording changed, so a
    /// retried recording counts nothing twice.
    fn count(&self, sent: &[Sent], recorded: &store::Recorded) {
        for Sent { rows, result } in sent {
            match result {
                Some(Ok(outcome)) => {
                    for e in outcome.iter().filter_map(|r| r.as_ref().err()) {
                        self.metrics.failure(e.reason.as_str(), 1);
                        tracing::debug!(error = %e, "SQS refused an entry; its aggregate backs off");
                    }
                }
                Some(Err(e)) => self.metrics.failure(e.reason.as_str(), rows.len() as u64),
                None => {}
            }
        }
        let now = chrono::Utc::now();
        for event in &recorded.published {
            let latency = (now - event.created_at).to_std().unwrap_or_default();
            self.metrics
                .commit_to_publish
                .observe(latency.as_secs_f64());
        }
        self.metrics
            .published
            .inc_by(recorded.published.len() as u64);
        for failed in &recorded.failed {
            if failed.parked {
                self.metrics.parked.inc();
                tracing::error!(event_id = %failed.event_id, attempts = failed.attempts,
                    "event parked after the maximum attempts; its aggregate waits until an operator retries it");
            } else if !failed.outage {
                tracing::warn!(event_id = %failed.event_id, attempts = failed.attempts,
                    "SQS refused an event; its aggregate backs off");
            }
        }
    }

    /// All calls failed: stop claiming, probe. Logged once per outage.
    fn enter_outage(&self, error: &str) {
        if !self.outage.swap(true, Ordering::SeqCst) {
            self.metrics.sqs_available.set(0);
            tracing::warn!(%error, probe_every = ?self.args.relay_probe_interval,
                "SQS unavailable: events stay in the outbox; probing with the oldest event until it is back");
        }
    }

    /// Exponential backoff with jitter, capped: base·2^(attempt-1), scaled by a
    /// random factor in [0.5, 1] so replicas retrying the same failure spread out.
    fn backoff(&self, attempt: i32) -> Duration {
        backoff(
            self.args.relay_backoff_base,
            self.args.relay_backoff_max,
            attempt,
        )
    }

    /// Runs until `shutdown`, then gives back any lanes still held.
    ///
    /// The three steps of [`Relay::run_once`] run here as a pipeline, so SQS
    /// always has batches in flight while the database claims the next lanes and
    /// records the last results:
    /// - `RELAY_WORKERS` claimers claim `RELAY_CLAIM_SIZE` lanes at a time and
    ///   queue them as batches (waiting when `RELAY_BATCHES_IN_FLIGHT` are queued);
    /// - `RELAY_BATCHES_IN_FLIGHT` senders call SendMessageBatch;
    /// - one recorder writes the results back, many batches per transaction, and
    ///   wakes the claimers: the lanes it released have their next events due;
    /// - a renewer extends the leases of every lane held, a prober tests SQS
    ///   during an outage, a listener turns NOTIFY into wake-ups, and retention
    ///   deletes old published rows.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let wake_tx = Arc::new(wake_tx);
        let listener = tokio::spawn(listen(
            self.pool.clone(),
            Arc::clone(&wake_tx),
            shutdown.clone(),
        ));
        let retention = tokio::spawn(retain(
            self.pool.clone(),
            self.args.outbox_retention,
            shutdown.clone(),
        ));
        // Stopped after the recorder, so leases hold while the last results are recorded.
        let renewing = CancellationToken::new();
        let renewer = tokio::spawn(Arc::clone(&self).renew_loop(renewing.clone()));
        let prober =
            tokio::spawn(Arc::clone(&self).probe_loop(Arc::clone(&wake_tx), shutdown.clone()));

        let in_flight = usize::from(self.args.relay_batches_in_flight);
        // Claimers → senders → recorder: bounded, so claiming waits while enough
        // is queued and nothing piles up in memory when the database is slow.
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(in_flight);
        let batch_rx = Arc::new(Mutex::new(batch_rx));
        let (sent_tx, sent_rx) = mpsc::channel::<Sent>(2 * in_flight);
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
                        let Some(batch) = next else { break };
                        if sent.send(relay.send(batch, &shutdown).await).await.is_err() {
                            break;
                        }
                    }
                })
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
                tracing::warn!(error = %format!("{e:#}"), "failed to release lanes; they expire with the lease")
            }
        }
        tracing::info!(relay_id = %self.id, "relay stopped");
    }

    async fn claim_loop(
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
                            tracing::warn!(error = %format!("{e:#}"), "relay cannot claim from the outbox; retrying");
                        }
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

    /// Records results as they arrive, many batches per transaction. A failed
    /// recording is retried until it succeeds (or the relay stops): the events
    /// were sent, and their lanes stay claimed (and renewed) until recorded.
    async fn record_loop(
        self: Arc<Self>,
        mut sent: mpsc::Receiver<Sent>,
        wake: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) {
        let mut pending = Vec::new();
        while sent.recv_many(&mut pending, 256).await > 0 {
            let mut failures = 0u32;
            loop {
                match self.record(&pending).await {
                    Ok(_) => {
                        if failures > 0 {
                            tracing::info!(
                                attempts = failures + 1,
                                "send results recorded after the database came back"
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %format!("{e:#}"), "failed to record send results; retrying until the database answers");
                        }
                        // On shutdown, give up after a few tries: the leases run
                        // out and the events are sent again (at least once, never lost).
                        if shutdown.is_cancelled() && failures >= 3 {
                            tracing::error!(error = %format!("{e:#}"), "send results not recorded at shutdown; these events will be sent again after their lease");
                            break;
                        }
                        let delay = Duration::from_millis(100 * u64::from(failures.min(20)));
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            pending.clear();
            wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Extends this relay's leases every quarter lease while the relay runs.
    async fn renew_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = self.args.relay_lease / 4;
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let started = Instant::now();
            match store::renew(&self.pool, self.id, self.args.relay_lease).await {
                Ok(_) => {
                    *self.renewed_at.lock().expect("not poisoned") = Some(started);
                    if std::mem::take(&mut failing) {
                        tracing::info!("outbox leases renewed again");
                    }
                }
                // Once per outage: the claimers and the recorder say the rest.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %format!("{e:#}"), "cannot renew outbox leases; sends stop before they run out");
                }
                Err(_) => {}
            }
        }
    }

    /// During an outage, sends the oldest lane's head every
    /// `RELAY_PROBE_INTERVAL`, backoff or not. The first success ends the outage:
    /// every lane held back by it is due at once and the claimers wake up.
    async fn probe_loop(
        self: Arc<Self>,
        wake: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) {
        let mut started: Option<Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.args.relay_probe_interval) => {}
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
                        Ok(Outcome::Sent { .. })
                    )
                }
                Err(_) => false,
            };
            if recovered {
                let released = store::end_outage(&self.pool).await.unwrap_or_default();
                self.outage.store(false, Ordering::SeqCst);
                self.metrics.sqs_available.set(1);
                tracing::info!(outage = ?since.elapsed(), released,
                    "SQS reachable again; draining the outbox");
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
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
async fn listen(pool: PgPool, wake: Arc<watch::Sender<u64>>, shutdown: CancellationToken) {
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
    let mut failing = false;
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
                    failing = false;
                    break;
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %format!("{e:#}"), "outbox retention failed; trying again later");
                    }
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
    fn defaults_parse_and_validate() {
        let args = RelayArgs::defaults();
        args.validate().unwrap();
        assert!(args.relay_enabled);
        assert_eq!(args.relay_lease, Duration::from_secs(10));
        assert_eq!(args.outbox_retention, Duration::from_secs(4 * 3600));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let refused = |args: RelayArgs| args.validate().unwrap_err().to_string();
        let defaults = RelayArgs::defaults;
        assert!(
            refused(RelayArgs {
                relay_lease: Duration::ZERO,
                ..defaults()
            })
            .starts_with("RELAY_LEASE")
        );
        assert!(
            refused(RelayArgs {
                relay_poll_interval: Duration::ZERO,
                ..defaults()
            })
            .starts_with("RELAY_POLL_INTERVAL")
        );
        assert!(
            refused(RelayArgs {
                relay_poll_interval: Duration::from_millis(5),
                ..defaults()
            })
            .starts_with("RELAY_POLL_INTERVAL")
        );
        assert!(
            refused(RelayArgs {
                relay_lease: Duration::from_secs(6),
                ..defaults()
            })
            .starts_with("RELAY_LEASE")
        );
        assert!(
            refused(RelayArgs {
                relay_backoff_base: Duration::from_secs(120),
                ..defaults()
            })
            .starts_with("RELAY_BACKOFF_BASE")
        );
    }
}
