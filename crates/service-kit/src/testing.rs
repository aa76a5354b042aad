//! Helpers for the services' integration tests and benchmarks (never used at
//! run time): a fresh database per test, and waiting for a condition with a
//! deadline instead of sleeping and hoping.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

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
