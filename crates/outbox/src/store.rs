//! The outbox table (`migrations/booking`). Writers call [`enqueue`] inside their
//! own transaction; everything else here belongs to the relay and to the
//! operator endpoints.
//!
//! # How relays coordinate
//! Rows are *claimed with a lease*: one short statement picks due rows with
//! `FOR UPDATE SKIP LOCKED`, stamps them `claimed_by`/`claimed_until` and commits.
//! The relay then talks to SQS with no transaction open, and records the outcome
//! in a second short statement. So:
//! - replicas never wait on each other's batches (SKIP LOCKED skips rows being
//!   claimed; the lease hides rows already claimed);
//! - a crashed relay's rows become claimable again when the lease runs out;
//! - no connection sits idle-in-transaction for the length of an SQS call, which
//!   is what bloats tables and exhausts pools in row-lock-for-the-whole-batch designs.
//!
//! Order per aggregate: a row is only claimable when no *earlier unpublished* row
//! of the same aggregate exists — pending, backing off, claimed by another relay
//! or parked. So each claim holds at most the head of every aggregate, and the
//! next event of an aggregate is sent only after SQS accepted the previous one.
//! Other aggregates are not held up.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::envelope::{EventEnvelope, NewEvent};

/// Writes `event` to the outbox on the caller's connection — pass the business
/// transaction (`&mut *tx`) so the event commits or rolls back with the change.
#[tracing::instrument(skip_all, fields(event_type = event.event_type, aggregate_id = %event.aggregate_id))]
pub async fn enqueue(conn: &mut PgConnection, event: NewEvent) -> anyhow::Result<EventEnvelope> {
    let envelope = EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: event.event_type.to_owned(),
        event_version: event.event_version,
        aggregate_type: event.aggregate_type.to_owned(),
        aggregate_id: event.aggregate_id,
        occurred_at: Utc::now(),
        traceparent: event.traceparent,
        payload: event.payload,
    };
    let json = serde_json::to_value(&envelope).context("Failed to serialise the event envelope")?;
    sqlx::query!(
        r#"insert into outbox (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope, traceparent, created_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8)"#,
        envelope.event_id,
        envelope.aggregate_type,
        envelope.aggregate_id,
        envelope.event_type,
        envelope.event_version,
        json,
        envelope.traceparent,
        envelope.occurred_at,
    )
    .execute(conn)
    .await
    .context("Failed to insert the event into the outbox")?;
    Ok(envelope)
}

/// A row the relay claimed and now owns until its lease ends.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub event_type: String,
    pub event_version: i32,
    /// The envelope as JSON text, sent verbatim.
    pub body: String,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Claims up to `limit` due rows for `relay_id` for `lease` (see module docs).
pub async fn claim(
    pool: &PgPool,
    relay_id: Uuid,
    limit: i64,
    lease: Duration,
) -> anyhow::Result<Vec<Claimed>> {
    let mut rows = sqlx::query_as!(
        Claimed,
        r#"
        update outbox
        set claimed_by = $2, claimed_until = now() + make_interval(secs => $3)
        where seq = any(array(
            select o.seq
            from outbox o
            where o.published_at is null
              and o.parked_at is null
              and o.next_attempt_at <= now()
              and (o.claimed_until is null or o.claimed_until < now())
              and not exists (
                  select 1 from outbox earlier
                  where earlier.aggregate_id = o.aggregate_id
                    and earlier.seq < o.seq
                    and earlier.published_at is null)
            order by o.seq
            limit $1
            for update of o skip locked))
        returning seq, event_id, aggregate_id, event_type, event_version, envelope::text as "body!",
                  traceparent, created_at, attempts
        "#,
        limit,
        relay_id,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
    .context("Failed to claim outbox rows")?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Records that SQS accepted these rows.
pub async fn mark_published(pool: &PgPool, seqs: &[i64]) -> anyhow::Result<u64> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        r#"update outbox
           set published_at = now(), claimed_by = null, claimed_until = null
           where seq = any($1) and published_at is null"#,
        seqs,
    )
    .execute(pool)
    .await
    .context("Failed to mark outbox rows published")?;
    Ok(done.rows_affected())
}

