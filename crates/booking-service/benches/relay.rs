//! Relay benchmark: prints figures, asserts nothing (machines are shared and
//! noisy). Needs PostgreSQL and an SQS-compatible server; `scripts/bench.sh`
//! provides both and runs this with `cargo bench -p booking-service --bench relay`.
//!
//! 1. Drain rate: N events pre-filled in the outbox → time until the relay has
//!    them all on the queue, next to the raw ceiling of the same server (plain
//!    SendMessageBatch calls of 10 at the same concurrency), and their ratio.
//! 2. Latency: events committed at a steady rate while the relay runs;
//!    insert → marked-published p50/p99 (an upper bound on commit → accepted).
//! 3. Table size after a run with retention.
//!
//! Settings: BENCH_EVENTS (50000), BENCH_RATE (1000/s), BENCH_SECONDS (10),
//! RELAY_* variables as for the service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use booking_service::startup::MIGRATOR;
use clap::Parser;
use futures::StreamExt;
use outbox::metrics::RelayMetrics;
use outbox::relay::{Relay, RelayArgs};
use outbox::sqs::{Queue, QueueArgs, SqsPublisher};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 50_000)]
    events: usize,
    #[arg(long, env = "BENCH_RATE", default_value_t = 1000)]
    rate: u64,
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 10)]
    seconds: u64,
    #[command(flatten)]
    relay: RelayArgs,
    // `cargo bench` passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

fn envelope(i: usize) -> String {
    serde_json::json!({
        "eventId": Uuid::now_v7(), "eventType": "FlightBooked", "eventVersion": 1,
        "aggregateType": "flight", "aggregateId": Uuid::now_v7(), "occurredAt": chrono::Utc::now(),
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "payload": {"flightId": Uuid::now_v7(), "departureAirport": "Paris", "arrivalAirport": "London",
            "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z",
            "passengerName": format!("Passenger {i}"), "fare": {"amount": 9900, "currency": "EUR"},
            "bookedAt": chrono::Utc::now()}
    })
    .to_string()
}

async fn queue(client: &aws_sdk_sqs::Client, prefix: &str) -> anyhow::Result<(Queue, String)> {
    let url = outbox::sqs::create_queue(
        client,
        &format!("{prefix}-{}.fifo", Uuid::new_v4().simple()),
    )
    .await?;
    let queue = Queue::new(
        client.clone(),
        &QueueArgs {
            sqs_queue_url: Some(url.clone()),
            sqs_queue_name: None,
        },
    )?;
    Ok((queue, url))
}

/// The server's ceiling: SendMessageBatch of 10 at `concurrency`, nothing else.
async fn raw_ceiling(
    client: &aws_sdk_sqs::Client,
    url: &str,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let bodies: Vec<String> = (0..events).map(envelope).collect();
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(bodies.chunks(10))
        .map(|chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let id = Uuid::now_v7().to_string();
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .message_group_id(&id)
                        .message_deduplication_id(&id)
                        .build()
                        .expect("complete entry")
                })
                .collect();
            client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

async fn prefill(pool: &PgPool, events: usize) -> anyhow::Result<()> {
    // One statement: the bench measures the relay, not the writers.
    let bodies: Vec<String> = (0..events).map(envelope).collect();
    for chunk in bodies.chunks(5000) {
        sqlx::query(
            "insert into outbox (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope, traceparent)
             select (e->>'eventId')::uuid, 'flight', (e->>'aggregateId')::uuid, 'FlightBooked', 1, e, e->>'traceparent'
             from unnest($1::jsonb[]) as e",
        )
        .bind(chunk.iter().map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Cheap enough to poll without slowing the relay down (a count would not be).
async fn drained(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("select not exists (select 1 from outbox where published_at is null)")
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = outbox::sqs::client().await;
    let concurrency = usize::from(args.relay.relay_batches_in_flight);
    println!(
        "relay benchmark: {} events; relay: {} workers, claim {}, {} batches in flight",
        args.events, args.relay.relay_workers, args.relay.relay_claim_size, concurrency
    );

    // 1. Drain rate vs. the raw ceiling, measured in the same run (before and
    //    after the drain: this machine is shared, so one reading can be off).
    let (_, raw_url) = queue(&client, "bench-raw").await?;
    let raw_before = raw_ceiling(&client, &raw_url, args.events, concurrency).await?;
    let (_, pool) = service_kit::testing::fresh_database("bench", &MIGRATOR).await?;
    prefill(&pool, args.events).await?;
    // A backlog that waited through an outage has been seen by autovacuum; a
    // freshly bulk-inserted one has not (first reads would pay for hint bits).
    sqlx::query("vacuum analyze outbox").execute(&pool).await?;
    let (relay_queue, _) = queue(&client, "bench-relay").await?;
    let relay = Arc::new(Relay::new(
        pool.clone(),
        SqsPublisher::new(relay_queue.clone()),
        args.relay.clone(),
        RelayMetrics::default(),
    ));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(Arc::clone(&relay).run(shutdown.clone()));
    while !drained(&pool).await? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = args.events as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await?;
    let (_, raw_url) = queue(&client, "bench-raw").await?;
    let raw_after = raw_ceiling(&client, &raw_url, args.events, concurrency).await?;
    let raw = (raw_before + raw_after) / 2.0;
    println!(
        "drain:   relay {drain:>7.0} msg/s   raw SendMessageBatch ceiling {raw:>7.0} msg/s (before {raw_before:.0}, after {raw_after:.0})   ratio {:.2} (goal >= 0.90)",
        drain / raw
    );

    // 2. Latency at a steady rate, with retention on.
    sqlx::query("truncate outbox").execute(&pool).await?;
    let relay_args = RelayArgs {
        outbox_retention: Duration::from_secs(2),
        ..args.relay.clone()
    };
    let relay = Arc::new(Relay::new(
        pool.clone(),
        SqsPublisher::new(relay_queue),
        relay_args,
        RelayMetrics::default(),
    ));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(Arc::clone(&relay).run(shutdown.clone()));
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let writes: Vec<_> = futures::stream::iter(0..total)
        .map(|i| {
            let pool = pool.clone();
            async move {
                // Pace: event i is due at i × interval.
                let due = started + interval.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let mut tx = pool.begin().await?;
                outbox::store::enqueue(
                    &mut tx,
                    outbox::NewEvent {
                        event_type: "FlightBooked",
                        event_version: 1,
                        aggregate_type: "flight",
                        aggregate_id: Uuid::now_v7(),
                        traceparent: None,
                        payload: serde_json::json!({"n": i}),
                    },
                )
                .await?;
                tx.commit().await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for w in writes {
        w?;
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    while !drained(&pool).await? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (p50, p99, max): (f64, f64, f64) = sqlx::query_as(
        "select percentile_cont(0.5) within group (order by ms), percentile_cont(0.99) within group (order by ms), max(ms)
         from (select extract(epoch from published_at - created_at)::float8 * 1000 as ms from outbox) t",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "latency: {achieved:.0} events/s offered for {}s; insert -> published p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (goal p99 <= 50 ms)",
        args.seconds
    );

    // 3. Retention keeps the table small.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&pool)
        .await?;
    shutdown.cancel();
    running.await?;
    println!(
        "table:   {rows} outbox rows left {}s after the run with OUTBOX_RETENTION=2s ({total} written)",
        5
    );
    Ok(())
}
