//! What booking-service runs: the booking API, the relay of its outbox to the
//! bookings queue, the consumer of the payment events queue, the retention of
//! idempotency keys and the EMF printer. How they run (binding, shutdown) is
//! `service_kit::app`.

use std::sync::{Arc, LazyLock};

use outbox::consumer::Consumer;
use outbox::metrics::{ConsumerMetrics, RelayMetrics};
use outbox::relay::Relay;
use outbox::sqs::SqsPublisher;
use prometheus_client::registry::Registry;
use service_kit::app::App;
use sqlx::migrate::Migrator;

use crate::api::{self, AppState};
use crate::config::{Config, DEFAULT_DATABASE};
use crate::payment_events::PaymentEventsHandler;

/// The outbox crate's schema first, then `migrations/booking` (which moves what
/// older versions kept in `public` into it), both embedded in the binary.
pub static MIGRATIONS: LazyLock<[Migrator; 2]> = LazyLock::new(|| {
    [
        outbox::schema::migrator(),
        sqlx::migrate!("../../migrations/booking"),
    ]
});

/// Validates the configuration (before touching the database: errors name the
/// variable), connects (creating the database and migrating unless
/// `RUN_MIGRATIONS=false`), and binds. Nothing runs until `App::run`.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let options = config.database.connect_options(DEFAULT_DATABASE)?;
    let relay = config
        .relay
        .part(config.queue.queue(), "FlightBooked and FlightCancelled")
        .await?;
    let consumer = config
        .consumer
        .part(
            config.payment_events.queue(),
            "PaymentApproved, PaymentDeclined and PaymentRefunded",
        )
        .await?;
    let pool = service_kit::db::connect(&config.database, options, &*MIGRATIONS).await?;

    let (relay_metrics, consumer_metrics) = (RelayMetrics::default(), ConsumerMetrics::default());
    let mut registry = Registry::default();
    relay_metrics.register(&mut registry);
    consumer_metrics.register(&mut registry);
    let relay = relay.map(|(queue, relay_config)| {
        Arc::new(
            Relay::new(pool.clone(), SqsPublisher::new(queue), relay_config)
                .with_metrics(relay_metrics.clone()),
        )
    });
    let consumer = consumer.map(|(queue, consumer_config)| {
        Arc::new(
            Consumer::new(pool.clone(), queue, PaymentEventsHandler, consumer_config)
                .with_metrics(consumer_metrics),
        )
    });

    let router = api::router(
        AppState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            relay_metrics,
        },
        config.max_body_bytes as usize,
    );
    let ttl = config.idempotency_key_ttl;
    let purge_pool = pool.clone();
    Ok(App::bind("booking-service", config.bind_addr, router, pool)
        .await?
        .with_relay(relay)
        .with_consumer(consumer)
        .with_emf(config.emf_namespace)
        .with_retention("idempotency keys", ttl, move || {
            let pool = purge_pool.clone();
            async move {
                crate::flights::purge_idempotency_keys(&pool, ttl, outbox::retention::BATCH).await
            }
        }))
}
