//! The outbox table and its lanes (this crate's `migrations/`). Writers call
//! [`enqueue`] inside their own transaction; everything else here belongs to the
//! relay and to the operator endpoints.
//!
//! # How relays coordinate
//! Every aggregate with unpublished events has a *lane* (`outbox.lane`, kept by
//! the insert trigger in the writer's transaction). Relays claim lanes, not rows,
//! *with a lease*: one short statement picks the oldest due lanes with
//! `FOR UPDATE SKIP LOCKED`, stamps them `claimed_by`/`claimed_until` and reads the
//! first few unpublished events of each (a *run*). The relay then talks to SQS
//! with no transaction open, and records the outcome in one short transaction.
//! So:
//! - replicas never wait on each other (SKIP LOCKED skips lanes being claimed; the
//!   lease hides lanes already claimed);
//! - a crashed relay's lanes become claimable again when the lease runs out (the
//!   live relay renews its leases while it works, so the lease can be short);
//! - no connection sits idle-in-transaction for the length of an SQS call;
//! - claiming never locks outbox rows, so recording (which only updates outbox
//!   rows and the relay's own lanes) never waits behind a claim.
//!
//! Order per aggregate: only the lane's owner sends its events, a run is the
//! lane's *first* unpublished events in `seq` order, and the lane is released only
//! after the run's outcome is recorded. So an event is sent only after every
//! earlier event of its aggregate was accepted by SQS (or in the same
//! SendMessageBatch, right before it), and no two batches of one aggregate are
//! ever in flight at once. Other aggregates are not held up.
//!
//! Claim cost: O(lanes returned + lanes skipped), whatever the backlog; see the
//! migration for why and `scripts/bench.sh` for the plans at 10k and 1M pending.

use std::time::Duration;

use crate::error::{DbContext, Error};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::envelope::{EventEnvelope, NewEvent};

/// The largest envelope (as sent, in ASCII) an event may have: SQS takes 256 KiB
/// per message, body and attributes together; the attributes get the rest.
pub const MAX_EVENT_BYTES: usize = 255 * 1024;

/// Writes `event` to the outbox on the caller's connection — pass the business
/// transaction (`&mut *tx`) so the event commits or rolls back with the change.
///
/// The event gets the next sequence number of its aggregate (1, 2, 3…, the
/// envelope's `sequence`). Taking it locks the aggregate's sequence row until the
/// caller commits: writers of one aggregate serialise, so sequence order is
/// commit order, and a rollback gives the number back (no gaps).
#[tracing::instrument(skip_all, fields(event_type = event.event_type, aggregate_id = %event.aggregate_id))]
pub async fn enqueue(conn: &mut PgConnection, event: NewEvent) -> Result<EventEnvelope, Error> {
    let sequence = sqlx::query_scalar!(
        r#"insert into outbox.aggregate_sequence as s (aggregate_type, aggregate_id, last)
           values ($1, $2, 1)
           on conflict (aggregate_type, aggregate_id) do update set last = s.last + 1
           returning last"#,
        event.aggregate_type,
        event.aggregate_id,
    )
    .fetch_one(&mut *conn)
    .await
    .db("Failed to take the aggregate's next sequence number")?;
    let envelope = EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: event.event_type.to_owned(),
        event_version: event.event_version,
        aggregate_type: event.aggregate_type.to_owned(),
        aggregate_id: event.aggregate_id,
        sequence: Some(sequence),
        occurred_at: Utc::now(),
        traceparent: event.traceparent,
        payload: event.payload,
    };
    let json = serde_json::to_value(&envelope)?;
    // Refused here, in the writer's transaction, rather than parked forever by SQS.
    let size = wire_body(&json.to_string()).len();
    if size > MAX_EVENT_BYTES {
        return Err(Error::EventTooLarge {
            size,
            max: MAX_EVENT_BYTES,
        });
    }
    sqlx::query!(
        r#"insert into outbox.event (event_id, aggregate_type, aggregate_id, event_type, event_version, envelope, traceparent, created_at)
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
    .db("Failed to insert the event into the outbox")?;
    Ok(envelope)
}

