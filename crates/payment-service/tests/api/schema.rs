//! Upgrading a payment database from before payments announced themselves: each
//! payment recorded then gets its PaymentApproved / PaymentDeclined, so the
//! bookings waiting for it (PENDING_PAYMENT) learn their outcome.

use std::path::Path;

use contracts::{PaymentApprovedV1, PaymentDeclinedV1};
use outbox::EventEnvelope;
use payment_service::startup::migrators;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

#[tokio::test]
async fn payments_recorded_before_this_release_are_announced_once() {
    let url = service_kit::testing::new_database_url("upgrade");
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    service_kit::db::ensure_database(&options).await.unwrap();
    let pool = PgPoolOptions::new().connect_with(options).await.unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    service_kit::testing::migrate_partly(
        &pool,
        &root.join("crates/outbox/migrations"),
        &["20261203000001_outbox_schema.sql"],
        true,
    )
    .await
    .unwrap();
    service_kit::testing::migrate_partly(
        &pool,
        &root.join("migrations/payment"),
        &[
            "20261122000001_payment_and_inbox.sql",
            "20261203000001_inbox_moves_to_crate_schema.sql",
        ],
        false,
    )
    .await
    .unwrap();
    let (paid, declined) = (Uuid::now_v7(), Uuid::now_v7());
    for (flight, outcome, reason) in [
        (paid, "APPROVED", None),
        (declined, "DECLINED", Some("too dear")),
    ] {
        sqlx::query(
            "insert into payment (id, flight_id, event_id, amount, currency, outcome, reason, booked_at)
             values (gen_random_uuid(), $1, gen_random_uuid(), 9900, 'EUR', $2, $3, now())",
        )
        .bind(flight)
        .bind(outcome)
        .bind(reason)
        .execute(&pool)
        .await
        .unwrap();
    }

    service_kit::db::migrate(&pool, &migrators()).await.unwrap();

    let statuses: Vec<String> = sqlx::query_scalar("select status from payment order by flight_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["APPROVED", "DECLINED"]);
    let envelopes: Vec<serde_json::Value> =
        sqlx::query_scalar("select envelope from outbox.event order by seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(envelopes.len(), 2);
    for json in envelopes {
        // What booking-service will parse, exactly as its consumer does.
        let envelope = EventEnvelope::parse(&json.to_string()).unwrap();
        assert_eq!(envelope.sequence, Some(1));
        assert_eq!(envelope.aggregate_type, "payment");
        match envelope.event_type.as_str() {
            "PaymentApproved" => {
                let event: PaymentApprovedV1 = envelope.decode().unwrap();
                assert_eq!((event.flight_id, event.amount.amount), (paid, 9900));
                assert_eq!(event.payment_id, envelope.aggregate_id);
            }
            "PaymentDeclined" => {
                let event: PaymentDeclinedV1 = envelope.decode().unwrap();
                assert_eq!(
                    (event.flight_id, event.reason.as_str()),
                    (declined, "too dear")
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The payments' next events continue their numbering.
    let payment_id: Uuid = sqlx::query_scalar("select id from payment where flight_id = $1")
        .bind(paid)
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let next = outbox::store::enqueue(
        &mut tx,
        outbox::NewEvent {
            event_type: "PaymentRefunded",
            event_version: 1,
            aggregate_type: "payment",
            aggregate_id: payment_id,
            traceparent: None,
            payload: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    assert_eq!(next.sequence, Some(2));
    tx.rollback().await.unwrap();
    pool.close().await;
}
