//! Per-aggregate sequence numbers against a real PostgreSQL: the writer's side
//! (`store::enqueue` numbers an aggregate's events 1, 2, 3… without gaps, in
//! commit order, past retention) and the consumer's (an aggregate's events are
//! applied only in that order; an old copy is skipped, a gap is dead-lettered).
//! The consumer's transactional step (`Consumer::apply`) is driven directly with
//! messages built here, so no SQS server is needed.
//!
//! `TEST_DATABASE_URL` names the server (default the local one, trust auth);
//! each test makes its own database, named with `TEST_DATABASE_PREFIX`.

use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use outbox::consumer::{Consumer, ConsumerConfig, Disposition, Received};
use outbox::sqs::{Queue, QueueRef};
use outbox::{EventEnvelope, Handled, Handler, HandlerError, NewEvent, Poison};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

async fn database() -> PgPool {
    let server = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let prefix = std::env::var("TEST_DATABASE_PREFIX").unwrap_or_default();
    let name = format!("{prefix}outbox_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL answers (TEST_DATABASE_URL)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(30)
        .connect(&format!("{server}/{name}"))
        .await
        .unwrap();
    outbox::schema::migrator().run(&pool).await.unwrap();
    // What the test handler applies: one row per applied event.
    sqlx::raw_sql(
        "create table applied (at bigint generated always as identity, aggregate_id uuid not null, n bigint not null)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

fn new_event(aggregate_type: &'static str, aggregate_id: Uuid, n: i64) -> NewEvent {
    NewEvent {
        event_type: "Counted",
        event_version: 1,
        aggregate_type,
        aggregate_id,
        traceparent: None,
        payload: json!({ "n": n }),
    }
}

async fn enqueue(pool: &PgPool, aggregate_type: &'static str, aggregate: Uuid) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    let envelope = outbox::store::enqueue(&mut tx, new_event(aggregate_type, aggregate, 0))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    envelope.sequence.expect("enqueue numbers every event")
}

/// Sequences of `aggregate`'s events as stored (in the envelope), in outbox order.
async fn stored_sequences(pool: &PgPool, aggregate: Uuid) -> Vec<i64> {
    sqlx::query_scalar(
        "select (envelope->>'sequence')::int8 from outbox.event where aggregate_id = $1 order by seq",
    )
    .bind(aggregate)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn enqueue_numbers_an_aggregates_events_without_gaps_across_transactions_rollbacks_and_retention()
 {
    let pool = database().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    assert_eq!(enqueue(&pool, "ticket", a).await, 1);
    let mut tx = pool.begin().await.unwrap();
    let first_b = outbox::store::enqueue(&mut tx, new_event("ticket", b, 0))
        .await
        .unwrap();
    let second_a = outbox::store::enqueue(&mut tx, new_event("ticket", a, 0))
        .await
        .unwrap();
    let third_a = outbox::store::enqueue(&mut tx, new_event("ticket", a, 0))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (first_b.sequence, second_a.sequence, third_a.sequence),
        (Some(1), Some(2), Some(3))
    );

    // A rolled-back write gives its number back: no gap for consumers to wait on.
    let mut tx = pool.begin().await.unwrap();
    let rolled_back = outbox::store::enqueue(&mut tx, new_event("ticket", a, 0))
        .await
        .unwrap();
    assert_eq!(rolled_back.sequence, Some(4));
    tx.rollback().await.unwrap();
    assert_eq!(enqueue(&pool, "ticket", a).await, 4);
    assert_eq!(stored_sequences(&pool, a).await, [1, 2, 3, 4]);

    // Retention deletes the published rows; the numbering goes on after them.
    sqlx::query("update outbox.event set published_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .unwrap();
    let purged = outbox::store::purge_published(&pool, Duration::from_secs(60), 1000)
        .await
        .unwrap();
    assert_eq!(purged, 5);
    assert_eq!(enqueue(&pool, "ticket", a).await, 5);
    assert_eq!(enqueue(&pool, "ticket", b).await, 2);
    // Another aggregate type with the same id has a numbering of its own.
    assert_eq!(enqueue(&pool, "refund", a).await, 1);
}

#[tokio::test]
async fn writers_of_one_aggregate_get_consecutive_numbers_in_commit_order() {
    let pool = database().await;
    let aggregate = Uuid::now_v7();
    let writers: Vec<_> = (0..20u64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                let envelope = outbox::store::enqueue(&mut tx, new_event("ticket", aggregate, 0))
                    .await
                    .unwrap();
                // Hold the transaction open a little, differently for each writer.
                tokio::time::sleep(Duration::from_millis(i * 7 % 11)).await;
                tx.commit().await.unwrap();
                envelope.sequence.unwrap()
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for writer in writers {
        numbers.push(writer.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<i64>>());
    // The relay sends in outbox (`seq`) order: it is the sequence order too.
    assert_eq!(
        stored_sequences(&pool, aggregate).await,
        (1..=20).collect::<Vec<i64>>()
    );
}

/// Applies `{"n": …}` by inserting a row; a negative `n` names something the
/// database does not have, so the handler refuses it as poison.
struct Record;

impl Handler for Record {
    type Event = i64;

    fn decode(&self, envelope: &EventEnvelope) -> Result<i64, Poison> {
        envelope.payload["n"].as_i64().ok_or_else(|| Poison {
            reason: "bad_payload",
            detail: "no n".into(),
        })
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        n: &i64,
    ) -> Result<Handled, HandlerError> {
        if *n < 0 {
            return Err(Poison {
                reason: "unknown_entity",
                detail: format!("nothing numbered {n}"),
            }
            .into());
        }
        sqlx::query("insert into applied (aggregate_id, n) values ($1, $2)")
            .bind(envelope.aggregate_id)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        Ok(Handled::Processed)
    }
}

async fn consumer(pool: &PgPool, queue_name: &str) -> Consumer<Record> {
    // Never called: `apply` is the transactional step only.
    let url = format!("http://127.0.0.1:9/000000000000/{queue_name}");
    let queue = Queue::new(outbox::sqs::client().await, QueueRef::Url(url)).unwrap();
    Consumer::new(
        pool.clone(),
        queue,
        Record,
        ConsumerConfig::builder().build().unwrap(),
    )
}

fn event(aggregate: Uuid, sequence: Option<i64>, n: i64) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "Counted".into(),
        event_version: 1,
        aggregate_type: "ticket".into(),
        aggregate_id: aggregate,
        sequence,
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        payload: json!({ "n": n }),
    }
}

/// The message SQS would deliver for `envelope` (its group: the aggregate).
fn message(envelope: &EventEnvelope) -> Received {
    Received::from_sqs(
        Message::builder()
            .message_id(Uuid::new_v4().to_string())
            .receipt_handle(Uuid::new_v4().to_string())
            .body(serde_json::to_string(envelope).unwrap())
            .attributes(
                MessageSystemAttributeName::MessageGroupId,
                envelope.aggregate_id.to_string(),
            )
            .build(),
    )
    .unwrap()
}

async fn apply(consumer: &Consumer<Record>, events: &[&EventEnvelope]) -> Vec<Disposition> {
    let messages: Vec<Received> = events.iter().map(|e| message(e)).collect();
    consumer.apply(&messages).await
}

async fn applied(pool: &PgPool) -> Vec<(Uuid, i64)> {
    sqlx::query_as("select aggregate_id, n from applied order by at")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn in_inbox(pool: &PgPool, event: &EventEnvelope) -> bool {
    sqlx::query_scalar("select exists(select 1 from outbox.inbox where event_id = $1)")
        .bind(event.event_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn position(pool: &PgPool, aggregate: Uuid) -> Option<i64> {
    sqlx::query_scalar("select last from outbox.inbox_position where aggregate_id = $1")
        .bind(aggregate)
        .fetch_optional(pool)
        .await
        .unwrap()
}

const PROCESSED: Disposition = Disposition::Done(Handled::Processed);
const DUPLICATE: Disposition = Disposition::Done(Handled::Duplicate);

#[tokio::test]
async fn a_consumer_applies_an_aggregates_events_only_in_sequence() {
    let pool = database().await;
    let consumer = consumer(&pool, "events.fifo").await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (a1, a2, a3) = (
        event(a, Some(1), 1),
        event(a, Some(2), 2),
        event(a, Some(3), 3),
    );

    assert_eq!(apply(&consumer, &[&a1]).await, [PROCESSED]);
    // 3 before 2: not applied, not remembered (it must look new when redriven).
    assert_eq!(apply(&consumer, &[&a3]).await, [Disposition::Poison]);
    assert!(!in_inbox(&pool, &a3).await);
    assert_eq!(position(&pool, a).await, Some(1));
    // 2 arrives, and 3 is redriven after it: both applied, in order.
    assert_eq!(apply(&consumer, &[&a2, &a3]).await, [PROCESSED, PROCESSED]);
    assert_eq!(position(&pool, a).await, Some(3));
    // A copy of 2 under another event id (redriven after the inbox forgot it,
    // say): the aggregate is past it, so it is skipped, not applied twice.
    let mut copy = a2.clone();
    copy.event_id = Uuid::now_v7();
    assert_eq!(apply(&consumer, &[&copy]).await, [DUPLICATE]);
    // The first event of an aggregate must be 1.
    assert_eq!(
        apply(&consumer, &[&event(b, Some(2), 2)]).await,
        [Disposition::Poison]
    );
    // Written before sequences existed: applied unchecked, no position kept.
    assert_eq!(apply(&consumer, &[&event(c, None, 7)]).await, [PROCESSED]);
    assert_eq!(position(&pool, c).await, None);

    assert_eq!(applied(&pool).await, [(a, 1), (a, 2), (a, 3), (c, 7)]);
}

#[tokio::test]
async fn a_gap_in_a_receive_holds_back_the_rest_of_its_aggregate_and_not_the_others() {
    let pool = database().await;
    let consumer = consumer(&pool, "events.fifo").await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let outcomes = apply(
        &consumer,
        &[
            &event(a, Some(1), 1),
            &event(a, Some(3), 3),
            &event(a, Some(4), 4),
            &event(b, Some(1), 1),
        ],
    )
    .await;
    // Without a DLQ (none is known to this consumer) the gap's group waits
    // behind it, in flight; with one, each later event would be dead-lettered too.
    assert_eq!(
        outcomes,
        [
            PROCESSED,
            Disposition::Poison,
            Disposition::Deferred,
            PROCESSED
        ]
    );
    assert_eq!(applied(&pool).await, [(a, 1), (b, 1)]);
    assert_eq!(
        (position(&pool, a).await, position(&pool, b).await),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn a_handler_refusing_an_event_as_poison_leaves_no_trace_and_holds_its_aggregate() {
    let pool = database().await;
    let consumer = consumer(&pool, "events.fifo").await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let refused = event(a, Some(1), -1);
    let outcomes = apply(&consumer, &[&refused, &event(b, Some(1), 1)]).await;
    assert_eq!(outcomes, [Disposition::Poison, PROCESSED]);
    assert!(!in_inbox(&pool, &refused).await);
    assert_eq!(
        position(&pool, a).await,
        Some(0),
        "nothing of a was applied"
    );
    // The aggregate's next event waits for the refused one: out of sequence.
    assert_eq!(
        apply(&consumer, &[&event(a, Some(2), 2)]).await,
        [Disposition::Poison]
    );
    assert_eq!(applied(&pool).await, [(b, 1)]);
}

#[tokio::test]
async fn on_a_standard_queue_no_order_is_promised_so_none_is_checked() {
    let pool = database().await;
    let consumer = consumer(&pool, "events").await;
    let a = Uuid::now_v7();
    assert_eq!(
        apply(&consumer, &[&event(a, Some(3), 3)]).await,
        [PROCESSED]
    );
    assert_eq!(position(&pool, a).await, None);
}