/// An event the relay claimed (through its lane) and now owns until the lease ends.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Position in the outbox.
    pub seq: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// Its aggregate (the lane).
    pub aggregate_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its payload version.
    pub event_version: i32,
    /// The envelope as it goes on the wire: JSON in plain ASCII (see [`wire_body`]).
    pub body: String,
    /// W3C trace context of the writer.
    pub traceparent: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// What to claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimSize {
    /// Lanes (aggregates) per claim.
    pub lanes: i64,
    /// Consecutive events of one lane per claim (they travel in one SendMessageBatch).
    pub run: i64,
}

/// The claim statement (public so the benchmark can `EXPLAIN` exactly this):
/// $1 lanes, $2 relay id, $3 lease in seconds, $4 run, $5 ignore outage backoff.
/// The lanes are locked and stamped by the CTE; their events are read in the
/// same statement. Both walks are index scans (see the migration).
pub const CLAIM_SQL: &str = r#"
    with lanes as (
        update outbox.lane l
        set claimed_by = $2, claimed_until = now() + make_interval(secs => $3)
        where l.aggregate_id = any(array(
            select c.aggregate_id
            from outbox.lane c
            where c.parked_at is null
              and (c.next_attempt_at <= now() or ($5 and c.outage))
              and (c.claimed_until is null or c.claimed_until < now())
            order by c.head_seq
            limit $1
            for update skip locked))
        returning l.aggregate_id, l.head_seq
    )
    select o.seq, o.event_id, o.aggregate_id, o.event_type, o.event_version,
           o.envelope::text as body, o.traceparent, o.created_at, o.attempts,
           lanes.head_seq as lane_order
    from lanes
    cross join lateral (
        select e.* from outbox.event e
        where e.aggregate_id = lanes.aggregate_id and e.published_at is null
        order by e.seq
        limit $4) o
"#;

/// Claims up to `size.lanes` due lanes for `relay_id` for `lease` and returns
/// the first `size.run` unpublished events of each: lanes oldest first, each
/// lane's events in `seq` order and contiguous. `ignore_outage` also claims lanes
/// held back by an outage whose backoff has not run out yet (the outage prober).
pub async fn claim(
    pool: &PgPool,
    relay_id: Uuid,
    size: ClaimSize,
    lease: Duration,
    ignore_outage: bool,
) -> Result<Vec<Claimed>, Error> {
    let mut tx = pool.begin().await.db("Failed to begin a transaction")?;
    relaxed_commit(&mut tx).await?;
    let mut rows = sqlx::query_as::<_, ClaimedRow>(CLAIM_SQL)
        .bind(size.lanes)
        .bind(relay_id)
        .bind(lease.as_secs_f64())
        .bind(size.run)
        .bind(ignore_outage)
        .fetch_all(&mut *tx)
        .await
        .db("Failed to claim outbox lanes")?;
    tx.commit().await.db("Failed to commit the claim")?;
    rows.sort_by_key(|r| (r.lane_order, r.aggregate_id, r.seq));
    Ok(rows.into_iter().map(Claimed::from).collect())
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    seq: i64,
    event_id: Uuid,
    aggregate_id: Uuid,
    event_type: String,
    event_version: i32,
    body: String,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
    attempts: i32,
    lane_order: i64,
}

impl From<ClaimedRow> for Claimed {
    fn from(r: ClaimedRow) -> Self {
        Self {
            seq: r.seq,
            event_id: r.event_id,
            aggregate_id: r.aggregate_id,
            event_type: r.event_type,
            event_version: r.event_version,
            body: wire_body(&r.body),
            traceparent: r.traceparent,
            created_at: r.created_at,
            attempts: r.attempts,
        }
    }
}

/// JSON text with every non-ASCII character written as a `\uXXXX` escape (a
/// surrogate pair above U+FFFF). The same JSON value, in plain ASCII: SQS refuses
/// bodies with characters outside its allowed set (U+FFFE, U+FFFF, …), and a
/// name the API accepted must never make its event unsendable. Outside strings
/// JSON is ASCII already, so escaping character by character is safe.
pub fn wire_body(json: &str) -> String {
    if json.is_ascii() {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    let mut units = [0u16; 2];
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The relay's result for one claimed lane.
#[derive(Debug, Clone)]
pub struct LaneResult {
    /// The lane.
    pub aggregate_id: Uuid,
    /// Events of the run SQS accepted.
    pub published: Vec<i64>,
    /// The first event of the run that was not accepted, if any; the lane backs
    /// off on it (later events of the run that SQS did accept stay published).
    pub failure: Option<Failure>,
}

/// An event SQS did not accept, and when to try it again.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The event that failed.
    pub seq: i64,
    /// Why.
    pub error: String,
    /// When its lane is due again.
    pub retry_in: Duration,
    /// Whether this failure counts towards parking. Only SQS refusing *this*
    /// event does; an outage (unreachable, denied, queue gone, throttled) is no
    /// fault of the event, so it waits however long the outage lasts.
    pub may_park: bool,
}

/// What recording changed.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Events flipped to published by this call (not by an earlier, retried one).
    pub published: Vec<PublishedEvent>,
    /// Failures recorded (lanes still owned by this relay).
    pub failed: Vec<FailedEvent>,
}

