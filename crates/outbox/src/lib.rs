//! PLACEHOLDER
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
