//! Step 2, handle: decode every message without I/O (poison never touches the
//! database), then record the receive in the inbox and apply each new event, in
//! receive order, in one transaction; on a FIFO queue, only the next event of
//! its aggregate (its sequence number is the last applied + 1).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use sqlx::{Connection, PgConnection};

use super::{Consumer, Disposition, Received};
use crate::envelope::EventEnvelope;
use crate::error::{DbContext, Error};
use crate::handler::{Handled, Handler, HandlerError, Poison};
use crate::inbox::{self, AggregateKey};

impl<H: Handler> Consumer<H> {
    /// The transactional half of handling a receive: records and applies every
    /// message in one transaction and commits, but deletes nothing. (Tests use
    /// it to play a consumer that dies between its commit and its deletes.)
    pub async fn apply(&self, messages: &[Received]) -> Vec<Disposition> {
        let started = Instant::now();
        let (mut outcomes, decoded) = self.decode_all(messages);
        if !decoded.is_empty() {
            // Fast path: no savepoints. Should one message fail, the receive is
            // rolled back and applied again with a savepoint per message, so the
            // failing one is retried alone and the others still commit.
            let applied = match self.commit_all(messages, &decoded, false).await {
                Ok(applied) => Ok(applied),
                Err(first) => {
                    tracing::debug!(error = %crate::error::chain(&first), "receive rolled back; applying message by message");
                    self.commit_all(messages, &decoded, true).await
                }
            };
            match applied {
                Ok(committed) => {
                    for (i, outcome) in committed.applied {
                        outcomes[i] = Some(outcome);
                    }
                    for (i, expected, received) in committed.out_of_sequence {
                        let envelope =
                            &decoded.iter().find(|(j, _, _)| *j == i).expect("decoded").1;
                        self.out_of_sequence(&messages[i], envelope, expected, received);
                    }
                }
                Err(e) => {
                    self.metrics.failure("transient");
                    tracing::warn!(error = %crate::error::chain(&e), messages = decoded.len(),
                        "messages not processed; they come back after the visibility timeout");
                    for (i, _, _) in &decoded {
                        outcomes[*i] = Some(Disposition::Transient);
                    }
                }
            }
        }
        let outcomes: Vec<Disposition> = outcomes
            .into_iter()
            .map(|o| o.expect("every message has an outcome"))
            .collect();
        let per_message = started.elapsed().as_secs_f64() / messages.len().max(1) as f64;
        for outcome in &outcomes {
            self.metrics.handling(per_message);
            match outcome {
                Disposition::Done(Handled::Processed) => self.metrics.processed(),
                Disposition::Done(Handled::Duplicate) => self.metrics.duplicate(),
                _ => {}
            };
        }
        outcomes
    }

