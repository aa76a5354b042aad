//! End-to-end benchmark, both directions: booking-service and payment-service
//! running in this process with their default settings (each with its relay and
//! its consumer), through both FIFO queues of the SQS server. Prints figures,
//! asserts nothing (machines are shared and noisy). `scripts/bench.sh` provides
//! PostgreSQL and the SQS server and runs this with
//! `cargo bench -p booking-service --bench saga`.
//!
//! 1. Sustained: BENCH_SAGA_BOOKINGS bookings posted over HTTP by
//!    BENCH_SAGA_CLIENTS clients as fast as they are answered; bookings/s until
//!    every one is CONFIRMED (both ways), next to bookings/s until every one is
//!    paid (one way), measured in the same run.
//! 2. Latency at a steady rate: BENCH_SAGA_RATE bookings/s for
//!    BENCH_SAGA_SECONDS; booked → paid (one way: the payment's `processedAt`
//!    minus the booking's `createdAt`) next to booked → CONFIRMED (both ways: the
//!    booking's `statusChangedAt` minus its `createdAt`), p50 / p99 / max. Both
//!    databases live on one PostgreSQL server, so both differences read one clock.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use service_kit::testing::{TestApp, eventually, new_database_url, queue_with_dlq};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Bookings of the sustained run.
    #[arg(long, env = "BENCH_SAGA_BOOKINGS", default_value_t = 2_000)]
    bookings: usize,
    /// Concurrent HTTP clients of the sustained run.
    #[arg(long, env = "BENCH_SAGA_CLIENTS", default_value_t = 32)]
    clients: usize,
    /// Bookings per second of the latency run.
    #[arg(long, env = "BENCH_SAGA_RATE", default_value_t = 100)]
    rate: u64,
    #[arg(long, env = "BENCH_SAGA_SECONDS", default_value_t = 10)]
    seconds: u64,
    // `cargo bench` passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Both services, each relaying to one queue and consuming the other.
async fn start() -> anyhow::Result<(TestApp, TestApp)> {
    let (bookings, _) = queue_with_dlq("bench-bookings", 5, 30).await;
    let (payment_events, _) = queue_with_dlq("bench-payment-events", 5, 30).await;
    let queues = [
        format!("--sqs-queue-url={bookings}"),
        format!("--payment-events-queue-url={payment_events}"),
    ];
    let booking_db = new_database_url("bench_booking");
    let mut args = vec![
        "booking-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={booking_db}"),
        "--max-connections=20".to_owned(),
    ];
    args.extend(queues.iter().cloned());
    let booking =
        booking_service::startup::build(booking_service::config::Config::parse_from(args)).await?;
    let booking = TestApp::spawn(booking, booking_db, Some(bookings));
    let payment_db = new_database_url("bench_payment");
    let mut args = vec![
        "payment-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!("--database-url={payment_db}"),
        "--max-connections=20".to_owned(),
    ];
    args.extend(queues.iter().cloned());
    let payment =
        payment_service::startup::build(payment_service::config::Config::parse_from(args)).await?;
    let payment = TestApp::spawn(payment, payment_db, Some(payment_events));
    Ok((booking, payment))
}

/// Books one flight (the standard fare, approved); returns its id.
async fn book(app: &TestApp) -> Uuid {
    let response = app
        .post(
            "/api/flights",
            Some(&json!({
                "departureAirport": "Paris", "arrivalAirport": "London",
                "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z"
            })),
        )
        .await;
    assert_eq!(response.status(), 201, "booking refused");
    let flight: Value = response.json().await.expect("a booking");
    flight["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an id")
}

async fn count(pool: &PgPool, sql: &'static str, ids: &[Uuid]) -> i64 {
    sqlx::query_scalar(sql)
        .bind(ids)
        .fetch_one(pool)
        .await
        .expect("a count")
}

/// Waits until `sql` (a count over `ids`) reaches `ids.len()`; returns when.
async fn all(pool: &PgPool, sql: &'static str, ids: &[Uuid], what: &str) -> Instant {
    eventually(Duration::from_secs(600), what, || async {
        (count(pool, sql, ids).await == ids.len() as i64).then_some(())
    })
    .await;
    Instant::now()
}

