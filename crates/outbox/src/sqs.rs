//! Amazon SQS: the client, the queue, and the batch publisher the relay uses.
//!
//! The endpoint comes from the SDK's own configuration chain, so
//! `AWS_ENDPOINT_URL_SQS` points the very same code at a local emulator.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use tokio::sync::RwLock;

use crate::publish::{BatchOutcome, FailureReason, Publisher, SendError};
use crate::store::Claimed;

/// Which queue: by URL, or by name (resolved with GetQueueUrl, and again after
/// SQS says it does not exist, so a re-created queue is found). A name or URL
/// ending in `.fifo` is a FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    /// `https://sqs.<region>.amazonaws.com/<account>/<name>`.
    Url(String),
    /// The queue's name.
    Name(String),
}

/// A queue reference that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueConfigError {
    /// An empty name.
    #[error("the queue name is empty")]
    EmptyName,
    /// Not an http(s) URL.
    #[error("queue URL {0:?} is not an http(s) URL")]
    BadUrl(String),
}

/// Builds an SQS client from the default chain (ECS task role in AWS; env vars
/// or profiles elsewhere). Timeouts are bounded so a black-holed endpoint cannot
/// hold the relay past its claim lease; retries are few because the outbox
/// itself retries with backoff.
pub async fn client() -> Client {
    let config = aws_config::from_env()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(25))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    Client::new(&config)
}

/// A queue known by URL or by name; the URL of a named queue is resolved lazily
/// and forgotten when SQS says the queue does not exist, so a re-created queue
/// is found again.
#[derive(Clone)]
pub struct Queue {
    client: Client,
    name: Option<String>,
    url: Arc<RwLock<Option<String>>>,
    fifo: bool,
}

impl Queue {
    /// The queue `which`, reached with `client`.
    pub fn new(client: Client, which: QueueRef) -> Result<Self, QueueConfigError> {
        let (name, url) = match which {
            QueueRef::Url(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(QueueConfigError::BadUrl(url));
                }
                (None, Some(url))
            }
            QueueRef::Name(name) if !name.trim().is_empty() => (Some(name), None),
            QueueRef::Name(_) => return Err(QueueConfigError::EmptyName),
        };
        let fifo = name
            .as_deref()
            .or(url.as_deref())
            .unwrap_or_default()
            .ends_with(".fifo");
        Ok(Self {
            client,
            name,
            url: Arc::new(RwLock::new(url)),
            fifo,
        })
    }

    /// The SQS client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether this is a FIFO queue (a `.fifo` name or URL).
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The queue URL, resolving the name when needed.
    pub async fn url(&self) -> Result<String, SendError> {
        if let Some(url) = self.url.read().await.clone() {
            return Ok(url);
        }
        let name = self.name.as_deref().unwrap_or_default();
        let resolved = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(SendError::from_sdk)?
            .queue_url
            .ok_or_else(|| SendError::new(FailureReason::Other, "GetQueueUrl returned no URL"))?;
        *self.url.write().await = Some(resolved.clone());
        Ok(resolved)
    }

    /// One attribute of the queue at `url` (this queue, or another on the same
    /// client, such as its DLQ); `None` when the queue does not have it.
    pub async fn attribute(
        &self,
        url: &str,
        name: aws_sdk_sqs::types::QueueAttributeName,
    ) -> Result<Option<String>, SendError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(SendError::from_sdk)?;
        Ok(output.attributes().and_then(|a| a.get(&name)).cloned())
    }

    /// Forgets a resolved URL (only for queues known by name).
    pub async fn invalidate(&self) {
        if self.name.is_some() {
            *self.url.write().await = None;
        }
    }
}

impl SendError {
    /// Classifies an SDK error: unreachable, denied, queue gone, throttled or other.
    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let reason = match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => FailureReason::Unreachable,
            SdkError::ServiceError(service) => classify(service.err().code()),
            _ => FailureReason::Other,
        };
        let message = match err.code() {
            Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
            None => format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&err)),
        };
        Self { reason, message }
    }
}

fn classify(code: Option<&str>) -> FailureReason {
    match code.unwrap_or_default() {
        c if c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist") => {
            FailureReason::QueueDoesNotExist
        }
        c if c.contains("AccessDenied")
            || c.contains("NotAuthorized")
            || c.contains("InvalidClientTokenId") =>
        {
            FailureReason::AccessDenied
        }
        c if c.contains("Throttl") || c.contains("RequestThrottled") || c.contains("OverLimit") => {
            FailureReason::Throttled
        }
        _ => FailureReason::Other,
    }
}

