//! Step 3, acknowledge: delete what committed, make visible again what must
//! come back, move poison to the DLQ; and, while handlers work, keep the
//! visibility of their messages extended.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use chrono::Utc;

use super::{Consumer, Disposition, ReceiveReport, Received};
use crate::handler::{Handled, Handler};
use crate::publish::SendError;
use crate::sqs::Queue;

impl<H: Handler> Consumer<H> {
    pub(super) async fn process(&self, url: &str, messages: Vec<Received>) -> ReceiveReport {
        self.metrics.received(messages.len() as u64);
        let unfinished: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(
            messages.iter().map(|m| m.receipt_handle.clone()).collect(),
        ));
        // Stopped when this function ends, whatever the handler does (a panic
        // included): visibility is never extended for a receive nobody handles.
        let heartbeat = AbortOnDrop(tokio::spawn(extend_visibility(
            self.queue.clone(),
            url.to_owned(),
            Arc::clone(&unfinished),
            self.config.visibility_timeout,
        )));
        let outcomes = self.apply(&messages).await;
        drop(heartbeat);
        self.status.lock().expect("not poisoned").last_receive_at = Some(Utc::now());
        // A transient failure: ours (the database is down) or the message's?
        let transient = outcomes.contains(&Disposition::Transient);
        let outage = transient && !self.database_answers().await;
        if outage {
            self.open_breaker(url).await;
        }

        let mut report = ReceiveReport {
            received: messages.len(),
            ..ReceiveReport::default()
        };
        let mut done = Vec::new();
        let mut release = Vec::new();
        let mut dead = Vec::new();
        let dead_letter_url = self.dead_letter_url.lock().expect("not poisoned").clone();
        for (message, outcome) in messages.iter().zip(outcomes) {
            match outcome {
                Disposition::Done(Handled::Processed) => {
                    report.processed += 1;
                    done.push(message);
                }
                Disposition::Done(Handled::Duplicate) => {
                    report.duplicates += 1;
                    done.push(message);
                }
                Disposition::Poison => {
                    report.failed += 1;
                    if dead_letter_url.is_some() {
                        dead.push(message);
                    } else {
                        release.push(message);
                    }
                }
                // Behind a failed message of its group: stays in flight with it and
                // comes back after it, in order (released with it in an outage).
                Disposition::Deferred if outage => release.push(message),
                Disposition::Deferred => {}
                // Released at once: it was not its fault, and nothing here will
                // receive it again until the database is back.
                Disposition::Transient if outage => {
                    report.failed += 1;
                    release.push(message);
                }
                Disposition::Transient => {
                    report.failed += 1;
                    self.warn_if_last_chance(message);
                }
                // Behind a poison message of its group: back in the queue, in order.
                Disposition::Skipped => release.push(message),
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

    pub(super) async fn make_visible(&self, url: &str, messages: &[&Received]) {
        let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        change_visibility(&self.queue, url, &handles, 0).await;
    }
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
