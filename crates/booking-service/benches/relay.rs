//! Relay benchmark: prints figures next to their goals, asserts nothing
//! (machines are shared and noisy). Needs PostgreSQL and an SQS-compatible
//! server; `scripts/bench.sh` provides both and runs this with
//! `cargo bench -p booking-service --bench relay`. Default relay settings
//! throughout, unless RELAY_* variables say otherwise.
//!
//! 1. Drain: a pre-filled outbox of BENCH_EVENTS events, on a FIFO and on a
//!    standard queue, in three shapes: W1 one event per aggregate, W2 over 100
//!    aggregates, W3 over 10. Each next to the raw SendMessageBatch ceiling of the
//!    same server at the relay's concurrency, each followed by a read-back of the
//!    whole queue that counts missing and duplicate messages and order breaks.
//! 2. Replicas: W2 through one, then two booking-service processes; peak RSS.
//! 3. Follow-up latency: pairs of events of one aggregate at a steady rate;
//!    commit of the second → marked published (an upper bound on → accepted).
//! 4. Recovery: the queue deleted, then back; an event written 1 s later →
//!    published.
//! 5. Claim cost: `EXPLAIN (ANALYZE, BUFFERS)` of the claim at 10k and 1M
//!    pending events; then on a table of 300,000 published rows analyzed while
//!    the backlog was empty, with a 17,000-event backlog (stale statistics).

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use booking_service::startup::migrators;
use clap::Parser;
use futures::StreamExt;
use outbox::relay::Relay;
use outbox::sqs::{Queue, QueueRef, SqsPublisher};
use service_kit::messaging::RelayArgs;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 50_000)]
    events: usize,
    /// Pairs of events per second in the follow-up latency run.
    #[arg(long, env = "BENCH_RATE", default_value_t = 200)]
    rate: u64,
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Pending events of the large claim-cost measurement.
    #[arg(long, env = "BENCH_BIG", default_value_t = 1_000_000)]
    big: usize,
    #[command(flatten)]
    relay: RelayArgs,
    // `cargo bench` passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Fifo,
    Standard,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fifo => "FIFO",
            Kind::Standard => "standard",
        }
    }
}

async fn create_queue(client: &Client, prefix: &str, kind: Kind) -> anyhow::Result<String> {
    let suffix = if kind == Kind::Fifo { ".fifo" } else { "" };
    let name = format!("{prefix}-{}{suffix}", Uuid::new_v4().simple());
    Ok(outbox::sqs::create_queue(client, &name).await?)
}

fn queue(client: &Client, url: &str) -> anyhow::Result<Queue> {
    Ok(Queue::new(client.clone(), QueueRef::Url(url.to_owned()))?)
}

fn envelope(aggregate: Uuid, n: usize) -> serde_json::Value {
    serde_json::json!({
        "eventId": Uuid::now_v7(), "eventType": "FlightBooked", "eventVersion": 1,
        "aggregateType": "flight", "aggregateId": aggregate, "occurredAt": chrono::Utc::now(),
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "payload": {"n": n, "departureAirport": "Paris", "arrivalAirport": "London",
            "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z",
            "passengerName": format!("Passenger {n}"), "fare": {"amount": 9900, "currency": "EUR"}}
    })
}

/// The server's ceiling: SendMessageBatch of 10 at `concurrency`, nothing else.
async fn raw_ceiling(
    client: &Client,
    kind: Kind,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let url = create_queue(client, "bench-raw", kind).await?;
    let bodies: Vec<String> = (0..events)
        .map(|n| envelope(Uuid::now_v7(), n).to_string())
        .collect();
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(bodies.chunks(10))
        .map(|chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let id = Uuid::now_v7().to_string();
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body);
                    let entry = if kind == Kind::Fifo {
                        entry.message_group_id(&id).message_deduplication_id(&id)
                    } else {
                        entry
                    };
                    entry.build().expect("complete entry")
                })
                .collect();
            client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    client.delete_queue().queue_url(&url).send().await?;
    Ok(rate)
}

