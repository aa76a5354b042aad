use std::collections::HashSet;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_booking_made_over_http_is_paid() {
    let (queue, _dlq) = queue_with_dlq(5, 30).await;
    let booking_db = new_database_url();
    let booking = booking_service::startup::build(booking_service::config::Config::parse_from([
        "booking-service",
        "--bind-addr=127.0.0.1:0",
        &format!("--database-url={booking_db}"),
        &format!("--sqs-queue-url={queue}"),
        "--consumer-enabled=false",
    ]))
    .await
    .unwrap();
    let booking = TestApp::spawn(booking, booking_db, Some(queue.clone()));
    let booking_address = booking.address.clone();
    let payments = spawn_app(&new_database_url(), &queue, &[]).await;

    let response = payments
        .client
        .post(format!("{booking_address}/api/flights"))
        .json(&json!({
            "departureAirport": "Paris", "arrivalAirport": "London",
            "departureDateTime": "2023-09-01T08:00:00.000Z", "arrivalDateTime": "2023-09-01T08:15:00.000Z",
            "fare": {"amount": 12900, "currency": "EUR"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let flight: Value = response.json().await.unwrap();
    let flight_id: Uuid = flight["id"].as_str().unwrap().parse().unwrap();

    let payment = eventually(Duration::from_secs(15), "the payment appears", || {
        payment_of(&payments, flight_id)
    })
    .await;
    assert_eq!(payment["amount"], 12900);
    assert_eq!(payment["currency"], "EUR");
    assert_eq!(payment["outcome"], "APPROVED");
    let list: Value = payments
        .get_as_operator("/api/payments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["flightId"], flight_id.to_string());

    booking.stop().await;
    payments.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_three_times_and_redelivered_is_paid_once() {
    let (queue, _dlq) = queue_with_dlq(10, 1).await;
    let app = spawn_app(
        &new_database_url(),
        &queue,
        &["--consumer-visibility-timeout=1s"],
    )
    .await;
    let event = flight_booked(9900);
    for _ in 0..3 {
        send_event(&queue, &event).await;
    }
    eventually(
        Duration::from_secs(15),
        "all three copies are consumed",
        || async { (queue_depth(&queue).await == 0 && payments(&app).await == 1).then_some(()) },
    )
    .await;
    let metrics = eventually(Duration::from_secs(5), "duplicates are counted", || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.contains("consumer_duplicates_skipped_total 2")
            .then_some(text)
    })
    .await;
    assert!(metrics.contains("consumer_processed_total 1"), "{metrics}");
    assert_eq!(payments(&app).await, 1);
    let inbox: i64 = sqlx::query_scalar("select count(*) from outbox.inbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(inbox, 1);
}

#[tokio::test]
async fn a_message_redelivered_after_a_crash_before_delete_is_not_charged_twice() {
    let (queue_url, _dlq) = queue_with_dlq(10, 1).await;
    let app = spawn_app(
        &new_database_url(),
        &queue_url,
        &["--consumer-enabled=false"],
    )
    .await;
    let handler = payment_service::handler::PaymentHandler::new(500_000);
    let consumer = consumer(&app.pool, &queue_url, handler, 1, Duration::from_secs(1)).await;
    send_event(&queue_url, &flight_booked(9900)).await;

    // A consumer receives the message and commits its payment, then dies
    // before deleting it.
    let doomed = eventually(Duration::from_secs(10), "the first delivery", || async {
        let output = sqs()
            .await
            .receive_message()
            .queue_url(&queue_url)
            .visibility_timeout(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        output.messages.unwrap_or_default().into_iter().next()
    })
    .await;
    let received = outbox::consumer::Received::from_sqs(doomed).unwrap();
    let outcomes = consumer.apply(std::slice::from_ref(&received)).await;
    assert_eq!(
        outcomes,
        [outbox::consumer::Disposition::Done(
            outbox::Handled::Processed
        )]
    );
    assert_eq!(payments(&app).await, 1);

    // After the visibility timeout the message is back, and recognised.
    let second = eventually(Duration::from_secs(10), "the redelivery", || async {
        let report = consumer.run_once().await.unwrap();
        (report.received > 0).then_some(report)
    })
    .await;
    assert_eq!(second.duplicates, 1);
    assert_eq!(payments(&app).await, 1);
    assert_eq!(
        queue_depth(&queue_url).await,
        0,
        "the duplicate was deleted"
    );
}

#[tokio::test]
async fn two_instances_with_duplicates_mixed_in_pay_each_flight_once() {
    let (queue, _dlq) = queue_with_dlq(10, 30).await;
    let database = new_database_url();
    let first = spawn_app(&database, &queue, &[]).await;
    let second = spawn_app(&database, &queue, &[]).await;

    let events: Vec<_> = (0..200).map(|i| flight_booked(1000 + i)).collect();
    let mut sends = Vec::new();
    for (i, event) in events.iter().enumerate() {
        sends.push(event);
        if i % 3 == 0 {
            sends.push(event); // a duplicate, as a relay re-send would make
        }
    }
    for chunk in sends.chunks(10) {
        let client = sqs().await;
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(serde_json::to_string(e).unwrap())
                    .message_group_id(e.aggregate_id.to_string())
                    .message_deduplication_id(Uuid::new_v4().to_string())
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .send_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }

    eventually(
        Duration::from_secs(60),
        "every message is consumed",
        || async { (queue_depth(&queue).await == 0).then_some(()) },
    )
    .await;
    let paid: Vec<Uuid> = sqlx::query_scalar("select flight_id from payment")
        .fetch_all(&first.pool)
        .await
        .unwrap();
    let unique: HashSet<Uuid> = paid.iter().copied().collect();
    assert_eq!(paid.len(), 200);
    assert_eq!(unique, events.iter().map(|e| e.aggregate_id).collect());
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn poison_messages_end_in_the_dlq_and_good_ones_are_still_processed() {
    let (queue, dlq) = queue_with_dlq(2, 1).await;
    let app = spawn_app(&new_database_url(), &queue, &[]).await;
    send(&queue, "poison-1", "this is not JSON").await;
    let mut unknown = flight_booked(100);
    unknown.event_type = "FlightTeleported".into();
    send_event(&queue, &unknown).await;
    let mut future_version = flight_booked(100);
    future_version.event_version = 9;
    send_event(&queue, &future_version).await;
    let good = flight_booked(4200);
    send_event(&queue, &good).await;

    eventually(Duration::from_secs(10), "the good message is paid", || {
        payment_of(&app, good.aggregate_id)
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the poison reaches the DLQ",
        || async { (queue_depth(&dlq).await == 3).then_some(()) },
    )
    .await;
    assert_eq!(payments(&app).await, 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for reason in ["malformed", "unknown_type", "unsupported_version"] {
        assert!(
            metrics.contains(&format!("consumer_failed_total{{reason=\"{reason}\"}}")),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn while_the_database_is_down_messages_wait_and_are_paid_when_it_is_back() {
    let (queue, _dlq) = queue_with_dlq(50, 1).await;
    let database = new_database_url();
    let app = spawn_app(&database, &queue, &["--consumer-visibility-timeout=1s"]).await;
    // "Down": no new connections, existing ones killed.
    set_database_available(&database, false).await;

    let event = flight_booked(9900);
    send_event(&queue, &event).await;
    let metrics = eventually(Duration::from_secs(15), "a transient failure", || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.contains("consumer_failed_total{reason=\"transient\"}")
            .then_some(text)
    })
    .await;
    assert!(!metrics.contains("consumer_processed_total 1"));
    assert_eq!(queue_depth(&queue).await, 1, "the message was not deleted");

    set_database_available(&database, true).await;
    eventually(
        Duration::from_secs(20),
        "paid once the database is back",
        || payment_of(&app, event.aggregate_id),
    )
    .await;
    assert_eq!(payments(&app).await, 1);
}

#[tokio::test]
async fn fares_above_the_limit_are_declined_and_bad_requests_are_problems() {
    let (queue, _dlq) = queue_with_dlq(5, 30).await;
    let app = spawn_app(
        &new_database_url(),
        &queue,
        &["--payment-decline-above=10000"],
    )
    .await;
    let expensive = flight_booked(10001);
    send_event(&queue, &expensive).await;
    let payment = eventually(Duration::from_secs(10), "declined", || {
        payment_of(&app, expensive.aggregate_id)
    })
    .await;
    assert_eq!(payment["outcome"], "DECLINED");
    assert!(
        payment["reason"]
            .as_str()
            .unwrap()
            .contains("above the limit")
    );

    let response = app.get("/api/payments/not-a-uuid").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = app.get(&format!("/api/payments/{}", Uuid::new_v4())).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        app.get_as_operator("/api/payments?limit=0").await.status(),
        400
    );
    assert_eq!(app.get("/health/ready").await.status(), 200);
    assert_eq!(app.get("/swagger-ui/index.html").await.status(), 200);
}

/// Records the order it sees, slowly.
struct Recorder {
    seen: std::sync::Mutex<Vec<String>>,
    delay: Duration,
}

/// The recorder, shared by two consumers.
#[derive(Clone)]
struct Shared(std::sync::Arc<Recorder>);

impl outbox::Handler for Shared {
    type Event = Value;

    fn decode(&self, envelope: &outbox::envelope::EventEnvelope) -> Result<Value, outbox::Poison> {
        Ok(envelope.payload.clone())
    }

    async fn apply(
        &self,
        _tx: &mut sqlx::PgConnection,
        _envelope: &outbox::envelope::EventEnvelope,
        payload: &Value,
    ) -> Result<outbox::Handled, outbox::HandlerError> {
        tokio::time::sleep(self.0.delay).await;
        self.0.seen.lock().unwrap().push(payload["n"].to_string());
        Ok(outbox::Handled::Processed)
    }
}

#[tokio::test]
async fn one_group_is_handled_in_order_and_slow_messages_keep_their_visibility() {
    let (queue_url, _dlq) = queue_with_dlq(5, 1).await;
    let booking = uuid::Uuid::now_v7();
    for n in 0..10 {
        let mut event = flight_booked(100);
        event.aggregate_id = booking;
        event.sequence = Some(n + 1);
        event.payload = json!({ "n": n });
        send_event(&queue_url, &event).await;
    }
    let pool = fresh_pool().await;
    let recorder = std::sync::Arc::new(Recorder {
        seen: Default::default(),
        delay: Duration::from_millis(250),
    });
    let visibility = Duration::from_secs(1);
    let a = std::sync::Arc::new(
        consumer(&pool, &queue_url, Shared(recorder.clone()), 4, visibility).await,
    );
    let b = std::sync::Arc::new(
        consumer(&pool, &queue_url, Shared(recorder.clone()), 4, visibility).await,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let runs = [
        tokio::spawn(a.run(shutdown.clone())),
        tokio::spawn(b.run(shutdown.clone())),
    ];
    eventually(Duration::from_secs(30), "all ten handled", || async {
        (recorder.seen.lock().unwrap().len() >= 10 && queue_depth(&queue_url).await == 0)
            .then_some(())
    })
    .await;
    shutdown.cancel();
    for run in runs {
        run.await.unwrap();
    }
    // 2.5 s of handling with a 1 s visibility timeout and a second consumer
    // waiting: without the extension a message would be handled twice.
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen, (0..10).map(|n| n.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_message_sent_during_a_long_idle_poll_is_paid_at_once() {
    // The default 20 s long poll is longer than the client's 10 s attempt
    // timeout for other calls; the receive must not be abandoned half-way.
    let (queue, _dlq) = queue_with_dlq(5, 30).await;
    let app = spawn_app(
        &new_database_url(),
        &queue,
        &["--consumer-wait-time=20s", "--consumer-concurrency=1"],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await; // well into the first poll
    let event = flight_booked(9900);
    send_event(&queue, &event).await;
    // An abandoned poll would hide the message for the 30 s visibility timeout.
    let payment = eventually(
        Duration::from_secs(20),
        "paid before the visibility timeout",
        || payment_of(&app, event.aggregate_id),
    )
    .await;
    assert_eq!(payment["outcome"], "APPROVED");
    let receives: i64 = sqlx::query_scalar("select count(*) from outbox.inbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(receives, 1);
}

#[tokio::test]
async fn on_shutdown_the_consumer_finishes_and_deletes_what_it_holds() {
    let (queue_url, _dlq) = queue_with_dlq(5, 30).await;
    for _ in 0..3 {
        send_event(&queue_url, &flight_booked(100)).await;
    }
    let pool = fresh_pool().await;
    let recorder = std::sync::Arc::new(Recorder {
        seen: Default::default(),
        delay: Duration::from_millis(500),
    });
    let consumer = std::sync::Arc::new(
        consumer(
            &pool,
            &queue_url,
            Shared(recorder.clone()),
            1,
            Duration::from_secs(30),
        )
        .await,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(10), "handling has started", || async {
        (!recorder.seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    shutdown.cancel(); // SIGTERM, mid-batch
    run.await.unwrap();

    let handled = recorder.seen.lock().unwrap().len() as i64;
    let inbox: i64 = sqlx::query_scalar("select count(*) from outbox.inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(inbox, handled, "what was handled was committed");
    assert_eq!(
        queue_depth(&queue_url).await,
        3 - handled,
        "what was committed was deleted, nothing else"
    );
}

/// Fails to apply the event whose payload says `"fail": true`, every time.
struct FailMarked;

impl outbox::Handler for FailMarked {
    type Event = Value;

    fn decode(&self, envelope: &outbox::envelope::EventEnvelope) -> Result<Value, outbox::Poison> {
        Ok(envelope.payload.clone())
    }

    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        _envelope: &outbox::envelope::EventEnvelope,
        payload: &Value,
    ) -> Result<outbox::Handled, outbox::HandlerError> {
        // A write that must be rolled back with the failure.
        sqlx::query("create temporary table if not exists touched (n int)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("insert into touched values (1)")
            .execute(&mut *tx)
            .await?;
        if payload["fail"] == true {
            return Err("injected failure".into());
        }
        Ok(outbox::Handled::Processed)
    }
}

#[tokio::test]
async fn a_message_that_fails_to_apply_is_retried_alone_and_the_rest_of_its_receive_commits() {
    let (queue_url, _dlq) = queue_with_dlq(5, 30).await;
    let mut events = Vec::new();
    for i in 0..5 {
        let mut event = flight_booked(100);
        event.payload = json!({ "fail": i == 2 });
        events.push(event);
    }
    for event in &events {
        send_event(&queue_url, event).await;
    }
    let pool = fresh_pool().await;
    let consumer = consumer(&pool, &queue_url, FailMarked, 1, Duration::from_secs(30)).await;

    // Five messages of five groups may arrive over more than one receive.
    let mut report = outbox::consumer::ReceiveReport::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while report.received < 5 && tokio::time::Instant::now() < deadline {
        let r = consumer.run_once().await.unwrap();
        report.received += r.received;
        report.processed += r.processed;
        report.failed += r.failed;
    }

    assert_eq!((report.processed, report.failed), (4, 1));
    let recorded: Vec<uuid::Uuid> = sqlx::query_scalar("select event_id from outbox.inbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 4);
    assert!(
        !recorded.contains(&events[2].event_id),
        "the failed one must look new when it comes back"
    );
    assert_eq!(
        queue_depth(&queue_url).await,
        1,
        "only the failed message is left"
    );
}

#[tokio::test]
async fn inbox_retention_forgets_only_entries_older_than_the_retention() {
    let pool = fresh_pool().await;
    sqlx::query(
        "insert into outbox.inbox (event_id, event_type, received_at)
         select gen_random_uuid(), 'FlightBooked', now() - make_interval(days => d) + interval '1 hour'
         from generate_series(0, 19) d",
    )
    .execute(&pool)
    .await
    .unwrap();
    let retention = Duration::from_secs(15 * 24 * 3600);
    // Batches: 2 at a time, as the background loop does 1,000 at a time.
    let mut deleted = 0;
    loop {
        let n = outbox::inbox::purge(&pool, retention, 2).await.unwrap();
        deleted += n;
        if n < 2 {
            break;
        }
    }
    assert_eq!(deleted, 4, "days 16..19 are past 15 days");
    let left: i64 = sqlx::query_scalar("select count(*) from outbox.inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 16);
}
