use serde_json::Value;

use crate::helpers::{Bookings, assert_problem, spawn_app};

#[tokio::test]
async fn unpublished_events_are_listed_oldest_first_with_their_state() {
    let app = spawn_app().await;
    let first = app.book_sample().await;
    let second = app.book_sample().await;
    let third = app.book_sample().await;

    let page: Value = app.get("/api/outbox?limit=2").await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["aggregateId"], first.to_string());
    assert_eq!(items[1]["aggregateId"], second.to_string());
    assert_eq!(items[0]["state"], "PENDING");
    assert_eq!(items[0]["attempts"], 0);
    assert_eq!(items[0]["eventType"], "FlightBooked");

    let cursor = page["nextCursor"].as_str().unwrap();
    let next: Value = app
        .get(&format!("/api/outbox?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["items"][0]["aggregateId"], third.to_string());
    assert!(next["nextCursor"].is_null());

    assert_problem(app.get("/api/outbox?cursor=-3").await, 400).await;
    assert_problem(app.get("/api/outbox?limit=0").await, 400).await;
}

#[tokio::test]
async fn retrying_unknown_or_malformed_events_is_a_problem() {
    let app = spawn_app().await;
    let url = format!("{}/api/outbox/{}/retry", app.address, uuid::Uuid::new_v4());
    assert_problem(app.client.post(url).send().await.unwrap(), 404).await;
    let url = format!("{}/api/outbox/nope/retry", app.address);
    assert_problem(app.client.post(url).send().await.unwrap(), 400).await;
}
