//! The services' test harness (feature `testing`, for tests and benchmarks;
//! never used at run time): a service running inside the test
//! ([`TestApp`]), a fresh database per test, queues of its own, and waiting for
//! a condition with a deadline instead of sleeping and hoping.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// A service running inside the test (its [`App::run`] in a task), on the port
/// it bound (tests bind port 0). [`TestApp::stop`] stops it as SIGTERM would
/// and waits for it; dropping it only cancels it.
/// The operator token of the test apps (unless a test gives its own
/// `--admin-token`).
pub const ADMIN_TOKEN: &str = "test-operator-token";

pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The HTTP handlers' pool.
    pub pool: PgPool,
    /// The relay's pool (when the relay runs).
    pub relay_pool: Option<PgPool>,
    /// The consumer's pool (when the consumer runs).
    pub consumer_pool: Option<PgPool>,
    /// Its database (several replicas can share it).
    pub database_url: String,
    /// The queue its relay publishes to, when the test made one for it.
    pub queue_url: Option<String>,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Runs `app` (built on `database_url`) until stopped.
    pub fn spawn(app: App, database_url: String, queue_url: Option<String>) -> Self {
        crate::telemetry::init_for_tests();
        let address = format!("http://127.0.0.1:{}", app.port());
        let pool = app.pool().clone();
        let relay_pool = app.relay_pool().cloned();
        let consumer_pool = app.consumer_pool().cloned();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run(shutdown.clone()));
        Self {
            address,
            pool,
            relay_pool,
            consumer_pool,
            database_url,
            queue_url,
            client: reqwest::Client::new(),
            shutdown,
            handle: Some(handle),
        }
    }

    /// `GET {address}{path}`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the service answers")
    }

    /// `POST {address}{path}`, with `body` as JSON when given.
    pub async fn post(&self, path: &str, body: Option<&serde_json::Value>) -> reqwest::Response {
        let request = self.client.post(format!("{}{path}", self.address));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.expect("the service answers")
    }

    /// `GET {address}{path}` with the operator token ([`ADMIN_TOKEN`]).
    pub async fn get_as_operator(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("the service answers")
    }

    /// `POST {address}{path}` without a body, with the operator token.
    pub async fn post_as_operator(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("the service answers")
    }

    /// Stops the service as SIGTERM would (requests and batches in flight
    /// finish), and waits for it; panics if it failed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("the service did not panic")
                .expect("the service stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The PostgreSQL server the tests use, without a database name
/// (`TEST_DATABASE_URL`, default the local server with trust auth).
pub fn database_server() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A URL for a database that does not exist yet (services create their own),
/// named `{TEST_DATABASE_PREFIX}{prefix}_{uuid}`. `scripts/test.sh` sets
/// `TEST_DATABASE_PREFIX` to one per run, so that it drops only what this run made.
pub fn new_database_url(prefix: &str) -> String {
    let run = std::env::var("TEST_DATABASE_PREFIX").unwrap_or_default();
    format!(
        "{}/{run}{prefix}_{}",
        database_server(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Creates a new database, applies `migrators`, returns its URL and a pool.
pub async fn fresh_database(
    prefix: &str,
    migrators: &[&Migrator],
) -> anyhow::Result<(String, PgPool)> {
    let url = new_database_url(prefix);
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .context("Failed to parse the test database URL")?;
    crate::db::ensure_database(&options).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options)
        .await
        .context("Failed to connect to the test database")?;
    crate::db::migrate(&pool, migrators)
        .await
        .context("Failed to migrate the test database")?;
    Ok((url, pool))
}

/// Polls `check` every 20 ms until it returns `Some`, and panics naming `what`
/// when `timeout` passes first.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every operation documents its errors as problem+json, each status with one
/// example, and a `default` for what any layer may answer.
pub fn assert_every_error_is_documented(doc: &serde_json::Value) {
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("default"),
                "{method} {path} has no default response"
            );
            for (status, response) in responses {
                let problem = &response["content"]["application/problem+json"];
                if status.starts_with('2') {
                    continue;
                }
                assert!(
                    problem["schema"].is_object(),
                    "{method} {path} {status}: not problem+json"
                );
                let examples = problem["examples"].as_object().map_or(0, |e| e.len())
                    + usize::from(problem["example"].is_object());
                assert_eq!(examples, 1, "{method} {path} {status}: one example");
                let example = if problem["example"].is_object() {
                    problem["example"].clone()
                } else {
                    problem["examples"]
                        .as_object()
                        .unwrap()
                        .values()
                        .next()
                        .unwrap()["value"]
                        .clone()
                };
                if status != "default" {
                    assert_eq!(
                        example["status"].to_string(),
                        *status,
                        "{method} {path}: the example's status"
                    );
                }
            }
        }
    }
}

