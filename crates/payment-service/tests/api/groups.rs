//! The consumer when one FIFO group carries several events (a booking's whole
//! story): a failure, a poison message or a panic in the middle of the group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// Records the `n` of every event it applies, in order; fails the first receive
/// of events marked `fail` (both attempts the consumer makes in it: the whole
/// receive, then message by message), panics on events marked `panic`.
#[derive(Default)]
struct Story {
    attempts: Mutex<HashMap<uuid::Uuid, u32>>,
}

/// A payment database with the table the test handler writes to.
async fn story_pool() -> sqlx::PgPool {
    let pool = fresh_pool().await;
    sqlx::query("create table story (id bigserial primary key, n bigint not null)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// The `n` of every event applied (committed), in order.
async fn applied(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar("select n from story order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[derive(Clone, Default)]
struct Handler(Arc<Story>);

impl outbox::Handler for Handler {
    type Event = Value;

    fn decode(&self, envelope: &outbox::envelope::EventEnvelope) -> Result<Value, outbox::Poison> {
        Ok(envelope.payload.clone())
    }

    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        envelope: &outbox::envelope::EventEnvelope,
        payload: &Value,
    ) -> Result<outbox::Handled, outbox::HandlerError> {
        if payload["panic"] == true {
            panic!("injected panic");
        }
        if payload["fail"] == true {
            let mut attempts = self.0.attempts.lock().unwrap();
            let attempt = attempts.entry(envelope.event_id).or_default();
            *attempt += 1;
            if *attempt <= 2 {
                return Err("injected transient failure".into());
            }
        }
        // In the consumer's transaction: what a rollback undoes is not counted.
        sqlx::query("insert into story (n) values ($1)")
            .bind(payload["n"].as_i64().unwrap())
            .execute(&mut *tx)
            .await?;
        Ok(outbox::Handled::Processed)
    }
}

/// Sends events with these payloads into one group, in order.
async fn send_group(queue_url: &str, group: uuid::Uuid, payloads: &[Value]) {
    for payload in payloads {
        let mut event = flight_booked(100);
        event.aggregate_id = group;
        // Unsequenced (as written before sequences existed): these tests are
        // about group order, which holds without sequence checks too.
        event.sequence = None;
        event.payload = payload.clone();
        send_event(queue_url, &event).await;
    }
}

async fn run(
    queue_url: &str,
    visibility: Duration,
) -> (sqlx::PgPool, CancellationToken, tokio::task::JoinHandle<()>) {
    let pool = story_pool().await;
    let consumer = Arc::new(consumer(&pool, queue_url, Handler::default(), 1, visibility).await);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    (pool, shutdown, task)
}

/// A message of `group` as SQS hands it out (the local server delivers one
/// message of a FIFO group per receive; SQS itself delivers up to ten).
fn received(group: uuid::Uuid, payload: Value) -> outbox::consumer::Received {
    use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
    let mut event = flight_booked(100);
    event.aggregate_id = group;
    event.sequence = None; // see `send_group`
    event.payload = payload;
    let message = Message::builder()
        .message_id(uuid::Uuid::new_v4().to_string())
        .receipt_handle(uuid::Uuid::new_v4().to_string())
        .body(serde_json::to_string(&event).unwrap())
        .attributes(
            MessageSystemAttributeName::MessageGroupId,
            group.to_string(),
        )
        .build();
    outbox::consumer::Received::from_sqs(message).unwrap()
}

#[tokio::test]
async fn a_failure_mid_group_holds_back_the_rest_of_its_group_until_it_is_applied() {
    use outbox::Handled;
    use outbox::consumer::Disposition;
    let (queue_url, _dlq) = queue_with_dlq(5, 1).await;
    let (group, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    // One receive of SQS: four events of one booking, one of another.
    let messages = vec![
        received(group, json!({"n": 0})),
        received(group, json!({"n": 1, "fail": true})),
        received(other, json!({"n": 10})),
        received(group, json!({"n": 2})),
        received(group, json!({"n": 3})),
    ];
    let handler = Handler::default();
    let pool = story_pool().await;
    let consumer = consumer(
        &pool,
        &queue_url,
        handler.clone(),
        1,
        Duration::from_secs(1),
    )
    .await;
    let outcomes = consumer.apply(&messages).await;
    assert_eq!(
        outcomes,
        [
            Disposition::Done(Handled::Processed),
            Disposition::Transient,
            Disposition::Done(Handled::Processed),
            Disposition::Deferred,
            Disposition::Deferred
        ]
    );
    assert_eq!(applied(&pool).await, [0, 10], "2 and 3 wait for 1");
    // SQS hands the group out again from the failed message on: all three look new.
    let outcomes = consumer
        .apply(&[
            messages[1].clone(),
            messages[3].clone(),
            messages[4].clone(),
        ])
        .await;
    assert!(
        outcomes
            .iter()
            .all(|o| *o == Disposition::Done(Handled::Processed)),
        "{outcomes:?}"
    );
    assert_eq!(applied(&pool).await, [0, 10, 1, 2, 3], "never 2 before 1");
}

#[tokio::test]
async fn poison_mid_group_goes_to_the_dlq_alone_and_its_group_goes_on() {
    let (queue_url, dlq) = queue_with_dlq(2, 1).await;
    let group = uuid::Uuid::now_v7();
    send_group(&queue_url, group, &[json!({"n": 0})]).await;
    send(&queue_url, &group.to_string(), "not json").await;
    send_group(&queue_url, group, &[json!({"n": 1}), json!({"n": 2})]).await;
    let (pool, shutdown, task) = run(&queue_url, Duration::from_secs(1)).await;
    eventually(
        Duration::from_secs(20),
        "the valid ones applied, the poison dead-lettered",
        || async {
            (applied(&pool).await.len() >= 3
                && queue_depth(&dlq).await == 1
                && queue_depth(&queue_url).await == 0)
                .then_some(())
        },
    )
    .await;
    // Several redrive thresholds later: still only the poison in the DLQ.
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(applied(&pool).await, [0, 1, 2]);
    assert_eq!(
        queue_depth(&dlq).await,
        1,
        "its valid followers are not dead-lettered with it"
    );
    // Moved by the consumer at its first receive, not by the redrive policy
    // after maxReceiveCount receives (with its group's followers received with it).
    let dead = sqs()
        .await
        .receive_message()
        .queue_url(&dlq)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let message = &dead.messages()[0];
    assert_eq!(message.body(), Some("not json"));
    assert_eq!(
        message.attributes().unwrap()
            [&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount],
        "1",
        "a new message in the DLQ: the poison was moved, not redriven"
    );
}

#[tokio::test]
async fn a_panicking_handler_fails_its_message_and_the_consumer_keeps_consuming() {
    let (queue_url, dlq) = queue_with_dlq(2, 1).await;
    let (story, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    send_group(
        &queue_url,
        story,
        &[
            json!({"n": 0}),
            json!({"n": 1, "panic": true}),
            json!({"n": 2}),
        ],
    )
    .await;
    let (pool, shutdown, task) = run(&queue_url, Duration::from_secs(1)).await;
    // The panicking message is a failure like any other: its redrive policy
    // moves it (and, being in order behind it, its group's rest) to the DLQ,
    // instead of its visibility being extended forever.
    eventually(
        Duration::from_secs(30),
        "the panicking message is dead-lettered",
        || async {
            (queue_depth(&dlq).await >= 1 && queue_depth(&queue_url).await == 0).then_some(())
        },
    )
    .await;
    // And the receive loop is alive.
    send_group(&queue_url, other, &[json!({"n": 10})]).await;
    eventually(
        Duration::from_secs(15),
        "a later message is applied",
        || async { applied(&pool).await.contains(&10).then_some(()) },
    )
    .await;
    shutdown.cancel();
    task.await.unwrap();
    let applied = applied(&pool).await;
    assert_eq!(applied[0], 0);
    assert!(!applied.contains(&1), "{applied:?}");
}

#[tokio::test]
async fn a_queue_without_a_redrive_policy_is_reported_at_start() {
    let client = sqs().await;
    let url = outbox::sqs::create_queue(
        &client,
        &format!("no-dlq-{}.fifo", uuid::Uuid::new_v4().simple()),
    )
    .await
    .unwrap();
    let pool = fresh_pool().await;
    let consumer =
        Arc::new(consumer(&pool, &url, Handler::default(), 1, Duration::from_secs(1)).await);
    let status = consumer.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&consumer).run(shutdown.clone()));
    eventually(Duration::from_secs(10), "the consumer runs", || async {
        status.lock().unwrap().running.then_some(())
    })
    .await;
    assert_eq!(status.lock().unwrap().max_receive_count, None);
    shutdown.cancel();
    task.await.unwrap();
}
