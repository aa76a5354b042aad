//! What payment-service runs: the payments API, the consumer of the bookings
//! queue, the relay of its outbox to the payment events queue and the EMF
//! printer. How they run (binding, serving, shutdown) is `service_kit::app`.

use std::sync::{Arc, LazyLock};

use outbox::consumer::Consumer;
use outbox::metrics::{ConsumerMetrics, RelayMetrics};
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

/// [`MIGRATIONS`] as the slice `service_kit::db` takes.
pub fn migrators() -> [&'static Migrator; 2] {
    let [outbox, service] = &*MIGRATIONS;
    [outbox, service]
}

/// Validates the configuration (before touching the database: errors name the
/// variable), checks SQS, connects (creating the database and migrating unless
/// `RUN_MIGRATIONS=false`), and binds. Nothing runs until `App::run`.
pub async fn build(config: Config) -> anyhow::Result<App> {
    config.validate()?;
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
    if let Some((queue, _)) = &consumer {
        config
            .queue
            .check(queue, "the consumer keeps trying to receive")
            .await?;
    }
    if let Some((queue, _)) = &relay {
        let meanwhile =
            "payments are recorded and their events wait in the outbox; the relay keeps trying";
        config.payment_events.check(queue, meanwhile).await?;
    }
    let pool = service_kit::db::connect(&config.database, options.clone(), &migrators()).await?;
    // The parts' own connections: a burst of requests cannot make a receive
    // wait (and fail its messages), nor the relay's claims, nor the other way round.
    let consumer_pool = service_kit::db::part_pool(
        &config.database,
        &options,
        consumer.is_some(),
        config.consumer.pool_size(),
    )
    .await?;
    let relay_pool = service_kit::db::part_pool(
        &config.database,
        &options,
        relay.is_some(),
        config.relay.pool_size(),
    )
    .await?;

    let (relay_metrics, consumer_metrics) = (RelayMetrics::default(), ConsumerMetrics::default());
    let mut registry = Registry::default();
    consumer_metrics.register(&mut registry);
    relay_metrics.register(&mut registry);
    // The consumed queue, for the operator's DLQ redrive.
    let consumed_queue = consumer.as_ref().map(|(queue, _)| queue.clone());
    let consumer =
        consumer
            .zip(consumer_pool.clone())
            .map(|((queue, consumer_config), consumer_pool)| {
                let handler = PaymentHandler::new(config.payment_decline_above);
                Arc::new(
                    Consumer::new(consumer_pool, queue, handler, consumer_config)
                        .with_metrics(consumer_metrics),
                )
            });
    let relay = relay
        .zip(relay_pool.clone())
        .map(|((queue, relay_config), relay_pool)| {
            service_kit::observed::relay(relay_pool, queue, relay_config, relay_metrics.clone())
        });

    let parts = service_kit::status::Parts {
        pool: Some(pool.clone()),
        relay: relay
            .as_ref()
            .zip(relay_pool.clone())
            .map(|((_, state), relay_pool)| (relay_pool, Arc::clone(state), relay_metrics.clone())),
        consumer: consumer
            .as_ref()
            .zip(consumer_pool.clone())
            .map(|(consumer, consumer_pool)| (consumer_pool, consumer.status())),
    };
    let router = api::router(
        AppState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            relay_metrics,
            parts,
            queue: consumed_queue,
            admin: service_kit::admin::AdminToken::new(config.admin.admin_token.as_ref()),
        },
        &config.http,
    );
    Ok(App::bind(
        "payment-service",
        config.bind_addr,
        router,
        pool,
        config.http,
    )
    .await?
    .with_part_pools(relay_pool, consumer_pool)
    .with_consumer(consumer)
    .with_relay(relay)
    .with_emf(config.emf_namespace))
}
