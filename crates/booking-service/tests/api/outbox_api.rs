use serde_json::Value;

use crate::helpers::{Bookings, assert_problem, spawn_app};

#[tokio::test]
async fn unpublished_events_are_listed_oldest_first_with_their_state() {
    let app = spawn_app().await;
    let first = app.book_sample().await;
    let second = app.book_sample().await;
    let third = app.book_sample().await;

    let page: Value = app
        .get_as_operator("/api/outbox?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["aggregateId"], first.to_string());
    assert_eq!(items[1]["aggregateId"], second.to_string());
    assert_eq!(items[0]["state"], "PENDING");
    assert_eq!(items[0]["attempts"], 0);
    assert_eq!(items[0]["eventType"], "FlightBooked");

    let cursor = page["nextCursor"].as_str().unwrap();
    let next: Value = app
        .get_as_operator(&format!("/api/outbox?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["items"][0]["aggregateId"], third.to_string());
    assert!(next["nextCursor"].is_null());

    assert_problem(app.get_as_operator("/api/outbox?cursor=-3").await, 400).await;
    assert_problem(app.get_as_operator("/api/outbox?limit=0").await, 400).await;
}

#[tokio::test]
async fn retrying_unknown_or_malformed_events_is_a_problem() {
    let app = spawn_app().await;
    let unknown = format!("/api/outbox/{}/retry", uuid::Uuid::new_v4());
    assert_problem(app.post_as_operator(&unknown).await, 404).await;
    assert_problem(app.post_as_operator("/api/outbox/nope/retry").await, 400).await;
}

#[tokio::test]
async fn the_outbox_listing_and_retry_are_operator_actions() {
    let app = spawn_app().await;
    app.book_sample().await;
    let page: Value = app
        .get_as_operator("/api/outbox")
        .await
        .json()
        .await
        .unwrap();
    let event_id = page["items"][0]["eventId"].as_str().unwrap().to_owned();
    let retry = format!("{}/api/outbox/{event_id}/retry", app.address);

    let listing = app.get("/api/outbox").await;
    assert!(listing.headers().contains_key("www-authenticate"));
    assert_problem(listing, 401).await;
    assert_problem(app.client.post(&retry).send().await.unwrap(), 401).await;
    let wrong = app.client.post(&retry).bearer_auth("not-the-token");
    assert_problem(wrong.send().await.unwrap(), 403).await;
    let page: Value = app
        .get_as_operator("/api/outbox")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["attempts"], 0, "nothing was retried");
}

#[tokio::test]
async fn retrying_one_event_again_within_a_second_is_refused_with_429() {
    let app = spawn_app().await;
    app.book_sample().await;
    let page: Value = app
        .get_as_operator("/api/outbox")
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/api/outbox/{}/retry",
        page["items"][0]["eventId"].as_str().unwrap()
    );

    assert_eq!(app.post_as_operator(&path).await.status(), 200);
    let again = app.post_as_operator(&path).await;
    assert_eq!(again.headers()["retry-after"], "1");
    let problem = assert_problem(again, 429).await;
    assert_eq!(problem["type"], "/problems/too-many-requests");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.post_as_operator(&path).await.status(),
        200,
        "a second later it is allowed"
    );
}
