//! The relay against the real PostgreSQL and the real SQS-compatible server.
//! Most tests drive `Relay::run_once` directly so each step is deterministic;
//! fault-injecting publishers wrap the real SQS publisher.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use outbox::metrics::RelayMetrics;
use outbox::publish::{BatchOutcome, FailureReason, Publisher, SendError};
use outbox::relay::{Relay, RelayConfig, RelayConfigBuilder, RoundReport};
use outbox::sqs::{Queue, QueueRef, SqsPublisher};
use outbox::store::Claimed;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::*;

async fn queue(name: &str) -> (Queue, String) {
    let client = outbox::sqs::client().await;
    let url = outbox::sqs::create_queue(&client, name).await.unwrap();
    let queue = Queue::new(client, QueueRef::Url(url.clone())).unwrap();
    (queue, url)
}

fn fast_args() -> RelayConfigBuilder {
    RelayConfig::builder()
        .backoff_base(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(50))
}

/// Drives `relay` until nothing is left to publish.
async fn drain<P: Publisher>(relay: &Relay<P>, pool: &sqlx::PgPool) {
    eventually(Duration::from_secs(30), "the outbox drains", || async {
        relay.run_once().await.unwrap();
        (unpublished(pool).await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_booking_reaches_the_fifo_queue_with_its_envelope_and_attributes() {
    let app = spawn_app_with_queue(&unique_queue("e2e"), &[]).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .client
        .post(format!("{}/api/flights", app.address))
        .header("traceparent", traceparent)
        .json(&sample_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let flight: Value = response.json().await.unwrap();

    let messages = receive_all(
        app.queue_url.as_deref().unwrap(),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    let (stored, event_id): (Value, Uuid) =
        sqlx::query_as("select envelope, event_id from outbox.event")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(body, stored, "the body is the committed envelope");
    assert_eq!(body["payload"]["flightId"], flight["id"]);
    let attributes = message.message_attributes().unwrap();
    assert_eq!(attributes["eventType"].string_value(), Some("FlightBooked"));
    assert_eq!(attributes["eventVersion"].string_value(), Some("1"));
    assert_eq!(
        attributes["contentType"].string_value(),
        Some("application/json")
    );
    assert_eq!(attributes["traceparent"].string_value(), Some(traceparent));
    let system = message.attributes().unwrap();
    assert_eq!(
        system[&MessageSystemAttributeName::MessageGroupId],
        flight["id"].as_str().unwrap()
    );
    assert_eq!(
        system[&MessageSystemAttributeName::MessageDeduplicationId],
        event_id.to_string()
    );

    eventually(
        Duration::from_secs(5),
        "the row is marked published",
        || async { (unpublished(&app.pool).await == 0).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(5), "the metrics count it", || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metrics.contains("outbox_published_total 1").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_standard_queue_is_supported() {
    let name = format!("standard-{}", Uuid::new_v4().simple());
    let app = spawn_app_with_queue(&name, &[]).await;
    let id = app.book_sample().await;
    let messages = receive_all(
        app.queue_url.as_deref().unwrap(),
        1,
        Duration::from_secs(10),
    )
    .await;
    let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(body["aggregateId"], id.to_string());
}

#[tokio::test]
async fn events_wait_while_the_queue_is_gone_and_drain_in_order_when_it_is_back() {
    let name = unique_queue("outage");
    let app = spawn_app_with_queue(
        &name,
        &[
            "--relay-backoff-base=50ms",
            "--relay-backoff-max=200ms",
            "--relay-poll-interval=100ms",
        ],
    )
    .await;
    let url = app.queue_url.clone().unwrap();
    let client = outbox::sqs::client().await;
    client.delete_queue().queue_url(&url).send().await.unwrap();

    // Bookings keep succeeding while the queue is gone.
    let mut flights = Vec::new();
    for _ in 0..3 {
        flights.push(app.book_sample().await);
    }
    // And a longer story for one booking, whose order must survive the outage.
    enqueue_sequence(&app.pool, flights[0], 1, 4).await;

    let entries = eventually(
        Duration::from_secs(15),
        "failed attempts are recorded",
        || async {
            let page: Value = app
                .get_as_operator("/api/outbox")
                .await
                .json()
                .await
                .unwrap();
            let items = page["items"].as_array().unwrap().clone();
            // Once the outage is seen, only the prober sends, with the oldest event.
            (items[0]["attempts"].as_i64().unwrap() >= 8).then_some(items)
        },
    )
    .await;
    assert_eq!(entries.len(), 7, "every event is still in the outbox");
    let error = entries[0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("NonExistentQueue") || error.contains("QueueDoesNotExist"),
        "{error}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("outbox_publish_failures_total{reason=\"queue_does_not_exist\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("outbox_sqs_available 0"), "{metrics}");
    let later_heads: Vec<i64> = entries[1..]
        .iter()
        .map(|e| e["attempts"].as_i64().unwrap())
        .collect();
    // Each other head failed once or twice while the outage was being found
    // (claims already under way); after that only the prober kept sending.
    assert!(
        later_heads.iter().all(|attempts| *attempts <= 3),
        "during the outage only the prober sends, with the oldest event: {later_heads:?}"
    );

    // The queue comes back (same name, same URL): the backlog drains by itself.
    outbox::sqs::create_queue(&client, &name).await.unwrap();
    let messages = receive_all(&url, 7, Duration::from_secs(30)).await;
    assert_eq!(messages.len(), 7);
    let first: Vec<u64> = sequence_of(&messages)
        .into_iter()
        .filter(|(aggregate, _)| *aggregate == flights[0].to_string())
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        first,
        [0, 1, 2, 3, 4],
        "the booking's events arrive in commit order"
    );
    eventually(Duration::from_secs(5), "all marked published", || async {
        (unpublished(&app.pool).await == 0).then_some(())
    })
    .await;
}

/// Refuses the third entry of every batch the first time it sees that event.
struct FailThirdEntryOnce {
    inner: SqsPublisher,
    failed: Mutex<HashSet<Uuid>>,
}

impl Publisher for FailThirdEntryOnce {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        let victim = batch
            .get(2)
            .map(|row| row.event_id)
            .filter(|id| self.failed.lock().unwrap().insert(*id));
        let forwarded: Vec<Claimed> = batch
            .iter()
            .filter(|r| Some(r.event_id) != victim)
            .cloned()
            .collect();
        let mut results = self.inner.publish(&forwarded).await?.into_iter();
        Ok(batch
            .iter()
            .map(|row| {
                if Some(row.event_id) == victim {
                    Err(SendError::new(
                        FailureReason::Rejected,
                        "InternalError: injected entry failure",
                    ))
                } else {
                    results.next().unwrap()
                }
            })
            .collect())
    }
}

#[tokio::test]
async fn only_accepted_entries_of_a_batch_are_marked_and_the_rest_follow_in_order() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("partial")).await;
    let aggregates: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    for aggregate in &aggregates {
        enqueue_sequence(&app.pool, *aggregate, 0, 3).await;
    }
    let publisher = FailThirdEntryOnce {
        inner: SqsPublisher::new(queue),
        failed: Mutex::default(),
    };
    let relay = Relay::new(app.pool.clone(), publisher, fast_args().build().unwrap());

    // First round: every lane's run of 3, packed without splitting a run:
    // [A0 A1 A2 B0 B1 B2 C0 C1 C2] [D0 D1 D2 E0 E1 E2]; A2 and D2 are refused.
    assert_eq!(
        relay.run_once().await.unwrap(),
        RoundReport::Sent {
            published: 13,
            failed: 2
        }
    );
    let refused: Vec<(Uuid, i32, Option<String>, bool)> = sqlx::query_as(
        "select aggregate_id, attempts, last_error, published_at is null from outbox.event where attempts > 0 order by seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(refused.len(), 2);
    for (row, aggregate) in refused.iter().zip([aggregates[0], aggregates[3]]) {
        assert_eq!(row.0, aggregate);
        assert_eq!(row.1, 1);
        assert!(row.2.as_deref().unwrap().contains("injected"));
        assert!(row.3, "a refused entry is never marked published");
    }
    let published: i64 =
        sqlx::query_scalar("select count(*) from outbox.event where published_at is not null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(published, 13);

    drain(&relay, &app.pool).await;
    let messages = receive_all(&url, 15, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 15);
    assert_in_order_per_aggregate(&messages, 3);
}

/// Fails roughly one entry in four (and with it the rest of its aggregate's run
/// in that batch: the per-entry failures the relay's order guarantee covers), and
/// every seventh call as a whole.
struct Flaky {
    inner: SqsPublisher,
    calls: Mutex<u64>,
}

impl Publisher for Flaky {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if call.is_multiple_of(7) {
            return Err(SendError::new(
                FailureReason::Unreachable,
                "injected: connection refused",
            ));
        }
        let mut stopped = HashSet::new();
        let refused: Vec<bool> = batch
            .iter()
            .map(|row| {
                stopped.contains(&row.aggregate_id)
                    || (row
                        .event_id
                        .as_u128()
                        .wrapping_add(call as u128)
                        .is_multiple_of(4)
                        && stopped.insert(row.aggregate_id))
            })
            .collect();
        let forwarded: Vec<Claimed> = batch
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(row, _)| row.clone())
            .collect();
        let mut results = if forwarded.is_empty() {
            Vec::new()
        } else {
            self.inner.publish(&forwarded).await?
        }
        .into_iter();
        Ok(refused
            .iter()
            .map(|refused| {
                if *refused {
                    Err(SendError::new(
                        FailureReason::Throttled,
                        "injected: throttled",
                    ))
                } else {
                    results.next().unwrap()
                }
            })
            .collect())
    }
}

#[tokio::test]
async fn twenty_bookings_of_fifty_events_written_concurrently_go_through_three_flaky_relays_in_order()
 {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("replicas")).await;
    let shutdown = CancellationToken::new();
    let mut relays = Vec::new();
    for _ in 0..3 {
        let publisher = Flaky {
            inner: SqsPublisher::new(queue.clone()),
            calls: Mutex::new(0),
        };
        let relay = Arc::new(Relay::new(
            app.pool.clone(),
            publisher,
            fast_args().build().unwrap(),
        ));
        relays.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    // Written while the relays run, each booking by its own writer.
    let (bookings, per_booking) = (20, 50);
    let aggregates: Vec<Uuid> = (0..bookings).map(|_| Uuid::now_v7()).collect();
    let writers: Vec<_> = aggregates
        .iter()
        .map(|aggregate| {
            let (pool, aggregate) = (app.pool.clone(), *aggregate);
            tokio::spawn(async move { enqueue_sequence(&pool, aggregate, 0, per_booking).await })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let expected = bookings * per_booking;
    let messages = receive_all(&url, expected, Duration::from_secs(90)).await;
    shutdown.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
    assert_eq!(messages.len(), expected);
    assert_in_order_per_aggregate(&messages, per_booking);
    assert_eq!(unpublished(&app.pool).await, 0);
    // None was marked published before its predecessor.
    let inversions: i64 = sqlx::query_scalar(
        "select count(*) from outbox.event a join outbox.event b
           on a.aggregate_id = b.aggregate_id and a.seq < b.seq and a.published_at > b.published_at",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(inversions, 0);
    let retried: i64 = sqlx::query_scalar("select count(*) from outbox.event where attempts > 0")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(retried > 0, "the fault injection did inject faults");
    let lanes: i64 = sqlx::query_scalar("select count(*) from outbox.lane")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(lanes, 0, "drained lanes are deleted");
}

/// Sends for real, then never returns: the process "dies" between SQS
/// accepting the batch and the database recording it.
struct SendThenHang {
    inner: SqsPublisher,
    sent: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Publisher for SendThenHang {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        self.inner.publish(batch).await?;
        let _ = self.sent.send(());
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_relay_killed_after_sqs_accepted_the_batch_is_covered_by_another() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("crash")).await;
    let flight = app.book_sample().await;
    let short_lease = fast_args()
        .lease(Duration::from_secs(3))
        .send_timeout(Duration::from_secs(1));

    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let doomed = Relay::new(
        app.pool.clone(),
        SendThenHang {
            inner: SqsPublisher::new(queue.clone()),
            sent: sent_tx,
        },
        short_lease.clone().build().unwrap(),
    );
    let task = tokio::spawn(async move { doomed.run_once().await });
    tokio::time::timeout(Duration::from_secs(10), sent_rx.recv())
        .await
        .unwrap()
        .unwrap();
    task.abort(); // killed after the send, before the mark
    let _ = task.await;
    assert_eq!(
        unpublished(&app.pool).await,
        1,
        "SQS has it, the outbox does not know"
    );

    let survivor = Relay::new(
        app.pool.clone(),
        SqsPublisher::new(queue),
        short_lease.build().unwrap(),
    );
    assert_eq!(
        survivor.run_once().await.unwrap(),
        RoundReport::Idle,
        "the claim is honoured until its lease ends"
    );
    drain(&survivor, &app.pool).await;

    // Re-sent, and FIFO deduplication (same event id) absorbs the second copy.
    let messages = receive_all(&url, 2, Duration::from_secs(3)).await;
    assert_eq!(messages.len(), 1);
    let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(body["aggregateId"], flight.to_string());
}

/// Refuses the call as a whole, as a deny policy would.
struct Denied;

impl Publisher for Denied {
    async fn publish(&self, _batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        Err(SendError::new(
            FailureReason::AccessDenied,
            "AccessDenied: explicit deny in a resource-based policy",
        ))
    }
}

/// Accepts the call but refuses every entry, as SQS does for a message it will never take.
struct RefuseEntries;

impl Publisher for RefuseEntries {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        Ok(batch
            .iter()
            .map(|_| {
                Err(SendError::new(
                    FailureReason::Rejected,
                    "InvalidMessageContents: refused",
                ))
            })
            .collect())
    }
}

#[tokio::test]
async fn an_outage_never_parks_events_however_long_it_lasts() {
    let app = spawn_app().await;
    app.book_sample().await;
    let args = fast_args()
        .max_attempts(2)
        .backoff_base(Duration::from_millis(1))
        .backoff_max(Duration::from_millis(1));
    let denied = Relay::new(app.pool.clone(), Denied, args.build().unwrap());
    for _ in 0..4 {
        // The lane is due again 1 ms after each failure: a round within that
        // millisecond finds nothing to do.
        let round = eventually(Duration::from_secs(5), "the lane is due again", || async {
            Some(denied.run_once().await.unwrap()).filter(|r| *r != RoundReport::Idle)
        })
        .await;
        assert_eq!(round, RoundReport::Unavailable);
    }
    let page: Value = app
        .get_as_operator("/api/outbox")
        .await
        .json()
        .await
        .unwrap();
    let entry = &page["items"][0];
    assert_eq!(entry["attempts"], 4, "attempts keep growing");
    assert_ne!(
        entry["state"], "PARKED",
        "but an outage is not the event's fault"
    );
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("AccessDenied")
    );
}

#[tokio::test]
async fn an_event_is_parked_after_max_attempts_holds_back_its_successors_and_can_be_retried() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("park")).await;
    let flight = app.book_sample().await;
    let args = fast_args()
        .max_attempts(2)
        .backoff_base(Duration::from_millis(1))
        .backoff_max(Duration::from_millis(1));
    let metrics = RelayMetrics::default();
    let refusing = Relay::new(
        app.pool.clone(),
        RefuseEntries,
        args.clone().build().unwrap(),
    )
    .with_metrics(metrics.clone());

    assert_eq!(
        refusing.run_once().await.unwrap(),
        RoundReport::Sent {
            published: 0,
            failed: 1
        }
    );
    assert_eq!(
        refusing.run_once().await.unwrap(),
        RoundReport::Sent {
            published: 0,
            failed: 1
        }
    );
    assert_eq!(
        refusing.run_once().await.unwrap(),
        RoundReport::Idle,
        "parked events are not tried again"
    );
    assert_eq!(metrics.parked_total(), 1);

    let page: Value = app
        .get_as_operator("/api/outbox")
        .await
        .json()
        .await
        .unwrap();
    let entry = &page["items"][0];
    assert_eq!(entry["state"], "PARKED");
    assert_eq!(entry["attempts"], 2);
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("InvalidMessageContents")
    );
    let metrics_text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics_text.contains("outbox_parked_events 1"),
        "{metrics_text}"
    );

    // A later event of the same booking must not overtake the parked one.
    enqueue_sequence(&app.pool, flight, 1, 1).await;
    let working = Relay::new(
        app.pool.clone(),
        SqsPublisher::new(queue),
        args.build().unwrap(),
    );
    assert_eq!(working.run_once().await.unwrap(), RoundReport::Idle);

    let event_id = entry["eventId"].as_str().unwrap();
    let response = app
        .post_as_operator(&format!("/api/outbox/{event_id}/retry"))
        .await;
    assert_eq!(response.status(), 200);
    let requeued: Value = response.json().await.unwrap();
    assert_eq!(requeued["attempts"], 0);
    assert_ne!(requeued["state"], "PARKED");

    drain(&working, &app.pool).await;
    let messages = receive_all(&url, 2, Duration::from_secs(10)).await;
    let types: Vec<String> = messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(m.body().unwrap()).unwrap()["eventType"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["FlightBooked", "TestEvent"]);

    let again = app
        .post_as_operator(&format!("/api/outbox/{event_id}/retry"))
        .await;
    assert_problem(again, 409).await;
}

#[tokio::test]
async fn an_unreachable_sqs_endpoint_leaves_events_waiting_with_the_error() {
    let app = spawn_app().await;
    // Nothing listens on port 9 of this machine: connection refused.
    let config = aws_config::from_env()
        .endpoint_url("http://127.0.0.1:9")
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let queue = Queue::new(
        client,
        QueueRef::Url("http://127.0.0.1:9/000000000000/nowhere.fifo".into()),
    )
    .unwrap();
    app.book_sample().await;
    let relay = Relay::new(
        app.pool.clone(),
        SqsPublisher::new(queue),
        fast_args().build().unwrap(),
    );

    assert_eq!(relay.run_once().await.unwrap(), RoundReport::Unavailable);

    let (attempts, error, published): (i32, String, bool) =
        sqlx::query_as("select attempts, last_error, published_at is not null from outbox.event")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    assert!(!error.is_empty());
    assert!(!published);
}

#[tokio::test]
async fn the_relay_is_woken_again_after_its_listener_connection_is_killed() {
    // A poll interval of an hour: only a notification can deliver within the test.
    let app = spawn_app_with_queue(&unique_queue("listen"), &["--relay-poll-interval=1h"]).await;
    let url = app.queue_url.clone().unwrap();
    app.book_sample().await;
    assert_eq!(receive_all(&url, 1, Duration::from_secs(10)).await.len(), 1);

    let listener_pid = || async {
        sqlx::query_scalar::<_, i32>(
            "select pid from pg_stat_activity where datname = current_database() and query ilike 'listen%'",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    };
    let old = eventually(
        Duration::from_secs(5),
        "the listener is connected",
        listener_pid,
    )
    .await;
    sqlx::query("select pg_terminate_backend($1)")
        .bind(old)
        .execute(&app.pool)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the listener reconnects",
        || async { listener_pid().await.filter(|pid| *pid != old) },
    )
    .await;

    app.book_sample().await;
    assert_eq!(receive_all(&url, 1, Duration::from_secs(10)).await.len(), 1);
}

#[tokio::test]
async fn published_rows_are_deleted_after_the_retention() {
    let app = spawn_app_with_queue(&unique_queue("retention"), &["--outbox-retention=1s"]).await;
    for _ in 0..3 {
        app.book_sample().await;
    }
    assert_eq!(
        receive_all(
            app.queue_url.as_deref().unwrap(),
            3,
            Duration::from_secs(10)
        )
        .await
        .len(),
        3
    );
    eventually(
        Duration::from_secs(15),
        "retention empties the outbox",
        || async { (app.counts().await.1 == 0).then_some(()) },
    )
    .await;
    assert_eq!(app.counts().await.0, 3, "the flights themselves stay");
}

#[tokio::test]
async fn two_booking_service_replicas_publish_every_event_once() {
    let name = unique_queue("two-replicas");
    let first = spawn_app_with_queue(&name, &[]).await;
    let second = spawn_replica(&first.database_url, first.queue_url.clone(), &[]).await;
    let mut booked = HashSet::new();
    for i in 0..40 {
        let app = if i % 2 == 0 { &first } else { &second };
        booked.insert(app.book_sample().await.to_string());
    }
    let messages = receive_all(
        first.queue_url.as_deref().unwrap(),
        40,
        Duration::from_secs(20),
    )
    .await;
    let received: HashSet<String> = sequence_of(&messages).into_iter().map(|(a, _)| a).collect();
    assert_eq!(messages.len(), 40);
    assert_eq!(received, booked);
    second.stop().await;
    first.stop().await;
}

/// Holds every call for `delay`, then sends for real.
struct Slow {
    inner: SqsPublisher,
    delay: Duration,
}

impl Publisher for Slow {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.publish(batch).await
    }
}

#[tokio::test]
async fn a_follow_up_event_goes_as_soon_as_its_predecessor_is_recorded_not_at_the_next_poll() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("follow")).await;
    let args = RelayConfig::builder().poll_interval(Duration::from_secs(3600));
    // Slow sends: the second event commits while the first is in flight, so its
    // NOTIFY finds the aggregate's lane taken; only the recorder's wake-up is left.
    let relay = Arc::new(Relay::new(
        app.pool.clone(),
        Slow {
            inner: SqsPublisher::new(queue),
            delay: Duration::from_millis(300),
        },
        args.build().unwrap(),
    ));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    let aggregate = Uuid::now_v7();
    enqueue_sequence(&app.pool, aggregate, 0, 1).await;
    eventually(
        Duration::from_secs(5),
        "the first event is in flight",
        || async {
            let claimed: bool = sqlx::query_scalar(
                "select exists (select 1 from outbox.lane where claimed_by is not null)",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
            claimed.then_some(())
        },
    )
    .await;
    enqueue_sequence(&app.pool, aggregate, 1, 1).await;
    enqueue_sequence(&app.pool, aggregate, 2, 1).await;

    let messages = receive_all(&url, 3, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 3, "published long before the 1 h poll");
    assert_in_order_per_aggregate(&messages, 3);
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn a_booking_made_after_sqs_is_back_goes_at_once_without_waiting_out_the_backoff() {
    let name = unique_queue("recovery");
    // A backoff far longer than the test: only the prober can end the outage in time.
    let app = spawn_app_with_queue(
        &name,
        &[
            "--relay-backoff-base=60s",
            "--relay-backoff-max=120s",
            "--relay-probe-interval=200ms",
        ],
    )
    .await;
    let url = app.queue_url.clone().unwrap();
    let client = outbox::sqs::client().await;
    client.delete_queue().queue_url(&url).send().await.unwrap();
    let before = [app.book_sample().await, app.book_sample().await];
    eventually(Duration::from_secs(10), "the outage is seen", || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metrics.contains("outbox_sqs_available 0").then_some(())
    })
    .await;

    outbox::sqs::create_queue(&client, &name).await.unwrap();
    let after = app.book_sample().await;
    let messages = receive_all(&url, 3, Duration::from_secs(10)).await;
    let received: HashSet<String> = sequence_of(&messages).into_iter().map(|(a, _)| a).collect();
    for flight in before.iter().chain([&after]) {
        assert!(received.contains(&flight.to_string()), "{flight} published");
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("outbox_sqs_available 1"), "{metrics}");
}

#[tokio::test]
async fn recording_never_waits_behind_a_claim_and_a_claim_never_takes_acknowledged_events() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("locks")).await;
    let aggregates: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for aggregate in &aggregates {
        enqueue_sequence(&app.pool, *aggregate, 0, 2).await;
    }
    // A slow claim: another relay's claim statement, its transaction left open,
    // holding the row locks of the two oldest lanes.
    let mut slow = app.pool.begin().await.unwrap();
    let held: Vec<(i64,)> = sqlx::query_as(outbox::store::CLAIM_SQL)
        .bind(2_i64)
        .bind(Uuid::new_v4())
        .bind(60.0_f64)
        .bind(10_i64)
        .bind(false)
        .fetch_all(&mut *slow)
        .await
        .unwrap();
    assert_eq!(held.len(), 4, "two lanes of two events");

    // Meanwhile this relay claims, sends and records the other lanes: no waiting.
    let relay = Relay::new(
        app.pool.clone(),
        SqsPublisher::new(queue),
        fast_args().build().unwrap(),
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), relay.run_once())
        .await
        .expect("recording does not wait for the open claim")
        .unwrap();
    assert_eq!(
        outcome,
        RoundReport::Sent {
            published: 4,
            failed: 0
        }
    );
    // The slow claim gives up (its relay died): nothing it held was sent, and
    // what this relay recorded is never claimed again.
    slow.rollback().await.unwrap();
    drain(&relay, &app.pool).await;
    let messages = receive_all(&url, 9, Duration::from_secs(3)).await;
    assert_eq!(messages.len(), 8, "each event once");
    assert_in_order_per_aggregate(&messages, 2);
}

