//! Wiring: database, consumer, relay, HTTP server, and their shutdown.

use std::sync::{Arc, LazyLock};

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
use crate::handler::PaymentHandler;

/// The outbox crate's schema first, then `migrations/payment` (which moves what
/// older versions kept in `public` into it), both embedded in the binary.
pub static MIGRATIONS: LazyLock<[Migrator; 2]> = LazyLock::new(|| {
    [
        outbox::schema::migrator(),
        sqlx::migrate!("../../migrations/payment"),
    ]
});

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    consumer: Option<Arc<Consumer<PaymentHandler>>>,
    relay: Option<Arc<Relay<SqsPublisher>>>,
    emf_namespace: Option<String>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let options = config.database.connect_options(DEFAULT_DATABASE)?;
        let queue = if config.consumer.consumer_enabled {
            // Validated before touching the database; errors name the variable.
            let consumer_config = config.consumer.config()?;
            let queue = config.queue.queue().map_err(|e| {
                e.needed_by(
                    "the consumer (it reads FlightBooked and FlightCancelled there)",
                    "CONSUMER_ENABLED",
                )
            })?;
            let queue = Queue::new(outbox::sqs::client().await, queue)?;
            Some((queue, consumer_config))
        } else {
            None
        };
        let relay_queue = if config.relay.relay_enabled {
            let relay_config = config.relay.config()?;
            let queue = config.payment_events.queue().map_err(|e| {
                e.needed_by(
                    "the relay (it publishes the payment events there)",
                    "RELAY_ENABLED",
                )
            })?;
            let queue = Queue::new(outbox::sqs::client().await, queue)?;
            Some((queue, relay_config))
        } else {
            None
        };
        let pool = service_kit::db::connect(&config.database, options, &*MIGRATIONS).await?;

        let metrics = ConsumerMetrics::default();
        let relay_metrics = RelayMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        relay_metrics.register(&mut registry);
        let relay = relay_queue.map(|(queue, relay_config)| {
            Arc::new(
                Relay::new(pool.clone(), SqsPublisher::new(queue), relay_config)
                    .with_metrics(relay_metrics.clone()),
            )
        });
        let consumer_queue = queue.as_ref().map(|(queue, _)| queue.clone());
        let consumer = queue.map(|(queue, consumer_config)| {
            let handler = PaymentHandler::new(config.payment_decline_above);
            Arc::new(
                Consumer::new(pool.clone(), queue, handler, consumer_config).with_metrics(metrics),
            )
        });
        let router = api::router(AppState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            relay_metrics,
            consumer: consumer.as_ref().map(|c| c.status()),
            queue: consumer_queue,
            admin: service_kit::admin::AdminToken::new(config.admin.admin_token.as_ref()),
        });
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("Failed to bind BIND_ADDR {}", config.bind_addr))?;
        Ok(Self {
            listener,
            router,
            pool,
            consumer,
            relay,
            emf_namespace: config.emf_namespace,
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

    /// Serves until `shutdown`: the consumer stops receiving, finishes and
    /// deletes what it holds; in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "payment-service listening");
        let consumer = self.consumer.map(|c| tokio::spawn(c.run(shutdown.clone())));
        let relay = self.relay.map(|r| tokio::spawn(r.run(shutdown.clone())));
        let emf = self.emf_namespace.map(|namespace| {
            tokio::spawn(outbox::emf::emit_emf(
                self.pool.clone(),
                namespace,
                "payment-service".into(),
                std::time::Duration::from_secs(10),
                shutdown.clone(),
            ))
        });
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        if let Some(consumer) = consumer {
            let _ = consumer.await;
        }
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        if let Some(emf) = emf {
            let _ = emf.await;
        }
        self.pool.close().await;
        tracing::info!("payment-service stopped");
        server
    }
}
