//! The circuit breaker: a consumer never dead-letters a valid message because
//! of its own database outage.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Consumer;
use crate::handler::Handler;

impl<H: Handler> Consumer<H> {
    /// `select 1`, with a short timeout: is the database there at all?
    pub(super) async fn database_answers(&self) -> bool {
        let check = sqlx::query("select 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), check).await,
            Ok(Ok(_))
        )
    }

    /// Opens the breaker (once per outage, logged once).
    pub(super) async fn open_breaker(&self, url: &str) {
        if self.breaker.send_replace(true) {
            return;
        }
        self.metrics.breaker_open(true);
        {
            let mut status = self.status.lock().expect("not poisoned");
            status.breaker = "open";
            status.breaker_open_since = Some(Utc::now());
        }
        let waiting = self.waiting(url).await;
        tracing::warn!(waiting = ?waiting,
            "database unavailable: the consumer stops receiving (messages stay in the queue, none is dead-lettered) and probes it until it is back");
    }

    /// Messages waiting in the queue, best effort (for the log).
    async fn waiting(&self, url: &str) -> Option<i64> {
        self.queue
            .attribute(
                url,
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
            )
            .await
            .ok()??
            .parse()
            .ok()
    }

    /// While the breaker is open: checks the database with backoff (250 ms
    /// doubling to 10 s); closes the breaker on the first success.
    pub(super) async fn probe_loop(&self, shutdown: CancellationToken) {
        let mut breaker = self.breaker.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                open = breaker.wait_for(|open| *open) => if open.is_err() { return },
            }
            let opened = Instant::now();
            let mut delay = Duration::from_millis(250);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                if self.database_answers().await {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            let waiting = match self.queue.url().await {
                Ok(url) => self.waiting(&url).await,
                Err(_) => None,
            };
            {
                let mut status = self.status.lock().expect("not poisoned");
                status.breaker = "closed";
                status.breaker_open_since = None;
            }
            self.metrics.breaker_open(false);
            self.breaker.send_replace(false);
            tracing::info!(outage = ?opened.elapsed(), waiting = ?waiting,
                "database reachable again: the consumer receives again");
        }
    }
}
