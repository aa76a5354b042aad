//! `/health/status`: each part's state, so an operator sees why events wait.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_status_shows_the_relay_publishing_then_why_events_wait_when_sqs_is_gone() {
    let app =
        spawn_app_with_queue(&unique_queue("status"), &["--relay-probe-interval=100ms"]).await;
    let status: Value = app.get("/health/status").await.json().await.unwrap();
    assert_eq!(status["status"], "up", "{status}");
    assert_eq!(status["service"], "booking-service");
    assert_eq!(status["database"]["reachable"], true);
    let pools: Vec<&str> = status["database"]["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pools, ["http", "relay"]);
    assert_eq!(status["relay"]["configured"], true);
    assert_eq!(status["relay"]["running"], true);
    assert_eq!(status["relay"]["sqsReachable"], true);
    assert_eq!(status["relay"]["backlog"], 0);
    assert!(
        status["relay"]["lastPublishAt"].is_null(),
        "nothing sent yet"
    );
    assert_eq!(status["consumer"], serde_json::json!({"configured": false}));

    app.book_sample().await;
    eventually(
        Duration::from_secs(10),
        "the event is published",
        || async {
            let status: Value = app.get("/health/status").await.json().await.unwrap();
            status["relay"]["lastPublishAt"].is_string().then_some(())
        },
    )
    .await;

    // The queue is gone: SQS refuses every call, the relay probes.
    let client = outbox::sqs::client().await;
    client
        .delete_queue()
        .queue_url(app.queue_url.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    app.book_sample().await;
    let status = eventually(Duration::from_secs(15), "the outage shows", || async {
        let status: Value = app.get("/health/status").await.json().await.unwrap();
        (status["relay"]["sqsReachable"] == false).then_some(status)
    })
    .await;
    assert_eq!(status["status"], "degraded");
    assert_eq!(status["relay"]["backlog"], 1, "{status}");
    assert!(status["relay"]["oldestPendingAgeSeconds"].as_f64().unwrap() > 0.0);
    let problems = status["problems"].to_string();
    assert!(
        problems.contains("SQS is unavailable") && problems.contains("1 event(s)"),
        "{problems}"
    );
}

#[tokio::test]
async fn without_a_relay_the_status_says_it_is_not_configured() {
    let app = spawn_app().await;
    let status: Value = app.get("/health/status").await.json().await.unwrap();
    assert_eq!(status["status"], "up");
    assert_eq!(status["relay"], serde_json::json!({"configured": false}));
    assert_eq!(status["consumer"], serde_json::json!({"configured": false}));
}