/// An event the recording flipped to published.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    /// Its position.
    pub seq: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// An event whose send failed, as recorded.
#[derive(Debug, Clone)]
pub struct FailedEvent {
    /// Its id.
    pub event_id: Uuid,
    /// Failed attempts, this one included.
    pub attempts: i32,
    /// Parked by this failure.
    pub parked: bool,
    /// The whole call failed (an outage), not this event.
    pub outage: bool,
}

/// Records the outcome of claimed runs in one transaction: accepted events are
/// marked published (and leave their lane's count, exactly once however often
/// this is retried); lanes of `relay_id` are released (or deleted when drained);
/// lanes with a failure back off, counting an attempt on the failed event and
/// parking it after `max_attempts` failures that may park.
///
/// Marking published is never fenced: SQS has those events, whoever claims the
/// lane next. Everything else is fenced on `claimed_by = relay_id`, so a relay
/// whose lease ran out cannot disturb the lane's new owner.
pub async fn record(
    pool: &PgPool,
    relay_id: Uuid,
    results: &[LaneResult],
    max_attempts: i32,
) -> Result<Recorded, Error> {
    let mut tx = pool.begin().await.db("Failed to begin a transaction")?;
    relaxed_commit(&mut tx).await?;
    let seqs: Vec<i64> = results
        .iter()
        .flat_map(|r| r.published.iter().copied())
        .collect();
    let published = if seqs.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as!(
            PublishedEvent,
            r#"with done as (
                   update outbox.event set published_at = now()
                   where seq = any($1) and published_at is null
                   returning seq, aggregate_id, created_at
               ), counts as (
                   select aggregate_id, count(*) as n from done group by aggregate_id
               ), drained as (
                   -- A lane whose last events these were goes at once: one write
                   -- instead of an update and a delete. A writer that added an
                   -- event meanwhile holds the lane's row lock: this waits for it,
                   -- re-checks `pending` on its version and keeps the lane.
                   delete from outbox.lane l using counts c
                   where l.aggregate_id = c.aggregate_id and l.pending = c.n
                   returning l.aggregate_id
               ), lanes as (
                   -- Not "pending <> n": that would be judged on the statement's
                   -- snapshot and skip the lane the delete above kept for a writer.
                   update outbox.lane l set pending = l.pending - c.n
                   from counts c
                   where l.aggregate_id = c.aggregate_id
                     and l.aggregate_id not in (select aggregate_id from drained)
               )
               select seq as "seq!", created_at as "created_at!" from done"#,
            &seqs,
        )
        .fetch_all(&mut *tx)
        .await
        .db("Failed to mark outbox events published")?
    };

    // Lanes whose whole run went and that still hold events: released (due at
    // once; their next events go next), `head_seq` moved past the run so lanes
    // keep being served oldest first. A lane left at 0 (two relays recorded
    // parts of it at once, which only a relay whose lease ran out can cause) is
    // deleted here.
    let (done_lanes, done_heads): (Vec<Uuid>, Vec<i64>) = results
        .iter()
        .filter(|r| r.failure.is_none())
        .map(|r| {
            let last = r.published.iter().copied().max().unwrap_or_default();
            (r.aggregate_id, last + 1)
        })
        .unzip();
    if !done_lanes.is_empty() {
        sqlx::query!(
            r#"with released as (
                   update outbox.lane l
                   set claimed_by = null, claimed_until = null, next_attempt_at = now(),
                       outage = false, head_seq = greatest(l.head_seq, f.head)
                   from unnest($2::uuid[], $3::bigint[]) as f(aggregate_id, head)
                   where l.aggregate_id = f.aggregate_id and l.claimed_by = $1 and l.pending > 0
               )
               delete from outbox.lane where aggregate_id = any($2) and pending <= 0"#,
            relay_id,
            &done_lanes,
            &done_heads,
        )
        .execute(&mut *tx)
        .await
        .db("Failed to release outbox lanes")?;
    }

    let failures: Vec<(Uuid, &Failure)> = results
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|f| (r.aggregate_id, f)))
        .collect();
    let failed = if failures.is_empty() {
        Vec::new()
    } else {
        let lanes: Vec<Uuid> = failures.iter().map(|(lane, _)| *lane).collect();
        let seqs: Vec<i64> = failures.iter().map(|(_, f)| f.seq).collect();
        let errors: Vec<String> = failures
            .iter()
            .map(|(_, f)| truncate(&f.error, 2000))
            .collect();
        let delays: Vec<f64> = failures
            .iter()
            .map(|(_, f)| f.retry_in.as_secs_f64())
            .collect();
        let may_park: Vec<bool> = failures.iter().map(|(_, f)| f.may_park).collect();
        sqlx::query_as!(
            FailedEvent,
            r#"with owned as (
                   select aggregate_id from outbox.lane
                   where aggregate_id = any($2) and claimed_by = $1
                   for update
               ), failed as (
                   update outbox.event o
                   set attempts = o.attempts + 1,
                       last_error = f.error,
                       next_attempt_at = now() + make_interval(secs => f.delay),
                       parked_at = case when f.may_park and o.attempts + 1 >= $7 then now() end
                   from unnest($3::bigint[], $4::text[], $5::float8[], $6::bool[]) as f(seq, error, delay, may_park)
                   where o.seq = f.seq and o.published_at is null
                     and o.aggregate_id in (select aggregate_id from owned)
                   returning o.aggregate_id, o.seq, o.event_id, o.attempts, o.next_attempt_at,
                             o.parked_at, f.may_park
               )
               update outbox.lane l
               set claimed_by = null, claimed_until = null,
                   next_attempt_at = failed.next_attempt_at, outage = not failed.may_park,
                   parked_at = failed.parked_at, head_seq = greatest(l.head_seq, failed.seq)
               from failed
               where l.aggregate_id = failed.aggregate_id
               returning failed.event_id as "event_id!", failed.attempts as "attempts!",
                         (failed.parked_at is not null) as "parked!", not failed.may_park as "outage!""#,
            relay_id,
            &lanes,
            &seqs,
            &errors,
            &delays,
            &may_park,
            max_attempts,
        )
        .fetch_all(&mut *tx)
        .await
        .db("Failed to record failed outbox sends")?
    };
    tx.commit().await.db("Failed to commit the send results")?;
    Ok(Recorded { published, failed })
}

