//! The crate's errors: what went wrong, typed, with the cause attached as
//! `source()` so callers log the whole chain (`{:#}` with `anyhow`, or walk
//! `source()`).

/// An error of an outbox, relay, inbox or consumer operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or could not be reached; `action` says what was tried.
    #[error("{action}")]
    Database {
        /// What the crate was doing, e.g. "Failed to claim outbox lanes".
        action: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An event too big for one message of the broker; refused when written.
    #[error("the event is {size} bytes on the wire, over the {max}-byte limit of one SQS message")]
    EventTooLarge {
        /// Its size, as it would be sent.
        size: usize,
        /// The limit ([`crate::store::MAX_EVENT_BYTES`]).
        max: usize,
    },
    /// The event's payload could not be serialised to JSON.
    #[error("Failed to serialise the event")]
    Serialize(#[from] serde_json::Error),
    /// A consumer's handler failed to apply an event.
    #[error("the handler failed")]
    Handler(#[source] crate::handler::HandlerError),
}

impl Error {
    /// Whether the database could not be reached at all (as opposed to refusing
    /// one statement): an outage to wait out, not a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database {
                source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
                ..
            }
        )
    }
}

/// Attaches what was being done to a database error.
pub(crate) trait DbContext<T> {
    fn db(self, action: &'static str) -> Result<T, Error>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn db(self, action: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Database { action, source })
    }
}

/// `error` and its causes, `": "`-separated: what logs should show of an error.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
