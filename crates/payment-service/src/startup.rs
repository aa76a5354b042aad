//! What payment-service runs: the payments API, the consumer of the bookings
//! queue, the relay of its outbox to the payment events queue and the EMF
//! printer. How they run (binding, shutdown) is `service_kit::app`.

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
use crate::handler::PaymentHandler;

/// The outbox crate's schema first, then `migrations/payment` (which moves what
/// older versions kept in `public` into it), both embedded in the binary.
pub static MIGRATIONS: LazyLock<[Migrator; 2]> = LazyLock::new(|| {
    [
        outbox::schema::migrator(),
        sqlx::migrate!("../../migrations/payment"),
    ]
});

/// Validates the configuration (before touching the database: errors name the
/// variable), connects (creating the database and migrating unless
/// `RUN_MIGRATIONS=false`), and binds. Nothing runs until `App::run`.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let options = config.database.connect_options(DEFAULT_DATABASE)?;
    let consumer = config
        .consumer
        .part(config.queue.queue(), "FlightBooked and FlightCancelled")
        .await?;
    let relay = config
        .relay
        .part(
            config.payment_events.queue(),
            "PaymentApproved, PaymentDeclined and PaymentRefunded",
        )
        .await?;
    let pool = service_kit::db::connect(&config.database, options, &*MIGRATIONS).await?;

    let (relay_metrics, consumer_metrics) = (RelayMetrics::default(), ConsumerMetrics::default());
    let mut registry = Registry::default();
    consumer_metrics.register(&mut registry);
    relay_metrics.register(&mut registry);
    // The consumed queue, for the operator's DLQ redrive.
    let consumed_queue = consumer.as_ref().map(|(queue, _)| queue.clone());
    let consumer = consumer.map(|(queue, consumer_config)| {
        let handler = PaymentHandler::new(config.payment_decline_above);
        Arc::new(
            Consumer::new(pool.clone(), queue, handler, consumer_config)
                .with_metrics(consumer_metrics),
        )
    });
    let relay = relay.map(|(queue, relay_config)| {
        Arc::new(
            Relay::new(pool.clone(), SqsPublisher::new(queue), relay_config)
                .with_metrics(relay_metrics.clone()),
        )
    });

    let router = api::router(AppState {
        pool: pool.clone(),
        registry: Arc::new(registry),
        relay_metrics,
        consumer: consumer.as_ref().map(|c| c.status()),
        queue: consumed_queue,
        admin: service_kit::admin::AdminToken::new(config.admin.admin_token.as_ref()),
    });
    Ok(App::bind("payment-service", config.bind_addr, router, pool)
        .await?
        .with_consumer(consumer)
        .with_relay(relay)
        .with_emf(config.emf_namespace))
}
