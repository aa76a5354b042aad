//! Settings: a part that is switched on needs its queue, and the service says
//! which setting is missing before it touches anything else.

use clap::Parser;
use payment_service::config::Config;

/// The error `startup::build` stops with, as `main` logs it.
async fn refusal(args: &[&str]) -> String {
    // No database answers here: the settings must be refused before it is tried.
    let mut all = vec![
        "payment-service",
        "--bind-addr=127.0.0.1:0",
        "--database-url=postgres://postgres@127.0.0.1:1/payment",
    ];
    all.extend_from_slice(args);
    match payment_service::startup::build(Config::parse_from(all)).await {
        Ok(_) => panic!("{args:?}: started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_part_switched_on_without_its_queue_refuses_to_start_naming_the_setting() {
    let consumer = refusal(&["--relay-enabled=false"]).await;
    assert!(
        consumer.starts_with("SQS_QUEUE_URL: no queue configured")
            && consumer.contains("CONSUMER_ENABLED=false"),
        "{consumer}"
    );
    let relay = refusal(&["--consumer-enabled=false", "--sqs-queue-name=bookings.fifo"]).await;
    assert!(
        relay.starts_with("PAYMENT_EVENTS_QUEUE_URL: no queue configured")
            && relay.contains("RELAY_ENABLED=false"),
        "{relay}"
    );
    let bad = refusal(&[
        "--sqs-queue-name=bookings.fifo",
        "--payment-events-queue-url=payment-events.fifo",
    ])
    .await;
    assert!(bad.starts_with("PAYMENT_EVENTS_QUEUE_URL:"), "{bad}");
    // Both queues given (on an SQS that does not answer: an outage, not a
    // refusal): it gets as far as the database.
    let database = refusal(&[
        "--sqs-queue-url=http://127.0.0.1:1/000000000000/bookings.fifo",
        "--payment-events-queue-url=http://127.0.0.1:1/000000000000/payment-events.fifo",
    ])
    .await;
    assert!(database.contains("127.0.0.1:1"), "{database}");
}

#[tokio::test]
async fn with_both_parts_switched_off_no_queue_is_needed() {
    let database_url = service_kit::testing::new_database_url("t");
    let app = payment_service::startup::build(Config::parse_from([
        "payment-service",
        "--bind-addr=127.0.0.1:0",
        &format!("--database-url={database_url}"),
        "--relay-enabled=false",
        "--consumer-enabled=false",
    ]))
    .await;
    assert!(app.is_ok(), "{:#}", app.err().unwrap());
}
