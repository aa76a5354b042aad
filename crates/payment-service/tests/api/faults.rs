//! Faults that must never cost a booking: the consumer's own database down for
//! longer than the queue's redrive threshold, and a DLQ drained back by an operator.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

async fn dlq_depth(dlq: &str) -> i64 {
    queue_depth(dlq).await
}

#[tokio::test]
async fn a_consumer_database_outage_longer_than_the_redrive_threshold_dead_letters_nothing() {
    // Threshold: 2 receives x 1 s visibility. The outage lasts several times that.
    let (queue, dlq) = queue_with_dlq(2, 1).await;
    let database = new_database_url();
    let app = spawn_app(&database, &queue, &["--consumer-visibility-timeout=1s"]).await;
    let before = flight_booked(9900);
    send_event(&queue, &before).await;
    eventually(Duration::from_secs(10), "paid before the outage", || {
        payment_of(&app, before.aggregate_id)
    })
    .await;

    set_database_available(&database, false).await;
    let events: Vec<_> = (0..20).map(|i| flight_booked(1000 + i)).collect();
    for event in &events {
        send_event(&queue, event).await;
    }
    let status: Value = eventually(Duration::from_secs(15), "the breaker opens", || async {
        let status: Value = app.get("/health/status").await.json().await.unwrap();
        (status["consumer"]["breaker"] == "open").then_some(status)
    })
    .await;
    assert_eq!(status["status"], "degraded");
    assert_eq!(status["service"], "payment-service");
    assert_eq!(status["database"]["reachable"], false);
    assert_eq!(status["consumer"]["configured"], true);
    assert_eq!(status["consumer"]["maxReceiveCount"], 2);
    assert_eq!(status["relay"], serde_json::json!({"configured": false}));
    assert!(
        status["problems"].to_string().contains("breaker is open"),
        "{status}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("consumer_breaker_open 1"), "{metrics}");
    // Many redrive thresholds long: nothing may reach the DLQ.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(dlq_depth(&dlq).await, 0, "no valid message dead-lettered");

    set_database_available(&database, true).await;
    for event in &events {
        eventually(
            Duration::from_secs(30),
            "paid once the database is back",
            || payment_of(&app, event.aggregate_id),
        )
        .await;
    }
    assert_eq!(payments(&app).await, 21, "each paid exactly once");
    assert_eq!(dlq_depth(&dlq).await, 0);
    let status: Value = app.get("/health/status").await.json().await.unwrap();
    assert_eq!(status["consumer"]["breaker"], "closed");
    assert_eq!(status["consumer"]["running"], true);
    assert!(status["consumer"]["lastReceiveAt"].is_string(), "{status}");
    assert_eq!(status["status"], "up");
    assert_eq!(status["problems"], serde_json::json!([]));
}

#[tokio::test]
async fn an_operator_moves_the_dlq_back_and_each_redriven_event_is_paid_once() {
    let (queue, dlq) = queue_with_dlq(3, 1).await;
    let database = new_database_url();
    let app = spawn_app(&database, &queue, &["--admin-token=s3cret"]).await;
    // One event already paid, then found in the DLQ too (a duplicate), and two
    // that were dead-lettered while their fix was being deployed.
    let paid = flight_booked(9900);
    send_event(&queue, &paid).await;
    eventually(Duration::from_secs(10), "paid", || {
        payment_of(&app, paid.aggregate_id)
    })
    .await;
    let stranded = [flight_booked(1200), flight_booked(1300)];
    for event in stranded.iter().chain([&paid]) {
        send_event(&dlq, event).await;
    }
    let redrive = |path: &'static str, token: Option<&'static str>| {
        let mut request = app.client.post(format!("{}{path}", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let refused = redrive("/api/admin/dlq/redrive", None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let wrong = redrive("/api/admin/dlq/redrive", Some("guess"))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(dlq_depth(&dlq).await, 3, "nothing moved without the token");

    let dry: Value = redrive("/api/admin/dlq/redrive?dryRun=true", Some("s3cret"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["waiting"], 3);
    assert_eq!(dry["moved"], 0);
    assert_eq!(dlq_depth(&dlq).await, 3, "a dry run moves nothing");

    let moved: Value = redrive("/api/admin/dlq/redrive", Some("s3cret"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(moved["moved"], 3);
    for event in &stranded {
        eventually(Duration::from_secs(15), "a redriven event is paid", || {
            payment_of(&app, event.aggregate_id)
        })
        .await;
    }
    eventually(Duration::from_secs(10), "the queue is drained", || async {
        (queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        payments(&app).await,
        3,
        "the duplicate was not charged again"
    );
    assert_eq!(dlq_depth(&dlq).await, 0);
}

#[tokio::test]
async fn without_an_admin_token_operator_actions_are_refused() {
    let (queue, _dlq) = queue_with_dlq(3, 1).await;
    let app = spawn_app(&new_database_url(), &queue, &["--admin-token="]).await;
    let redrive = app
        .client
        .post(format!("{}/api/admin/dlq/redrive", app.address))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    let list = app.get("/api/payments").await;
    for response in [redrive, list] {
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/admin-disabled");
        assert!(
            problem["detail"].as_str().unwrap().contains("ADMIN_TOKEN"),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn listing_payments_is_an_operator_action_and_reading_one_is_open() {
    let (queue, _dlq) = queue_with_dlq(3, 5).await;
    let app = spawn_app(&new_database_url(), &queue, &[]).await;
    let event = flight_booked(9900);
    send_event(&queue, &event).await;
    eventually(Duration::from_secs(10), "paid", || {
        payment_of(&app, event.aggregate_id)
    })
    .await;

    let anonymous = app.get("/api/payments").await;
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let wrong = app
        .client
        .get(format!("{}/api/payments", app.address))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let page: Value = app
        .get_as_operator("/api/payments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["flightId"], event.aggregate_id.to_string());

    let spec: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["paths"]["/api/payments"]["get"]["security"][0]["admin_token"],
        serde_json::json!([])
    );
    assert!(
        spec["paths"]["/api/payments/{flightId}"]["get"]["security"].is_null(),
        "reading one payment stays open"
    );
}
