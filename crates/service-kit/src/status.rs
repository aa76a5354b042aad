//! `GET /health/status`: what each part of a service is doing, in one shape for
//! both services, so an operator sees at a glance why events are waiting.
//!
//! `/health/ready` stays "can this process serve requests" (its database);
//! this report covers the background parts too — the relay, the consumer and
//! the database pools — each marked `configured: false` where the service does
//! not run it (both services run both, unless switched off). `status` is `up`, or
//! `degraded` with the reasons in `problems`. Always a 200: it is a report, not
//! a probe.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// Each part's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `up`, or `degraded` when a part does not work (see `problems`).
    #[schema(example = "degraded")]
    pub status: &'static str,
    /// Which service answers.
    #[schema(example = "booking-service")]
    pub service: &'static str,
    /// What is wrong, in words; empty when `up`.
    #[schema(example = json!(["SQS is unavailable: 12 event(s) wait in the outbox, the oldest for 34 s; the relay probes until it is back"]))]
    pub problems: Vec<String>,
    pub database: DatabaseStatus,
    pub relay: RelayStatus,
    pub consumer: ConsumerStatus,
}

/// The database and this process's pools.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// `select 1` answered within a second.
    pub reachable: bool,
    pub pools: Vec<PoolStatus>,
}

/// One connection pool: `inUse` at `max` means requests (or the loop) wait for
/// a connection (a moment under load; for longer, a pool too small or a
/// database too slow).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// `http` (the handlers), `relay` or `consumer`.
    #[schema(example = "http")]
    pub name: &'static str,
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolStatus {
    pub fn of(name: &'static str, pool: &PgPool) -> Self {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
        Self {
            name,
            in_use: size.saturating_sub(idle),
            idle,
            max: pool.options().get_max_connections(),
        }
    }
}

/// The outbox relay: whether it runs, whether SQS takes its sends, and the
/// backlog it has to send.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayStatus {
    /// `false`: this service runs no relay (the other fields are absent).
    pub configured: bool,
    /// The relay's task is alive in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// `false` during an outage: the relay probes with the oldest event instead of sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqs_reachable: Option<bool>,
    /// When SQS last accepted an event from this process's relay (none since start: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_publish_at: Option<DateTime<Utc>>,
    /// Events waiting to be published, parked ones not counted (all relays' backlog).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// Events parked after repeated refusals: they wait for an operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parked: Option<i64>,
    /// Age of the oldest unpublished event, parked ones included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_age_seconds: Option<f64>,
}

/// The queue consumer: whether it runs, its circuit breaker, its last receive.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// `false`: this service runs no consumer (the other fields are absent).
    pub configured: bool,
    /// The receive loops run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// `open` while its database is unavailable: nothing is received until it is back.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "closed")]
    pub breaker: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_open_since: Option<DateTime<Utc>>,
    /// The last receive that returned messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_receive_at: Option<DateTime<Utc>>,
    /// The queue's redrive threshold (`maxReceiveCount`), when it has a DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_receive_count: Option<u32>,
}

impl Status {
    /// The report, with `status` and `problems` derived from the parts.
    pub fn new(
        service: &'static str,
        database: DatabaseStatus,
        relay: RelayStatus,
        consumer: ConsumerStatus,
    ) -> Self {
        let mut problems = Vec::new();
        if !database.reachable {
            problems.push("the database does not answer".to_owned());
        }
        if relay.configured {
            if relay.running == Some(false) {
                problems.push("the relay is not running: events wait in the outbox".to_owned());
            }
            if relay.sqs_reachable == Some(false) {
                problems.push(format!(
                    "SQS is unavailable: {} event(s) wait in the outbox, the oldest for {:.0} s; the relay probes until it is back",
                    relay.backlog.unwrap_or_default() + relay.parked.unwrap_or_default(),
                    relay.oldest_pending_age_seconds.unwrap_or_default(),
                ));
            }
            if let Some(parked) = relay.parked.filter(|n| *n > 0) {
                problems.push(format!(
                    "{parked} event(s) parked after repeated refusals by SQS: an operator retries them (POST /api/outbox/{{eventId}}/retry)"
                ));
            }
        }
        if consumer.configured {
            if consumer.running == Some(false) {
                problems.push("the consumer is not running: nothing is received".to_owned());
            }
            if consumer.breaker == Some("open") {
                problems.push(
                    "the consumer's breaker is open: its database is unavailable, nothing is received until it is back"
                        .to_owned(),
                );
            }
        }
        Self {
            status: if problems.is_empty() {
                "up"
            } else {
                "degraded"
            },
            service,
            problems,
            database,
            relay,
            consumer,
        }
    }
}

