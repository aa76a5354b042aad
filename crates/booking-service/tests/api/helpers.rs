use std::time::Duration;

pub use service_kit::testing::eventually;

use booking_service::config::Config;
use clap::Parser;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub use service_kit::testing::ADMIN_TOKEN;

pub fn sample_body() -> Value {
    json!({
        "departureAirport": "Paris",
        "arrivalAirport": "London",
        "departureDateTime": "2023-09-01T08:00:00.000Z",
        "arrivalDateTime": "2023-09-01T08:15:00.000Z"
    })
}

pub use service_kit::testing::TestApp;

/// An app with the relay and the consumer off: events stay in the outbox.
pub async fn spawn_app() -> TestApp {
    spawn_with(None, &[]).await
}

/// An app with the relay off and `extra` settings.
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn_with(None, extra).await
}

/// An app whose relay publishes to a new queue `name` (FIFO when it ends in .fifo).
pub async fn spawn_app_with_queue(name: &str, extra: &[&str]) -> TestApp {
    let client = outbox::sqs::client().await;
    let url = outbox::sqs::create_queue(&client, name)
        .await
        .expect("the SQS server answers (see scripts/test.sh)");
    spawn_with(Some(url), extra).await
}

/// An app with the relay off (its events stay in the outbox, to be read) and its
/// consumer on a payment events queue of its own, with a DLQ after 3 receives;
/// returns it with the queue's and the DLQ's URLs.
pub async fn spawn_consuming_app() -> (TestApp, String, String) {
    let (queue, dlq) = service_kit::testing::queue_with_dlq("payment-events", 3, 2).await;
    let app = spawn_with(
        None,
        &[
            &format!("--payment-events-queue-url={queue}"),
            "--consumer-wait-time=1s",
            "--consumer-visibility-timeout=2s",
        ],
    )
    .await;
    (app, queue, dlq)
}

/// An app on an existing database (several replicas on one database).
pub async fn spawn_replica(
    database_url: &str,
    queue_url: Option<String>,
    extra: &[&str],
) -> TestApp {
    start(database_url.to_owned(), queue_url, extra).await
}

async fn spawn_with(queue_url: Option<String>, extra: &[&str]) -> TestApp {
    let database_url = service_kit::testing::new_database_url("t");
    start(database_url, queue_url, extra).await
}

/// booking-service's arguments for a test: port 0, `database_url`, 5
/// connections, the relay on `queue_url` (off without one), the consumer off
/// unless `extra` names a payment events queue; then `extra`.
pub fn booking_args(database_url: &str, queue_url: Option<&str>, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "booking-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={database_url}"),
    ];
    if !extra.iter().any(|a| a.starts_with("--max-connections")) {
        args.push("--max-connections=5".to_owned());
    }
    match queue_url {
        Some(url) => args.push(format!("--sqs-queue-url={url}")),
        None => args.push("--relay-enabled=false".to_owned()),
    }
    if !extra.iter().any(|a| a.starts_with("--admin-token")) {
        args.push(format!("--admin-token={ADMIN_TOKEN}"));
    }
    if !extra
        .iter()
        .any(|a| a.starts_with("--payment-events-queue"))
    {
        args.push("--consumer-enabled=false".to_owned());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn start(database_url: String, queue_url: Option<String>, extra: &[&str]) -> TestApp {
    let config = Config::parse_from(booking_args(&database_url, queue_url.as_deref(), extra));
    let app = booking_service::startup::build(config)
        .await
        .expect("the application builds");
    TestApp::spawn(app, database_url, queue_url)
}

/// What tests do with booking-service.
pub trait Bookings {
    /// `POST /api/flights` with `body`.
    async fn book(&self, body: &Value) -> reqwest::Response;
    /// Books the sample flight and returns its id.
    async fn book_sample(&self) -> Uuid;
    /// `POST /api/flights/{id}/cancel`.
    async fn cancel(&self, id: Uuid) -> reqwest::Response;
    /// `GET /api/flights/{id}`, which must answer 200.
    async fn flight(&self, id: Uuid) -> Value;
    /// (flights, outbox rows)
    async fn counts(&self) -> (i64, i64);
}

impl Bookings for TestApp {
    async fn book(&self, body: &Value) -> reqwest::Response {
        self.post("/api/flights", Some(body)).await
    }

    async fn book_sample(&self) -> Uuid {
        let response = self.book(&sample_body()).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    async fn cancel(&self, id: Uuid) -> reqwest::Response {
        self.post(&format!("/api/flights/{id}/cancel"), None).await
    }

    async fn flight(&self, id: Uuid) -> Value {
        let response = self.get(&format!("/api/flights/{id}")).await;
        assert_eq!(response.status(), 200, "GET /api/flights/{id}");
        response.json().await.unwrap()
    }

    async fn counts(&self) -> (i64, i64) {
        let flights: i64 = sqlx::query_scalar("select count(*) from flight")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let events: i64 = sqlx::query_scalar("select count(*) from outbox.event")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (flights, events)
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json",
        "content type"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}

pub fn unique_queue(prefix: &str) -> String {
    format!("{prefix}-{}.fifo", Uuid::new_v4().simple())
}

/// Receives (and deletes) messages until `expected` arrived or `timeout` passed.
pub async fn receive_all(
    queue_url: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let client = outbox::sqs::client().await;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut received = Vec::new();
    while received.len() < expected && tokio::time::Instant::now() < deadline {
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for message in output.messages.unwrap_or_default() {
            client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            received.push(message);
        }
    }
    received
}

/// Inserts `count` test events for `aggregate`, each in its own transaction,
/// with payload `{"n": i}` (i counting from `from`).
pub async fn enqueue_sequence(pool: &PgPool, aggregate: Uuid, from: usize, count: usize) {
    for n in from..from + count {
        let mut tx = pool.begin().await.unwrap();
        outbox::store::enqueue(
            &mut tx,
            outbox::NewEvent {
                event_type: "TestEvent",
                event_version: 1,
                aggregate_type: "test",
                aggregate_id: aggregate,
                traceparent: None,
                payload: json!({ "n": n }),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

/// Unpublished rows left.
pub async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from outbox.event where published_at is null")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// (aggregate id, n) of received test events, in arrival order.
pub fn sequence_of(messages: &[aws_sdk_sqs::types::Message]) -> Vec<(String, u64)> {
    messages
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            (
                envelope["aggregateId"].as_str().unwrap().to_owned(),
                envelope["payload"]["n"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Asserts every aggregate's events arrived complete and in order, exactly once.
pub fn assert_in_order_per_aggregate(
    messages: &[aws_sdk_sqs::types::Message],
    per_aggregate: usize,
) {
    let mut by_aggregate: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for (aggregate, n) in sequence_of(messages) {
        by_aggregate.entry(aggregate).or_default().push(n);
    }
    for (aggregate, ns) in &by_aggregate {
        let expected: Vec<u64> = (0..per_aggregate as u64).collect();
        assert_eq!(
            ns, &expected,
            "events of {aggregate} out of order, missing or duplicated"
        );
    }
}
