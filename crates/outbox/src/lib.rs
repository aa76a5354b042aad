//! A transactional outbox and inbox on PostgreSQL, with a relay and a consumer
//! for Amazon SQS.
//!
//! A service writes its events with [`store::enqueue`] in the same transaction
//! as the change they announce; a [`Relay`] publishes committed events, in order
//! per aggregate; a [`consumer::Consumer`] on the other side applies each event
//! exactly once, in order, with a [`Handler`] inside one transaction with its
//! inbox entry. The modules:
//!
//! - [`envelope`]: the [`EventEnvelope`] every event travels in, [`Event`] for
//!   typed events, [`NewEvent`] to write one.
//! - [`store`]: the outbox tables: [`store::enqueue`] (which gives each event the
//!   next sequence number of its aggregate), the relay's claims and results, the
//!   operator's listing and retry.
//! - [`relay`]: claim → send → record, as a pipeline ([`Relay::run`]) or one step
//!   at a time ([`Relay::run_once`]); [`publish`]: the [`Publisher`] it sends
//!   through.
//! - [`consumer`] (feature `sqs`): receive → handle → acknowledge, with the
//!   [`inbox`] (copies skipped) and the per-aggregate positions (events out of
//!   sequence dead-lettered); [`handler`]: the business side ([`Handler`]).
//! - [`sqs`] (feature `sqs`): the SQS client, queue, publisher and DLQ redrive.
//! - [`schema`]: the crate's own migrations (schema `outbox`); [`retention`]:
//!   purging old rows in the background; [`metrics`] (Prometheus with feature
//!   `prometheus`); `emf` (feature `emf`): the backlog as CloudWatch EMF lines.
//! - [`error`]: the crate's typed [`Error`].
#![warn(missing_docs)]

pub mod envelope;
pub mod error;
pub mod handler;
pub mod inbox;
pub mod metrics;
pub mod publish;
pub mod relay;
pub mod retention;
pub mod schema;
pub mod store;

#[cfg(feature = "sqs")]
pub mod consumer;
#[cfg(feature = "emf")]
pub mod emf;
#[cfg(feature = "sqs")]
pub mod sqs;

pub use envelope::{ContractError, Event, EventEnvelope, NewEvent};
pub use error::Error;
pub use handler::{Handled, Handler, HandlerError, Poison};
pub use publish::Publisher;
pub use relay::{Relay, RelayConfig};
