//! The booking lifecycle end to end: booking-service and payment-service both
//! running, each with its relay and its consumer, through both real queues of
//! the local SQS server (bookings and payment events, each with its DLQ).
//! Fares up to 500.00 (50,000 minor units) are approved, higher ones declined.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use outbox::publish::{BatchOutcome, FailureReason, Publisher, SendError};
use outbox::relay::{Relay, RelayConfig, RoundReport};
use outbox::sqs::{Queue, QueueRef, SqsPublisher};
use outbox::store::Claimed;
use rand::Rng;
use serde_json::{Value, json};
use service_kit::testing::{TestApp, queue_depth, queue_with_dlq, send};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::*;

const DECLINE_ABOVE: i64 = 50_000;

/// Both services and their four queues.
struct Saga {
    booking: TestApp,
    payment: TestApp,
    bookings: String,
    bookings_dlq: String,
    payment_events: String,
    payment_events_dlq: String,
}

struct Queues {
    bookings: String,
    bookings_dlq: String,
    payment_events: String,
    payment_events_dlq: String,
}

async fn queues() -> Queues {
    let (bookings, bookings_dlq) = queue_with_dlq("saga-bookings", 5, 30).await;
    let (payment_events, payment_events_dlq) = queue_with_dlq("saga-payment-events", 5, 30).await;
    Queues {
        bookings,
        bookings_dlq,
        payment_events,
        payment_events_dlq,
    }
}

/// Both services; a relay switched off here is run by the test itself.
async fn saga(booking_relay: bool, payment_relay: bool) -> Saga {
    let q = queues().await;
    let booking = start_booking(&q, booking_relay).await;
    let payment = start_payment(&q, payment_relay).await;
    Saga {
        booking,
        payment,
        bookings: q.bookings,
        bookings_dlq: q.bookings_dlq,
        payment_events: q.payment_events,
        payment_events_dlq: q.payment_events_dlq,
    }
}

async fn start_booking(q: &Queues, relay: bool) -> TestApp {
    let database_url = service_kit::testing::new_database_url("t");
    let events = format!("--payment-events-queue-url={}", q.payment_events);
    let args = booking_args(
        &database_url,
        relay.then_some(q.bookings.as_str()),
        &[&events, "--consumer-wait-time=1s", "--max-connections=15"],
    );
    let app = booking_service::startup::build(booking_service::config::Config::parse_from(args))
        .await
        .expect("booking-service builds");
    let app = TestApp::spawn(app, database_url, Some(q.bookings.clone()));
    record_transitions(&app.pool).await;
    app
}

async fn start_payment(q: &Queues, relay: bool) -> TestApp {
    let database_url = service_kit::testing::new_database_url("t");
    let mut args = vec![
        "payment-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={database_url}"),
        format!("--sqs-queue-url={}", q.bookings),
        "--consumer-wait-time=1s".to_owned(),
        "--max-connections=15".to_owned(),
        format!("--payment-decline-above={DECLINE_ABOVE}"),
        "--admin-token=operator".to_owned(),
    ];
    if relay {
        args.push(format!("--payment-events-queue-url={}", q.payment_events));
    } else {
        args.push("--relay-enabled=false".to_owned());
    }
    let app = payment_service::startup::build(payment_service::config::Config::parse_from(args))
        .await
        .expect("payment-service builds");
    TestApp::spawn(app, database_url, Some(q.payment_events.clone()))
}

