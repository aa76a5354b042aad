//! What runs beside the three steps: NOTIFY turned into wake-ups, and the
//! retention of published rows.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::CHANNEL;

/// base·2^(attempt-1), capped at `max`, then scaled by a random factor in [0.5, 1].
pub fn backoff(base: Duration, max: Duration, attempt: i32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).clamp(0, 20) as u32);
    exp.min(max).mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Turns `NOTIFY outbox_events` into wake-ups. sqlx reconnects the listener when
/// its connection drops (database restart, `pg_terminate_backend`); notifications
/// sent meanwhile are lost, so a reconnect also wakes the workers.
pub(super) async fn listen(
    pool: PgPool,
    wake: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
) {
    let bump = |wake: &watch::Sender<u64>| wake.send_modify(|n| *n = n.wrapping_add(1));
    let mut listener: Option<PgListener> = None;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let active = match listener.as_mut() {
            Some(active) => active,
            None => {
                match async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(l)
                }
                .await
                {
                    Ok(l) => {
                        if failures > 0 {
                            tracing::info!("outbox listener connected again");
                        }
                        failures = 0;
                        bump(&wake);
                        listener.insert(l)
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %e, "outbox listener cannot connect; relying on polling meanwhile");
                        }
                        let delay = Duration::from_millis(200 * u64::from(failures.min(25)));
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(delay) => continue,
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            received = active.try_recv() => match received {
                Ok(Some(_)) => bump(&wake),
                // The connection was lost and will be re-established on the next call.
                Ok(None) => {
                    tracing::info!("outbox listener connection lost; reconnecting");
                    bump(&wake);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox listener failed; reconnecting");
                    listener = None;
                    bump(&wake);
                }
            }
        }
    }
}
