//! Both services end to end: booked through booking-service's API, relayed to
//! the real local SQS server, paid by payment-service.

use std::time::Duration;

use booking_service::config::Config as BookingConfig;

use clap::Parser;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// Names SQS would refuse in a raw message body (U+FFFE, U+FFFF), astral-plane
/// and combining characters, and the longest name the API takes in 4-byte
/// characters: every one is booked, relayed and paid, none parked.
#[tokio::test]
async fn any_name_the_api_accepts_is_relayed_and_paid() {
    let (queue_url, _dlq) = queue_with_dlq(5, 30).await;
    let booking_db = service_kit::testing::new_database_url("t");
    let booking = booking_service::startup::build(BookingConfig::parse_from([
        "booking-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={booking_db}"),
        format!("--sqs-queue-url={queue_url}"),
        "--max-connections=5".to_owned(),
        "--consumer-enabled=false".to_owned(),
    ]))
    .await
    .expect("booking-service builds");
    let booking = TestApp::spawn(booking, booking_db, Some(queue_url.clone()));
    let (booking_address, booking_pool) = (booking.address.clone(), booking.pool.clone());
    let payments = spawn_app(&new_database_url(), &queue_url, &[]).await;

    let names = [
        "Ann\u{FFFE}Lee".to_owned(),
        "Bo\u{FFFF}".to_owned(),
        "Zoë 🛫 Ng".to_owned(),
        "\u{0301}".to_owned(),
        "🧳".repeat(200),
    ];
    let client = reqwest::Client::new();
    let mut flights = Vec::new();
    for name in &names {
        let response = client
            .post(format!("{booking_address}/api/flights"))
            .json(&json!({
                "departureAirport": "Paris", "arrivalAirport": "London",
                "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z",
                "passengerName": name, "fare": {"amount": 9900, "currency": "EUR"}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{name:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["passengerName"], name.as_str());
        flights.push(body["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    for flight in &flights {
        eventually(Duration::from_secs(30), "the booking is paid", || async {
            payment_of(&payments, *flight).await
        })
        .await;
    }
    let parked: i64 = sqlx::query_scalar(
        "select count(*) from outbox.event where parked_at is not null or attempts > 0",
    )
    .fetch_one(&booking_pool)
    .await
    .unwrap();
    assert_eq!(parked, 0, "no event was refused");

    // Longer than the API takes: refused before anything is written.
    let response = client
        .post(format!("{booking_address}/api/flights"))
        .json(&json!({
            "departureAirport": "Paris", "arrivalAirport": "London",
            "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z",
            "passengerName": "x".repeat(2000), "fare": {"amount": 9900, "currency": "EUR"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let events: i64 = sqlx::query_scalar("select count(*) from outbox.event")
        .fetch_one(&booking_pool)
        .await
        .unwrap();
    assert_eq!(events, names.len() as i64);

    booking.stop().await;
    payments.stop().await;
}
