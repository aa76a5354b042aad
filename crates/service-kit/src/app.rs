//! Running a service: its HTTP API and its background parts (the relay, the
//! consumer, retention loops, the EMF printer) under one shutdown story. Each
//! service's `startup.rs` says *what* it runs; this says *how*.
//!
//! ```no_run
//! # async fn start(router: axum::Router, pool: sqlx::PgPool, http: service_kit::config::HttpArgs) -> anyhow::Result<()> {
//! use service_kit::app::App;
//! let app = App::bind("example-service", "127.0.0.1:0".parse()?, router, pool, http)
//!     .await?
//!     .with_part("heartbeat", |shutdown| async move { shutdown.cancelled().await });
//! app.run(service_kit::shutdown::on_signal()).await
//! # }
//! ```
//!
//! Shutdown: the token (SIGTERM, ctrl-c, a test) stops the HTTP server from
//! accepting; requests in flight finish; the same token tells every part to
//! finish its current batch (never mid-transaction); `run` waits for each part,
//! closes the pools and returns the server's result.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use outbox::consumer::Consumer;
use outbox::relay::Relay;
use sqlx::PgPool;

use crate::config::HttpArgs;
use crate::observed::RelayState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type PartFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A background part: started by [`App::run`] with the shutdown token, it
/// returns soon after the token is cancelled.
struct Part {
    name: &'static str,
    start: Box<dyn FnOnce(CancellationToken) -> PartFuture + Send>,
}

/// A built, not yet running, service: its listener (bound, so the port is
/// known), its router, its pool and its background parts.
pub struct App {
    name: &'static str,
    listener: TcpListener,
    router: Router,
    pool: PgPool,
    http: HttpArgs,
    /// The relay's and the consumer's own pools, closed after the parts stopped.
    relay_pool: Option<PgPool>,
    consumer_pool: Option<PgPool>,
    parts: Vec<Part>,
}

impl App {
    /// Binds `addr` for `router`, served with the `http` timeouts and limits
    /// ([`crate::server`]; the error names `BIND_ADDR`). Nothing runs until
    /// [`App::run`].
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        router: Router,
        pool: PgPool,
        http: HttpArgs,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("Failed to bind BIND_ADDR {addr}"))?;
        Ok(Self {
            name,
            listener,
            router,
            pool,
            http,
            relay_pool: None,
            consumer_pool: None,
            parts: Vec::new(),
        })
    }

    /// The relay's and the consumer's own pools (when they run), closed once
    /// the parts have stopped.
    pub fn with_part_pools(mut self, relay: Option<PgPool>, consumer: Option<PgPool>) -> Self {
        self.relay_pool = relay;
        self.consumer_pool = consumer;
        self
    }

    /// The relay's pool, when the relay runs.
    pub fn relay_pool(&self) -> Option<&PgPool> {
        self.relay_pool.as_ref()
    }

    /// The consumer's pool, when the consumer runs.
    pub fn consumer_pool(&self) -> Option<&PgPool> {
        self.consumer_pool.as_ref()
    }

    /// Adds a background part named `name` (for the logs): `start` is called by
    /// [`App::run`] with the shutdown token, and its future must end soon after
    /// the token is cancelled.
    pub fn with_part<F, Fut>(mut self, name: &'static str, start: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.parts.push(Part {
            name,
            start: Box::new(move |shutdown| Box::pin(start(shutdown))),
        });
        self
    }

    /// The outbox relay, when it runs in this process; `state` says whether it
    /// runs (for `/health/status`), whatever ends its task.
    pub fn with_relay<P: outbox::Publisher>(
        self,
        relay: Option<(Arc<Relay<P>>, Arc<RelayState>)>,
    ) -> Self {
        match relay {
            Some((relay, state)) => self.with_part("relay", move |shutdown| async move {
                let _running = state.run_guard();
                relay.run(shutdown).await;
            }),
            None => self,
        }
    }

    /// The consumer, when it runs in this process.
    pub fn with_consumer<H: outbox::Handler>(self, consumer: Option<Arc<Consumer<H>>>) -> Self {
        match consumer {
            Some(consumer) => self.with_part("consumer", move |shutdown| consumer.run(shutdown)),
            None => self,
        }
    }

    /// The outbox backlog as CloudWatch EMF lines every 10 s, when `namespace` is set.
    pub fn with_emf(self, namespace: Option<String>) -> Self {
        let Some(namespace) = namespace else {
            return self;
        };
        let (pool, service) = (self.pool.clone(), self.name.to_owned());
        self.with_part("emf", move |shutdown| {
            outbox::emf::emit_emf(pool, namespace, service, Duration::from_secs(10), shutdown)
        })
    }

    /// Deletes what `purge` deletes (at most [`outbox::retention::BATCH`] rows
    /// older than `retention` per call, returning how many) periodically
    /// ([`outbox::retention::purge_periodically`]).
    pub fn with_retention<F, Fut, E>(
        self,
        what: &'static str,
        retention: Duration,
        purge: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, E>> + Send + 'static,
        E: std::error::Error + 'static,
    {
        self.with_part("retention", move |shutdown| {
            outbox::retention::purge_periodically(what, retention, shutdown, purge)
        })
    }

    /// The port it listens on (tests bind port 0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Its database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves and runs every part until `shutdown` (or until the server
    /// fails, which then stops the parts too); see the module docs.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = self.name;
        let parts: Vec<&str> = self.parts.iter().map(|p| p.name).collect();
        tracing::info!(addr = %self.listener.local_addr()?, ?parts, "{name} listening");
        let running: Vec<_> = self
            .parts
            .into_iter()
            .map(|part| (part.name, tokio::spawn((part.start)(shutdown.clone()))))
            .collect();
        let server = crate::server::serve(self.listener, self.router, &self.http, shutdown.clone())
            .await
            .context("HTTP server failed");
        shutdown.cancel();
        for (part, task) in running {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(part, "{name}: a background part panicked");
            }
        }
        for pool in self.relay_pool.iter().chain(&self.consumer_pool) {
            pool.close().await;
        }
        self.pool.close().await;
        tracing::info!("{name} stopped");
        server
    }
}
