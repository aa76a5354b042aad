//! Consumer benchmark: prints figures, asserts nothing. Needs PostgreSQL and an
//! SQS-compatible server; `scripts/bench.sh` provides both.
//!
//! Payments/s from a pre-filled queue of N FlightBooked events (inbox + payment
//! per message, batched deletes), next to the same server's raw receive+delete
//! ceiling (same receive loops, no handling) measured in the same run.
//!
//! Settings: BENCH_EVENTS (20000), CONSUMER_* variables as for the service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use clap::Parser;
use contracts::{FlightBookedV1, Money};
use futures::StreamExt;
use outbox::consumer::Consumer;
use outbox::envelope::EventEnvelope;
use outbox::sqs::{Queue, QueueRef};
use outbox::{Handled, Handler, HandlerError, Poison};
use payment_service::handler::PaymentHandler;
use payment_service::startup::migrators;
use service_kit::messaging::ConsumerArgs;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "BENCH_EVENTS", default_value_t = 20_000)]
    events: usize,
    #[command(flatten)]
    consumer: ConsumerArgs,
    #[arg(long, hide = true)]
    bench: bool,
}

fn event() -> EventEnvelope {
    let flight_id = Uuid::now_v7();
    let payload = FlightBookedV1 {
        flight_id,
        departure_airport: "Paris".into(),
        arrival_airport: "London".into(),
        departure_date_time: chrono::Utc::now(),
        arrival_date_time: chrono::Utc::now() + chrono::Duration::minutes(75),
        passenger_name: Some("Ada Lovelace".into()),
        fare: Money {
            amount: 9900,
            currency: "EUR".into(),
        },
        booked_at: chrono::Utc::now(),
    };
    EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: "FlightBooked".into(),
        event_version: 1,
        aggregate_type: "flight".into(),
        aggregate_id: flight_id,
        sequence: Some(1),
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        payload: serde_json::to_value(payload).expect("serialisable"),
    }
}

async fn filled_queue(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    events: usize,
) -> anyhow::Result<Queue> {
    let url = outbox::sqs::create_queue(
        client,
        &format!("{prefix}-{}.fifo", Uuid::new_v4().simple()),
    )
    .await?;
    let envelopes: Vec<EventEnvelope> = (0..events).map(|_| event()).collect();
    let results: Vec<_> = futures::stream::iter(envelopes.chunks(10))
        .map(|chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(serde_json::to_string(e).expect("serialisable"))
                        .message_group_id(e.aggregate_id.to_string())
                        .message_deduplication_id(e.event_id.to_string())
                        .build()
                        .expect("complete entry")
                })
                .collect();
            client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(Queue::new(client.clone(), QueueRef::Url(url))?)
}

/// Applies nothing: the consumer loop's own ceiling (receive, inbox, commit, delete).
struct Discard;

impl Handler for Discard {
    type Event = ();

    fn decode(&self, _envelope: &EventEnvelope) -> Result<(), Poison> {
        Ok(())
    }

    async fn apply(
        &self,
        _tx: &mut sqlx::PgConnection,
        _envelope: &EventEnvelope,
        _event: &(),
    ) -> Result<Handled, HandlerError> {
        Ok(Handled::Processed)
    }
}

/// Plain receive + delete loops, as any SQS client would do them.
async fn raw_ceiling(queue: &Queue, events: usize, loops: usize) -> anyhow::Result<f64> {
    let url = queue.url().await?;
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..loops)
        .map(|_| {
            let client = queue.client().clone();
            let url = url.clone();
            let received = Arc::clone(&received);
            tokio::spawn(async move {
                while received.load(std::sync::atomic::Ordering::Relaxed) < events {
                    let output = client
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .send()
                        .await?;
                    let messages = output.messages.unwrap_or_default();
                    if messages.is_empty() {
                        continue;
                    }
                    let entries = messages
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(m.receipt_handle().unwrap_or_default())
                                .build()
                                .expect("complete entry")
                        })
                        .collect();
                    client
                        .delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await?;
                    received.fetch_add(messages.len(), std::sync::atomic::Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loops = usize::from(args.consumer.consumer_concurrency);
    let consumer_args = ConsumerArgs {
        consumer_wait_time: Duration::from_secs(1),
        ..args.consumer.clone()
    };
    println!(
        "consumer benchmark: {} events; {} receive loops of up to {} messages",
        args.events, loops, consumer_args.consumer_max_messages
    );
    let client = outbox::sqs::client().await;

    let raw_queue = filled_queue(&client, "bench-raw-recv", args.events).await?;
    let raw = raw_ceiling(&raw_queue, args.events, loops).await?;

    let (_, pool) = service_kit::testing::fresh_database("bench", &migrators()).await?;
    let queue = filled_queue(&client, "bench-pay", args.events).await?;
    let consumer = Arc::new(Consumer::new(
        pool.clone(),
        queue,
        PaymentHandler::new(500_000),
        consumer_args.config()?,
    ));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(Arc::clone(&consumer).run(shutdown.clone()));
    loop {
        let paid: i64 = sqlx::query_scalar("select count(*) from payment")
            .fetch_one(&pool)
            .await?;
        if paid as usize >= args.events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = args.events as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await?;

    let loop_queue = filled_queue(&client, "bench-discard", args.events).await?;
    let discard = Arc::new(Consumer::new(
        pool.clone(),
        loop_queue.clone(),
        Discard,
        consumer_args.config()?,
    ));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(Arc::clone(&discard).run(shutdown.clone()));
    let url = loop_queue.url().await?;
    loop {
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        if attributes.values().all(|v| v == "0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let loop_rate = args.events as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await?;

    println!(
        "payments: {rate:>8.0} payments/s   raw receive+delete ceiling {raw:>8.0} msg/s   ratio {:.2} (goal >= 0.80)",
        rate / raw
    );
    println!(
        "loop:     {loop_rate:>8.0} msg/s through the consumer loop with a no-op handler (ratio {:.2} to the ceiling)",
        loop_rate / raw
    );
    Ok(())
}
