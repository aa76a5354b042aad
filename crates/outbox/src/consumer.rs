//! The SQS consumer: long polling, visibility extension, batched deletes, and
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

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use service_kit::config::parse_duration;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::envelope::EventEnvelope;
use crate::inbox;

use crate::metrics::ConsumerMetrics;
use crate::sqs::{Queue, SendError};

/// Consumer settings.
#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    /// Receive loops running at once (each handles up to CONSUMER_MAX_MESSAGES).
    #[arg(long, env = "CONSUMER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub consumer_concurrency: u16,
    /// Messages per receive (1–10).
    #[arg(long, env = "CONSUMER_MAX_MESSAGES", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub consumer_max_messages: i32,
    /// Long-polling wait per receive (0–20 s).
    #[arg(long, env = "CONSUMER_WAIT_TIME", default_value = "20s", value_parser = parse_wait)]
    pub consumer_wait_time: Duration,
    /// Visibility timeout asked for on receive; extended while a message is handled.
    #[arg(long, env = "CONSUMER_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_visibility)]
    pub consumer_visibility_timeout: Duration,
    /// Longest one handler may take for one message; then it counts as failed
    /// (and its visibility is no longer extended).
    #[arg(long, env = "CONSUMER_HANDLER_TIMEOUT", default_value = "60s", value_parser = parse_visibility)]
    pub consumer_handler_timeout: Duration,
}

fn parse_wait(value: &str) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if d > Duration::from_secs(20) {
        return Err("must be at most 20s (the SQS long-polling limit)".into());
    }
    Ok(d)
}

fn parse_visibility(value: &str) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(12 * 3600) {
        return Err("must be between 1s and 12h".into());
    }
    Ok(d)
}

impl ConsumerArgs {
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            consumer: ConsumerArgs,
        }
        <Only as clap::Parser>::parse_from(["consumer"]).consumer
    }
}

/// A received message, as handlers see it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    /// FIFO message group; `None` on a standard queue.
    pub group_id: Option<String>,
    pub receive_count: u32,
    /// W3C trace context of the request that produced the event.
    pub traceparent: Option<String>,
    receipt_handle: String,
    /// The message attributes as received (kept when poison is moved to the DLQ).
    attributes:
        Option<std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>>,
}

impl Received {
    pub fn from_sqs(message: Message) -> Option<Self> {
        let system = message.attributes.unwrap_or_default();
        let attribute = |name: &MessageSystemAttributeName| system.get(name).cloned();
        Some(Self {
            message_id: message.message_id?,
            receipt_handle: message.receipt_handle?,
            body: message.body.unwrap_or_default(),
            group_id: attribute(&MessageSystemAttributeName::MessageGroupId),
            receive_count: attribute(&MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
            traceparent: message
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("traceparent"))
                .and_then(|v| v.string_value.clone()),
            attributes: message.message_attributes,
        })
    }
}

/// What became of a message; either way it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Processed,
    Duplicate,
}

/// An event that can never be applied: left for the redrive policy (DLQ).
#[derive(Debug, Clone, thiserror::Error)]
#[error("poison message ({reason}): {detail}")]
pub struct Poison {
    /// A short label for metrics.
    pub reason: &'static str,
    pub detail: String,
}

impl From<crate::envelope::ContractError> for Poison {
    fn from(e: crate::envelope::ContractError) -> Self {
        Self {
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

/// The business side of consuming: the effect of one event.
pub trait Handler: Send + Sync + 'static {
    /// The decoded event.
    type Event: Send + Sync;

    /// Reads the event out of its envelope, or says why it can never be
    /// applied. No I/O: poison is decided before anything is written.
    fn decode(&self, envelope: &EventEnvelope) -> Result<Self::Event, Poison>;

    /// Applies the event on `tx`, the consumer's transaction, in which its id
    /// is already recorded as new in the inbox. `Duplicate` when the effect
    /// turns out to exist already (a second event for one booking, say). An
    /// error rolls the whole receive back, to be retried after the visibility
    /// timeout.
    fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &Self::Event,
    ) -> impl Future<Output = anyhow::Result<Handled>> + Send;
}

/// What one [`Consumer::run_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub received: usize,
    pub processed: usize,
    pub duplicates: usize,
    pub failed: usize,
}

