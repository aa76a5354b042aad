//! A payment's lifecycle as payment-service sees it: `FlightBooked` makes it
//! `APPROVED` or `DECLINED` and writes `PaymentApproved` / `PaymentDeclined` to
//! its outbox in the same transaction; `FlightCancelled` refunds an approved one
//! (`REFUNDED`, `PaymentRefunded`) once, and a declined one not at all. Events
//! are sent into the bookings queue as booking-service's relay would; the relay
//! of payment-service is off, so what it announces is read from its outbox.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// The payment of `flight_id` once `check` holds for it.
async fn payment_when(
    app: &TestApp,
    flight_id: uuid::Uuid,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(Duration::from_secs(15), what, || async {
        payment_of(app, flight_id).await.filter(|p| check(p))
    })
    .await
}

#[tokio::test]
async fn each_decided_payment_is_announced_with_its_outcome() {
    let (queue, _dlq) = queue_with_dlq(5, 30).await;
    let app = spawn_app(
        &new_database_url(),
        &queue,
        &["--payment-decline-above=50000"],
    )
    .await;
    let (cheap, dear) = (flight_booked(9900), flight_booked(50001));
    send_event(&queue, &cheap).await;
    send_event(&queue, &dear).await;

    let approved = payment_when(&app, cheap.aggregate_id, "approved", |_| true).await;
    assert_eq!(
        (&approved["outcome"], &approved["status"]),
        (&"APPROVED".into(), &"APPROVED".into())
    );
    let declined = payment_when(&app, dear.aggregate_id, "declined", |_| true).await;
    assert_eq!(declined["status"], "DECLINED");

    let events = announced(&app).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for (event_type, sequence, envelope) in &events {
        let payment = if event_type == "PaymentApproved" {
            &approved
        } else {
            &declined
        };
        assert_eq!(*sequence, 1, "the payment's first event");
        assert_eq!(envelope["aggregateType"], "payment");
        assert_eq!(envelope["aggregateId"], payment["id"]);
        assert_eq!(envelope["payload"]["paymentId"], payment["id"]);
        assert_eq!(envelope["payload"]["flightId"], payment["flightId"]);
        assert_eq!(envelope["payload"]["amount"]["amount"], payment["amount"]);
    }
    let declined_event = &events
        .iter()
        .find(|(t, _, _)| t == "PaymentDeclined")
        .expect("a PaymentDeclined")
        .2;
    assert_eq!(declined_event["payload"]["reason"], declined["reason"]);
    let approved_event = &events
        .iter()
        .find(|(t, _, _)| t == "PaymentApproved")
        .expect("a PaymentApproved")
        .2;
    assert_eq!(
        approved_event["payload"]["approvedAt"],
        approved["processedAt"]
    );
}

#[tokio::test]
async fn a_cancelled_booking_is_refunded_once_and_a_declined_one_has_nothing_to_refund() {
    let (queue, _dlq) = queue_with_dlq(5, 30).await;
    let app = spawn_app(
        &new_database_url(),
        &queue,
        &["--payment-decline-above=50000"],
    )
    .await;
    let (paid, dear) = (flight_booked(9900), flight_booked(50001));
    for booking in [&paid, &dear] {
        send_event(&queue, booking).await;
        send_event(&queue, &flight_cancelled(booking.aggregate_id)).await;
    }
    let refunded = payment_when(&app, paid.aggregate_id, "refunded", |p| {
        p["status"] == "REFUNDED"
    })
    .await;
    assert_eq!(refunded["outcome"], "APPROVED", "what was decided stays");
    assert!(refunded["refundedAt"].is_string());
    eventually(Duration::from_secs(15), "both cancels consumed", || async {
        (queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    let declined = payment_of(&app, dear.aggregate_id).await.unwrap();
    assert_eq!(declined["status"], "DECLINED", "nothing was charged");
    assert!(declined.get("refundedAt").is_none());

    // The cancel again, under a new event id (an operator re-sending it): the
    // payment is past it; no second refund.
    send_event(&queue, &flight_cancelled(paid.aggregate_id)).await;
    eventually(Duration::from_secs(15), "the copy is consumed", || async {
        (queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    let types: Vec<(String, i64)> = announced(&app)
        .await
        .into_iter()
        .map(|(t, s, _)| (t, s))
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("PaymentApproved".into(), 1),
            ("PaymentDeclined".into(), 1),
            ("PaymentRefunded".into(), 2)
        ],
        "one refund, after its approval: {types:?}"
    );
    let refund = &announced(&app)
        .await
        .into_iter()
        .find(|(t, _, _)| t == "PaymentRefunded")
        .unwrap()
        .2;
    assert_eq!(refund["aggregateId"], refunded["id"]);
    assert_eq!(refund["payload"]["refundedAt"], refunded["refundedAt"]);
    assert_eq!(
        payment_of(&app, paid.aggregate_id).await.unwrap(),
        refunded,
        "unchanged by the copy"
    );
}

/// A cancel that overtakes its booking (sent into the group first) is not
/// applied: it is dead-lettered, counted and logged; its booking is paid. Once
/// an operator redrives the DLQ it arrives in order and the payment is refunded.
#[tokio::test]
async fn a_cancel_delivered_before_its_booking_is_dead_lettered_and_applied_after_a_redrive() {
    let (queue, dlq) = queue_with_dlq(5, 30).await;
    let app = spawn_app(
        &new_database_url(),
        &queue,
        &["--admin-token=operator-secret"],
    )
    .await;
    let booking = flight_booked(9900);
    let cancel = flight_cancelled(booking.aggregate_id);
    send_event(&queue, &cancel).await;
    eventually(
        Duration::from_secs(15),
        "the cancel reaches the DLQ",
        || async { (queue_depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"consumer_failed_total{reason="out_of_sequence"} 1"#),
        "{metrics}"
    );
    assert_eq!(payments(&app).await, 0, "nothing applied");
    assert!(announced(&app).await.is_empty(), "nothing announced");

    send_event(&queue, &booking).await;
    payment_when(&app, booking.aggregate_id, "paid", |p| {
        p["status"] == "APPROVED"
    })
    .await;
    let response = app
        .client
        .post(format!("{}/api/admin/dlq/redrive", app.address))
        .bearer_auth("operator-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    payment_when(
        &app,
        booking.aggregate_id,
        "refunded after the redrive",
        |p| p["status"] == "REFUNDED",
    )
    .await;
    assert_eq!(queue_depth(&dlq).await, 0);
}