/// The relay's own bookkeeping (claims, results) commits without waiting for
/// the WAL flush. Losing the last few milliseconds of it in a database crash
/// only means events are claimed and sent again — at-least-once, which FIFO
/// deduplication and the consumer's inbox already absorb — and every claim and
/// result is one fsync shorter: lower latency for the next event of a booking.
/// The writers' transactions (the events themselves) are never relaxed.
async fn relaxed_commit(tx: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("set local synchronous_commit = off")
        .execute(tx)
        .await
        .db("Failed to relax the commit")?;
    Ok(())
}

/// Extends the lease of every lane `relay_id` holds; returns how many.
pub async fn renew(pool: &PgPool, relay_id: Uuid, lease: Duration) -> Result<u64, Error> {
    let done = sqlx::query!(
        "update outbox.lane set claimed_until = now() + make_interval(secs => $2) where claimed_by = $1",
        relay_id,
        lease.as_secs_f64(),
    )
    .execute(pool)
    .await
    .db("Failed to renew outbox leases")?;
    Ok(done.rows_affected())
}

/// SQS answers again: every lane that backs off because of an outage (not
/// because SQS refused its event) is due now. Returns how many.
pub async fn end_outage(pool: &PgPool) -> Result<u64, Error> {
    let done = sqlx::query!(
        "update outbox.lane set next_attempt_at = now(), outage = false where outage",
    )
    .execute(pool)
    .await
    .db("Failed to release the outbox lanes held back by the outage")?;
    Ok(done.rows_affected())
}

