pub use service_kit::testing::{database_server, eventually};

use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use contracts::{FlightBookedV1, Money};
use outbox::envelope::EventEnvelope;
use payment_service::config::Config;
use payment_service::startup::Application;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A payment-service consuming `queue_url`, on `database_url`.
pub async fn spawn_app(database_url: &str, queue_url: &str, extra: &[&str]) -> TestApp {
    service_kit::telemetry::init_for_tests();
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
    if !extra.iter().any(|a| a.starts_with("--consumer-wait-time")) {
        // Short polls keep shutdown quick in tests.
        args.push("--consumer-wait-time=1s".to_owned());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let app = Application::build(Config::parse_from(args))
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        address,
        pool,
        client: reqwest::Client::new(),
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn payments(&self) -> i64 {
        sqlx::query_scalar("select count(*) from payment")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn sqs() -> aws_sdk_sqs::Client {
    outbox::sqs::client().await
}

/// A FIFO queue with a FIFO DLQ after `max_receives` receives; returns (queue, dlq) URLs.
pub async fn queue_with_dlq(max_receives: u32, visibility_seconds: u32) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let client = sqs().await;
    let id = Uuid::new_v4().simple();
    let dlq = outbox::sqs::create_queue(&client, &format!("pay-dlq-{id}.fifo"))
        .await
        .unwrap();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = client
        .create_queue()
        .queue_name(format!("pay-{id}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_seconds.to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, dlq)
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

/// Sends `body` to a FIFO queue in `group`; a fresh deduplication id each time,
/// so a deliberate re-send is not dropped by SQS (as after the 5-minute window).
pub async fn send(queue_url: &str, group: &str, body: &str) {
    sqs()
        .await
        .send_message()
        .queue_url(queue_url)
        .message_group_id(group)
        .message_deduplication_id(Uuid::new_v4().to_string())
        .message_body(body)
        .send()
        .await
        .unwrap();
}

pub async fn send_event(queue_url: &str, envelope: &EventEnvelope) {
    send(
        queue_url,
        &envelope.aggregate_id.to_string(),
        &serde_json::to_string(envelope).unwrap(),
    )
    .await;
}

/// Messages visible or in flight on a queue.
pub async fn queue_depth(queue_url: &str) -> i64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = sqs()
        .await
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|v| v.parse::<i64>().unwrap_or(0))
        .sum()
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
    service_kit::testing::fresh_database("t", &*payment_service::startup::MIGRATIONS)
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
