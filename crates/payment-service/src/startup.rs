//! Wiring: database, consumer, HTTP server, and their shutdown.

use std::sync::{Arc, LazyLock};

use anyhow::Context;
use outbox::consumer::Consumer;
use outbox::metrics::ConsumerMetrics;
use outbox::sqs::Queue;
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

/// [`MIGRATIONS`] as the slice `service_kit::db` takes.
pub fn migrators() -> [&'static Migrator; 2] {
    let [outbox, service] = &*MIGRATIONS;
    [outbox, service]
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    consumer_pool: Option<PgPool>,
    consumer: Option<Arc<Consumer<PaymentHandler>>>,
    http: service_kit::config::HttpArgs,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Settings that cannot work are refused before anything is connected.
        config.validate()?;
        let options = config.database.connect_options(DEFAULT_DATABASE)?;
        let queue = if config.consumer.consumer_enabled {
            // Validated before touching the database; errors name the variable.
            let consumer_config = config.consumer.config()?;
            let client = outbox::sqs::client().await;
            let queue = Queue::new(client.clone(), config.queue.queue()?)?;
            service_kit::aws::require_region(&client)?;
            service_kit::aws::check_queue(
                &client,
                config.queue.sqs_queue_url.as_deref(),
                config.queue.sqs_queue_name.as_deref(),
                "the consumer keeps trying to receive",
            )
            .await?;
            Some((queue, consumer_config))
        } else {
            None
        };
        let pool =
            service_kit::db::connect(&config.database, options.clone(), &migrators()).await?;
        // The consumer's own connections: a burst of requests cannot make a
        // receive wait (and fail its messages), nor the other way round.
        let consumer_pool = match queue {
            Some(_) => Some(
                service_kit::db::pool(&config.database, &options, config.consumer_pool_size())
                    .await?,
            ),
            None => None,
        };

        let metrics = ConsumerMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let consumer_queue = queue.as_ref().map(|(queue, _)| queue.clone());
        let consumer =
            queue
                .zip(consumer_pool.clone())
                .map(|((queue, consumer_config), consumer_pool)| {
                    let handler = PaymentHandler::new(config.payment_decline_above);
                    Arc::new(
                        Consumer::new(consumer_pool, queue, handler, consumer_config)
                            .with_metrics(metrics),
                    )
                });
        let router = api::router(
            AppState {
                pool: pool.clone(),
                registry: Arc::new(registry),
                consumer: consumer.as_ref().map(|c| c.status()),
                consumer_pool: consumer_pool.clone(),
                queue: consumer_queue,
                admin: service_kit::admin::AdminToken::new(config.admin.admin_token.as_ref()),
            },
            &config.http,
        );
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("Failed to bind BIND_ADDR {}", config.bind_addr))?;
        Ok(Self {
            listener,
            router,
            pool,
            consumer_pool,
            consumer,
            http: config.http,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// The HTTP handlers' pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The consumer's pool, when the consumer runs in this process.
    pub fn consumer_pool(&self) -> Option<&PgPool> {
        self.consumer_pool.as_ref()
    }

    /// Serves until `shutdown`: the consumer stops receiving, finishes and
    /// deletes what it holds; in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "payment-service listening");
        let consumer = self.consumer.map(|c| tokio::spawn(c.run(shutdown.clone())));
        let server =
            service_kit::server::serve(self.listener, self.router, &self.http, shutdown.clone())
                .await
                .context("HTTP server failed");
        shutdown.cancel();
        if let Some(consumer) = consumer {
            let _ = consumer.await;
        }
        if let Some(consumer_pool) = &self.consumer_pool {
            consumer_pool.close().await;
        }
        self.pool.close().await;
        tracing::info!("payment-service stopped");
        server
    }
}
