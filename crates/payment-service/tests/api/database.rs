//! The consumer and the HTTP handlers on pools of their own, with the session
//! timeouts on every connection.

use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::*;

#[tokio::test]
async fn the_consumer_pays_while_every_http_connection_is_taken() {
    let (queue, _dlq) = queue_with_dlq(3, 5).await;
    let database = new_database_url();
    let app = spawn_app(
        &database,
        &queue,
        &["--acquire-timeout=500ms", "--statement-timeout=4s"],
    )
    .await;
    let mut held = Vec::new();
    while let Ok(conn) = app.pool.acquire().await {
        // DATABASE_ACQUIRE_TIMEOUT ends this loop.
        held.push(conn);
    }
    assert_eq!(held.len(), 5, "the HTTP pool is exhausted");
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);

    let event = flight_booked(9900);
    send_event(&queue, &event).await;
    let other = PgPool::connect(&database).await.unwrap();
    eventually(Duration::from_secs(15), "the consumer pays", || async {
        let paid: i64 = sqlx::query_scalar("select count(*) from payment where flight_id = $1")
            .bind(event.aggregate_id)
            .fetch_one(&other)
            .await
            .unwrap();
        (paid == 1).then_some(())
    })
    .await;
    let statement_timeout: String = sqlx::query_scalar("show statement_timeout")
        .fetch_one(app.consumer_pool.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(statement_timeout, "4s");
    drop(held);
}

#[tokio::test]
async fn a_database_outage_is_the_same_503_problem_as_in_booking_service() {
    let (queue, _dlq) = queue_with_dlq(3, 5).await;
    let database = new_database_url();
    let app = spawn_app(&database, &queue, &["--acquire-timeout=1s"]).await;
    set_database_available(&database, false).await;
    let response = app
        .get(&format!("/api/payments/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/database-unavailable");
    assert!(
        !problem.to_string().contains("connection"),
        "nothing internal leaks: {problem}"
    );
    set_database_available(&database, true).await;
}
