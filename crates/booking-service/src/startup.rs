//! Wiring: database, relay, consumer, HTTP server, and their shutdown.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use outbox::consumer::Consumer;
use outbox::metrics::{ConsumerMetrics, RelayMetrics};
use outbox::relay::Relay;
use outbox::sqs::{Queue, SqsPublisher};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// A built, not yet running, booking-service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    relay: Option<Arc<Relay<SqsPublisher>>>,
    consumer: Option<Arc<Consumer<PaymentEventsHandler>>>,
    emf_namespace: Option<String>,
    idempotency_key_ttl: Duration,
}

impl Application {
    /// Validates the configuration, connects (creating the database and
    /// migrating unless `RUN_MIGRATIONS=false`), builds the relay and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let options = config.database.connect_options(DEFAULT_DATABASE)?;
        let queue_client = if config.relay.relay_enabled {
            // Validate the relay and queue settings before touching the database;
            // errors name the variable.
            let relay_config = config.relay.config()?;
            let client = outbox::sqs::client().await;
            let queue = config.queue.queue().map_err(|e| {
                e.needed_by(
                    "the relay (it publishes FlightBooked and FlightCancelled there)",
                    "RELAY_ENABLED",
                )
            })?;
            Some((Queue::new(client, queue)?, relay_config))
        } else {
            None
        };
        let consumer_queue = if config.consumer.consumer_enabled {
            let consumer_config = config.consumer.config()?;
            let client = outbox::sqs::client().await;
            Some((
                Queue::new(
                    client,
                    config.payment_events.queue().map_err(|e| {
                        e.needed_by(
                            "the consumer (it reads the payment events there)",
                            "CONSUMER_ENABLED",
                        )
                    })?,
                )?,
                consumer_config,
            ))
        } else {
            None
        };
        let pool = service_kit::db::connect(&config.database, options, &*MIGRATIONS).await?;

        let relay_metrics = RelayMetrics::default();
        let consumer_metrics = ConsumerMetrics::default();
        let mut registry = Registry::default();
        relay_metrics.register(&mut registry);
        consumer_metrics.register(&mut registry);
        let consumer = consumer_queue.map(|(queue, consumer_config)| {
            Arc::new(
                Consumer::new(pool.clone(), queue, PaymentEventsHandler, consumer_config)
                    .with_metrics(consumer_metrics),
            )
        });
        let relay = queue_client.map(|(queue, relay_config)| {
            Arc::new(
                Relay::new(pool.clone(), SqsPublisher::new(queue), relay_config)
                    .with_metrics(relay_metrics.clone()),
            )
        });

        let state = AppState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            relay_metrics,
        };
        let router = api::router(state, config.max_body_bytes as usize);
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("Failed to bind BIND_ADDR {}", config.bind_addr))?;
        Ok(Self {
            listener,
            router,
            pool,
            relay,
            consumer,
            emf_namespace: config.emf_namespace,
            idempotency_key_ttl: config.idempotency_key_ttl,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The relay's id, when it runs in this process.
    pub fn relay_id(&self) -> Option<uuid::Uuid> {
        self.relay.as_ref().map(|r| r.id())
    }

    /// Serves until `shutdown`: in-flight requests finish, the relay completes
    /// its current batch and releases what it holds.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "booking-service listening");
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(shutdown.clone())));
        let consumer = self
            .consumer
            .map(|consumer| tokio::spawn(consumer.run(shutdown.clone())));
        let emf = self.emf_namespace.map(|namespace| {
            tokio::spawn(outbox::emf::emit_emf(
                self.pool.clone(),
                namespace,
                "booking-service".into(),
                Duration::from_secs(10),
                shutdown.clone(),
            ))
        });
        let purge = tokio::spawn(purge_idempotency_keys(
            self.pool.clone(),
            self.idempotency_key_ttl,
            shutdown.clone(),
        ));
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        if let Some(consumer) = consumer {
            let _ = consumer.await;
        }
        if let Some(emf) = emf {
            let _ = emf.await;
        }
        let _ = purge.await;
        self.pool.close().await;
        tracing::info!("booking-service stopped");
        server
    }
}

/// Forgets idempotency keys after their TTL, 1,000 at a time.
async fn purge_idempotency_keys(pool: PgPool, ttl: Duration, shutdown: CancellationToken) {
    let every = (ttl / 24).clamp(Duration::from_secs(1), Duration::from_secs(600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        loop {
            match crate::flights::purge_idempotency_keys(&pool, ttl, 1000).await {
                Ok(1000) if !shutdown.is_cancelled() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "idempotency key purge failed; trying again later");
                    break;
                }
            }
        }
    }
}