/// The database part: `select 1` on `pools[0]` within a second, and every pool's use.
pub async fn database(pools: &[(&'static str, &PgPool)]) -> DatabaseStatus {
    let reachable = match pools.first() {
        Some((_, pool)) => matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                sqlx::query("select 1").execute(*pool)
            )
            .await,
            Ok(Ok(_))
        ),
        None => false,
    };
    DatabaseStatus {
        reachable,
        pools: pools
            .iter()
            .map(|(name, pool)| PoolStatus::of(name, pool))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(reachable: bool) -> DatabaseStatus {
        DatabaseStatus {
            reachable,
            pools: Vec::new(),
        }
    }

    #[test]
    fn an_sqs_outage_says_how_much_waits_and_for_how_long() {
        let relay = RelayStatus {
            configured: true,
            running: Some(true),
            sqs_reachable: Some(false),
            backlog: Some(12),
            parked: Some(0),
            oldest_pending_age_seconds: Some(34.2),
            ..RelayStatus::default()
        };
        let status = Status::new("x", database(true), relay, ConsumerStatus::default());
        assert_eq!(status.status, "degraded");
        assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
        assert!(status.problems[0].contains("12 event(s)"));
        assert!(status.problems[0].contains("34 s"));
    }

    #[test]
    fn parts_not_configured_are_reported_as_such_and_are_no_problem() {
        let status = Status::new(
            "x",
            database(true),
            RelayStatus::default(),
            ConsumerStatus::default(),
        );
        assert_eq!(status.status, "up");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["relay"], serde_json::json!({"configured": false}));
        assert_eq!(json["consumer"], serde_json::json!({"configured": false}));
    }
}

/// The parts a service runs, as `/health/status` reads them.
#[derive(Clone, Default)]
pub struct Parts {
    /// The HTTP handlers' pool.
    pub pool: Option<PgPool>,
    /// The relay: its pool, its observed state and its metrics.
    pub relay: Option<(
        PgPool,
        std::sync::Arc<crate::observed::RelayState>,
        outbox::metrics::RelayMetrics,
    )>,
    /// The consumer: its pool and its status handle.
    pub consumer: Option<(
        PgPool,
        std::sync::Arc<std::sync::Mutex<outbox::consumer::ConsumerStatus>>,
    )>,
}

/// The status of `service` running `parts` (one shape for every service).
pub async fn report(service: &'static str, parts: &Parts) -> Status {
    let mut pools = Vec::new();
    if let Some(pool) = &parts.pool {
        pools.push(("http", pool));
    }
    if let Some((pool, ..)) = &parts.relay {
        pools.push(("relay", pool));
    }
    if let Some((pool, _)) = &parts.consumer {
        pools.push(("consumer", pool));
    }
    let database = database(&pools).await;
    let relay = match &parts.relay {
        None => RelayStatus::default(),
        Some((pool, relay, metrics)) => {
            // The backlog is the table's (every relay's); `None` when the database does not answer.
            let stats = if database.reachable {
                outbox::store::stats(pool).await.ok()
            } else {
                None
            };
            RelayStatus {
                configured: true,
                running: Some(relay.running()),
                sqs_reachable: Some(metrics.sqs_available_now()),
                last_publish_at: relay.last_publish_at(),
                backlog: stats.as_ref().map(|s| s.pending),
                parked: stats.as_ref().map(|s| s.parked),
                oldest_pending_age_seconds: stats.map(|s| s.oldest_pending_age_seconds),
            }
        }
    };
    let consumer = match &parts.consumer {
        None => ConsumerStatus::default(),
        Some((_, consumer)) => {
            let c = consumer.lock().unwrap_or_else(|e| e.into_inner()).clone();
            ConsumerStatus {
                configured: true,
                running: Some(c.running),
                breaker: Some(c.breaker),
                breaker_open_since: c.breaker_open_since,
                last_receive_at: c.last_receive_at,
                max_receive_count: c.max_receive_count,
            }
        }
    };
    Status::new(service, database, relay, consumer)
}