/// A row SQS did not accept, and when to try it again.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seq: i64,
    pub error: String,
    pub retry_in: Duration,
    /// Whether this failure counts towards parking. Only SQS refusing *this*
    /// event does; an outage (unreachable, denied, queue gone, throttled) is no
    /// fault of the event, so it waits however long the outage lasts.
    pub may_park: bool,
}

/// A failed row after recording: parked when it used up its attempts.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub event_id: Uuid,
    pub attempts: i32,
    pub parked: bool,
}

/// Records failed sends: attempts + 1, the error, the next attempt time; parks
/// rows that reached `max_attempts` through failures that may park. Releases
/// the claims.
pub async fn mark_failed(
    pool: &PgPool,
    failures: &[Failure],
    max_attempts: i32,
) -> anyhow::Result<Vec<Recorded>> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<i64> = failures.iter().map(|f| f.seq).collect();
    let errors: Vec<String> = failures.iter().map(|f| truncate(&f.error, 2000)).collect();
    let delays: Vec<f64> = failures.iter().map(|f| f.retry_in.as_secs_f64()).collect();
    let may_park: Vec<bool> = failures.iter().map(|f| f.may_park).collect();
    let rows = sqlx::query_as!(
        Recorded,
        r#"update outbox o
           set attempts = o.attempts + 1,
               last_error = f.error,
               next_attempt_at = now() + make_interval(secs => f.delay),
               parked_at = case when f.may_park and o.attempts + 1 >= $4 then now() end,
               claimed_by = null,
               claimed_until = null
           from unnest($1::bigint[], $2::text[], $3::float8[], $5::bool[]) as f(seq, error, delay, may_park)
           where o.seq = f.seq and o.published_at is null
           returning o.event_id, o.attempts, (o.parked_at is not null) as "parked!""#,
        &seqs,
        &errors,
        &delays,
        max_attempts,
        &may_park,
    )
    .fetch_all(pool)
    .await
    .context("Failed to record failed outbox sends")?;
    Ok(rows)
}