/// Writes `events` events over `aggregates` aggregates (aggregate by aggregate:
/// the order that was worst for the old per-row claim) in one transaction, so
/// the relay sees the whole backlog at once. Returns the aggregates.
async fn prefill(pool: &PgPool, events: usize, aggregates: usize) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..aggregates).map(|_| Uuid::now_v7()).collect();
    let per = events / aggregates;
    let all: Vec<serde_json::Value> = ids
        .iter()
        .flat_map(|id| (0..per).map(|n| envelope(*id, n)))
        .collect();
    let mut tx = pool.begin().await?;
    for chunk in all.chunks(10_000) {
        sqlx::query(
            "insert into outbox.event (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope, traceparent)
             select (e->>'eventId')::uuid, 'flight', (e->>'aggregateId')::uuid, 'FlightBooked', 1, e, e->>'traceparent'
             from unnest($1::jsonb[]) as e",
        )
        .bind(chunk)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ids)
}

/// Cheap enough to poll without slowing the relay down: lanes exist only while
/// events wait.
async fn drained(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("select not exists (select 1 from outbox.lane)")
            .fetch_one(pool)
            .await?,
    )
}

async fn wait_drained(pool: &PgPool) -> anyhow::Result<()> {
    while !drained(pool).await? {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// What a read-back of a whole queue found.
struct ReadBack {
    unique: usize,
    duplicates: usize,
    /// Messages that arrived after a later message of their aggregate.
    order_breaks: usize,
}

impl ReadBack {
    fn verdict(&self, expected: usize) -> String {
        format!(
            "read back {}/{expected}, {} missing, {} duplicates, {} order breaks",
            self.unique,
            expected.saturating_sub(self.unique),
            self.duplicates,
            self.order_breaks
        )
    }
}

/// Receives (and deletes) every message until `expected` distinct ones arrived
/// or the queue stays empty for 3 s. A FIFO group's next messages are only
/// handed out after the previous ones are deleted, and each receive is logged
/// before its delete, so the log is in delivery order per group.
async fn read_back(client: &Client, url: &str, expected: usize) -> anyhow::Result<ReadBack> {
    let log: Arc<Mutex<Vec<(String, u64, String)>>> = Arc::default();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, log, seen) =
                (client.clone(), url.to_owned(), log.clone(), seen.clone());
            tokio::spawn(async move {
                let mut empty_since = Instant::now();
                loop {
                    if seen.lock().unwrap().len() >= expected
                        || empty_since.elapsed() > Duration::from_secs(3)
                    {
                        return anyhow::Ok(());
                    }
                    let out = client
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .visibility_timeout(60)
                        .send()
                        .await?;
                    let messages = out.messages();
                    if messages.is_empty() {
                        continue;
                    }
                    empty_since = Instant::now();
                    let mut entries = Vec::new();
                    {
                        let mut log = log.lock().unwrap();
                        let mut seen = seen.lock().unwrap();
                        for (i, m) in messages.iter().enumerate() {
                            let body: serde_json::Value =
                                serde_json::from_str(m.body().unwrap_or("{}"))?;
                            let event = body["eventId"].as_str().unwrap_or_default().to_owned();
                            seen.insert(event.clone());
                            log.push((
                                body["aggregateId"].as_str().unwrap_or_default().to_owned(),
                                body["payload"]["n"].as_u64().unwrap_or_default(),
                                event,
                            ));
                            entries.push(
                                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                                    .id(i.to_string())
                                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                                    .build()?,
                            );
                        }
                    }
                    client
                        .delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await?;
                }
            })
        })
        .collect();
    for r in receivers {
        r.await??;
    }
    let log = log.lock().unwrap();
    let mut ids = HashSet::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut order_breaks = 0;
    for (aggregate, n, id) in log.iter() {
        if !ids.insert(id.as_str()) {
            continue;
        }
        if let Some(previous) = last.insert(aggregate, *n)
            && previous > *n
        {
            order_breaks += 1;
        }
    }
    Ok(ReadBack {
        unique: ids.len(),
        duplicates: log.len() - ids.len(),
        order_breaks,
    })
}

struct Bench {
    args: Args,
    client: Client,
}

impl Bench {
    fn relay(&self, pool: &PgPool, url: &str) -> anyhow::Result<Arc<Relay<SqsPublisher>>> {
        Ok(Arc::new(Relay::new(
            pool.clone(),
            SqsPublisher::new(queue(&self.client, url)?),
            self.args.relay.config()?,
        )))
    }

