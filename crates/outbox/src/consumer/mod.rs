//! The SQS consumer (feature `sqs`): long polling, visibility extension, batched deletes, and
//! exactly-once *effects*: every event of a receive is recorded in the inbox
//! ([`crate::inbox`]) and applied by the [`Handler`] in one PostgreSQL
//! transaction, so the loop can be at-least-once and the effect exactly-once.
//!
//! A handler first *decodes* each event, without I/O: what cannot be decoded
//! (malformed, unknown type, unsupported version) is poison and never touches
//! the database. The rest of a receive (up to 10 messages) is recorded in the
//! inbox with one statement and applied in one transaction: one commit instead
//! of ten. Messages are applied in receive order, so the messages of a FIFO
//! group keep their order; after a poison message the rest of its group is left
//! in the queue, untouched, to keep that order.
//!
//! On a FIFO queue an aggregate's events are also applied strictly in their
//! sequence order (the envelope's `sequence`, 1, 2, 3…, given by
//! [`crate::store::enqueue`]). The consumer keeps the last sequence it applied
//! per aggregate (`outbox.inbox_position`) in the same transaction as the
//! effects; an event whose sequence is lower is an old copy (skipped and
//! deleted), one whose sequence is higher than the next is *out of sequence*:
//! never applied, dead-lettered like poison, counted
//! (`consumer_failed_total{reason="out_of_sequence"}`) and logged at ERROR with
//! the aggregate, the expected and the received sequence. The first event of an
//! aggregate a consumer sees must be sequence 1. Events without a sequence
//! (written before sequences existed) are applied unchecked.
//!
//! A message is deleted only after the transaction that applied it (or found it
//! a duplicate) committed. A transient failure (database down) rolls the batch
//! back and leaves its messages to come back after the visibility timeout; a
//! poison message is made visible again at once so the queue's redrive policy
//! moves it to the DLQ after `maxReceiveCount` receives.
//!
//! A consumer never dead-letters a valid message because of its *own* outage.
//! After a transient failure it checks the database: if that is down too, a
//! circuit breaker opens — the failed messages are released at once (visible
//! again, for whoever can handle them), the receive loops stop receiving (so no
//! message's receive count grows), and one prober checks the database with
//! backoff; its first success closes the breaker and receiving resumes. Only a
//! message that fails while the database is healthy moves towards the DLQ, and
//! one that is about to get there is logged at ERROR.
//!
//! Each receive goes receive → handle → acknowledge, one file each:
//! - `receive`: long polling, the queue's redrive policy;
//! - `handle`: decode, inbox + positions + effects in one transaction, in
//!   group and sequence order;
//! - `acknowledge`: delete what committed, release or
//!   dead-letter the rest, extend visibility while handlers work;
//! - `breaker`: the circuit breaker for database outages.

mod acknowledge;
mod breaker;
mod config;
mod handle;
mod receive;

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::{ConsumerConfig, ConsumerConfigBuilder, ConsumerConfigError};
pub use receive::Received;

use crate::handler::{Handled, Handler};
use crate::metrics::ConsumerMetrics;
use crate::sqs::Queue;

/// What one [`Consumer::run_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveReport {
    /// Messages received.
    pub received: usize,
    /// Applied and deleted.
    pub processed: usize,
    /// Found in the inbox (or twice in the receive), skipped and deleted.
    pub duplicates: usize,
    /// Not applied: transient failures and poison.
    pub failed: usize,
}

/// Receives events from SQS and applies each exactly once; see the module docs.
pub struct Consumer<H> {
    pool: PgPool,
    queue: Queue,
    handler: Arc<H>,
    config: ConsumerConfig,
    metrics: ConsumerMetrics,
    /// `true` while the database is down: the receive loops wait.
    breaker: watch::Sender<bool>,
    status: Arc<Mutex<ConsumerStatus>>,
    /// The queue's `maxReceiveCount` (0: no redrive policy, or not read yet).
    max_receives: AtomicU32,
    /// The queue's DLQ (from its redrive policy): poison is moved there at once.
    dead_letter_url: Mutex<Option<String>>,
}

