//! Every kind of bad input: the status, a problem+json body naming the field,
//! and nothing written.

use serde_json::{Value, json};

use crate::helpers::{Bookings, TestApp, assert_problem, sample_body, spawn_app};

fn with(field: &str, value: Value) -> Value {
    let mut body = sample_body();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = sample_body();
    body.as_object_mut().unwrap().remove(field);
    body
}

async fn assert_refused(app: &TestApp, body: &Value, field: &str) {
    let response = app.book(body).await;
    let problem = assert_problem(response, 422).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&field),
        "expected {field} in {problem} for {body}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains(field),
        "{problem}"
    );
}

#[tokio::test]
async fn invalid_fields_are_named_and_nothing_is_written() {
    let app = spawn_app().await;
    let cases = [
        (without("departureAirport"), "departureAirport"),
        (without("arrivalAirport"), "arrivalAirport"),
        (with("departureAirport", json!("   ")), "departureAirport"),
        (with("arrivalAirport", json!("")), "arrivalAirport"),
        (with("arrivalAirport", json!("PARIS")), "arrivalAirport"),
        (
            with("arrivalDateTime", json!("2023-09-01T07:00:00.000Z")),
            "arrivalDateTime",
        ),
        (
            with("arrivalDateTime", json!("2023-09-01T08:00:00.000Z")),
            "arrivalDateTime",
        ),
        (
            with("departureDateTime", json!("next tuesday")),
            "departureDateTime",
        ),
        (
            with("departureDateTime", json!("2023-13-45T08:00:00Z")),
            "departureDateTime",
        ),
        (without("arrivalDateTime"), "arrivalDateTime"),
        (with("departureAirport", json!(42)), "departureAirport"),
        (
            with("fare", json!({"amount": -100, "currency": "EUR"})),
            "fare.amount",
        ),
        (
            with("fare", json!({"amount": 0, "currency": "EUR"})),
            "fare.amount",
        ),
        (
            with(
                "fare",
                json!({"amount": 100_000_000_000i64, "currency": "EUR"}),
            ),
            "fare.amount",
        ),
        (
            with("fare", json!({"amount": 12.5, "currency": "EUR"})),
            "fare.amount",
        ),
        (
            with("fare", json!({"amount": 100, "currency": "euro"})),
            "fare.currency",
        ),
        (
            with("fare", json!({"amount": 100, "currency": "E1R"})),
            "fare.currency",
        ),
        (with("fare", json!({"amount": 100})), "fare.currency"),
        (
            with("departureAirport", json!("x".repeat(101))),
            "departureAirport",
        ),
        (
            with("passengerName", json!("y".repeat(201))),
            "passengerName",
        ),
        (with("passengerName", json!("")), "passengerName"),
    ];
    for (body, field) in &cases {
        assert_refused(&app, body, field).await;
    }
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    for raw in ["{\"departureAirport\": \"Paris\",", "not json", ""] {
        let response = app
            .client
            .post(format!("{}/api/flights", app.address))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON"),
            "{problem}"
        );
    }
    let problem = assert_problem(app.book(&json!([1, 2])).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "$");
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(format!("{}/api/flights", app.address))
            .body(serde_json::to_vec(&sample_body()).unwrap());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let problem = assert_problem(request.send().await.unwrap(), 415).await;
        assert_eq!(problem["errors"][0]["field"], "Content-Type");
    }
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app().await;
    let body = with("passengerName", json!("z".repeat(64 * 1024)));
    let problem = assert_problem(app.book(&body).await, 413).await;
    assert!(problem["detail"].is_string());
    assert_eq!(app.counts().await, (0, 0));
}