/// A test-only log of every status and payment change of a booking, written by
/// a trigger in the booking's own transaction: what the API never shows
/// (a CONFIRMED that came and went) is on record here.
async fn record_transitions(pool: &PgPool) {
    sqlx::raw_sql(
        "create table test_transition (
             id bigserial primary key, flight_id uuid not null,
             old_status text, new_status text not null, old_payment text, new_payment text);
         create function test_transition() returns trigger language plpgsql as $$
         begin
             insert into test_transition (flight_id, old_status, new_status, old_payment, new_payment)
             values (new.id, old.status, new.status, old.payment_status, new.payment_status);
             return null;
         end $$;
         create trigger test_transition_insert after insert on flight
             for each row execute function test_transition();
         create trigger test_transition_update after update on flight for each row
             when (old.status is distinct from new.status or old.payment_status is distinct from new.payment_status)
             execute function test_transition();",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// (old status, new status, old payment, new payment) of every change, per booking, in order.
type Transition = (Option<String>, String, Option<String>, Option<String>);

async fn transitions(pool: &PgPool) -> HashMap<Uuid, Vec<Transition>> {
    let rows: Vec<(Uuid, Transition)> = sqlx::query_as::<_, (Uuid, Option<String>, String, Option<String>, Option<String>)>(
        "select flight_id, old_status, new_status, old_payment, new_payment from test_transition order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(flight, old, new, old_payment, new_payment)| (flight, (old, new, old_payment, new_payment)))
    .collect();
    let mut by_flight: HashMap<Uuid, Vec<Transition>> = HashMap::new();
    for (flight, transition) in rows {
        by_flight.entry(flight).or_default().push(transition);
    }
    by_flight
}

/// No booking ever left CANCELLED, and no payment was ever REFUNDED before it
/// was APPROVED (nor DECLINED and REFUNDED).
fn assert_lifecycle_held(transitions: &HashMap<Uuid, Vec<Transition>>) {
    for (flight, changes) in transitions {
        for (old, new, _, _) in changes {
            assert!(
                old.as_deref() != Some("CANCELLED") || new == "CANCELLED",
                "{flight} left CANCELLED: {changes:?}"
            );
        }
        let payments: Vec<&str> = changes
            .iter()
            .filter(|(_, _, old, new)| old != new)
            .filter_map(|(_, _, _, new)| new.as_deref())
            .collect();
        assert!(
            [
                &[][..],
                &["APPROVED"],
                &["APPROVED", "REFUNDED"],
                &["DECLINED"]
            ]
            .contains(&payments.as_slice()),
            "{flight}: payment went {payments:?}"
        );
    }
}

fn fare(amount: i64) -> Value {
    let mut body = sample_body();
    body["fare"] = json!({"amount": amount, "currency": "EUR"});
    body
}

async fn book(app: &TestApp, amount: i64) -> Uuid {
    let response = app.book(&fare(amount)).await;
    assert_eq!(response.status(), 201);
    let flight: Value = response.json().await.unwrap();
    flight["id"].as_str().unwrap().parse().unwrap()
}

/// The booking once `check` holds for it (30 s at most).
async fn flight_when(app: &TestApp, id: Uuid, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(30), what, || async {
        let flight = app.flight(id).await;
        check(&flight).then_some(flight)
    })
    .await
}

/// payment-service's `GET /api/payments/{flightId}` once `check` holds for it.
async fn payment_when(
    app: &TestApp,
    flight: Uuid,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(Duration::from_secs(30), what, || async {
        let response = app.get(&format!("/api/payments/{flight}")).await;
        if response.status() != 200 {
            return None;
        }
        let payment: Value = response.json().await.unwrap();
        check(&payment).then_some(payment)
    })
    .await
}

/// (event type, count) of a service's outbox, sorted.
async fn event_counts(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select event_type, count(*) from outbox.event group by event_type order by event_type",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn unpublished_events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from outbox.event where published_at is null")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A counter of `/metrics` (0 when absent).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn assert_nothing_dead_lettered(saga: &Saga) {
    assert_eq!(queue_depth(&saga.bookings_dlq).await, 0, "bookings DLQ");
    assert_eq!(
        queue_depth(&saga.payment_events_dlq).await,
        0,
        "payment events DLQ"
    );
}

async fn relay_on(pool: &PgPool, queue_url: &str) -> Relay<SqsPublisher> {
    let queue = Queue::new(
        outbox::sqs::client().await,
        QueueRef::Url(queue_url.to_owned()),
    )
    .unwrap();
    Relay::new(
        pool.clone(),
        SqsPublisher::new(queue),
        RelayConfig::builder()
            .poll_interval(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn each_transition_end_to_end_through_both_queues() {
    let saga = saga(true, true).await;
    let (booking, payment) = (&saga.booking, &saga.payment);

    // PENDING_PAYMENT -> CONFIRMED: approved.
    let cheap = book(booking, 9900).await;
    let confirmed = flight_when(booking, cheap, "CONFIRMED", |f| f["status"] == "CONFIRMED").await;
    let approved = payment_when(payment, cheap, "approved", |_| true).await;
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(confirmed["payment"]["status"], "APPROVED");
    assert_eq!(confirmed["payment"]["id"], approved["id"]);
    assert_eq!(confirmed["payment"]["decidedAt"], approved["processedAt"]);

    // PENDING_PAYMENT -> REJECTED: declined; a rejected booking cannot be cancelled.
    let dear = book(booking, DECLINE_ABOVE + 1).await;
    let rejected = flight_when(booking, dear, "REJECTED", |f| f["status"] == "REJECTED").await;
    let declined = payment_when(payment, dear, "declined", |_| true).await;
    assert_eq!(declined["status"], "DECLINED");
    assert_eq!(rejected["payment"]["reason"], declined["reason"]);
    let problem = assert_problem(booking.cancel(dear).await, 409).await;
    assert_eq!(problem["type"], "/problems/conflict");

    // CONFIRMED -> CANCELLED: the payment is refunded, and the booking learns it.
    let response = booking.cancel(cheap).await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "CANCELLED");
    let refunded = payment_when(payment, cheap, "refunded", |p| p["status"] == "REFUNDED").await;
    let learned = flight_when(booking, cheap, "the booking learns the refund", |f| {
        f["payment"]["status"] == "REFUNDED"
    })
    .await;
    assert_eq!(learned["status"], "CANCELLED");
    assert_eq!(learned["payment"]["refundedAt"], refunded["refundedAt"]);

    // Cancelling again changes nothing; an unknown booking is not found.
    let again = booking.cancel(cheap).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "CANCELLED");
    assert_problem(booking.cancel(Uuid::now_v7()).await, 404).await;

    eventually(Duration::from_secs(15), "every event published", || async {
        (unpublished_events(&booking.pool).await == 0
            && unpublished_events(&payment.pool).await == 0)
            .then_some(())
    })
    .await;
    assert_eq!(
        event_counts(&booking.pool).await,
        [("FlightBooked".into(), 2), ("FlightCancelled".into(), 1)]
    );
    assert_eq!(
        event_counts(&payment.pool).await,
        [
            ("PaymentApproved".into(), 1),
            ("PaymentDeclined".into(), 1),
            ("PaymentRefunded".into(), 1)
        ]
    );
    assert_lifecycle_held(&transitions(&booking.pool).await);
    assert_nothing_dead_lettered(&saga).await;
}

#[tokio::test]
async fn a_booking_cancelled_while_its_payment_is_pending_ends_cancelled_and_refunded_if_charged() {
    let q = queues().await;
    let booking = start_booking(&q, true).await;
    // payment-service is not running yet: both bookings are cancelled while
    // their payment is pending.
    let charged = book(&booking, 9900).await;
    let dear = book(&booking, DECLINE_ABOVE + 1).await;
    for id in [charged, dear] {
        let response = booking.cancel(id).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap()["status"],
            "CANCELLED"
        );
    }

    let payment = start_payment(&q, true).await;
    let refunded = flight_when(&booking, charged, "refund learned", |f| {
        f["payment"]["status"] == "REFUNDED"
    })
    .await;
    assert_eq!(refunded["status"], "CANCELLED", "never CONFIRMED");
    let declined = flight_when(&booking, dear, "decline learned", |f| {
        f["payment"]["status"] == "DECLINED"
    })
    .await;
    assert_eq!(declined["status"], "CANCELLED", "never REJECTED");
    assert_eq!(
        payment_when(&payment, charged, "refunded", |p| p["status"] == "REFUNDED").await["outcome"],
        "APPROVED"
    );
    let nothing_to_refund = payment_when(&payment, dear, "declined", |_| true).await;
    assert_eq!(nothing_to_refund["status"], "DECLINED");
    eventually(Duration::from_secs(15), "every event published", || async {
        (unpublished_events(&payment.pool).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        event_counts(&payment.pool).await,
        [
            ("PaymentApproved".into(), 1),
            ("PaymentDeclined".into(), 1),
            ("PaymentRefunded".into(), 1)
        ],
        "the declined payment has nothing to refund"
    );
    let transitions = transitions(&booking.pool).await;
    assert_lifecycle_held(&transitions);
    for id in [charged, dear] {
        assert!(
            transitions[&id]
                .iter()
                .all(|(_, new, _, _)| new == "PENDING_PAYMENT" || new == "CANCELLED"),
            "{:?}",
            transitions[&id]
        );
    }
}

/// Fails whole SendMessageBatch calls at random (an SQS outage, as the relay
/// sees it), otherwise sends.
struct Flaky(SqsPublisher);

impl Publisher for Flaky {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        if rand::rng().random_bool(0.5) {
            return Err(SendError::new(
                FailureReason::Unreachable,
                "injected outage",
            ));
        }
        self.0.publish(batch).await
    }
}

/// Refuses each FlightBooked entry the first time it is sent (its own failure,
/// not the call's) and sends the rest of the batch: the one way an event can
/// reach the queue before an earlier one of its aggregate (the relay logs it
/// and counts `outbox_out_of_order`).
struct RefuseBookedOnce {
    inner: SqsPublisher,
    refused: std::sync::Mutex<HashSet<Uuid>>,
}

impl Publisher for RefuseBookedOnce {
    async fn publish(&self, batch: &[Claimed]) -> Result<BatchOutcome, SendError> {
        let refuse: Vec<bool> = {
            let mut refused = self.refused.lock().unwrap();
            batch
                .iter()
                .map(|c| c.event_type == "FlightBooked" && refused.insert(c.event_id))
                .collect()
        };
        let rest: Vec<Claimed> = batch
            .iter()
            .zip(&refuse)
            .filter(|(_, refused)| !**refused)
            .map(|(c, _)| c.clone())
            .collect();
        let mut sent = self.inner.publish(&rest).await?.into_iter();
        Ok(refuse
            .iter()
            .map(|refused| {
                if *refused {
                    Err(SendError::new(FailureReason::Other, "injected refusal"))
                } else {
                    sent.next().expect("one result per entry")
                }
            })
            .collect())
    }
}

/// On the way to payment-service a booking's FlightCancelled never overtakes its
/// FlightBooked: the relay sends a booking's events in order, through outages;
/// and should one overtake it all the same (an entry refused inside a batch
/// whose next entry SQS took), payment-service does not apply it before its
/// booking: it is dead-lettered, and applied in order once redriven.
#[tokio::test]
async fn a_cancel_never_overtakes_its_booking() {
    // The relay, through random outages: every booking's events in order.
    let q = queues().await;
    let booking = start_booking(&q, false).await;
    let ids: Vec<Uuid> = futures::stream::iter(0..20)
        .map(|_| async {
            let id = book(&booking, 9900).await;
            assert_eq!(booking.cancel(id).await.status(), 200);
            id
        })
        .buffer_unordered(5)
        .collect()
        .await;
    let queue = Queue::new(
        outbox::sqs::client().await,
        QueueRef::Url(q.bookings.clone()),
    )
    .unwrap();
    let relay = std::sync::Arc::new(Relay::new(
        booking.pool.clone(),
        Flaky(SqsPublisher::new(queue)),
        RelayConfig::builder()
            .poll_interval(Duration::from_millis(50))
            .probe_interval(Duration::from_millis(50))
            .build()
            .unwrap(),
    ));
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    let messages = receive_all(&q.bookings, 40, Duration::from_secs(60)).await;
    stop.cancel();
    running.await.unwrap();
    let mut seen: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for message in &messages {
        let envelope: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        seen.entry(envelope["aggregateId"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                envelope["eventType"].as_str().unwrap().to_owned(),
                envelope["sequence"].as_i64().unwrap(),
            ));
    }
    assert_eq!(seen.len(), ids.len());
    for (flight, events) in &seen {
        assert_eq!(
            events,
            &[("FlightBooked".into(), 1), ("FlightCancelled".into(), 2)],
            "{flight}"
        );
    }

    // A cancel that reaches the queue first is not applied first.
    let saga = saga(false, true).await;
    let id = book(&saga.booking, 9900).await;
    assert_eq!(saga.booking.cancel(id).await.status(), 200);
    let queue = Queue::new(
        outbox::sqs::client().await,
        QueueRef::Url(saga.bookings.clone()),
    )
    .unwrap();
    let relay = Relay::new(
        saga.booking.pool.clone(),
        RefuseBookedOnce {
            inner: SqsPublisher::new(queue),
            refused: Default::default(),
        },
        RelayConfig::builder()
            .backoff_base(Duration::from_millis(10))
            .backoff_max(Duration::from_millis(10))
            .build()
            .unwrap(),
    );
    assert_eq!(
        relay.run_once().await.unwrap(),
        RoundReport::Sent {
            published: 1,
            failed: 1
        },
        "the cancel went, its booking did not"
    );
    eventually(
        Duration::from_secs(15),
        "the early cancel is dead-lettered",
        || async { (queue_depth(&saga.bookings_dlq).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        metric(
            &saga.payment,
            r#"consumer_failed_total{reason="out_of_sequence"}"#
        )
        .await,
        1.0
    );
    let absent = saga.payment.get(&format!("/api/payments/{id}")).await;
    assert_eq!(absent.status(), 404, "nothing refunded, nothing paid");

    // The booking follows, and is paid; the redriven cancel then refunds it.
    eventually(Duration::from_secs(15), "the booking is sent", || async {
        relay.run_once().await.unwrap();
        (unpublished_events(&saga.booking.pool).await == 0).then_some(())
    })
    .await;
    let paid = payment_when(&saga.payment, id, "paid", |p| p["status"] == "APPROVED").await;
    let redrive = saga
        .payment
        .client
        .post(format!("{}/api/admin/dlq/redrive", saga.payment.address))
        .bearer_auth("operator")
        .send()
        .await
        .unwrap();
    assert_eq!(redrive.status(), 200);
    let refunded = payment_when(&saga.payment, id, "refunded", |p| p["status"] == "REFUNDED").await;
    assert!(refunded["refundedAt"].as_str().unwrap() > paid["processedAt"].as_str().unwrap());
    let learned = flight_when(&saga.booking, id, "refund learned", |f| {
        f["payment"]["status"] == "REFUNDED"
    })
    .await;
    assert_eq!(learned["status"], "CANCELLED");
    assert_lifecycle_held(&transitions(&saga.booking.pool).await);
}

/// Runs a relay of `pool` to `queue_url`, stopping it and starting it again
/// after random stretches of 20-300 ms, until `calm`; then runs it steadily
/// until `done`. Returns how often it was stopped.
async fn flapping_relay(
    pool: PgPool,
    queue_url: String,
    calm: CancellationToken,
    done: CancellationToken,
) -> u32 {
    let mut stops = 0;
    loop {
        let relay = std::sync::Arc::new(relay_on(&pool, &queue_url).await);
        let stop = CancellationToken::new();
        let running = tokio::spawn(relay.run(stop.clone()));
        if calm.is_cancelled() {
            done.cancelled().await;
            stop.cancel();
            running.await.unwrap();
            return stops;
        }
        let up = Duration::from_millis(rand::rng().random_range(20..300));
        tokio::select! {
            () = tokio::time::sleep(up) => {}
            () = calm.cancelled() => {}
        }
        stop.cancel();
        running.await.unwrap();
        stops += 1;
        let down = Duration::from_millis(rand::rng().random_range(20..300));
        tokio::select! {
            () = tokio::time::sleep(down) => {}
            () = calm.cancelled() => {}
        }
    }
}

/// 200 bookings, each cancelled as soon as it is made, while each service's
/// relay is stopped and started at random: every booking ends CANCELLED, every
/// approved payment is refunded exactly once, no refund precedes its payment,
/// and no booking is ever CONFIRMED after it was CANCELLED.
#[tokio::test]
async fn book_and_cancel_at_once_with_both_relays_stopped_and_started_at_random() {
    const BOOKINGS: usize = 200;
    let saga = saga(false, false).await;
    let (calm, done) = (CancellationToken::new(), CancellationToken::new());
    let relays = [
        tokio::spawn(flapping_relay(
            saga.booking.pool.clone(),
            saga.bookings.clone(),
            calm.clone(),
            done.clone(),
        )),
        tokio::spawn(flapping_relay(
            saga.payment.pool.clone(),
            saga.payment_events.clone(),
            calm.clone(),
            done.clone(),
        )),
    ];

    let booking = &saga.booking;
    let ids: Vec<Uuid> = futures::stream::iter(0..BOOKINGS)
        .map(|_| async {
            let id = book(booking, 9900).await;
            let response = booking.cancel(id).await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.json::<Value>().await.unwrap()["status"],
                "CANCELLED"
            );
            id
        })
        .buffer_unordered(10)
        .collect()
        .await;
    // A little more flapping while the events travel, then steady relays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    calm.cancel();
    eventually(
        Duration::from_secs(120),
        "every refund reaches its booking",
        || async {
            let refunded: i64 =
                sqlx::query_scalar("select count(*) from flight where payment_status = 'REFUNDED'")
                    .fetch_one(&booking.pool)
                    .await
                    .unwrap();
            (refunded == BOOKINGS as i64).then_some(())
        },
    )
    .await;
    done.cancel();
    let mut stops = 0;
    for relay in relays {
        stops += relay.await.unwrap();
    }
    assert!(
        stops >= 4,
        "the relays were stopped and started ({stops} stops)"
    );

    // Every booking ends CANCELLED.
    let statuses: Vec<(Uuid, String)> = sqlx::query_as("select id, status from flight")
        .fetch_all(&booking.pool)
        .await
        .unwrap();
    assert_eq!(statuses.len(), BOOKINGS);
    assert!(
        statuses.iter().all(|(_, s)| s == "CANCELLED"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().map(|(id, _)| *id).collect::<HashSet<_>>(),
        ids.iter().copied().collect()
    );
    // Every approved payment is refunded exactly once, never before it was made.
    let payments: Vec<(Uuid, String, String, bool)> =
        sqlx::query_as("select id, outcome, status, refunded_at >= processed_at from payment")
            .fetch_all(&saga.payment.pool)
            .await
            .unwrap();
    assert_eq!(payments.len(), BOOKINGS, "one payment per booking");
    assert!(
        payments
            .iter()
            .all(|(_, outcome, status, after)| outcome == "APPROVED"
                && status == "REFUNDED"
                && *after),
        "{payments:?}"
    );
    let announced: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "select aggregate_id, event_type, (envelope->>'sequence')::int8 from outbox.event order by seq",
    )
    .fetch_all(&saga.payment.pool)
    .await
    .unwrap();
    let mut per_payment: HashMap<Uuid, Vec<(String, i64)>> = HashMap::new();
    for (payment, event_type, sequence) in announced {
        per_payment
            .entry(payment)
            .or_default()
            .push((event_type, sequence));
    }
    assert_eq!(per_payment.len(), BOOKINGS);
    for (payment, events) in &per_payment {
        assert_eq!(
            events,
            &[("PaymentApproved".into(), 1), ("PaymentRefunded".into(), 2)],
            "{payment}: one refund, after its approval"
        );
    }
    // The booking applied them in that order, and never left CANCELLED.
    assert_lifecycle_held(&transitions(&booking.pool).await);
    assert_nothing_dead_lettered(&saga).await;
    for app in [&saga.booking, &saga.payment] {
        assert_eq!(
            metric(app, r#"consumer_failed_total{reason="out_of_sequence"}"#).await,
            0.0
        );
    }
}

/// Every event type (FlightBooked, FlightCancelled, PaymentApproved,
/// PaymentDeclined, PaymentRefunded) delivered a second time, after its first
/// delivery was applied: skipped by the inbox, no second effect anywhere.
#[tokio::test]
async fn every_event_type_delivered_twice_has_one_effect() {
    let saga = saga(true, true).await;
    let (booking, payment) = (&saga.booking, &saga.payment);
    let cheap = book(booking, 9900).await;
    flight_when(booking, cheap, "CONFIRMED", |f| f["status"] == "CONFIRMED").await;
    assert_eq!(booking.cancel(cheap).await.status(), 200);
    let dear = book(booking, DECLINE_ABOVE + 1).await;
    flight_when(booking, dear, "REJECTED", |f| f["status"] == "REJECTED").await;
    flight_when(booking, cheap, "refund learned", |f| {
        f["payment"]["status"] == "REFUNDED"
    })
    .await;
    eventually(Duration::from_secs(15), "all settled", || async {
        (unpublished_events(&booking.pool).await == 0
            && unpublished_events(&payment.pool).await == 0
            && queue_depth(&saga.bookings).await == 0
            && queue_depth(&saga.payment_events).await == 0)
            .then_some(())
    })
    .await;

    let state = || async {
        let mut flights = Vec::new();
        let mut payments = Vec::new();
        for id in [cheap, dear] {
            flights.push(booking.flight(id).await);
            payments.push(payment_when(payment, id, "payment", |_| true).await);
        }
        let inboxes = [
            count(&booking.pool, "outbox.inbox").await,
            count(&payment.pool, "outbox.inbox").await,
        ];
        let events = (
            event_counts(&booking.pool).await,
            event_counts(&payment.pool).await,
        );
        let log = count(&booking.pool, "test_transition").await;
        (flights, payments, inboxes, events, log)
    };
    let before = state().await;
    let duplicates_before = [
        metric(booking, "consumer_duplicates_skipped_total").await,
        metric(payment, "consumer_duplicates_skipped_total").await,
    ];

    // Each event a second time, as published (same event id), into its queue.
    let mut types = HashSet::new();
    for (pool, queue) in [
        (&booking.pool, &saga.bookings),
        (&payment.pool, &saga.payment_events),
    ] {
        let envelopes: Vec<(Uuid, String, String)> = sqlx::query_as(
            "select aggregate_id, event_type, envelope::text from outbox.event order by seq",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        for (aggregate, event_type, envelope) in envelopes {
            send(queue, &aggregate.to_string(), &envelope).await;
            types.insert(event_type);
        }
    }
    assert_eq!(types.len(), 5, "{types:?}");
    eventually(
        Duration::from_secs(30),
        "the copies are skipped",
        || async {
            let skipped = [
                metric(booking, "consumer_duplicates_skipped_total").await - duplicates_before[0],
                metric(payment, "consumer_duplicates_skipped_total").await - duplicates_before[1],
            ];
            // booking-service gets 3 payment events, payment-service 3 booking events.
            (skipped == [3.0, 3.0]).then_some(())
        },
    )
    .await;
    assert_eq!(state().await, before, "no second effect");
    assert_nothing_dead_lettered(&saga).await;
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// An event out of sequence, injected into each queue: dead-lettered, counted,
/// and nothing of it applied.
#[tokio::test]
async fn an_event_out_of_sequence_is_dead_lettered_and_nothing_is_applied() {
    let saga = saga(true, true).await;
    let (booking, payment) = (&saga.booking, &saga.payment);
    let id = book(booking, 9900).await;
    let confirmed = flight_when(booking, id, "CONFIRMED", |f| f["status"] == "CONFIRMED").await;
    let approved = payment_when(payment, id, "approved", |_| true).await;
    let payment_id: Uuid = approved["id"].as_str().unwrap().parse().unwrap();

    // To booking-service: the payment's third event; its second never came.
    let refund = outbox::EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "PaymentRefunded".into(),
        event_version: 1,
        aggregate_type: "payment".into(),
        aggregate_id: payment_id,
        sequence: Some(3),
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        payload: json!({"paymentId": payment_id, "flightId": id,
            "amount": {"amount": 9900, "currency": "EUR"}, "refundedAt": chrono::Utc::now()}),
    };
    service_kit::testing::send_event(&saga.payment_events, &refund).await;
    // To payment-service: the booking's third event.
    let cancel = outbox::EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "FlightCancelled".into(),
        event_version: 1,
        aggregate_type: "flight".into(),
        aggregate_id: id,
        sequence: Some(3),
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        payload: json!({"flightId": id, "cancelledAt": chrono::Utc::now()}),
    };
    service_kit::testing::send_event(&saga.bookings, &cancel).await;

    eventually(
        Duration::from_secs(15),
        "both are dead-lettered",
        || async {
            (queue_depth(&saga.payment_events_dlq).await == 1
                && queue_depth(&saga.bookings_dlq).await == 1)
                .then_some(())
        },
    )
    .await;
    for app in [booking, payment] {
        assert_eq!(
            metric(app, r#"consumer_failed_total{reason="out_of_sequence"}"#).await,
            1.0
        );
    }
    assert_eq!(booking.flight(id).await, confirmed, "nothing applied");
    assert_eq!(
        payment_when(payment, id, "payment", |_| true).await,
        approved,
        "nothing refunded"
    );
    for (pool, event) in [(&booking.pool, &refund), (&payment.pool, &cancel)] {
        let remembered: bool =
            sqlx::query_scalar("select exists(select 1 from outbox.inbox where event_id = $1)")
                .bind(event.event_id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert!(
            !remembered,
            "not in the inbox: it must look new when redriven"
        );
    }
}
