//! Retention: deleting what is no longer needed, a batch at a time, in the
//! background. The relay uses it for published outbox rows, the consumer for
//! old inbox entries; a service can use it for its own tables (idempotency keys).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Rows deleted per statement: no statement holds many locks or writes much
/// WAL in one go.
pub const BATCH: i64 = 1000;

/// Calls `purge` (which deletes at most [`BATCH`] rows older than `retention`
/// and says how many it deleted) every tenth of `retention` (between 1 s and
/// 10 min), again at once while it deletes full batches, until `shutdown`.
/// Failures are logged once until a purge succeeds again.
pub async fn purge_periodically<F, Fut, E>(
    what: &'static str,
    retention: Duration,
    shutdown: CancellationToken,
    mut purge: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    E: std::error::Error + 'static,
{
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        loop {
            match purge().await {
                Ok(n) if n >= BATCH as u64 && !shutdown.is_cancelled() => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(deleted = n, what, "retention");
                    }
                    failing = false;
                    break;
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %crate::error::chain(&e), what,
                            "retention failed; trying again later");
                    }
                    break;
                }
            }
        }
    }
}
