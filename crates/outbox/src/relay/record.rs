//! Step 3, record: each event's result written back in one short
//! transaction (published, backed off or parked), lanes released, the claimers
//! woken, metrics counted once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::send::Sent;
use super::{Relay, RoundReport};
use crate::error::Error;
use crate::publish::{Publisher, SendError};
use crate::store::{self, Failure, LaneResult};

impl<P: Publisher> Relay<P> {
    /// Turns send results into lane results: per lane, the events SQS accepted
    /// and the first one it did not.
    fn lane_results(&self, sent: &[Sent]) -> (Vec<LaneResult>, Vec<usize>) {
        let mut lanes: Vec<LaneResult> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        let mut calls_failed = Vec::new();
        for (call, Sent { rows, result }) in sent.iter().enumerate() {
            let outcome: Vec<Option<(&SendError, bool)>> = match result {
                None => vec![None; rows.len()],
                Some(Ok(outcome)) => outcome
                    .iter()
                    .map(|entry| entry.as_ref().err().map(|e| (e, true)))
                    .collect(),
                Some(Err(e)) => {
                    calls_failed.push(call);
                    vec![Some((e, false)); rows.len()]
                }
            };
            let not_sent = result.is_none();
            for (row, failed) in rows.iter().zip(outcome) {
                let slot = *index.entry(row.aggregate_id).or_insert_with(|| {
                    lanes.push(LaneResult {
                        aggregate_id: row.aggregate_id,
                        published: Vec::new(),
                        failure: None,
                    });
                    lanes.len() - 1
                });
                let lane = &mut lanes[slot];
                match failed {
                    None if not_sent => {}
                    None => {
                        if let Some(earlier) = &lane.failure {
                            // Accepted after an earlier event of its aggregate failed in
                            // the same batch: the consumer will see this one first.
                            self.metrics.out_of_order();
                            tracing::error!(event_id = %row.event_id, seq = row.seq, failed_seq = earlier.seq,
                                aggregate_id = %row.aggregate_id,
                                "SQS accepted an event after refusing an earlier one of its aggregate in the same batch; the earlier one follows it");
                        }
                        lane.published.push(row.seq);
                    }
                    Some((error, may_park)) => {
                        if lane.failure.is_none() {
                            lane.failure = Some(Failure {
                                seq: row.seq,
                                error: error.to_string(),
                                retry_in: self.backoff(row.attempts + 1),
                                may_park,
                            });
                        }
                    }
                }
            }
        }
        (lanes, calls_failed)
    }

    /// Writes the results of some sends back to the outbox (see
    /// [`store::record`]) and counts them, once. Returns what happened.
    pub(super) async fn record(&self, sent: &[Sent]) -> Result<RoundReport, Error> {
        let (lanes, calls_failed) = self.lane_results(sent);
        let recorded = store::record(&self.pool, self.id, &lanes, self.config.max_attempts).await?;
        self.count(sent, &recorded);

        let calls = sent.iter().filter(|s| s.result.is_some()).count();
        if calls > 0 && calls_failed.len() == calls {
            let error = sent
                .iter()
                .find_map(|s| s.result.as_ref().and_then(|r| r.as_ref().err()))
                .map(ToString::to_string)
                .unwrap_or_default();
            self.enter_outage(&error);
            return Ok(RoundReport::Unavailable);
        }
        Ok(RoundReport::Sent {
            published: recorded.published.len(),
            failed: lanes.iter().filter(|l| l.failure.is_some()).count(),
        })
    }

    /// Metrics of recorded results: only what this recording changed, so a
    /// retried recording counts nothing twice.
    fn count(&self, sent: &[Sent], recorded: &store::Recorded) {
        for Sent { rows, result } in sent {
            match result {
                Some(Ok(outcome)) => {
                    for e in outcome.iter().filter_map(|r| r.as_ref().err()) {
                        self.metrics.failure(e.reason.as_str(), 1);
                        tracing::debug!(error = %e, "SQS refused an entry; its aggregate backs off");
                    }
                }
                Some(Err(e)) => self.metrics.failure(e.reason.as_str(), rows.len() as u64),
                None => {}
            }
        }
        let now = chrono::Utc::now();
        for event in &recorded.published {
            let latency = (now - event.created_at).to_std().unwrap_or_default();
            self.metrics.commit_to_publish(latency);
        }
        self.metrics.published(recorded.published.len() as u64);
        for failed in &recorded.failed {
            if failed.parked {
                self.metrics.parked();
                tracing::error!(event_id = %failed.event_id, attempts = failed.attempts,
                    "event parked after the maximum attempts; its aggregate waits until an operator retries it");
            } else if !failed.outage {
                tracing::warn!(event_id = %failed.event_id, attempts = failed.attempts,
                    "SQS refused an event; its aggregate backs off");
            }
        }
    }

    /// All calls failed: stop claiming, probe. Logged once per outage.
    fn enter_outage(&self, error: &str) {
        if !self.outage.swap(true, Ordering::SeqCst) {
            self.metrics.sqs_available(false);
            tracing::warn!(%error, probe_every = ?self.config.probe_interval,
                "SQS unavailable: events stay in the outbox; probing with the oldest event until it is back");
        }
    }

    /// Exponential backoff with jitter, capped: base·2^(attempt-1), scaled by a
    /// random factor in [0.5, 1] so replicas retrying the same failure spread out.
    fn backoff(&self, attempt: i32) -> Duration {
        super::backoff(self.config.backoff_base, self.config.backoff_max, attempt)
    }

    /// Records results as they arrive, many batches per transaction. A failed
    /// recording is retried until it succeeds (or the relay stops): the events
    /// were sent, and their lanes stay claimed (and renewed) until recorded.
    pub(super) async fn record_loop(
        self: Arc<Self>,
        mut sent: mpsc::Receiver<Sent>,
        wake: Arc<watch::Sender<u64>>,
        shutdown: CancellationToken,
    ) {
        let mut pending = Vec::new();
        while sent.recv_many(&mut pending, 256).await > 0 {
            let mut failures = 0u32;
            loop {
                match self.record(&pending).await {
                    Ok(_) => {
                        if failures > 0 {
                            tracing::info!(
                                attempts = failures + 1,
                                "send results recorded after the database came back"
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %crate::error::chain(&e), "failed to record send results; retrying until the database answers");
                        }
                        // On shutdown, give up after a few tries: the leases run
                        // out and the events are sent again (at least once, never lost).
                        if shutdown.is_cancelled() && failures >= 3 {
                            tracing::error!(error = %crate::error::chain(&e), "send results not recorded at shutdown; these events will be sent again after their lease");
                            break;
                        }
                        let delay = Duration::from_millis(100 * u64::from(failures.min(20)));
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            pending.clear();
            wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