/// What the consumer is doing, for a status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// The receive loops run.
    pub running: bool,
    /// `open` while the database is unavailable: nothing is received until it is back.
    #[cfg_attr(feature = "utoipa", schema(example = "closed"))]
    pub breaker: &'static str,
    /// Since when the breaker is open.
    pub breaker_open_since: Option<DateTime<Utc>>,
    /// The last receive that returned messages.
    pub last_receive_at: Option<DateTime<Utc>>,
    /// The queue's redrive threshold (`maxReceiveCount`), when it has one.
    pub max_receive_count: Option<u32>,
}

/// What becomes of one message of a receive (the acknowledge step acts on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Committed (or found already done): delete it.
    Done(Handled),
    /// Can never be processed: left for the redrive policy.
    Poison,
    /// Rolled back with its receive: comes back after the visibility timeout.
    Transient,
    /// Behind a poison message of its FIFO group (no DLQ known): back to the
    /// queue, untouched.
    Skipped,
    /// Behind a failed message of its FIFO group in the same receive: left in
    /// flight with it, so it comes back after it, in order.
    Deferred,
}

impl<H: Handler> Consumer<H> {
    /// A consumer of `queue` that applies each event with `handler` on `pool`.
    /// Nothing runs until [`Consumer::run`] (or [`Consumer::run_once`]).
    pub fn new(pool: PgPool, queue: Queue, handler: H, config: ConsumerConfig) -> Self {
        Self {
            pool,
            queue,
            handler: Arc::new(handler),
            config,
            metrics: ConsumerMetrics::default(),
            breaker: watch::channel(false).0,
            status: Arc::new(Mutex::new(ConsumerStatus {
                breaker: "closed",
                ..ConsumerStatus::default()
            })),
            max_receives: AtomicU32::new(0),
            dead_letter_url: Mutex::new(None),
        }
    }

    /// A handle on the consumer's status, for the health endpoint.
    pub fn status(&self) -> Arc<Mutex<ConsumerStatus>> {
        Arc::clone(&self.status)
    }

    /// Whether the breaker is open (the database is down; nothing is received).
    pub fn breaker_open(&self) -> bool {
        *self.breaker.borrow()
    }

    /// Counts into `metrics` (a handle: clones share the counts).
    pub fn with_metrics(mut self, metrics: ConsumerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs ``concurrency`` receive loops until `shutdown`; in-flight
    /// messages are finished and deleted before it returns.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.read_redrive_policy().await;
        let prober = {
            let consumer = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move { consumer.probe_loop(shutdown).await })
        };
        let retention = {
            let (pool, retention) = (self.pool.clone(), self.config.inbox_retention);
            tokio::spawn(crate::retention::purge_periodically(
                "inbox entries",
                retention,
                shutdown.clone(),
                move || {
                    let pool = pool.clone();
                    async move { crate::inbox::purge(&pool, retention, crate::retention::BATCH).await }
                },
            ))
        };
        self.status.lock().expect("not poisoned").running = true;
        let loops: Vec<_> = (0..self.config.concurrency)
            .map(|_| {
                let consumer = Arc::clone(&self);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { consumer.receive_loop(shutdown).await })
            })
            .collect();
        tracing::info!(loops = loops.len(), "consumer started");
        {
            let shutdown = shutdown.clone();
            let wait = self.config.wait_time;
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tracing::info!(up_to = ?wait,
                    "consumer stopping: waiting for the receives in progress (long polls end by themselves; abandoning one would hide its messages) and finishing the messages in hand");
            });
        }
        for l in loops {
            let _ = l.await;
        }
        let _ = prober.await;
        let _ = retention.await;
        self.status.lock().expect("not poisoned").running = false;
        tracing::info!("consumer stopped");
    }
}