    /// Decodes every message, without I/O. Poison blocks the rest of its group.
    #[allow(clippy::type_complexity)]
    fn decode_all(
        &self,
        messages: &[Received],
    ) -> (
        Vec<Option<Disposition>>,
        Vec<(usize, EventEnvelope, H::Event)>,
    ) {
        let mut blocked: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut decoded = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let group = message.group_id.as_deref();
            if group.is_some_and(|g| blocked.contains(g)) {
                outcomes.push(Some(Disposition::Skipped));
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
                    outcomes.push(Some(Disposition::Poison));
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
    ) -> Result<Committed, Error> {
        let mut tx = self
            .pool
            .begin()
            .await
            .db("Failed to begin a transaction")?;
        let entries: Vec<inbox::Entry> = decoded
            .iter()
            .map(|(i, envelope, _)| inbox::Entry {
                event_id: envelope.event_id,
                event_type: &envelope.event_type,
                message_id: &messages[*i].message_id,
            })
            .collect();
        let mut new = inbox::record(&mut tx, &entries).await?;
        // Where each aggregate of the new, sequenced events stands, locked until
        // commit. Checked on FIFO queues only: a standard queue promises no order.
        let keys: Vec<AggregateKey> = if self.queue.is_fifo() {
            decoded
                .iter()
                .filter(|(_, e, _)| e.sequence.is_some() && new.contains(&e.event_id))
                .map(|(_, e, _)| key_of(e))
                .collect()
        } else {
            Vec::new()
        };
        let mut positions = inbox::lock_positions(&mut tx, &keys).await?;
        let mut advanced: HashMap<AggregateKey, i64> = HashMap::new();
        let dead_letter_queue = self.dead_letter_url.lock().expect("not poisoned").is_some();
        let mut applied = Vec::with_capacity(decoded.len());
        let mut out_of_sequence = Vec::new();
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
                applied.push((*i, Disposition::Deferred));
                continue;
            }
            // `remove`: the same event twice in one receive is applied once.
            if !new.remove(&envelope.event_id) {
                tracing::info!(message_id = %message.message_id, event_id = %envelope.event_id, "duplicate delivery skipped");
                applied.push((*i, Disposition::Done(Handled::Duplicate)));
                continue;
            }
            // Only the next event of its aggregate is applied.
            let key = key_of(envelope);
            if let (Some(received), Some(&last)) = (envelope.sequence, positions.get(&key)) {
                if received <= last {
                    tracing::info!(message_id = %message.message_id, event_id = %envelope.event_id,
                        aggregate_id = %envelope.aggregate_id, sequence = received, last_applied = last,
                        "old copy skipped: its aggregate is past this sequence number");
                    applied.push((*i, Disposition::Done(Handled::Duplicate)));
                    continue;
                }
                if received != last + 1 {
                    // It must look new when it is redriven, in order.
                    inbox::forget(&mut tx, envelope.event_id).await?;
                    out_of_sequence.push((*i, last + 1, received));
                    if let Some(group) = message.group_id.as_deref()
                        && !dead_letter_queue
                    {
                        failed_groups.insert(group);
                    }
                    applied.push((*i, Disposition::Poison));
                    continue;
                }
            }
            let span = tracing::info_span!("message", message_id = %message.message_id,
                event_id = %envelope.event_id, traceparent = message.traceparent.as_deref().unwrap_or(""),
                receive_count = message.receive_count);
            if !isolate {
                let handled =
                    tracing::Instrument::instrument(self.apply_one(&mut tx, envelope, event), span)
                        .await
                        .map_err(Error::Handler)?;
                if let (Some(received), Some(last)) = (envelope.sequence, positions.get_mut(&key)) {
                    *last = received;
                    advanced.insert(key, received);
                }
                applied.push((*i, Disposition::Done(handled)));
                continue;
            }
            let mut savepoint = tx.begin().await.db("Failed to open a savepoint")?;
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
                        .db("Failed to release a savepoint")?;
                    if let (Some(received), Some(last)) =
                        (envelope.sequence, positions.get_mut(&key))
                    {
                        *last = received;
                        advanced.insert(key, received);
                    }
                    applied.push((*i, Disposition::Done(handled)));
                }
                Err(e) if e.downcast_ref::<Poison>().is_some() => {
                    // The handler found, on the database, that it can never be applied.
                    savepoint
                        .rollback()
                        .await
                        .db("Failed to roll back to a savepoint")?;
                    inbox::forget(&mut tx, envelope.event_id).await?;
                    self.poison(message, e.downcast_ref::<Poison>().expect("checked"));
                    if let Some(group) = message.group_id.as_deref()
                        && !dead_letter_queue
                    {
                        failed_groups.insert(group);
                    }
                    applied.push((*i, Disposition::Poison));
                }
                Err(e) => {
                    savepoint
                        .rollback()
                        .await
                        .db("Failed to roll back to a savepoint")?;
                    // It must look new when it comes back.
                    inbox::forget(&mut tx, envelope.event_id).await?;
                    if let Some(group) = message.group_id.as_deref() {
                        failed_groups.insert(group);
                    }
                    self.metrics.failure("transient");
                    tracing::warn!(message_id = %message.message_id, event_id = %envelope.event_id,
                        error = %crate::error::chain(&*e), "message not processed; it comes back after the visibility timeout");
                    applied.push((*i, Disposition::Transient));
                }
            }
        }
        inbox::advance_positions(&mut tx, &advanced).await?;
        tx.commit()
            .await
            .db("Failed to commit the received messages")?;
        Ok(Committed {
            applied,
            out_of_sequence,
        })
    }

    /// The handler's `apply`, bounded by `the handler timeout`, a panic
    /// turned into an error of this message (the receive loop lives on).
    async fn apply_one(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &H::Event,
    ) -> Result<Handled, HandlerError> {
        use futures::FutureExt;
        let timeout = self.config.handler_timeout;
        let guarded = std::panic::AssertUnwindSafe(self.handler.apply(tx, envelope, event));
        match tokio::time::timeout(timeout, guarded.catch_unwind()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                self.metrics.failure("panic");
                tracing::error!(event_id = %envelope.event_id, "the handler panicked; the message is treated as failed");
                Err("the handler panicked".into())
            }
            Err(_) => Err(format!("the handler took longer than its timeout ({timeout:?})").into()),
        }
    }

    /// An event that is not the next one of its aggregate: never applied, made
    /// visible (dead-lettered, like poison), counted and logged.
    fn out_of_sequence(
        &self,
        message: &Received,
        envelope: &EventEnvelope,
        expected: i64,
        received: i64,
    ) {
        self.metrics.failure("out_of_sequence");
        tracing::error!(message_id = %message.message_id, event_id = %envelope.event_id,
            event_type = %envelope.event_type, aggregate_type = %envelope.aggregate_type,
            aggregate_id = %envelope.aggregate_id, expected, received,
            "event out of sequence: not applied, dead-lettered (an earlier event of its aggregate has not been applied; redrive the DLQ in order once it has)");
    }

    fn poison(&self, message: &Received, poison: &Poison) {
        self.metrics.failure(poison.reason);
        tracing::error!(message_id = %message.message_id, receive_count = message.receive_count,
            reason = poison.reason, detail = %poison.detail, "poison message left for the redrive policy (DLQ)");
    }
}

/// What one transaction of [`Consumer::apply`] committed.
struct Committed {
    /// Each message's outcome, by index in the receive.
    applied: Vec<(usize, Disposition)>,
    /// Messages refused as out of sequence: (index, expected, received);
    /// reported once the transaction committed.
    out_of_sequence: Vec<(usize, i64, i64)>,
}

fn key_of(envelope: &EventEnvelope) -> AggregateKey {
    (envelope.aggregate_type.clone(), envelope.aggregate_id)
}
