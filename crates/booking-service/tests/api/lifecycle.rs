//! The booking lifecycle as booking-service sees it: `PENDING_PAYMENT` when
//! booked, `CONFIRMED` / `REJECTED` when payment-service's event arrives (sent
//! here into booking-service's payment events queue, as payment-service's relay
//! would), `CANCELLED` by `POST /api/flights/{id}/cancel`, which writes the
//! status and a `FlightCancelled` in one transaction.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use contracts::{Money, PaymentApprovedV1, PaymentDeclinedV1, PaymentRefundedV1};
use outbox::{Event, EventEnvelope};
use serde_json::Value;
use service_kit::testing::{queue_depth, send_event};
use uuid::Uuid;

use crate::helpers::*;

/// The envelope payment-service's relay would send for `event`, the `sequence`-th
/// event of payment `payment_id`.
fn payment_event<E: Event>(payment_id: Uuid, sequence: i64, event: &E) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: E::TYPE.into(),
        event_version: E::VERSION,
        aggregate_type: E::AGGREGATE_TYPE.into(),
        aggregate_id: payment_id,
        sequence: Some(sequence),
        occurred_at: Utc::now(),
        traceparent: None,
        payload: serde_json::to_value(event).unwrap(),
    }
}

/// Now, at the database's precision (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn money() -> Money {
    Money {
        amount: 9900,
        currency: "EUR".into(),
    }
}

fn approved(flight_id: Uuid, payment_id: Uuid) -> EventEnvelope {
    payment_event(
        payment_id,
        1,
        &PaymentApprovedV1 {
            payment_id,
            flight_id,
            amount: money(),
            approved_at: now(),
        },
    )
}

fn declined(flight_id: Uuid, payment_id: Uuid) -> EventEnvelope {
    payment_event(
        payment_id,
        1,
        &PaymentDeclinedV1 {
            payment_id,
            flight_id,
            amount: money(),
            reason: "fare 9900 EUR is above the limit of 5000".into(),
            declined_at: now(),
        },
    )
}

fn refunded(flight_id: Uuid, payment_id: Uuid) -> EventEnvelope {
    payment_event(
        payment_id,
        2,
        &PaymentRefundedV1 {
            payment_id,
            flight_id,
            amount: money(),
            refunded_at: now(),
        },
    )
}

/// Waits until `GET /api/flights/{id}` satisfies `check`; returns the booking.
async fn flight_when(app: &TestApp, id: Uuid, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), what, || async {
        let flight = app.flight(id).await;
        check(&flight).then_some(flight)
    })
    .await
}

/// (event type, sequence) of every outbox event of `id`, in outbox order.
async fn events_of(app: &TestApp, id: Uuid) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select event_type, (envelope->>'sequence')::int8 from outbox.event where aggregate_id = $1 order by seq",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_booking_is_pending_payment_until_its_approved_payment_confirms_it() {
    let (app, queue, _dlq) = spawn_consuming_app().await;
    let id = app.book_sample().await;
    let booked = app.flight(id).await;
    assert_eq!(booked["status"], "PENDING_PAYMENT");
    assert_eq!(booked["statusChangedAt"], booked["createdAt"]);
    assert!(booked.get("payment").is_none(), "{booked}");

    let payment_id = Uuid::now_v7();
    let event = approved(id, payment_id);
    send_event(&queue, &event).await;
    let confirmed = flight_when(&app, id, "CONFIRMED", |f| f["status"] == "CONFIRMED").await;
    assert_eq!(confirmed["payment"]["id"], payment_id.to_string());
    assert_eq!(confirmed["payment"]["status"], "APPROVED");
    assert_eq!(
        confirmed["payment"]["decidedAt"],
        event.payload["approvedAt"]
    );
    assert_ne!(confirmed["statusChangedAt"], confirmed["createdAt"]);
    let list: Value = app
        .get_as_operator("/api/flights")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0], confirmed, "the list shows the same");
}

#[tokio::test]
async fn a_declined_payment_rejects_the_booking_which_then_cannot_be_cancelled() {
    let (app, queue, _dlq) = spawn_consuming_app().await;
    let id = app.book_sample().await;
    send_event(&queue, &declined(id, Uuid::now_v7())).await;
    let rejected = flight_when(&app, id, "REJECTED", |f| f["status"] == "REJECTED").await;
    assert_eq!(rejected["payment"]["status"], "DECLINED");
    assert!(
        rejected["payment"]["reason"]
            .as_str()
            .unwrap()
            .contains("above the limit")
    );

    let problem = assert_problem(app.cancel(id).await, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("REJECTED"),
        "{problem}"
    );
    assert_eq!(app.flight(id).await, rejected, "nothing changed");
    assert_eq!(events_of(&app, id).await, [("FlightBooked".into(), 1)]);
}

