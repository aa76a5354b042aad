//! Wiring: database, relay, HTTP server, and their shutdown.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use outbox::metrics::RelayMetrics;
use outbox::relay::Relay;
use outbox::sqs::{Queue, SqsPublisher};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::{Config, DEFAULT_DATABASE};
use crate::relay::{ObservedPublisher, RelayState};

/// The outbox crate's schema first, then `migrations/booking` (which moves what
/// older versions kept in `public` into it), both embedded in the binary.
pub static MIGRATIONS: LazyLock<[Migrator; 2]> = LazyLock::new(|| {
    [
        outbox::schema::migrator(),
        sqlx::migrate!("../../migrations/booking"),
    ]
});

/// [`MIGRATIONS`] as the slice `service_kit::db` takes.
pub fn migrators() -> [&'static Migrator; 2] {
    let [outbox, service] = &*MIGRATIONS;
    [outbox, service]
}

/// A built, not yet running, booking-service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    relay_pool: Option<PgPool>,
    relay: Option<Arc<Relay<ObservedPublisher<SqsPublisher>>>>,
    relay_state: Option<Arc<RelayState>>,
    emf_namespace: Option<String>,
    idempotency_key_ttl: Duration,
    http: service_kit::config::HttpArgs,
}

impl Application {
    /// Validates the configuration, connects (creating the database and
    /// migrating unless `RUN_MIGRATIONS=false`), builds the relay and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Settings that cannot work are refused before anything is connected.
        config.validate()?;
        let options = config.database.connect_options(DEFAULT_DATABASE)?;
        let queue_client = if config.relay.relay_enabled {
            // Validate the relay and queue settings before touching the database;
            // errors name the variable.
            let relay_config = config.relay.config()?;
            let client = outbox::sqs::client().await;
            let queue = Queue::new(client.clone(), config.queue.queue()?)?;
            service_kit::aws::require_region(&client)?;
            service_kit::aws::check_queue(
                &client,
                config.queue.sqs_queue_url.as_deref(),
                config.queue.sqs_queue_name.as_deref(),
                "bookings are accepted and their events wait in the outbox; the relay keeps trying",
            )
            .await?;
            Some((queue, relay_config))
        } else {
            None
        };
        let pool =
            service_kit::db::connect(&config.database, options.clone(), &migrators()).await?;
        // The relay's own connections: its LISTEN connection and its claims
        // never wait behind requests, and requests never wait behind them.
        let relay_pool = match queue_client {
            Some(_) => Some(
                service_kit::db::pool(&config.database, &options, config.relay_pool_size()).await?,
            ),
            None => None,
        };

        let relay_metrics = RelayMetrics::default();
        let mut registry = Registry::default();
        relay_metrics.register(&mut registry);
        let relay_state = queue_client
            .as_ref()
            .map(|_| Arc::new(RelayState::default()));
        let relay = queue_client
            .zip(relay_pool.clone())
            .zip(relay_state.clone())
            .map(|(((queue, relay_config), relay_pool), state)| {
                let publisher = ObservedPublisher::new(SqsPublisher::new(queue), state);
                Arc::new(
                    Relay::new(relay_pool, publisher, relay_config)
                        .with_metrics(relay_metrics.clone()),
                )
            });

        let state = AppState {
            pool: pool.clone(),
            registry: Arc::new(registry),
            relay_metrics,
            admin: service_kit::admin::AdminToken::new(config.admin.admin_token.as_ref()),
            relay_pool: relay_pool.clone(),
            relay_state: relay_state.clone(),
        };
        let router = api::router(state, &config.http);
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("Failed to bind BIND_ADDR {}", config.bind_addr))?;
        Ok(Self {
            listener,
            router,
            pool,
            relay_pool,
            relay,
            relay_state,
            emf_namespace: config.emf_namespace,
            idempotency_key_ttl: config.idempotency_key_ttl,
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

    /// The relay's pool, when the relay runs in this process.
    pub fn relay_pool(&self) -> Option<&PgPool> {
        self.relay_pool.as_ref()
    }

    /// The relay's id, when it runs in this process.
    pub fn relay_id(&self) -> Option<uuid::Uuid> {
        self.relay.as_ref().map(|r| r.id())
    }

    /// Serves until `shutdown`: in-flight requests finish, the relay completes
    /// its current batch and releases what it holds.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "booking-service listening");
        let relay = self.relay.zip(self.relay_state).map(|(relay, state)| {
            let running = state.run_guard();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _running = running;
                relay.run(shutdown).await;
            })
        });
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
        let server =
            service_kit::server::serve(self.listener, self.router, &self.http, shutdown.clone())
                .await
                .context("HTTP server failed");
        shutdown.cancel();
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        if let Some(emf) = emf {
            let _ = emf.await;
        }
        let _ = purge.await;
        if let Some(relay_pool) = &self.relay_pool {
            relay_pool.close().await;
        }
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
