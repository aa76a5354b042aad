//! CloudWatch embedded metric format (feature `emf`): the outbox backlog as a
//! JSON line on stdout, which the awslogs driver ships and CloudWatch turns into
//! metrics an alarm can watch. No SDK call and no IAM permission needed.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// Prints the outbox backlog every `every` as a CloudWatch EMF line on stdout,
/// where the awslogs driver picks it up and CloudWatch turns it into metrics the
/// backlog alarm watches. No SDK call and no extra IAM permission needed.
pub async fn emit_emf(
    pool: PgPool,
    namespace: String,
    service: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store::stats(&pool).await {
            Ok(stats) => println!(
                "{}",
                emf_line(
                    &namespace,
                    &service,
                    &stats,
                    chrono::Utc::now().timestamp_millis()
                )
            ),
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "failed to read outbox statistics for EMF")
            }
        }
    }
}

fn emf_line(namespace: &str, service: &str, stats: &store::Stats, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["ServiceName"]],
                "Metrics": [
                    {"Name": "OutboxOldestPendingAgeSeconds", "Unit": "Seconds"},
                    {"Name": "OutboxPendingEvents", "Unit": "Count"},
                    {"Name": "OutboxParkedEvents", "Unit": "Count"}
                ]
            }]
        },
        "ServiceName": service,
        "OutboxOldestPendingAgeSeconds": stats.oldest_pending_age_seconds,
        "OutboxPendingEvents": stats.pending,
        "OutboxParkedEvents": stats.parked,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_metrics_and_dimension() {
        let stats = store::Stats {
            pending: 3,
            parked: 1,
            oldest_pending_age_seconds: 12.5,
        };
        let line: serde_json::Value = serde_json::from_str(&emf_line(
            "TransactionalOutbox",
            "booking-service",
            &stats,
            1,
        ))
        .unwrap();
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "TransactionalOutbox"
        );
        assert_eq!(line["ServiceName"], "booking-service");
        assert_eq!(line["OutboxOldestPendingAgeSeconds"], 12.5);
        assert_eq!(line["OutboxPendingEvents"], 3);
    }
}
