pub use service_kit::testing::{database_server, eventually};

use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use contracts::{FlightBookedV1, Money};
use outbox::envelope::EventEnvelope;
use payment_service::config::Config;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

pub use service_kit::testing::{ADMIN_TOKEN, TestApp, queue_depth, send, send_event, sqs};

/// payment-service's arguments for a test: port 0, `database_url`, the consumer
/// on `queue_url` (1 s polls keep shutdown quick), the relay off unless `extra`
/// names a payment events queue; then `extra`.
pub fn payment_args(database_url: &str, queue_url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "payment-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={database_url}"),
        format!("--sqs-queue-url={queue_url}"),
        "--max-connections=5".to_owned(),
    ];
    if !extra
        .iter()
        .any(|a| a.starts_with("--payment-events-queue"))
    {
        args.push("--relay-enabled=false".to_owned());
    }
    if !extra.iter().any(|a| a.starts_with("--admin-token")) {
        args.push(format!("--admin-token={ADMIN_TOKEN}"));
    }
    if !extra.iter().any(|a| a.starts_with("--consumer-wait-time")) {
        args.push("--consumer-wait-time=1s".to_owned());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A payment-service consuming `queue_url`, on `database_url`.
pub async fn spawn_app(database_url: &str, queue_url: &str, extra: &[&str]) -> TestApp {
    let config = Config::parse_from(payment_args(database_url, queue_url, extra));
    let app = payment_service::startup::build(config)
        .await
        .expect("the application builds");
    TestApp::spawn(app, database_url.to_owned(), None)
}

/// Payments recorded.
pub async fn payments(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from payment")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A FIFO queue with a FIFO DLQ after `max_receives` receives; returns (queue, dlq) URLs.
pub async fn queue_with_dlq(max_receives: u32, visibility_seconds: u32) -> (String, String) {
    service_kit::testing::queue_with_dlq("pay", max_receives, visibility_seconds).await
}

/// A FlightBooked envelope for a new flight, as the relay would send it.
pub fn flight_booked(amount: i64) -> EventEnvelope {
    let flight_id = Uuid::now_v7();
    let event = FlightBookedV1 {
        flight_id,
        departure_airport: "Paris".into(),
        arrival_airport: "London".into(),
        departure_date_time: Utc::now(),
        arrival_date_time: Utc::now() + chrono::Duration::minutes(75),
        passenger_name: None,
        fare: Money {
            amount,
            currency: "EUR".into(),
        },
        booked_at: Utc::now(),
    };
    EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "FlightBooked".into(),
        event_version: 1,
        aggregate_type: "flight".into(),
        aggregate_id: flight_id,
        sequence: Some(1),
        occurred_at: Utc::now(),
        traceparent: None,
        payload: serde_json::to_value(event).unwrap(),
    }
}

/// The FlightCancelled envelope booking-service would send for `flight_id`,
/// its booking's second event.
pub fn flight_cancelled(flight_id: Uuid) -> EventEnvelope {
    let event = contracts::FlightCancelledV1 {
        flight_id,
        cancelled_at: Utc::now(),
    };
    EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "FlightCancelled".into(),
        event_version: 1,
        aggregate_type: "flight".into(),
        aggregate_id: flight_id,
        sequence: Some(2),
        occurred_at: Utc::now(),
        traceparent: None,
        payload: serde_json::to_value(event).unwrap(),
    }
}

/// (event type, sequence, envelope) of every event in the payment outbox, in order.
pub async fn announced(app: &TestApp) -> Vec<(String, i64, Value)> {
    sqlx::query_as(
        "select event_type, (envelope->>'sequence')::int8, envelope from outbox.event order by seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

pub async fn payment_of(app: &TestApp, flight_id: Uuid) -> Option<Value> {
    let response = app.get(&format!("/api/payments/{flight_id}")).await;
    (response.status() == 200).then_some(response.json().await.unwrap())
}

pub fn new_database_url() -> String {
    service_kit::testing::new_database_url("t")
}

/// A migrated payment database of its own, for tests that drive a consumer directly.
pub async fn fresh_pool() -> PgPool {
    service_kit::testing::fresh_database("t", &payment_service::startup::migrators())
        .await
        .unwrap()
        .1
}

/// A consumer on `queue_url` that a test drives or runs itself, outside an app:
/// 1 s long polls, `loops` receive loops, the given visibility timeout.
pub async fn consumer<H: outbox::Handler>(
    pool: &PgPool,
    queue_url: &str,
    handler: H,
    loops: u16,
    visibility: Duration,
) -> outbox::consumer::Consumer<H> {
    let queue = outbox::sqs::Queue::new(
        sqs().await,
        outbox::sqs::QueueRef::Url(queue_url.to_owned()),
    )
    .unwrap();
    let config = outbox::consumer::ConsumerConfig::builder()
        .wait_time(Duration::from_secs(1))
        .visibility_timeout(visibility)
        .concurrency(loops)
        .build()
        .unwrap();
    outbox::consumer::Consumer::new(pool.clone(), queue, handler, config)
}

/// `alter database … allow_connections` and kill its sessions: one database of
/// a shared cluster failing over, as the consumer sees it.
pub async fn set_database_available(database_url: &str, available: bool) {
    let name = database_url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", database_server()))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} with allow_connections {available}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    if !available {
        sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
            .bind(&name)
            .execute(&admin)
            .await
            .unwrap();
    }
}
