//! The business side of consuming, independent of the broker: a [`Handler`]
//! decodes an event and applies its effect inside the consumer's transaction.

use sqlx::PgConnection;

use crate::envelope::{ContractError, EventEnvelope};

/// What a handler's failure carries: any error (an `anyhow::Error` converts
/// with `.into()`); it is logged with its cause chain.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What became of a message; either way it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The effect was applied.
    Processed,
    /// The effect existed already (found by the handler's own check).
    Duplicate,
}

/// An event that can never be applied: left for the redrive policy (DLQ).
#[derive(Debug, Clone, thiserror::Error)]
#[error("poison message ({reason}): {detail}")]
pub struct Poison {
    /// A short label for metrics.
    pub reason: &'static str,
    /// What is wrong with it.
    pub detail: String,
}

impl From<ContractError> for Poison {
    fn from(e: ContractError) -> Self {
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
    /// error rolls the message back, to be retried after the visibility
    /// timeout; a [`Poison`] error (`Err(Poison { .. }.into())`) says the
    /// database shows it can never be applied (it names an entity that does
    /// not exist, say): it is rolled back and dead-lettered like poison found
    /// by `decode`.
    fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &Self::Event,
    ) -> impl Future<Output = Result<Handled, HandlerError>> + Send;
}
