//! Start-up: what cannot work is refused, naming the setting; an SQS that does
//! not answer is an outage, not a misconfiguration.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use booking_service::config::Config;

use clap::Parser;

use crate::helpers::*;

/// Builds the application from `args` (after the binary name) and returns
/// its start-up error, with the cause chain.
async fn refusal(args: &[&str]) -> String {
    // The consumer of payment events is not what these tests are about.
    let consumer_off = (!args
        .iter()
        .any(|a| a.contains("consumer") || a.contains("payment-events")))
    .then_some("--consumer-enabled=false");
    let args = std::iter::once("booking-service")
        .chain(consumer_off)
        .chain(args.iter().copied());
    match booking_service::startup::build(Config::parse_from(args)).await {
        Ok(_) => panic!("the application started"),
        Err(e) => format!("{e:#}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn zero_durations_are_refused_naming_the_variable() {
    for (arg, variable) in [
        ("--statement-timeout=0s", "DATABASE_STATEMENT_TIMEOUT"),
        ("--lock-timeout=0ms", "DATABASE_LOCK_TIMEOUT"),
        (
            "--idle-in-transaction-timeout=0s",
            "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
        ),
        ("--acquire-timeout=0s", "DATABASE_ACQUIRE_TIMEOUT"),
        ("--idempotency-key-ttl=0s", "IDEMPOTENCY_KEY_TTL"),
        ("--relay-lease=0s", "RELAY_LEASE"),
        ("--relay-send-timeout=0s", "RELAY_SEND_TIMEOUT"),
        ("--relay-probe-interval=0s", "RELAY_PROBE_INTERVAL"),
        ("--relay-backoff-base=0s", "RELAY_BACKOFF_BASE"),
        ("--outbox-retention=0s", "OUTBOX_RETENTION"),
        ("--relay-poll-interval=0s", "RELAY_POLL_INTERVAL"),
    ] {
        // Nothing is connected before the settings are checked: these point nowhere.
        let said = refusal(&[
            "--database-url=postgres://nobody@127.0.0.1:1/none",
            "--sqs-queue-url=http://127.0.0.1:1/000000000000/none.fifo",
            arg,
        ])
        .await;
        assert!(said.contains(variable), "{arg}: {said}");
    }
    let said = refusal(&[
        "--database-url=postgres://nobody@127.0.0.1:1/none",
        "--sqs-queue-url=http://127.0.0.1:1/000000000000/none.fifo",
        "--relay-lease=6s",
        "--relay-send-timeout=5s",
    ])
    .await;
    assert!(said.contains("RELAY_LEASE"), "{said}");
}

#[tokio::test]
async fn an_empty_database_with_migrations_off_is_refused_naming_run_migrations() {
    let url = service_kit::testing::new_database_url("t");
    service_kit::db::ensure_database(&url.parse().unwrap())
        .await
        .unwrap();
    let said = refusal(&[
        &format!("--database-url={url}"),
        "--relay-enabled=false",
        "--run-migrations=false",
    ])
    .await;
    assert!(said.contains("RUN_MIGRATIONS=false"), "{said}");
    assert!(said.contains("lacks"), "{said}");
    assert!(said.contains("outbox._sqlx_migrations"), "{said}");
}

#[tokio::test]
async fn a_migrated_database_with_migrations_off_starts() {
    let first = spawn_app().await;
    let replica = spawn_replica(&first.database_url, None, &["--run-migrations=false"]).await;
    replica.book_sample().await;
}

#[tokio::test]
async fn a_queue_sqs_says_does_not_exist_is_refused_naming_the_setting() {
    let client = outbox::sqs::client().await;
    let gone = outbox::sqs::create_queue(&client, &unique_queue("gone"))
        .await
        .unwrap();
    client.delete_queue().queue_url(&gone).send().await.unwrap();
    let database = format!(
        "--database-url={}",
        service_kit::testing::new_database_url("t")
    );

    let said = refusal(&[&database, &format!("--sqs-queue-url={gone}")]).await;
    assert!(said.contains("SQS_QUEUE_URL"), "{said}");
    assert!(said.contains("does not exist"), "{said}");

    let said = refusal(&[&database, "--sqs-queue-name=never-created.fifo"]).await;
    assert!(said.contains("SQS_QUEUE_NAME"), "{said}");
}

#[tokio::test]
async fn without_an_aws_region_the_service_refuses_to_start_naming_aws_region() {
    let out = Command::new(env!("CARGO_BIN_EXE_booking-service"))
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("CONSUMER_ENABLED", "false")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("SQS_QUEUE_NAME", "bookings.fifo")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("AWS_REGION"), "{said}");
}

#[tokio::test]
async fn an_sqs_that_does_not_answer_is_an_outage_the_service_starts_books_and_says_so_once() {
    // Nothing listens there: connection refused, at start and on every retry.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_booking-service"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("CONSUMER_ENABLED", "false")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", service_kit::testing::new_database_url("t"))
        .env("AWS_ENDPOINT_URL_SQS", &dead)
        .env(
            "SQS_QUEUE_URL",
            format!("{dead}/000000000000/bookings.fifo"),
        )
        .env("RELAY_PROBE_INTERVAL", "100ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "the service is ready", || async {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        ready.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    for _ in 0..3 {
        let booked = client
            .post(format!("{base}/api/flights"))
            .json(&sample_body())
            .send()
            .await
            .unwrap();
        assert_eq!(booked.status(), 201);
    }
    // Many probes (every 100 ms) fail meanwhile.
    eventually(
        Duration::from_secs(10),
        "the relay finds the outage",
        || async {
            let seen = lines.lock().unwrap().clone();
            seen.iter()
                .any(|l| l.contains("SQS unavailable"))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();

    let lines = lines.lock().unwrap();
    let count = |text: &str| lines.iter().filter(|l| l.contains(text)).count();
    assert_eq!(count("SQS does not answer at start"), 1, "{lines:#?}");
    assert_eq!(count("SQS unavailable"), 1, "once per outage: {lines:#?}");
    assert_eq!(count("\"level\":\"ERROR\""), 0, "{lines:#?}");
    // A line logged while handling a request carries the request's id.
    let booked = lines
        .iter()
        .find(|l| l.contains("flight booked"))
        .expect("a booking line");
    assert!(booked.contains("\"request_id\":\""), "{booked}");
}