const PAID: &str = "select count(*) from payment where flight_id = any($1)";
const CONFIRMED: &str = "select count(*) from flight where id = any($1) and status = 'CONFIRMED'";

/// (p50, p99, max) in ms of `sql` over `ids`.
async fn latency(pool: &PgPool, sql: &'static str, ids: &[Uuid]) -> (f64, f64, f64) {
    sqlx::query_as(sql)
        .bind(ids)
        .fetch_one(pool)
        .await
        .expect("percentiles")
}

const BOOKED_TO_PAID: &str = "select percentile_cont(0.5) within group (order by ms), percentile_cont(0.99) within group (order by ms), max(ms)
     from (select extract(epoch from processed_at - booked_at)::float8 * 1000 as ms from payment where flight_id = any($1)) l";
const BOOKED_TO_CONFIRMED: &str = "select percentile_cont(0.5) within group (order by ms), percentile_cont(0.99) within group (order by ms), max(ms)
     from (select extract(epoch from status_changed_at - created_at)::float8 * 1000 as ms from flight where id = any($1)) l";

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    service_kit::telemetry::init(service_kit::config::LogFormat::Pretty);
    let (booking, payment) = start().await?;
    println!(
        "End to end, both directions: booking-service and payment-service in this process, default settings"
    );

    // 1. Sustained.
    let started = Instant::now();
    let ids: Vec<Uuid> = futures::stream::iter(0..args.bookings)
        .map(|_| book(&booking))
        .buffer_unordered(args.clients)
        .collect()
        .await;
    let posted = started.elapsed();
    let paid = all(&payment.pool, PAID, &ids, "every booking paid").await - started;
    let confirmed = all(&booking.pool, CONFIRMED, &ids, "every booking confirmed").await - started;
    println!(
        "sustained: {} bookings posted by {} clients in {:.1} s ({:.0}/s)",
        ids.len(),
        args.clients,
        posted.as_secs_f64(),
        rate(ids.len(), posted)
    );
    println!(
        "  one way,   booked -> paid:      all paid in {:.1} s: {:.0} bookings/s",
        paid.as_secs_f64(),
        rate(ids.len(), paid)
    );
    println!(
        "  both ways, booked -> CONFIRMED: all confirmed in {:.1} s: {:.0} bookings/s",
        confirmed.as_secs_f64(),
        rate(ids.len(), confirmed)
    );

    // 2. Latency at a steady rate: one booking every 1/rate s, whatever the answers do.
    let total = (args.rate * args.seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    let mut sent = Vec::with_capacity(total);
    for _ in 0..total {
        ticker.tick().await;
        let address = booking.address.clone();
        let client = booking.client.clone();
        sent.push(tokio::spawn(async move {
            let response = client
                .post(format!("{address}/api/flights"))
                .json(&json!({
                    "departureAirport": "Paris", "arrivalAirport": "London",
                    "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z"
                }))
                .send()
                .await
                .expect("booking-service answers");
            let flight: Value = response.json().await.expect("a booking");
            flight["id"].as_str().and_then(|id| id.parse::<Uuid>().ok())
        }));
    }
    let mut ids = Vec::with_capacity(total);
    for task in sent {
        ids.extend(task.await?);
    }
    all(&booking.pool, CONFIRMED, &ids, "every booking confirmed").await;
    let one_way = latency(&payment.pool, BOOKED_TO_PAID, &ids).await;
    let both_ways = latency(&booking.pool, BOOKED_TO_CONFIRMED, &ids).await;
    println!(
        "steady {} bookings/s for {} s ({} bookings):",
        args.rate,
        args.seconds,
        ids.len()
    );
    println!(
        "  one way,   booked -> paid:      p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        one_way.0, one_way.1, one_way.2
    );
    println!(
        "  both ways, booked -> CONFIRMED: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        both_ways.0, both_ways.1, both_ways.2
    );
    booking.stop().await;
    payment.stop().await;
    Ok(())
}