/// Publishes to SQS with SendMessageBatch. On a FIFO queue the aggregate id is
/// the message group (order per booking) and the event id the deduplication id
/// (a re-send after a crash within 5 minutes is dropped by SQS itself).
#[derive(Clone)]
pub struct SqsPublisher {
    queue: Queue,
}

impl SqsPublisher {
    /// Publishes to `queue`.
    pub fn new(queue: Queue) -> Self {
        Self { queue }
    }

    fn entry(&self, index: usize, row: &Claimed) -> SendMessageBatchRequestEntry {
        let string = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .expect("data type is set")
        };
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(&row.body)
            .message_attributes("eventType", string(&row.event_type))
            .message_attributes(
                "eventVersion",
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(row.event_version.to_string())
                    .build()
                    .expect("data type is set"),
            )
            .message_attributes("contentType", string("application/json"));
        if let Some(traceparent) = &row.traceparent {
            entry = entry.message_attributes("traceparent", string(traceparent));
        }
        if self.queue.is_fifo() {
            entry = entry
                .message_group_id(row.aggregate_id.to_string())
                .message_deduplication_id(row.event_id.to_string());
        }
        entry.build().expect("id and body are set")
    }
}

impl Publisher for SqsPublisher {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        let url = self.queue.url().await.inspect_err(|e| {
            if e.reason == FailureReason::QueueDoesNotExist {
                tracing::debug!("queue not found while resolving its URL");
            }
        })?;
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, row)| self.entry(i, row))
            .collect();
        let result = self
            .queue
            .client()
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) => {
                let err = SendError::from_sdk(err);
                if err.reason == FailureReason::QueueDoesNotExist {
                    self.queue.invalidate().await;
                }
                return Err(err);
            }
        };
        // Every entry is checked: only those SQS lists as successful count as sent.
        let mut outcome: BatchOutcome = (0..batch.len())
            .map(|_| {
                Err(SendError::new(
                    FailureReason::Other,
                    "SQS reported no result for this entry",
                ))
            })
            .collect();
        for ok in output.successful() {
            if let Some(slot) = ok
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| outcome.get_mut(i))
            {
                *slot = Ok(());
            }
        }
        for failed in output.failed() {
            if let Some(slot) = failed
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| outcome.get_mut(i))
            {
                let reason = if failed.sender_fault() {
                    FailureReason::Rejected
                } else {
                    classify(Some(failed.code()))
                };
                *slot = Err(SendError::new(
                    reason,
                    format!(
                        "{}: {}",
                        failed.code(),
                        failed.message().unwrap_or("no message")
                    ),
                ));
            }
        }
        Ok(outcome)
    }
}

/// `maxReceiveCount` of a queue's `RedrivePolicy` attribute (a number or a string).
pub fn max_receive_count(policy: &str) -> Option<u32> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    match &policy["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The DLQ's name, from a queue's `RedrivePolicy` attribute (the last part of
/// `deadLetterTargetArn`).
pub fn dead_letter_queue_name(policy: &str) -> Option<String> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    policy["deadLetterTargetArn"]
        .as_str()?
        .rsplit(':')
        .next()
        .map(str::to_owned)
}

/// What a DLQ redrive found or did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Redrive {
    /// The dead-letter queue (from the source queue's redrive policy).
    pub dead_letter_queue_url: String,
    /// Messages in the DLQ before the move (approximate, as SQS counts them).
    pub waiting: i64,
    /// Messages moved back to the source queue (0 on a dry run).
    pub moved: i64,
    /// Only counted, nothing moved.
    pub dry_run: bool,
}