    /// Drains `events` over `aggregates` with an in-process relay; msg/s.
    async fn drain(&self, kind: Kind, aggregates: usize) -> anyhow::Result<(f64, ReadBack)> {
        let events = self.args.events;
        let (_, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
        let url = create_queue(&self.client, "bench-drain", kind).await?;
        let relay = self.relay(&pool, &url)?;
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(relay.run(shutdown.clone()));
        prefill(&pool, events, aggregates).await?;
        let started = Instant::now();
        wait_drained(&pool).await?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        shutdown.cancel();
        running.await?;
        let check = read_back(&self.client, &url, events).await?;
        self.client.delete_queue().queue_url(&url).send().await?;
        drop_database(pool).await?;
        Ok((rate, check))
    }

    /// W2 through `processes` booking-service processes; msg/s, read-back and
    /// the largest peak RSS (KiB).
    async fn replicas(&self, processes: usize) -> anyhow::Result<(f64, ReadBack, u64)> {
        let events = self.args.events;
        let (db_url, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
        let url = create_queue(&self.client, "bench-replicas", Kind::Fifo).await?;
        let mut children: Vec<Child> = (0..processes)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_booking-service"))
                    .env("DATABASE_URL", &db_url)
                    .env("RUN_MIGRATIONS", "false")
                    .env("BIND_ADDR", "127.0.0.1:0")
                    .env("SQS_QUEUE_URL", &url)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        // Started when each holds its LISTEN connection.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listening: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'listen%'",
            )
            .fetch_one(&pool)
            .await?;
            if listening >= processes as i64 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        prefill(&pool, events, 100).await?;
        let started = Instant::now();
        wait_drained(&pool).await?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        let rss = children
            .iter()
            .map(|c| peak_rss_kib(c.id()))
            .max()
            .unwrap_or_default();
        for child in &mut children {
            // SIGTERM: a graceful stop.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        let check = read_back(&self.client, &url, events).await?;
        self.client.delete_queue().queue_url(&url).send().await?;
        drop_database(pool).await?;
        Ok((rate, check, rss))
    }

    /// Pairs of events of one aggregate at a steady rate; p50/p99/max in ms of
    /// the second event's commit → published.
    async fn follow_up(&self) -> anyhow::Result<(f64, f64, f64, f64)> {
        let (_, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
        let url = create_queue(&self.client, "bench-follow", Kind::Fifo).await?;
        let relay = self.relay(&pool, &url)?;
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(relay.run(shutdown.clone()));
        let total = self.args.rate * self.args.seconds;
        let interval = Duration::from_secs_f64(1.0 / self.args.rate as f64);
        let started = Instant::now();
        let writes: Vec<_> = futures::stream::iter(0..total)
            .map(|i| {
                let pool = pool.clone();
                async move {
                    tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
                    let aggregate = Uuid::now_v7();
                    for (n, event_type) in ["FlightBooked", "FollowUp"].into_iter().enumerate() {
                        let mut tx = pool.begin().await?;
                        outbox::store::enqueue(
                            &mut tx,
                            outbox::NewEvent {
                                event_type,
                                event_version: 1,
                                aggregate_type: "flight",
                                aggregate_id: aggregate,
                                traceparent: None,
                                payload: serde_json::json!({"n": n}),
                            },
                        )
                        .await?;
                        tx.commit().await?;
                    }
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
        wait_drained(&pool).await?;
        shutdown.cancel();
        running.await?;
        let (p50, p99, max): (f64, f64, f64) = sqlx::query_as(
            "select percentile_cont(0.5) within group (order by ms), percentile_cont(0.99) within group (order by ms), max(ms)
             from (select extract(epoch from published_at - created_at)::float8 * 1000 as ms
                   from outbox.event where event_type = 'FollowUp') t",
        )
        .fetch_one(&pool)
        .await?;
        self.client.delete_queue().queue_url(&url).send().await?;
        drop_database(pool).await?;
        Ok((achieved, p50, p99, max))
    }

    /// The queue gone for a few seconds with events waiting, then back; an event
    /// written 1 s after it is back: ms from its commit to published, and ms to
    /// drain the backlog.
    async fn recovery(&self) -> anyhow::Result<(f64, f64)> {
        let (_, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
        let name = format!("bench-outage-{}.fifo", Uuid::new_v4().simple());
        let url = outbox::sqs::create_queue(&self.client, &name).await?;
        let relay = self.relay(&pool, &url)?;
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(relay.run(shutdown.clone()));
        self.client.delete_queue().queue_url(&url).send().await?;
        prefill(&pool, 2000, 2000).await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        outbox::sqs::create_queue(&self.client, &name).await?;
        let back = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let aggregate = prefill(&pool, 1, 1).await?[0];
        let written = Instant::now();
        loop {
            let published: bool = sqlx::query_scalar(
                "select coalesce(bool_and(published_at is not null), false) from outbox.event where aggregate_id = $1",
            )
            .bind(aggregate)
            .fetch_one(&pool)
            .await?;
            if published {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let latency = written.elapsed().as_secs_f64() * 1000.0;
        wait_drained(&pool).await?;
        let drain = back.elapsed().as_secs_f64() * 1000.0;
        shutdown.cancel();
        running.await?;
        self.client.delete_queue().queue_url(&url).send().await?;
        drop_database(pool).await?;
        Ok((latency, drain))
    }
}

/// Peak resident set size of a process, KiB (0 when unknown).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_default()
}

async fn drop_database(pool: PgPool) -> anyhow::Result<()> {
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    let admin = PgPool::connect(&format!(
        "{}/postgres",
        service_kit::testing::database_server()
    ))
    .await?;
    // The name comes from the server, not from input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists \"{name}\" with (force)"
    )))
    .execute(&admin)
    .await?;
    Ok(())
}

/// The claim statement under `EXPLAIN (ANALYZE, BUFFERS)` (rolled back, so
/// nothing stays claimed): the plan, and the median execution time of 5 runs.
async fn explain_claim(pool: &PgPool, relay: &RelayArgs) -> anyhow::Result<(String, f64)> {
    let mut times = Vec::new();
    let mut plan = String::new();
    for _ in 0..5 {
        let mut tx = pool.begin().await?;
        let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "explain (analyze, buffers, costs off) {}",
            outbox::store::CLAIM_SQL
        )))
        .bind(i64::from(relay.relay_claim_size))
        .bind(Uuid::new_v4())
        .bind(relay.relay_lease.as_secs_f64())
        .bind(i64::from(relay.relay_run_size))
        .bind(false)
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await?;
        let ms = lines
            .iter()
            .find_map(|l| l.strip_prefix("Execution Time: "))
            .and_then(|l| l.trim_end_matches(" ms").parse::<f64>().ok())
            .unwrap_or_default();
        times.push(ms);
        plan = lines.join("\n");
    }
    times.sort_by(f64::total_cmp);
    Ok((plan, times[times.len() / 2]))
}

fn indent(plan: &str) -> String {
    plan.lines().map(|l| format!("    {l}\n")).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.relay.config()?;
    let bench = Bench {
        client: outbox::sqs::client().await,
        args,
    };
    let args = &bench.args;
    let concurrency = usize::from(args.relay.relay_batches_in_flight);
    let events = args.events;
    println!(
        "relay benchmark: {events} events per workload; relay: {} claimers, {} lanes x {} events per claim, {} batches in flight, lease {:?}",
        args.relay.relay_workers,
        args.relay.relay_claim_size,
        args.relay.relay_run_size,
        concurrency,
        args.relay.relay_lease
    );

    // 1. Drain, both queue kinds, three shapes.
    let mut w1_fifo = 0.0;
    let mut w2_fifo = 0.0;
    for kind in [Kind::Fifo, Kind::Standard] {
        let before = raw_ceiling(&bench.client, kind, events, concurrency).await?;
        let mut rates = Vec::new();
        for (name, aggregates) in [("W1", events), ("W2", 100), ("W3", 10)] {
            let (rate, check) = bench.drain(kind, aggregates).await?;
            rates.push((name, aggregates, rate, check));
        }
        let after = raw_ceiling(&bench.client, kind, events, concurrency).await?;
        let ceiling = (before + after) / 2.0;
        println!(
            "{} queue: raw SendMessageBatch ceiling {ceiling:.0} msg/s at {concurrency} calls in flight (before {before:.0}, after {after:.0})",
            kind.name()
        );
        let w1 = rates[0].2;
        for (name, aggregates, rate, check) in &rates {
            let goal = match *name {
                "W1" => format!("ratio to ceiling {:.2} (goal >= 0.90)", rate / ceiling),
                "W2" => format!("{:.2} x W1 (goal >= 0.50)", rate / w1),
                _ => format!("{:.2} x W1 (goal >= 0.30)", rate / w1),
            };
            println!(
                "  {name} {:>6} aggregates: {rate:>7.0} msg/s   {goal}   {}",
                aggregates,
                check.verdict(events)
            );
        }
        if kind == Kind::Fifo {
            w1_fifo = w1;
            w2_fifo = rates[1].2;
        }
    }

    // 2. Replicas.
    let (one, one_check, one_rss) = bench.replicas(1).await?;
    let (two, two_check, two_rss) = bench.replicas(2).await?;
    println!(
        "replicas (W2, FIFO, booking-service processes): 1 process {one:.0} msg/s ({}); 2 processes {two:.0} msg/s ({}); ratio {:.2} (goal >= 1.0); in-process W2 was {w2_fifo:.0} msg/s",
        one_check.verdict(events),
        two_check.verdict(events),
        two / one
    );
    println!(
        "memory: peak RSS of booking-service {:.1} MiB (goal <= 64 MiB)",
        one_rss.max(two_rss) as f64 / 1024.0
    );
    let _ = w1_fifo;

    // 3. Follow-up latency.
    let (achieved, p50, p99, max) = bench.follow_up().await?;
    println!(
        "follow-up: {achieved:.0} pairs/s for {}s; second event commit -> published p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (goal p99 <= 50 ms)",
        args.seconds
    );

    // 4. Recovery.
    let (latency, drain) = bench.recovery().await?;
    println!(
        "recovery: queue gone 6 s with 2000 events waiting; an event written 1 s after it is back published in {latency:.0} ms (goal <= 1000 ms); backlog drained {drain:.0} ms after it was back"
    );

    // 5. Claim cost.
    let (_, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
    prefill(&pool, 10_000, 1000).await?;
    sqlx::query("vacuum analyze outbox.event, outbox.lane")
        .execute(&pool)
        .await?;
    let (plan_small, small) = explain_claim(&pool, &args.relay).await?;
    sqlx::query("truncate outbox.event, outbox.lane")
        .execute(&pool)
        .await?;
    let filled = Instant::now();
    for _ in 0..(args.big / 100_000).max(1) {
        prefill(&pool, 100_000.min(args.big), 1000).await?;
    }
    let fill_time = filled.elapsed();
    sqlx::query("vacuum analyze outbox.event, outbox.lane")
        .execute(&pool)
        .await?;
    let (plan_big, big) = explain_claim(&pool, &args.relay).await?;
    println!(
        "claim: {} lanes x {} events; 10k pending (1000 aggregates): {small:.2} ms; {} pending (1000 aggregates, written in {:.0?}): {big:.2} ms; ratio {:.2} (goal <= 2.0)",
        args.relay.relay_claim_size,
        args.relay.relay_run_size,
        args.big,
        fill_time,
        big / small
    );
    println!(
        "  plan at 10k:\n{}  plan at {}:\n{}",
        indent(&plan_small),
        args.big,
        indent(&plan_big)
    );
    drop_database(pool).await?;

    // Stale statistics: 300,000 published rows, analyzed with an empty backlog;
    // autovacuum off so the statistics stay stale; then 17,000 bookings wait.
    let (_, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
    for _ in 0..3 {
        prefill(&pool, 100_000, 100_000).await?;
    }
    sqlx::query("update outbox.event set published_at = now()")
        .execute(&pool)
        .await?;
    sqlx::query("delete from outbox.lane")
        .execute(&pool)
        .await?;
    sqlx::query("vacuum analyze outbox.event, outbox.lane")
        .execute(&pool)
        .await?;
    sqlx::query("alter table outbox.event set (autovacuum_enabled = false)")
        .execute(&pool)
        .await?;
    sqlx::query("alter table outbox.lane set (autovacuum_enabled = false)")
        .execute(&pool)
        .await?;
    prefill(&pool, 17_000, 17_000).await?;
    let (plan_stale, stale) = explain_claim(&pool, &args.relay).await?;
    let url = create_queue(&bench.client, "bench-stale", Kind::Fifo).await?;
    let relay = bench.relay(&pool, &url)?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    wait_drained(&pool).await?;
    let rate = 17_000.0 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await?;
    println!(
        "stale statistics: 300000 published rows analyzed before a 17000-event backlog: claim {stale:.2} ms; drained at {rate:.0} msg/s ({:.2} x W1 FIFO)",
        rate / w1_fifo
    );
    println!("  plan:\n{}", indent(&plan_stale));
    bench.client.delete_queue().queue_url(&url).send().await?;
    drop_database(pool).await?;
    Ok(())
}
