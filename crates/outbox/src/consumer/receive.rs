//! Step 1, receive: long polling, and what the queue's redrive policy says.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio_util::sync::CancellationToken;

use super::{Consumer, ReceiveReport};
use crate::handler::Handler;
use crate::publish::{FailureReason, SendError};

/// A received message, as handlers see it.
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS's message id.
    pub message_id: String,
    /// The body: an [`crate::EventEnvelope`] as JSON.
    pub body: String,
    /// FIFO message group; `None` on a standard queue.
    pub group_id: Option<String>,
    /// How often SQS has handed this message out (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// W3C trace context of the request that produced the event.
    pub traceparent: Option<String>,
    pub(super) receipt_handle: String,
    /// The message attributes as received (kept when poison is moved to the DLQ).
    pub(super) attributes:
        Option<std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>>,
}

impl Received {
    /// From an SQS message received with all attributes; `None` without an id
    /// or a receipt handle.
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

impl<H: Handler> Consumer<H> {
    /// Receives one batch (long polling, up to ``wait_time``) and handles it.
    pub async fn run_once(&self) -> Result<ReceiveReport, SendError> {
        let url = self.queue.url().await?;
        let receive = self
            .queue
            .client()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(self.config.max_messages)
            .wait_time_seconds(self.config.wait_time.as_secs() as i32)
            .visibility_timeout(self.config.visibility_timeout.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .customize()
            // The client's attempt timeout (sized for the relay's short calls) must
            // not cut a long poll short: an abandoned receive still takes messages
            // off the queue, and they would only come back after the visibility
            // timeout, one receive count closer to the DLQ.
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .timeout_config(long_poll_timeouts(self.config.wait_time)),
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
                if e.reason == FailureReason::QueueDoesNotExist {
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
            return Ok(ReceiveReport::default());
        }
        Ok(self.process(&url, messages).await)
    }

    pub(super) async fn receive_loop(&self, shutdown: CancellationToken) {
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

    /// Reads the queue's redrive policy once at start: without one, a poison
    /// message would come back forever.
    pub(super) async fn read_redrive_policy(&self) {
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
}

fn long_poll_timeouts(wait: Duration) -> aws_sdk_sqs::config::timeout::TimeoutConfig {
    aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(wait + Duration::from_secs(10))
        .operation_timeout(2 * wait + Duration::from_secs(25))
        .build()
}