/// Moves every message of `queue`'s dead-letter queue back to `queue` (or, with
/// `dry_run`, only counts them). Each message keeps its body, attributes and,
/// on FIFO queues, its message group, so its group's order is kept from then
/// on; it gets a fresh deduplication id, so SQS cannot drop it as a copy of
/// its first send. It is deleted from the DLQ only after the source queue took
/// it: a crash in between leaves a copy in both, and the consumer's inbox
/// absorbs the second. Works against any SQS-compatible server; in AWS,
/// `infra/scripts/redrive-dlq.sh` uses SQS's own message-move task instead.
pub async fn redrive(queue: &Queue, dry_run: bool) -> Result<Redrive, SendError> {
    use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
    let client = queue.client();
    let url = queue.url().await?;
    let policy = queue
        .attribute(&url, QueueAttributeName::RedrivePolicy)
        .await?
        .ok_or_else(|| {
            SendError::new(
                FailureReason::Other,
                "the queue has no redrive policy, hence no DLQ",
            )
        })?;
    let dlq_name = dead_letter_queue_name(&policy)
        .ok_or_else(|| SendError::new(FailureReason::Other, "the redrive policy names no DLQ"))?;
    let dlq_url = client
        .get_queue_url()
        .queue_name(&dlq_name)
        .send()
        .await
        .map_err(SendError::from_sdk)?
        .queue_url
        .unwrap_or_default();
    let waiting = queue
        .attribute(&dlq_url, QueueAttributeName::ApproximateNumberOfMessages)
        .await?
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    let mut report = Redrive {
        dead_letter_queue_url: dlq_url.clone(),
        waiting,
        moved: 0,
        dry_run,
    };
    if dry_run {
        return Ok(report);
    }
    loop {
        let received = client
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(SendError::from_sdk)?;
        let messages = received.messages();
        if messages.is_empty() {
            return Ok(report);
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes().cloned());
                if queue.is_fifo() {
                    let group = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                        .cloned()
                        .unwrap_or_else(|| "redriven".to_owned());
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(uuid::Uuid::new_v4().to_string());
                }
                entry.build().expect("id and body are set")
            })
            .collect();
        let sent = client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(SendError::from_sdk)?;
        let deletes = delete_entries(
            sent.successful()
                .iter()
                .filter_map(|ok| ok.id().parse::<usize>().ok())
                .filter_map(|i| messages.get(i))
                .map(|m| m.receipt_handle().unwrap_or_default()),
        );
        if deletes.is_empty() {
            return Err(SendError::new(
                FailureReason::Rejected,
                "the source queue refused the redriven messages",
            ));
        }
        report.moved += deletes.len() as i64;
        client
            .delete_message_batch()
            .queue_url(&dlq_url)
            .set_entries(Some(deletes))
            .send()
            .await
            .map_err(SendError::from_sdk)?;
    }
}

/// The entries of one DeleteMessageBatch call (at most 10 receipt handles).
pub(crate) fn delete_entries<'h>(
    handles: impl IntoIterator<Item = &'h str>,
) -> Vec<aws_sdk_sqs::types::DeleteMessageBatchRequestEntry> {
    handles
        .into_iter()
        .enumerate()
        .map(|(i, handle)| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .build()
                .expect("id and handle are set")
        })
        .collect()
}

/// Creates a queue (tests, benchmarks and local set-up). FIFO when the name ends in `.fifo`.
pub async fn create_queue(client: &Client, name: &str) -> Result<String, SendError> {
    let mut request = client.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let output = request.send().await.map_err(SendError::from_sdk)?;
    output
        .queue_url
        .ok_or_else(|| SendError::new(FailureReason::Other, "CreateQueue returned no URL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::split_batches;
    use uuid::Uuid;

    fn run(aggregate: Uuid, events: usize, body_bytes: usize) -> Vec<Claimed> {
        (0..events)
            .map(|i| Claimed {
                seq: i as i64,
                event_id: Uuid::new_v4(),
                aggregate_id: aggregate,
                event_type: "E".into(),
                event_version: 1,
                body: "x".repeat(body_bytes),
                traceparent: None,
                created_at: chrono::Utc::now(),
                attempts: 0,
            })
            .collect()
    }

    #[test]
    fn a_run_of_one_aggregate_is_never_split_across_batches() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let rows = [run(a, 4, 10), run(b, 4, 10), run(c, 4, 10)].concat();
        let batches = split_batches(rows);
        let shape: Vec<Vec<Uuid>> = batches
            .iter()
            .map(|batch| batch.iter().map(|r| r.aggregate_id).collect())
            .collect();
        assert_eq!(shape, [[vec![a; 4], vec![b; 4]].concat(), vec![c; 4]]);
    }

    #[test]
    fn a_run_too_big_for_one_batch_is_cut_to_the_prefix_that_fits() {
        let a = Uuid::new_v4();
        let rows = run(a, 5, 100 * 1024);
        let batches = split_batches(rows);
        assert_eq!(batches.len(), 1);
        let seqs: Vec<i64> = batches[0].iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1], "the rest waits for the lane's next claim");
    }
}