/// The SQS client the services use (`AWS_ENDPOINT_URL_SQS` points it at the
/// local server).
pub async fn sqs() -> aws_sdk_sqs::Client {
    outbox::sqs::client().await
}

/// A new FIFO queue `{prefix}-{uuid}.fifo` with a FIFO DLQ after `max_receives`
/// receives and a visibility timeout of `visibility_seconds`; returns (queue, DLQ) URLs.
pub async fn queue_with_dlq(
    prefix: &str,
    max_receives: u32,
    visibility_seconds: u32,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let client = sqs().await;
    let id = uuid::Uuid::new_v4().simple();
    let dlq = outbox::sqs::create_queue(&client, &format!("{prefix}-dlq-{id}.fifo"))
        .await
        .expect("the SQS server answers (see scripts/test.sh)");
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("the DLQ's attributes")
        .attributes
        .unwrap_or_default()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = client
        .create_queue()
        .queue_name(format!("{prefix}-{id}.fifo"))
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
        .expect("the queue is created")
        .queue_url
        .expect("a queue URL");
    (queue, dlq)
}

/// Sends `body` to a FIFO queue in `group`, with a fresh deduplication id each
/// time, so a deliberate copy is not dropped by SQS (as after its 5-minute window).
pub async fn send(queue_url: &str, group: &str, body: &str) {
    sqs()
        .await
        .send_message()
        .queue_url(queue_url)
        .message_group_id(group)
        .message_deduplication_id(uuid::Uuid::new_v4().to_string())
        .message_body(body)
        .send()
        .await
        .expect("the queue takes the message");
}

/// Sends `envelope` as a relay would (group: its aggregate), under a fresh
/// deduplication id.
pub async fn send_event(queue_url: &str, envelope: &outbox::EventEnvelope) {
    send(
        queue_url,
        &envelope.aggregate_id.to_string(),
        &serde_json::to_string(envelope).expect("an envelope serialises"),
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
        .expect("the queue's attributes")
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|v| v.parse::<i64>().unwrap_or(0))
        .sum()
}

/// The database as an older release left it: only `files` of the migrations
/// directory `dir` applied, in order. `outbox_crate`: they are the outbox
/// crate's, which keep their history in `outbox._sqlx_migrations`.
pub async fn migrate_partly(
    pool: &PgPool,
    dir: &std::path::Path,
    files: &[&str],
    outbox_crate: bool,
) -> anyhow::Result<()> {
    let old =
        std::env::temp_dir().join(format!("old-migrations-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&old).context("Failed to make a directory for the old migrations")?;
    for file in files {
        std::fs::copy(dir.join(file), old.join(file))
            .with_context(|| format!("Failed to copy migration {file}"))?;
    }
    let mut migrator = Migrator::new(old.as_path())
        .await
        .context("Failed to read the old migrations")?;
    if outbox_crate {
        migrator.dangerous_set_table_name("outbox._sqlx_migrations");
        migrator.create_schema(outbox::schema::SCHEMA);
    }
    migrator
        .run(pool)
        .await
        .context("Failed to apply the old migrations")?;
    std::fs::remove_dir_all(&old).ok();
    Ok(())
}
