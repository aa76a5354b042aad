//! A transactional outbox and inbox on PostgreSQL, with a relay to and a
//! consumer from Amazon SQS.
//!
//! A service that changes its database *and* tells other services about it must
//! not lose the message when the broker is down, nor send one for a change that
//! rolled back. The outbox pattern writes the event into the service's own
//! database, in the same transaction as the change; a relay publishes committed
//! events afterwards. On the other side an inbox records each event id in the
//! same transaction as its effect, so a message delivered twice has one effect.
//!
//! ```text
//! your transaction ─ enqueue ─▶ outbox.event ─ Relay ─▶ SQS ─ Consumer ─▶ inbox + your effect
//!                                (claim → send → record)     (receive → handle → acknowledge)
//! ```
//!
//! # Quick start
//!
//! 1. Run the crate's migrations at start-up ([`schema::migrator`]); its tables
//!    live in the PostgreSQL schema `outbox`.
//! 2. Write events with [`store::enqueue`] on your transaction.
//! 3. Run a [`Relay`] (in the service, or as its own process) with a
//!    [`Publisher`]: [`sqs::SqsPublisher`] for SQS.
//! 4. Consume with [`consumer::Consumer`] and your [`Handler`].
//!
//! ```no_run
//! use outbox::{Event, NewEvent, Relay, RelayConfig};
//! use outbox::sqs::{Queue, QueueRef, SqsPublisher};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct OrderPlaced { total_cents: i64 }
//!
//! impl Event for OrderPlaced {
//!     const TYPE: &'static str = "OrderPlaced";
//!     const VERSION: i32 = 1;
//!     const AGGREGATE_TYPE: &'static str = "order";
//! }
//!
//! # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! outbox::schema::migrator().run(&pool).await?;
//!
//! // The change and its event: one transaction.
//! let order_id = uuid::Uuid::now_v7();
//! let mut tx = pool.begin().await?;
//! sqlx::query("insert into orders (id, total_cents) values ($1, $2)")
//!     .bind(order_id).bind(4200_i64).execute(&mut *tx).await?;
//! let event = NewEvent::of(order_id, &OrderPlaced { total_cents: 4200 }, None)?;
//! outbox::store::enqueue(&mut tx, event).await?;
//! tx.commit().await?;
//!
//! // The relay, until shutdown (LISTEN/NOTIFY wakes it when a transaction commits).
//! let queue = Queue::new(outbox::sqs::client().await, QueueRef::Name("orders.fifo".into()))?;
//! let config = RelayConfig::builder().lease(std::time::Duration::from_secs(15)).build()?;
//! let relay = std::sync::Arc::new(Relay::new(pool.clone(), SqsPublisher::new(queue), config));
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(relay.run(shutdown.clone()));
//! # Ok(()) }
//! ```
//!
//! A consumer implements [`Handler`]: `decode` (no I/O; what cannot be decoded
//! is [`Poison`]) and `apply` (the effect, on the consumer's transaction):
//!
//! ```no_run
//! use outbox::{EventEnvelope, Handled, Handler, HandlerError, Poison};
//! use outbox::consumer::{Consumer, ConsumerConfig};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct OrderPlaced { total_cents: i64 }
//! # impl outbox::Event for OrderPlaced { const TYPE: &'static str = "OrderPlaced";
//! #     const VERSION: i32 = 1; const AGGREGATE_TYPE: &'static str = "order"; }
//!
//! struct Invoice;
//!
//! impl Handler for Invoice {
//!     type Event = OrderPlaced;
//!     fn decode(&self, envelope: &EventEnvelope) -> Result<OrderPlaced, Poison> {
//!         Ok(envelope.decode()?)
//!     }
//!     async fn apply(
//!         &self,
//!         tx: &mut sqlx::PgConnection,
//!         envelope: &EventEnvelope,
//!         order: &OrderPlaced,
//!     ) -> Result<Handled, HandlerError> {
//!         sqlx::query("insert into invoice (order_id, cents) values ($1, $2)")
//!             .bind(envelope.aggregate_id).bind(order.total_cents).execute(tx).await?;
//!         Ok(Handled::Processed)
//!     }
//! }
//!
//! # async fn run(pool: sqlx::PgPool, queue: outbox::sqs::Queue) {
//! let consumer = std::sync::Arc::new(Consumer::new(pool, queue, Invoice, ConsumerConfig::default()));
//! consumer.run(tokio_util::sync::CancellationToken::new()).await;
//! # }
//! ```
//!
//! `examples/minimal.rs` is the whole loop in under 60 lines.
//!
//! # Guarantees
//!
//! - **Nothing invented, nothing lost.** An event exists exactly when the
//!   transaction that wrote it committed. It stays in `outbox.event` until the
//!   broker accepted it; an outage only delays it (the relay probes and drains
//!   the backlog when the broker answers).
//! - **At least once.** A relay that crashes between the broker's answer and
//!   recording it sends the event again after its lease. FIFO queues drop a
//!   copy within 5 minutes (the event id is the deduplication id); the inbox
//!   drops the rest.
//! - **Order per aggregate, on FIFO queues.** Events of one aggregate (the
//!   `aggregate_id` you give [`NewEvent`]) are published in the order they were
//!   written and travel in one message group; one aggregate's events are never
//!   in two batches at once. One exception, counted in `outbox_out_of_order_total`:
//!   if SQS refuses entry *n* of a batch and accepts *n+1*, *n+1* arrives first;
//!   [`relay::RelayConfigBuilder::run_size`]`(1)` removes it. Standard queues keep
//!   no order at all.
//! - **Sequence numbers.** [`store::enqueue`] numbers each aggregate's events
//!   1, 2, 3… in the writer's transaction; the consumer applies an aggregate's
//!   events only in that order, skips old copies, and dead-letters an event that
//!   arrives out of sequence (counted, logged) instead of applying it.
//! - **Replicas.** Any number of relays may run against one database: they
//!   claim per aggregate with leases and never wait on each other.
//! - **The inbox** makes the *effect* exactly-once: the event id is recorded in
//!   the same transaction as the effect, so a duplicate finds it and is skipped.
//!   It remembers ids for the inbox retention (15 days by default); a copy
//!   arriving later would be applied again.
//! - **Poison** (an event that cannot be decoded, or that the handler keeps
//!   failing while the database is healthy) goes to the queue's DLQ; a queue
//!   without a redrive policy is warned about at start. While the database is
//!   down the consumer stops receiving instead, so no valid message is
//!   dead-lettered because of an outage.
//!
//! # What the caller must do
//!
//! - Write events on the *same* transaction as the change (`&mut tx`), never
//!   on the pool.
//! - Serialise writers of one aggregate (update or lock its row first), so that
//!   outbox order is commit order for that aggregate.
//! - Make handlers deterministic given the database: a handler is retried, and
//!   its effect must only come from its transaction (no side effects outside it
//!   that a rollback cannot undo).
//! - Keep events under 255 KiB on the wire ([`Error::EventTooLarge`] otherwise).
//! - Give each queue a DLQ (redrive policy), and alert on it.
//!
//! # Schema
//!
//! [`schema::migrator`] creates the schema `outbox` with `outbox.event` (the
//! outbox), `outbox.lane` (one row per aggregate with a backlog: what relays
//! claim) and `outbox.inbox`, and keeps its own history in
//! `outbox._sqlx_migrations`, apart from yours. The names are fixed because
//! every query is checked at compile time against them; the schema keeps them
//! out of your namespace. The role needs `CREATE` on the database.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sqs` | yes | [`sqs::SqsPublisher`], the [`consumer`], DLQ redrive (`aws-sdk-sqs`) |
//! | `prometheus` | no | `register` on [`metrics::RelayMetrics`] / [`metrics::ConsumerMetrics`] |
//! | `emf` | no | `emf::emit_emf`: the backlog as CloudWatch EMF lines |
//! | `utoipa` | no | OpenAPI schemas of the public types |
//!
//! Without features the crate is the PostgreSQL outbox and inbox, the relay
//! and the [`Publisher`] / [`Handler`] traits: bring your own broker.
//!
//! # Configuration
//!
//! [`RelayConfig::builder`] and [`consumer::ConsumerConfig::builder`] start
//! from defaults that suit most services; `build()` refuses settings that
//! cannot work (a lease that cannot hold one send, a poll interval that is a
//! busy loop, SQS limits) and names the setting. Reading them from the
//! environment is the service's business.
//!
//! # Errors
//!
//! Public functions return [`Error`] (or [`publish::SendError`] for broker
//! calls), with the cause as `source()`; log them with their whole chain
//! ([`error::chain`] does it).
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