#[tokio::test]
async fn cancelling_writes_the_status_and_one_flight_cancelled_and_cancelling_again_changes_nothing()
 {
    let app = spawn_app().await;
    let id = app.book_sample().await;

    let response = app.cancel(id).await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert!(cancelled["cancelledAt"].is_string());
    assert_eq!(cancelled["statusChangedAt"], cancelled["cancelledAt"]);
    assert_eq!(app.flight(id).await, cancelled);
    let envelope: Value = sqlx::query_scalar(
        "select envelope from outbox.event where event_type = 'FlightCancelled'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(envelope["aggregateType"], "flight");
    assert_eq!(envelope["aggregateId"], id.to_string());
    assert_eq!(envelope["sequence"], 2, "after its FlightBooked (1)");
    assert_eq!(envelope["payload"]["flightId"], id.to_string());
    assert_eq!(envelope["payload"]["cancelledAt"], cancelled["cancelledAt"]);
    assert!(envelope["traceparent"].as_str().unwrap().starts_with("00-"));

    // Again, and ten times at once: the same booking, no second event.
    let again = app.cancel(id).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap(), cancelled);
    let other = app.book_sample().await;
    let responses = futures::future::join_all((0..10).map(|_| app.cancel(other))).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    for booking in [id, other] {
        assert_eq!(
            events_of(&app, booking).await,
            [("FlightBooked".into(), 1), ("FlightCancelled".into(), 2)]
        );
    }
}

#[tokio::test]
async fn cancelling_an_unknown_or_malformed_id_is_a_problem_and_writes_nothing() {
    let app = spawn_app().await;
    let problem = assert_problem(app.cancel(Uuid::now_v7()).await, 404).await;
    assert!(problem["detail"].as_str().unwrap().contains("No flight"));
    let response = app
        .client
        .post(format!("{}/api/flights/not-a-uuid/cancel", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn a_failing_event_insert_leaves_the_booking_as_it_was() {
    let app = spawn_app().await;
    let id = app.book_sample().await;
    sqlx::raw_sql(
        "create function fail_outbox() returns trigger language plpgsql as $$
         begin raise exception 'injected outbox failure'; end $$;
         create trigger fail_outbox before insert on outbox.event for each row execute function fail_outbox();",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    assert_problem(app.cancel(id).await, 500).await;

    assert_eq!(app.flight(id).await["status"], "PENDING_PAYMENT");
    assert_eq!(events_of(&app, id).await, [("FlightBooked".into(), 1)]);
}

#[tokio::test]
async fn a_booking_cancelled_while_its_payment_is_pending_stays_cancelled_and_learns_the_refund() {
    let (app, queue, _dlq) = spawn_consuming_app().await;
    let id = app.book_sample().await;
    assert_eq!(app.cancel(id).await.status(), 200);

    // payment-service had already charged it: approved, then refunded.
    let payment_id = Uuid::now_v7();
    send_event(&queue, &approved(id, payment_id)).await;
    let paid = flight_when(&app, id, "the approval is recorded", |f| {
        f["payment"]["status"] == "APPROVED"
    })
    .await;
    assert_eq!(
        paid["status"], "CANCELLED",
        "never CONFIRMED after CANCELLED"
    );
    let refund = refunded(id, payment_id);
    send_event(&queue, &refund).await;
    let refunded = flight_when(&app, id, "the refund is recorded", |f| {
        f["payment"]["status"] == "REFUNDED"
    })
    .await;
    assert_eq!(refunded["status"], "CANCELLED");
    assert_eq!(
        refunded["payment"]["refundedAt"],
        refund.payload["refundedAt"]
    );
    assert_eq!(refunded["statusChangedAt"], paid["statusChangedAt"]);
    assert_eq!(queue_depth(&queue).await, 0);
}

#[tokio::test]
async fn a_payment_event_for_a_booking_that_does_not_exist_is_dead_lettered() {
    let (app, queue, dlq) = spawn_consuming_app().await;
    let stranger = approved(Uuid::now_v7(), Uuid::now_v7());
    send_event(&queue, &stranger).await;
    // Sent after it, to a booking that exists: applied (its group is another).
    let id = app.book_sample().await;
    send_event(&queue, &approved(id, Uuid::now_v7())).await;
    flight_when(&app, id, "CONFIRMED", |f| f["status"] == "CONFIRMED").await;
    eventually(
        Duration::from_secs(15),
        "the stranger reaches the DLQ",
        || async { (queue_depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"consumer_failed_total{reason="unknown_flight"} 1"#),
        "{metrics}"
    );
    let inbox: i64 = sqlx::query_scalar("select count(*) from outbox.inbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(inbox, 1, "only the applied event is in the inbox");
}
