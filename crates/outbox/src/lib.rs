//! The transactional outbox and inbox, and the event contract both services
//! speak. Data flows one way: a service writes its change and an event in one
//! transaction ([`store::enqueue`]); the [`relay`] publishes committed events to
//! SQS; a consumer ([`consumer`]) records each event once ([`inbox`]).
//!
//! - [`envelope`]: the wire format of every event, and the `FlightBooked` contract.
//! - [`store`]: the outbox table: enqueue inside the caller's transaction, claim,
//!   mark published or failed, park and retry, retention, stats.
//! - [`sqs`]: the SQS client, queue resolution and the batch [`sqs::SqsPublisher`].
//! - [`relay`]: the loop that moves committed events to SQS, in order per aggregate.
//! - [`inbox`]: "have I processed this event already?", inside the consumer's
//!   business transaction.
//! - [`consumer`]: the SQS receive loop with visibility extension and batched deletes.
//! - [`metrics`]: Prometheus metrics of the relay and the consumer.

pub mod consumer;
pub mod envelope;
pub mod inbox;
pub mod metrics;
pub mod relay;
pub mod schema;
pub mod sqs;
pub mod store;

pub use envelope::{EventEnvelope, NewEvent};
