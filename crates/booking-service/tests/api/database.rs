//! The database side: session timeouts on every connection, the relay and the
//! HTTP handlers on pools of their own, and an exhausted pool answered with a
//! 503, not a hang.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

async fn show(pool: &PgPool, setting: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("show {setting}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Takes every connection `pool` will hand out and keeps them.
async fn exhaust(pool: &PgPool) -> Vec<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut held = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(300), pool.acquire()).await
    {
        held.push(conn);
    }
    held
}

#[tokio::test]
async fn every_pooled_connection_has_the_configured_timeouts() {
    let app = spawn_app_with_queue(
        &unique_queue("timeouts"),
        &[
            "--statement-timeout=1500ms",
            "--lock-timeout=700ms",
            "--idle-in-transaction-timeout=3s",
        ],
    )
    .await;
    let relay_pool = app.relay_pool.clone().unwrap();
    for pool in [&app.pool, &relay_pool] {
        assert_eq!(show(pool, "statement_timeout").await, "1500ms");
        assert_eq!(show(pool, "lock_timeout").await, "700ms");
        assert_eq!(
            show(pool, "idle_in_transaction_session_timeout").await,
            "3s"
        );
    }
    // And the server enforces them.
    let err = sqlx::query("select pg_sleep(3)")
        .execute(&app.pool)
        .await
        .unwrap_err();
    let code = err.as_database_error().and_then(|e| e.code()).unwrap();
    assert_eq!(code, "57014", "{err}");
}

#[tokio::test]
async fn an_exhausted_pool_is_a_503_with_retry_after_not_a_hang() {
    let app = spawn_app_with(&["--acquire-timeout=1s"]).await;
    let id = app.book_sample().await;
    let held = exhaust(&app.pool).await;
    assert_eq!(held.len(), 5, "the test app's pool has 5 connections");

    let started = Instant::now();
    let response = app.get(&format!("/api/flights/{id}")).await;
    let waited = started.elapsed();
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    let problem = assert_problem(response, 503).await;
    assert_eq!(problem["type"], "/problems/database-unavailable");
    assert!(retry_after.parse::<u32>().unwrap() >= 1, "{retry_after}");
    // DATABASE_ACQUIRE_TIMEOUT (1 s here) and no more.
    assert!(waited < Duration::from_secs(4), "answered after {waited:?}");

    drop(held);
    assert_eq!(app.get(&format!("/api/flights/{id}")).await.status(), 200);
}

#[tokio::test]
async fn the_relay_publishes_while_every_http_connection_is_taken() {
    let app = spawn_app_with_queue(&unique_queue("http-busy"), &[]).await;
    let _held = exhaust(&app.pool).await;
    // Written by another client: the HTTP pool has nothing left.
    let writer = PgPool::connect(&app.database_url).await.unwrap();
    enqueue_sequence(&writer, Uuid::now_v7(), 0, 3).await;
    let received = receive_all(
        app.queue_url.as_deref().unwrap(),
        3,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(received.len(), 3, "the relay kept publishing");
}

#[tokio::test]
async fn bookings_are_served_while_every_relay_connection_is_taken() {
    let app = spawn_app_with_queue(
        &unique_queue("relay-busy"),
        &["--relay-database-max-connections=4"],
    )
    .await;
    let relay_pool = app.relay_pool.clone().unwrap();
    let held = exhaust(&relay_pool).await;
    assert!(
        held.len() < 4,
        "the relay's listener holds one connection of its pool"
    );
    let started = Instant::now();
    app.book_sample().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_relay_pool_too_small_for_its_workers_is_refused_at_start() {
    let config = <booking_service::config::Config as clap::Parser>::parse_from([
        "booking-service",
        "--database-url=postgres://nobody@127.0.0.1:1/none",
        "--sqs-queue-url=http://127.0.0.1:1/queue/none.fifo",
        "--relay-workers=4",
        "--relay-database-max-connections=5",
    ]);
    let err = booking_service::startup::build(config).await.err().unwrap();
    let message = format!("{err:#}");
    assert!(
        message.contains("RELAY_DATABASE_MAX_CONNECTIONS") && message.contains("RELAY_WORKERS"),
        "{message}"
    );
}