/// Counts the sends of each event across relays, then sends for real.
struct Counting {
    inner: SqsPublisher,
    delay: Duration,
    sent: Arc<Mutex<Vec<Uuid>>>,
}

impl Publisher for Counting {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        tokio::time::sleep(self.delay).await;
        self.sent
            .lock()
            .unwrap()
            .extend(batch.iter().map(|r| r.event_id));
        self.inner.publish(batch).await
    }
}

#[tokio::test]
async fn a_live_relays_leases_are_renewed_and_a_dead_ones_expire_within_the_lease() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("leases")).await;
    let sent: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let args = fast_args()
        .lease(Duration::from_secs(3))
        .send_timeout(Duration::from_secs(1))
        .run_size(1);
    let relay = |delay| {
        Arc::new(Relay::new(
            app.pool.clone(),
            Counting {
                inner: SqsPublisher::new(queue.clone()),
                delay,
                sent: sent.clone(),
            },
            args.clone().build().unwrap(),
        ))
    };
    // One aggregate, 12 events, one per batch at 0.6 s each: the first relay
    // holds the lane for ~7 s, over two leases, and must keep it throughout.
    let aggregate = Uuid::now_v7();
    enqueue_sequence(&app.pool, aggregate, 0, 12).await;
    let first_stop = CancellationToken::new();
    let first = tokio::spawn(relay(Duration::from_millis(600)).run(first_stop.clone()));
    eventually(
        Duration::from_secs(5),
        "the first relay holds the lane",
        || async { (!sent.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let second_stop = CancellationToken::new();
    let second = tokio::spawn(relay(Duration::ZERO).run(second_stop.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Killed mid-run, without the shutdown's release: its lease must run out.
    first.abort();
    let killed = std::time::Instant::now();
    let messages = receive_all(&url, 12, Duration::from_secs(15)).await;
    let taken_over = killed.elapsed();
    second_stop.cancel();
    second.await.unwrap();
    assert_eq!(messages.len(), 12);
    assert_in_order_per_aggregate(&messages, 12);
    assert!(
        taken_over < Duration::from_secs(10),
        "the survivor took over within the lease: {taken_over:?}"
    );
    let sent = sent.lock().unwrap();
    let distinct: HashSet<&Uuid> = sent.iter().collect();
    // At most the one batch the killed relay had in flight is sent twice.
    assert!(
        sent.len() - distinct.len() <= 1,
        "a live relay's lane was never taken over: {} sends of {} events",
        sent.len(),
        distinct.len()
    );
}

/// Refuses the second entry of the first batch only, accepting the ones after
/// it: the one per-entry failure that can put an aggregate's events out of order.
struct FailSecondEntryOnce {
    inner: SqsPublisher,
    done: Mutex<bool>,
}

impl Publisher for FailSecondEntryOnce {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        let first = !std::mem::replace(&mut *self.done.lock().unwrap(), true);
        if !first || batch.len() < 3 {
            return self.inner.publish(batch).await;
        }
        let forwarded: Vec<Claimed> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, r)| r.clone())
            .collect();
        let mut results = self.inner.publish(&forwarded).await?.into_iter();
        Ok((0..batch.len())
            .map(|i| {
                if i == 1 {
                    Err(SendError::new(
                        FailureReason::Other,
                        "InternalError: injected",
                    ))
                } else {
                    results.next().unwrap()
                }
            })
            .collect())
    }
}

#[tokio::test]
async fn an_event_accepted_after_its_refused_predecessor_is_counted_and_the_predecessor_follows() {
    let app = spawn_app().await;
    let (queue, url) = queue(&unique_queue("order-risk")).await;
    let metrics = RelayMetrics::default();
    let relay = Relay::new(
        app.pool.clone(),
        FailSecondEntryOnce {
            inner: SqsPublisher::new(queue),
            done: Mutex::new(false),
        },
        fast_args().build().unwrap(),
    )
    .with_metrics(metrics.clone());
    let aggregate = Uuid::now_v7();
    enqueue_sequence(&app.pool, aggregate, 0, 3).await;
    assert_eq!(
        relay.run_once().await.unwrap(),
        RoundReport::Sent {
            published: 2,
            failed: 1
        }
    );
    assert_eq!(metrics.out_of_order_total(), 1, "visible as a metric");
    drain(&relay, &app.pool).await;
    let messages = receive_all(&url, 3, Duration::from_secs(5)).await;
    let order: Vec<u64> = sequence_of(&messages).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        order,
        [0, 2, 1],
        "the refused event follows; nothing is lost"
    );
}
