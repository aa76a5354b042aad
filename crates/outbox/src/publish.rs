//! The broker side of the relay, independent of SQS: the [`Publisher`] trait
//! the relay sends through, its errors, and how claimed events are packed into
//! batches. The SQS implementation is [`crate::sqs::SqsPublisher`] (feature `sqs`).

use crate::store::Claimed;

/// Why a send failed, as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The queue does not exist (deleted, or a wrong name or URL).
    QueueDoesNotExist,
    /// The broker denied the call (credentials, IAM, a deny policy).
    AccessDenied,
    /// The broker asked to slow down.
    Throttled,
    /// No answer: connection refused, DNS, timeout.
    Unreachable,
    /// This message was refused (too big, invalid attribute).
    Rejected,
    /// Anything else.
    Other,
}

impl FailureReason {
    /// The metrics label, e.g. `queue_does_not_exist`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueDoesNotExist => "queue_does_not_exist",
            Self::AccessDenied => "access_denied",
            Self::Throttled => "throttled",
            Self::Unreachable => "unreachable",
            Self::Rejected => "rejected",
            Self::Other => "other",
        }
    }
}

/// A failed call (the whole batch) or a failed entry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The kind of failure.
    pub reason: FailureReason,
    /// The broker's message.
    pub message: String,
}

impl SendError {
    /// A failure of `reason` with a message.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// What happened to each message of a batch, in the order given.
pub type BatchOutcome = Vec<Result<(), SendError>>;

/// Sends a batch of claimed outbox rows somewhere. The relay depends on this
/// trait, so tests can wrap the real SQS publisher to inject faults.
pub trait Publisher: Send + Sync + 'static {
    /// Sends up to 10 messages in one call. `Err` means nothing was sent (the
    /// call failed as a whole); `Ok` carries one result per message, because
    /// SQS accepts or refuses each entry of a batch separately.
    fn publish(
        &self,
        batch: &[Claimed],
    ) -> impl Future<Output = Result<BatchOutcome, SendError>> + Send;
}

/// SQS's limits for one SendMessageBatch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes of one batch call (bodies plus attributes).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Packs claimed runs into batches SQS accepts (at most 10 entries and 256 KiB of
/// bodies plus attributes per call) without ever splitting one aggregate's run
/// across two batches: two batches of one aggregate in flight at once could
/// arrive in either order. `rows` come lane by lane (see [`crate::store::claim`]);
/// a run too big for one batch is cut to the prefix that fits, and the rest
/// waits for the next claim of its lane. A single event too big for SQS travels
/// alone (SQS refuses it; it is parked, visible to an operator; new events that
/// big are refused when written).
pub fn split_batches(rows: Vec<Claimed>) -> Vec<Vec<Claimed>> {
    let mut batches: Vec<Vec<Claimed>> = Vec::new();
    let mut current: Vec<Claimed> = Vec::new();
    let mut bytes = 0;
    let mut rows = rows.into_iter().peekable();
    while let Some(first) = rows.next() {
        // The run of `first`'s lane, cut to what fits in one batch.
        let mut run_bytes = message_size(&first);
        let mut run = vec![first];
        while let Some(next) = rows.next_if(|r| r.aggregate_id == run[0].aggregate_id) {
            let size = message_size(&next);
            if run.len() < MAX_BATCH_ENTRIES && run_bytes + size <= MAX_BATCH_BYTES {
                run_bytes += size;
                run.push(next);
            }
        }
        if !current.is_empty()
            && (current.len() + run.len() > MAX_BATCH_ENTRIES
                || bytes + run_bytes > MAX_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += run_bytes;
        current.extend(run);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Body plus attribute names, types and values, as SQS counts them.
fn message_size(row: &Claimed) -> usize {
    let attributes = ("eventType".len() + "String".len() + row.event_type.len())
        + ("eventVersion".len() + "Number".len() + 10)
        + ("contentType".len() + "String".len() + "application/json".len())
        + row
            .traceparent
            .as_ref()
            .map_or(0, |t| "traceparent".len() + "String".len() + t.len());
    row.body.len() + attributes
}