pub struct Consumer<H> {
    pool: PgPool,
    queue: Queue,
    handler: Arc<H>,
    args: ConsumerArgs,
    metrics: ConsumerMetrics,
    /// `true` while the database is down: the receive loops wait.
    breaker: watch::Sender<bool>,
    status: Arc<Mutex<ConsumerStatus>>,
    /// The queue's `maxReceiveCount` (0: no redrive policy, or not read yet).
    max_receives: AtomicU32,
    /// The queue's DLQ (from its redrive policy): poison is moved there at once.
    dead_letter_url: Mutex<Option<String>>,
}

/// What the consumer is doing, for `/health/status`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// The receive loops run.
    pub running: bool,
    /// `open` while the database is unavailable: nothing is received until it is back.
    #[schema(example = "closed")]
    pub breaker: &'static str,
    /// Since when the breaker is open.
    pub breaker_open_since: Option<DateTime<Utc>>,
    /// The last receive that returned messages.
    pub last_receive_at: Option<DateTime<Utc>>,
    /// The queue's redrive threshold (`maxReceiveCount`), when it has one.
    pub max_receive_count: Option<u32>,
}

impl<H: Handler> Consumer<H> {
    pub fn new(
        pool: PgPool,
        queue: Queue,
        handler: H,
        args: ConsumerArgs,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            pool,
            queue,
            handler: Arc::new(handler),
            args,
            metrics,
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

    /// Receives one batch (long polling, up to `CONSUMER_WAIT_TIME`) and handles it.
    pub async fn run_once(&self) -> Result<Report, SendError> {
        let url = self.queue.url().await?;
        let receive = self
            .queue
            .client()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(self.args.consumer_max_messages)
            .wait_time_seconds(self.args.consumer_wait_time.as_secs() as i32)
            .visibility_timeout(self.args.consumer_visibility_timeout.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .customize()
            // The client's attempt timeout (sized for the relay's short calls) must
            // not cut a long poll short: an abandoned receive still takes messages
            // off the queue, and they would only come back after the visibility
            // timeout, one receive count closer to the DLQ.
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .timeout_config(long_poll_timeouts(self.args.consumer_wait_time)),
            )
            .send();
        // Not abandoned on shutdown: a dropped long poll still takes messages off
        // the queue on SQS's side, hiding them for the visibility timeout and
        // counting a receive towards the DLQ. It ends within the wait time.
        let output = receive.await;
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                let e = SendError::from_sdk(e);
                if e.reason == crate::sqs::FailureReason::QueueDoesNotExist {
                    self.queue.invalidate().await;
                }
                return Err(e);
            }
        };
        let messages: Vec<Received> = output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(Received::from_sqs)
            .collect();
        if messages.is_empty() {
            return Ok(Report::default());
        }
        Ok(self.process(&url, messages).await)
    }

    async fn process(&self, url: &str, messages: Vec<Received>) -> Report {
        self.metrics.received.inc_by(messages.len() as u64);
        let unfinished: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(
            messages.iter().map(|m| m.receipt_handle.clone()).collect(),
        ));
        // Stopped when this function ends, whatever the handler does (a panic
        // included): visibility is never extended for a receive nobody handles.
        let heartbeat = AbortOnDrop(tokio::spawn(extend_visibility(
            self.queue.clone(),
            url.to_owned(),
            Arc::clone(&unfinished),
            self.args.consumer_visibility_timeout,
        )));
        let outcomes = self.apply(&messages).await;
        drop(heartbeat);
        self.status.lock().expect("not poisoned").last_receive_at = Some(Utc::now());
        // A transient failure: ours (the database is down) or the message's?
        let transient = outcomes.contains(&Outcome::Transient);
        let outage = transient && !self.database_answers().await;
        if outage {
            self.open_breaker(url).await;
        }

        let mut report = Report {
            received: messages.len(),
            ..Report::default()
        };
        let mut done = Vec::new();
        let mut release = Vec::new();
        let mut dead = Vec::new();
        let dead_letter_url = self.dead_letter_url.lock().expect("not poisoned").clone();
        for (message, outcome) in messages.iter().zip(outcomes) {
            match outcome {
                Outcome::Done(Handled::Processed) => {
                    report.processed += 1;
                    done.push(message);
                }
                Outcome::Done(Handled::Duplicate) => {
                    report.duplicates += 1;
                    done.push(message);
                }
                Outcome::Poison => {
                    report.failed += 1;
                    if dead_letter_url.is_some() {
                        dead.push(message);
                    } else {
                        release.push(message);
                    }
                }
                // Behind a failed message of its group: stays in flight with it and
                // comes back after it, in order (released with it in an outage).
                Outcome::Deferred if outage => release.push(message),
                Outcome::Deferred => {}
                // Released at once: it was not its fault, and nothing here will
                // receive it again until the database is back.
                Outcome::Transient if outage => {
                    report.failed += 1;
                    release.push(message);
                }
                Outcome::Transient => {
                    report.failed += 1;
                    self.warn_if_last_chance(message);
                }
                // Behind a poison message of its group: back in the queue, in order.
                Outcome::Skipped => release.push(message),
            }
        }
        if let Some(dlq) = &dead_letter_url {
            let moved = self.dead_letter(dlq, &dead).await;
            done.extend(moved.iter().copied());
            // Not moved (the DLQ refused): the redrive policy will do it.
            release.extend(
                dead.iter()
                    .filter(|m| !moved.iter().any(|x| std::ptr::eq(*x, **m)))
                    .copied(),
            );
        }
        self.delete(url, &done).await;
        self.make_visible(url, &release).await;
        report
    }

    /// The transactional half of handling a receive: records and applies every
    /// message in one transaction and commits, but deletes nothing. (Tests use
    /// it to play a consumer that dies between its commit and its deletes.)
    pub async fn apply(&self, messages: &[Received]) -> Vec<Outcome> {
        let started = Instant::now();
        let (mut outcomes, decoded) = self.decode_all(messages);
        if !decoded.is_empty() {
            // Fast path: no savepoints. Should one message fail, the receive is
            // rolled back and applied again with a savepoint per message, so the
            // failing one is retried alone and the others still commit.
            let applied = match self.commit_all(messages, &decoded, false).await {
                Ok(applied) => Ok(applied),
                Err(first) => {
                    tracing::debug!(error = %format!("{first:#}"), "receive rolled back; applying message by message");
                    self.commit_all(messages, &decoded, true).await
                }
            };
            match applied {
                Ok(applied) => {
                    for (i, outcome) in applied {
                        outcomes[i] = Some(outcome);
                    }
                }
                Err(e) => {
                    self.metrics.failure("transient");
                    tracing::warn!(error = %format!("{e:#}"), messages = decoded.len(),
                        "messages not processed; they come back after the visibility timeout");
                    for (i, _, _) in &decoded {
                        outcomes[*i] = Some(Outcome::Transient);
                    }
                }
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.expect("every message has an outcome"))
            .collect();
        let per_message = started.elapsed().as_secs_f64() / messages.len().max(1) as f64;
        for outcome in &outcomes {
            self.metrics.handling_latency.observe(per_message);
            match outcome {
                Outcome::Done(Handled::Processed) => self.metrics.processed.inc(),
                Outcome::Done(Handled::Duplicate) => self.metrics.duplicates.inc(),
                _ => 0,
            };
        }
        outcomes
    }

    /// Decodes every message, without I/O. Poison blocks the rest of its group.
    #[allow(clippy::type_complexity)]
    fn decode_all(
        &self,
        messages: &[Received],
    ) -> (Vec<Option<Outcome>>, Vec<(usize, EventEnvelope, H::Event)>) {
        let mut blocked: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut decoded = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let group = message.group_id.as_deref();
            if group.is_some_and(|g| blocked.contains(g)) {
                outcomes.push(Some(Outcome::Skipped));
                continue;
            }
            let result = EventEnvelope::parse(&message.body)
                .map_err(Poison::from)
                .and_then(|envelope| Ok((self.handler.decode(&envelope)?, envelope)));
            match result {
                Ok((event, envelope)) => {
                    decoded.push((i, envelope, event));
                    outcomes.push(None);
                }
                Err(poison) => {
                    self.poison(message, &poison);
                    // With a DLQ the poison is moved there now and its group goes
                    // on; without one, the rest of the group waits behind it.
                    if let Some(group) = group
                        && self.dead_letter_url.lock().expect("not poisoned").is_none()
                    {
                        blocked.insert(group);
                    }
                    outcomes.push(Some(Outcome::Poison));
                }
            }
        }
        (outcomes, decoded)
    }

    /// One transaction: the inbox for the whole receive in one statement, then
    /// each new event's effect, in receive order. With `isolate`, each effect
    /// runs under a savepoint and a failing one is rolled back alone
    /// (`Transient`); without, any failure aborts the whole transaction.
    async fn commit_all(
        &self,
        messages: &[Received],
        decoded: &[(usize, EventEnvelope, H::Event)],
        isolate: bool,
    ) -> anyhow::Result<Vec<(usize, Outcome)>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("Failed to begin a transaction")?;
        let entries: Vec<inbox::Entry> = decoded
            .iter()
            .map(|(i, envelope, _)| inbox::Entry {
                event_id: envelope.event_id,
                event_type: &envelope.event_type,
                message_id: &messages[*i].message_id,
            })
            .collect();
        let mut new = inbox::record(&mut tx, &entries).await?;
        let mut applied = Vec::with_capacity(decoded.len());
        // Groups with a failed message in this receive: their later messages
        // must not overtake it.
        let mut failed_groups: HashSet<&str> = HashSet::new();
        for (i, envelope, event) in decoded {
            let message = &messages[*i];
            if let Some(group) = message.group_id.as_deref()
                && failed_groups.contains(group)
            {
                if new.remove(&envelope.event_id) {
                    // It must look new when it comes back.
                    inbox::forget(&mut tx, envelope.event_id).await?;
                }
                applied.push((*i, Outcome::Deferred));
                continue;
            }
            // `remove`: the same event twice in one receive is applied once.
            if !new.remove(&envelope.event_id) {
                tracing::info!(message_id = %message.message_id, event_id = %envelope.event_id, "duplicate delivery skipped");
                applied.push((*i, Outcome::Done(Handled::Duplicate)));
                continue;
            }
            let span = tracing::info_span!("message", message_id = %message.message_id,
                event_id = %envelope.event_id, traceparent = message.traceparent.as_deref().unwrap_or(""),
                receive_count = message.receive_count);
            if !isolate {
                let handled =
                    tracing::Instrument::instrument(self.apply_one(&mut tx, envelope, event), span)
                        .await?;
                applied.push((*i, Outcome::Done(handled)));
                continue;
            }
            let mut savepoint = tx.begin().await.context("Failed to open a savepoint")?;
            match tracing::Instrument::instrument(
                self.apply_one(&mut savepoint, envelope, event),
                span,
            )
            .await
            {
                Ok(handled) => {
                    savepoint
                        .commit()
                        .await
                        .context("Failed to release a savepoint")?;
                    applied.push((*i, Outcome::Done(handled)));
                }
                Err(e) => {
                    savepoint
                        .rollback()
                        .await
                        .context("Failed to roll back to a savepoint")?;
                    // It must look new when it comes back.
                    inbox::forget(&mut tx, envelope.event_id).await?;
                    if let Some(group) = message.group_id.as_deref() {
                        failed_groups.insert(group);
                    }
                    self.metrics.failure("transient");
                    tracing::warn!(message_id = %message.message_id, event_id = %envelope.event_id,
                        error = %format!("{e:#}"), "message not processed; it comes back after the visibility timeout");
                    applied.push((*i, Outcome::Transient));
                }
            }
        }
        tx.commit()
            .await
            .context("Failed to commit the received messages")?;
        Ok(applied)
    }

    /// The handler's `apply`, bounded by `CONSUMER_HANDLER_TIMEOUT`, a panic
    /// turned into an error of this message (the receive loop lives on).
    async fn apply_one(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &H::Event,
    ) -> anyhow::Result<Handled> {
        use futures::FutureExt;
        let timeout = self.args.consumer_handler_timeout;
        let guarded = std::panic::AssertUnwindSafe(self.handler.apply(tx, envelope, event));
        match tokio::time::timeout(timeout, guarded.catch_unwind()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                self.metrics.failure("panic");
                tracing::error!(event_id = %envelope.event_id, "the handler panicked; the message is treated as failed");
                anyhow::bail!("the handler panicked")
            }
            Err(_) => {
                anyhow::bail!("the handler took longer than CONSUMER_HANDLER_TIMEOUT ({timeout:?})")
            }
        }
    }

    /// Moves poison to the DLQ at once (body, attributes and group kept), so the
    /// valid messages behind it in its group are not dead-lettered with it.
    /// Returns the messages the DLQ took.
    async fn dead_letter<'m>(&self, dlq: &str, messages: &[&'m Received]) -> Vec<&'m Received> {
        let mut moved = Vec::new();
        for message in messages {
            let mut send = self
                .queue
                .client()
                .send_message()
                .queue_url(dlq)
                .message_body(&message.body)
                .set_message_attributes(message.attributes.clone());
            if self.queue.is_fifo() {
                send = send
                    .message_group_id(message.group_id.clone().unwrap_or_else(|| "poison".into()))
                    .message_deduplication_id(&message.message_id);
            }
            match send.send().await {
                Ok(_) => {
                    tracing::error!(message_id = %message.message_id, "poison message moved to the DLQ");
                    moved.push(*message);
                }
                Err(e) => {
                    tracing::warn!(error = %SendError::from_sdk(e), message_id = %message.message_id,
                        "could not move a poison message to the DLQ; the redrive policy will")
                }
            }
        }
        moved
    }

    /// `select 1`, with a short timeout: is the database there at all?
    async fn database_answers(&self) -> bool {
        let check = sqlx::query("select 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), check).await,
            Ok(Ok(_))
        )
    }

    /// Opens the breaker (once per outage, logged once).
    async fn open_breaker(&self, url: &str) {
        if self.breaker.send_replace(true) {
            return;
        }
        self.metrics.breaker_open.set(1);
        {
            let mut status = self.status.lock().expect("not poisoned");
            status.breaker = "open";
            status.breaker_open_since = Some(Utc::now());
        }
        let waiting = self.waiting(url).await;
        tracing::warn!(waiting = ?waiting,
            "database unavailable: the consumer stops receiving (messages stay in the queue, none is dead-lettered) and probes it until it is back");
    }

    /// Messages waiting in the queue, best effort (for the log).
    async fn waiting(&self, url: &str) -> Option<i64> {
        self.queue
            .attribute(
                url,
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
            )
            .await
            .ok()??
            .parse()
            .ok()
    }

    /// A message that failed on its own (the database answers) and has one
    /// receive left before the redrive policy moves it to the DLQ: data at risk.
    fn warn_if_last_chance(&self, message: &Received) {
        let max = self.max_receives.load(Ordering::Relaxed);
        if max > 0 && message.receive_count + 1 >= max {
            tracing::error!(message_id = %message.message_id, receive_count = message.receive_count,
                max_receive_count = max,
                "a message keeps failing while the database is healthy; its next failure moves it to the DLQ");
        }
    }

    /// While the breaker is open: checks the database with backoff (250 ms
    /// doubling to 10 s); closes the breaker on the first success.
    async fn probe_loop(&self, shutdown: CancellationToken) {
        let mut breaker = self.breaker.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                open = breaker.wait_for(|open| *open) => if open.is_err() { return },
            }
            let opened = Instant::now();
            let mut delay = Duration::from_millis(250);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                if self.database_answers().await {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            let waiting = match self.queue.url().await {
                Ok(url) => self.waiting(&url).await,
                Err(_) => None,
            };
            {
                let mut status = self.status.lock().expect("not poisoned");
                status.breaker = "closed";
                status.breaker_open_since = None;
            }
            self.metrics.breaker_open.set(0);
            self.breaker.send_replace(false);
            tracing::info!(outage = ?opened.elapsed(), waiting = ?waiting,
                "database reachable again: the consumer receives again");
        }
    }

    /// Reads the queue's redrive policy once at start: without one, a poison
    /// message would come back forever.
    async fn read_redrive_policy(&self) {
        let policy = async {
            let url = self.queue.url().await.ok()?;
            self.queue
                .attribute(&url, aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                .await
                .ok()
        }
        .await;
        match policy {
            // Could not ask (an outage at start): the receive loops report it.
            None => {}
            Some(None) => tracing::warn!(
                "the queue has no redrive policy: a poison message would be received again and again; give it a DLQ"
            ),
            Some(Some(policy)) => {
                if let Some(name) = crate::sqs::dead_letter_queue_name(&policy)
                    && let Ok(output) = self
                        .queue
                        .client()
                        .get_queue_url()
                        .queue_name(name)
                        .send()
                        .await
                {
                    *self.dead_letter_url.lock().expect("not poisoned") = output.queue_url;
                }
                let max = crate::sqs::max_receive_count(&policy).unwrap_or_default();
                self.max_receives.store(max, Ordering::Relaxed);
                self.status.lock().expect("not poisoned").max_receive_count =
                    (max > 0).then_some(max);
            }
        }
    }

    fn poison(&self, message: &Received, poison: &Poison) {
        self.metrics.failure(poison.reason);
        tracing::error!(message_id = %message.message_id, receive_count = message.receive_count,
            reason = poison.reason, detail = %poison.detail, "poison message left for the redrive policy (DLQ)");
    }

    async fn delete(&self, url: &str, messages: &[&Received]) {
        for chunk in messages.chunks(10) {
            let entries =
                crate::sqs::delete_entries(chunk.iter().map(|m| m.receipt_handle.as_str()));
            let result = self
                .queue
                .client()
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(output) if output.failed().is_empty() => {}
                // Not fatal: the message comes back and the inbox recognises it.
                Ok(output) => tracing::warn!(
                    failed = output.failed().len(),
                    "some deletes failed; those messages will be skipped as duplicates"
                ),
                Err(e) => {
                    tracing::warn!(error = %SendError::from_sdk(e), "delete failed; the messages will be skipped as duplicates")
                }
            }
        }
    }

    async fn make_visible(&self, url: &str, messages: &[&Received]) {
        let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        change_visibility(&self.queue, url, &handles, 0).await;
    }

    /// Runs `CONSUMER_CONCURRENCY` receive loops until `shutdown`; in-flight
    /// messages are finished and deleted before it returns.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.read_redrive_policy().await;
        let prober = {
            let consumer = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move { consumer.probe_loop(shutdown).await })
        };
        self.status.lock().expect("not poisoned").running = true;
        let loops: Vec<_> = (0..self.args.consumer_concurrency)
            .map(|_| {
                let consumer = Arc::clone(&self);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { consumer.receive_loop(shutdown).await })
            })
            .collect();
        tracing::info!(loops = loops.len(), "consumer started");
        {
            let shutdown = shutdown.clone();
            let wait = self.args.consumer_wait_time;
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
        self.status.lock().expect("not poisoned").running = false;
        tracing::info!("consumer stopped");
    }

    async fn receive_loop(&self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut breaker = self.breaker.subscribe();
        while !shutdown.is_cancelled() {
            // Nothing is received while the database is down.
            tokio::select! {
                () = shutdown.cancelled() => return,
                closed = breaker.wait_for(|open| !*open) => if closed.is_err() { return },
            }
            use futures::FutureExt;
            let round = std::panic::AssertUnwindSafe(self.run_once())
                .catch_unwind()
                .await;
            let Ok(round) = round else {
                // A bug, not an outage: say so loudly, and keep receiving.
                self.metrics.failure("panic");
                tracing::error!("a receive round panicked; the receive loop goes on");
                continue;
            };
            match round {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!("queue reachable again");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, failures, "cannot receive from the queue; retrying");
                    }
                    let delay = Duration::from_millis(200 * u64::from(failures.min(25)));
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

fn long_poll_timeouts(wait: Duration) -> aws_sdk_sqs::config::timeout::TimeoutConfig {
    aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(wait + Duration::from_secs(10))
        .operation_timeout(2 * wait + Duration::from_secs(25))
        .build()
}

/// What became of one message of a receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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

/// Aborts a spawned task when dropped (unwinding included).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// While handlers work, pushes the visibility timeout of unfinished messages
/// forward every half timeout, so a slow handler does not see its message
/// handed to a second consumer.
async fn extend_visibility(
    queue: Queue,
    url: String,
    unfinished: Arc<Mutex<HashSet<String>>>,
    timeout: Duration,
) {
    let every = (timeout / 2).max(Duration::from_millis(500));
    loop {
        tokio::time::sleep(every).await;
        let handles: Vec<String> = unfinished
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect();
        if handles.is_empty() {
            return;
        }
        tracing::debug!(
            messages = handles.len(),
            "extending visibility of slow messages"
        );
        change_visibility(&queue, &url, &handles, timeout.as_secs() as i32).await;
    }
}

async fn change_visibility(queue: &Queue, url: &str, handles: &[String], seconds: i32) {
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(seconds)
                    .build()
                    .expect("id and handle are set")
            })
            .collect();
        if let Err(e) = queue
            .client()
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = %SendError::from_sdk(e), "failed to change message visibility");
        }
    }
}