/// Gives back every lane `relay_id` still holds (on shutdown), so other relays
/// need not wait for the lease to run out.
pub async fn release(pool: &PgPool, relay_id: Uuid) -> Result<u64, Error> {
    let done = sqlx::query!(
        "update outbox.lane set claimed_by = null, claimed_until = null where claimed_by = $1",
        relay_id,
    )
    .execute(pool)
    .await
    .db("Failed to release outbox lanes")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` rows published more than `retention` ago; returns how many.
pub async fn purge_published(pool: &PgPool, retention: Duration, batch: i64) -> Result<u64, Error> {
    let done = sqlx::query!(
        r#"delete from outbox.event where seq in (
               select seq from outbox.event
               where published_at < now() - make_interval(secs => $1)
               order by published_at
               limit $2)"#,
        retention.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await
    .db("Failed to delete published outbox rows")?;
    Ok(done.rows_affected())
}

/// Where an unpublished event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryState {
    /// Waiting for the relay (or for an earlier event of the same aggregate).
    Pending,
    /// Its aggregate is claimed by a relay that is sending it now.
    InFlight,
    /// A send failed; it is retried at `nextAttemptAt`.
    BackingOff,
    /// Gave up after the maximum attempts; `POST /api/outbox/{eventId}/retry` resumes it.
    Parked,
}

/// An event still in the outbox, with its delivery state.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// Position in the outbox (the order events are sent in, per aggregate).
    pub seq: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    #[cfg_attr(feature = "utoipa", schema(example = "FlightBooked"))]
    pub event_type: String,
    /// Its payload version.
    pub event_version: i32,
    /// The kind of aggregate.
    #[cfg_attr(feature = "utoipa", schema(example = "flight"))]
    pub aggregate_type: String,
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// `PENDING`: waiting for the relay, or for an earlier event of its aggregate
    /// to be published first. `IN_FLIGHT`: a relay holds its aggregate and is
    /// sending it now. `BACKING_OFF`: a send failed (see `lastError`); retried at
    /// `nextAttemptAt`, or as soon as SQS answers again after an outage.
    /// `PARKED`: SQS refused it `RELAY_MAX_ATTEMPTS` times; its aggregate waits
    /// until an operator retries it (`POST /api/outbox/{eventId}/retry`).
    pub state: DeliveryState,
    /// Send attempts so far.
    pub attempts: i32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the relay tries it next.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was parked, if it is.
    pub parked_at: Option<DateTime<Utc>>,
    /// When SQS accepted it, if it did.
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
    lane_next_attempt_at: Option<DateTime<Utc>>,
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
        } else if r.attempts > 0 && r.lane_next_attempt_at.is_some_and(|at| at > r.now) {
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
) -> Result<Vec<OutboxEntry>, Error> {
    let rows = sqlx::query_as!(
        EntryRow,
        r#"select o.seq, o.event_id, o.event_type, o.event_version, o.aggregate_type, aggregate_id, o.created_at,
                  o.attempts, o.last_error, o.next_attempt_at, l.claimed_until as "claimed_until?",
                  l.next_attempt_at as "lane_next_attempt_at?", o.parked_at, o.published_at,
                  now() as "now!"
           from outbox.event o left join outbox.lane l using (aggregate_id)
           -- `attempts >= 0` (always true) selects the seq-ordered backlog index (see the migration).
           where o.published_at is null and o.attempts >= 0 and o.seq > $1
           order by o.seq
           limit $2"#,
        after_seq,
        limit,
    )
    .fetch_all(pool)
    .await
    .db("Failed to list the outbox")?;
    Ok(rows.into_iter().map(OutboxEntry::from).collect())
}

/// One event by id, published or not (until retention removes it).
pub async fn find(pool: &PgPool, event_id: Uuid) -> Result<Option<OutboxEntry>, Error> {
    let row = sqlx::query_as!(
        EntryRow,
        r#"select o.seq, o.event_id, o.event_type, o.event_version, o.aggregate_type, o.aggregate_id, o.created_at,
                  o.attempts, o.last_error, o.next_attempt_at, l.claimed_until as "claimed_until?",
                  l.next_attempt_at as "lane_next_attempt_at?", o.parked_at, o.published_at,
                  now() as "now!"
           from outbox.event o left join outbox.lane l
             on l.aggregate_id = o.aggregate_id and o.published_at is null
           where o.event_id = $1"#,
        event_id,
    )
    .fetch_optional(pool)
    .await
    .db("Failed to look up the outbox event")?;
    Ok(row.map(OutboxEntry::from))
}

/// What [`retry`] found.
#[derive(Debug)]
pub enum RetryOutcome {
    /// Back in line, due now, with a fresh set of attempts.
    Requeued(OutboxEntry),
    /// Published already: nothing to retry.
    AlreadyPublished,
    /// Retried less than [`RETRY_INTERVAL`] ago: refused, unchanged.
    TooSoon(OutboxEntry),
    /// No such event (or retention deleted it).
    NotFound,
}

/// The least time between two retries of one event.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Puts a parked (or backing-off) event back in line now and wakes the relays.
/// Each retry resets the event's backoff, so retries of one event are limited
/// to one per [`RETRY_INTERVAL`].
pub async fn retry(pool: &PgPool, event_id: Uuid) -> Result<RetryOutcome, Error> {
    let mut tx = pool.begin().await.db("Failed to begin a transaction")?;
    let updated = sqlx::query!(
        r#"update outbox.event
           set parked_at = null, attempts = 0, next_attempt_at = now(), retried_at = now()
           where event_id = $1 and published_at is null
             and (retried_at is null or retried_at <= now() - make_interval(secs => $2))"#,
        event_id,
        RETRY_INTERVAL.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await
    .db("Failed to requeue the outbox event")?;
    if updated.rows_affected() == 1 {
        // The lane waits on its head: make it due (and no longer parked) too.
        sqlx::query!(
            r#"update outbox.lane set parked_at = null, next_attempt_at = now(), outage = false
               where aggregate_id = (select aggregate_id from outbox.event where event_id = $1)"#,
            event_id,
        )
        .execute(&mut *tx)
        .await
        .db("Failed to requeue the outbox lane")?;
        sqlx::query!("select pg_notify('outbox_events', '')")
            .execute(&mut *tx)
            .await
            .db("Failed to wake the relays")?;
    }
    tx.commit().await.db("Failed to commit the requeue")?;
    match find(pool, event_id).await? {
        None => Ok(RetryOutcome::NotFound),
        Some(entry) if updated.rows_affected() == 1 => Ok(RetryOutcome::Requeued(entry)),
        Some(entry) if entry.published_at.is_some() => Ok(RetryOutcome::AlreadyPublished),
        Some(entry) => Ok(RetryOutcome::TooSoon(entry)),
    }
}

/// The backlog in numbers.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Unpublished and not parked.
    pub pending: i64,
    /// Parked (waiting for an operator).
    pub parked: i64,
    /// Age of the oldest unpublished event, parked ones included (a parked
    /// event is a backlog too): 0 when none.
    pub oldest_pending_age_seconds: f64,
}

/// Reads the lanes (one row per aggregate with a backlog) and one index entry,
/// however many events are pending and however many published rows retention
/// still keeps.
pub async fn stats(pool: &PgPool) -> Result<Stats, Error> {
    // Only a lane's head can be parked, so parked lanes = parked events.
    let row = sqlx::query!(
        r#"select
             coalesce((select sum(pending) from outbox.lane), 0)::int8 as "unpublished!",
             (select count(*) from outbox.lane where parked_at is not null) as "parked!",
             coalesce(extract(epoch from now() - (
                 select created_at from outbox.event where published_at is null and attempts >= 0
                 order by seq limit 1
             ))::float8, 0) as "oldest!""#
    )
    .fetch_one(pool)
    .await
    .db("Failed to read outbox statistics")?;
    Ok(Stats {
        pending: (row.unpublished - row.parked).max(0),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bodies_are_ascii_and_mean_the_same_json() {
        let name = "Ann\u{FFFE}\u{FFFF} Zoë 🛫 \u{0301}";
        let json = serde_json::json!({ "passengerName": name }).to_string();
        let wire = wire_body(&json);
        assert!(wire.is_ascii(), "{wire}");
        assert!(
            wire.contains("\\ufffe") && wire.contains("\\ud83d\\udeeb"),
            "{wire}"
        );
        let back: serde_json::Value = serde_json::from_str(&wire).unwrap();
        assert_eq!(back["passengerName"], name);
        assert_eq!(wire_body("{\"a\":1}"), "{\"a\":1}");
    }
}