/// Gives back every claim `relay_id` still holds (on shutdown), so other relays
/// need not wait for the lease to run out.
pub async fn release(pool: &PgPool, relay_id: Uuid) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "update outbox set claimed_by = null, claimed_until = null where claimed_by = $1 and published_at is null",
        relay_id,
    )
    .execute(pool)
    .await
    .context("Failed to release outbox claims")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` rows published more than `retention` ago; returns how many.
pub async fn purge_published(
    pool: &PgPool,
    retention: Duration,
    batch: i64,
) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        r#"delete from outbox where seq in (
               select seq from outbox
               where published_at < now() - make_interval(secs => $1)
               order by published_at
               limit $2)"#,
        retention.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await
    .context("Failed to delete published outbox rows")?;
    Ok(done.rows_affected())
}

/// Where an unpublished event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryState {
    /// Waiting for the relay (or for an earlier event of the same aggregate).
    Pending,
    /// Claimed by a relay that is sending it now.
    InFlight,
    /// A send failed; it is retried at `nextAttemptAt`.
    BackingOff,
    /// Gave up after the maximum attempts; `POST /api/outbox/{eventId}/retry` resumes it.
    Parked,
}

/// An event still in the outbox, with its delivery state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// Position in the outbox (the order events are sent in, per aggregate).
    pub seq: i64,
    pub event_id: Uuid,
    #[schema(example = "FlightBooked")]
    pub event_type: String,
    pub event_version: i32,
    #[schema(example = "flight")]
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub state: DeliveryState,
    /// Send attempts so far.
    pub attempts: i32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
}

struct EntryRow {
    seq: i64,
    event_id: Uuid,
    event_type: String,
    event_version: i32,
    aggregate_type: String,
    aggregate_id: Uuid,
    created_at: DateTime<Utc>,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: DateTime<Utc>,
    claimed_until: Option<DateTime<Utc>>,
    parked_at: Option<DateTime<Utc>>,
    published_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
}

impl From<EntryRow> for OutboxEntry {
    fn from(r: EntryRow) -> Self {
        let state = if r.parked_at.is_some() {
            DeliveryState::Parked
        } else if r.claimed_until.is_some_and(|until| until > r.now) {
            DeliveryState::InFlight
        } else if r.attempts > 0 && r.next_attempt_at > r.now {
            DeliveryState::BackingOff
        } else {
            DeliveryState::Pending
        };
        Self {
            seq: r.seq,
            event_id: r.event_id,
            event_type: r.event_type,
            event_version: r.event_version,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            created_at: r.created_at,
            state,
            attempts: r.attempts,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at,
            parked_at: r.parked_at,
            published_at: r.published_at,
        }
    }
}

/// Unpublished events, oldest first, after `after_seq`.
pub async fn list_unpublished(
    pool: &PgPool,
    after_seq: i64,
    limit: i64,
) -> anyhow::Result<Vec<OutboxEntry>> {
    let rows = sqlx::query_as!(
        EntryRow,
        r#"select seq, event_id, event_type, event_version, aggregate_type, aggregate_id, created_at,
                  attempts, last_error, next_attempt_at, claimed_until, parked_at, published_at,
                  now() as "now!"
           from outbox
           where published_at is null and seq > $1
           order by seq
           limit $2"#,
        after_seq,
        limit,
    )
    .fetch_all(pool)
    .await
    .context("Failed to list the outbox")?;
    Ok(rows.into_iter().map(OutboxEntry::from).collect())
}

/// One event by id, published or not (until retention removes it).
pub async fn find(pool: &PgPool, event_id: Uuid) -> anyhow::Result<Option<OutboxEntry>> {
    let row = sqlx::query_as!(
        EntryRow,
        r#"select seq, event_id, event_type, event_version, aggregate_type, aggregate_id, created_at,
                  attempts, last_error, next_attempt_at, claimed_until, parked_at, published_at,
                  now() as "now!"
           from outbox where event_id = $1"#,
        event_id,
    )
    .fetch_optional(pool)
    .await
    .context("Failed to look up the outbox event")?;
    Ok(row.map(OutboxEntry::from))
}

/// What [`retry`] found.
#[derive(Debug)]
pub enum RetryOutcome {
    /// Back in line, due now, with a fresh set of attempts.
    Requeued(OutboxEntry),
    AlreadyPublished,
    NotFound,
}

/// Puts a parked (or backing-off) event back in line now and wakes the relays.
pub async fn retry(pool: &PgPool, event_id: Uuid) -> anyhow::Result<RetryOutcome> {
    let mut tx = pool
        .begin()
        .await
        .context("Failed to begin a transaction")?;
    let updated = sqlx::query!(
        r#"update outbox set parked_at = null, attempts = 0, next_attempt_at = now()
           where event_id = $1 and published_at is null"#,
        event_id,
    )
    .execute(&mut *tx)
    .await
    .context("Failed to requeue the outbox event")?;
    if updated.rows_affected() == 1 {
        sqlx::query!("select pg_notify('outbox_events', '')")
            .execute(&mut *tx)
            .await
            .context("Failed to wake the relays")?;
    }
    tx.commit().await.context("Failed to commit the requeue")?;
    match find(pool, event_id).await? {
        None => Ok(RetryOutcome::NotFound),
        Some(entry) if entry.published_at.is_some() && updated.rows_affected() == 0 => {
            Ok(RetryOutcome::AlreadyPublished)
        }
        Some(entry) => Ok(RetryOutcome::Requeued(entry)),
    }
}

/// The backlog in numbers.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Unpublished and not parked.
    pub pending: i64,
    pub parked: i64,
    /// Age of the oldest unpublished event, parked ones included (a parked
    /// event is a backlog too): 0 when none.
    pub oldest_pending_age_seconds: f64,
}

/// Reads only unpublished rows (through the partial index), however many
/// published rows retention still keeps.
pub async fn stats(pool: &PgPool) -> anyhow::Result<Stats> {
    let row = sqlx::query!(
        r#"select
             count(*) filter (where parked_at is null) as "pending!",
             count(*) filter (where parked_at is not null) as "parked!",
             coalesce(extract(epoch from now() - min(created_at))::float8, 0) as "oldest!"
           from outbox
           where published_at is null"#
    )
    .fetch_one(pool)
    .await
    .context("Failed to read outbox statistics")?;
    Ok(Stats {
        pending: row.pending,
        parked: row.parked,
        oldest_pending_age_seconds: row.oldest,
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
