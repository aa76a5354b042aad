//! The inbox: the consumer side of exactly-once *effects*. SQS delivers at least
//! once and the relay may re-send after a crash, so a consumer records each event
//! id in the same transaction as the effect. A second delivery finds the id and
//! does nothing.
//!
//! Beside it, the *positions*: the last sequence number applied per aggregate
//! (`outbox.inbox_position`), so an event is applied only right after the one
//! before it (see the migration and [`crate::consumer`]).

use std::collections::{HashMap, HashSet};

use std::time::Duration;

use crate::error::{DbContext, Error};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One event to record.
pub struct Entry<'a> {
    /// The event's id (the inbox key).
    pub event_id: Uuid,
    /// Its type (for operators).
    pub event_type: &'a str,
    /// The broker's message id (for operators).
    pub message_id: &'a str,
}

/// Records the events as processed on the caller's connection (pass the
/// business transaction) and returns the ids that were new: apply those, skip
/// the others. One statement for a whole receive.
///
/// Concurrent deliveries of the same event serialise on the primary key: the
/// second insert waits for the first transaction and then sees the conflict.
pub async fn record(
    conn: &mut PgConnection,
    entries: &[Entry<'_>],
) -> Result<HashSet<Uuid>, Error> {
    if entries.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<Uuid> = entries.iter().map(|e| e.event_id).collect();
    let types: Vec<String> = entries.iter().map(|e| e.event_type.to_owned()).collect();
    let messages: Vec<String> = entries.iter().map(|e| e.message_id.to_owned()).collect();
    let new = sqlx::query_scalar!(
        r#"insert into outbox.inbox (event_id, event_type, message_id)
           select * from unnest($1::uuid[], $2::text[], $3::text[])
           on conflict (event_id) do nothing
           returning event_id"#,
        &ids,
        &types,
        &messages,
    )
    .fetch_all(conn)
    .await
    .db("Failed to record the events in the inbox")?;
    Ok(new.into_iter().collect())
}

/// Takes an event back out of the inbox, within the caller's transaction, when
/// its effect could not be applied after all: it must look new when it returns.
pub async fn forget(conn: &mut PgConnection, event_id: Uuid) -> Result<(), Error> {
    sqlx::query!("delete from outbox.inbox where event_id = $1", event_id)
        .execute(conn)
        .await
        .db("Failed to remove the event from the inbox")?;
    Ok(())
}

/// Forgets up to `limit` entries recorded more than `retention` ago, oldest
/// first; returns how many. Once an entry is gone a copy of its event would be
/// applied again, so `retention` must outlast every way a copy can still
/// arrive: the queue's retention, plus the DLQ's if messages are redriven.
pub async fn purge(pool: &PgPool, retention: Duration, limit: i64) -> Result<u64, Error> {
    let deleted = sqlx::query!(
        r#"delete from outbox.inbox where event_id in (
               select event_id from outbox.inbox
               where received_at < now() - make_interval(secs => $1)
               order by received_at
               limit $2)"#,
        retention.as_secs_f64(),
        limit,
    )
    .execute(pool)
    .await
    .db("Failed to purge the inbox")?;
    Ok(deleted.rows_affected())
}

/// An aggregate, as positions are kept: (type, id).
pub type AggregateKey = (String, Uuid);

/// Locks the positions of `aggregates` on the caller's transaction (creating
/// them at 0 for aggregates new to this consumer) and returns the last sequence
/// applied of each. Concurrent consumers of one aggregate serialise on its row
/// until they commit. Rows are taken in key order, so two receives that share
/// aggregates cannot deadlock on them.
pub async fn lock_positions(
    conn: &mut PgConnection,
    aggregates: &[AggregateKey],
) -> Result<HashMap<AggregateKey, i64>, Error> {
    if aggregates.is_empty() {
        return Ok(HashMap::new());
    }
    let mut keys = aggregates.to_vec();
    keys.sort();
    keys.dedup();
    let (types, ids): (Vec<String>, Vec<Uuid>) = keys.into_iter().unzip();
    // The no-op update on conflict locks an existing row and returns its value.
    let rows = sqlx::query!(
        r#"insert into outbox.inbox_position as p (aggregate_type, aggregate_id, last)
           select t, a, 0 from unnest($1::text[], $2::uuid[]) as u(t, a)
           order by t, a
           on conflict (aggregate_type, aggregate_id) do update set last = p.last
           returning aggregate_type, aggregate_id, last"#,
        &types,
        &ids,
    )
    .fetch_all(conn)
    .await
    .db("Failed to lock the consumer's positions")?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.aggregate_type, r.aggregate_id), r.last))
        .collect())
}

/// Records the last sequence applied for each aggregate (locked before with
/// [`lock_positions`] on the same transaction).
pub async fn advance_positions(
    conn: &mut PgConnection,
    positions: &HashMap<AggregateKey, i64>,
) -> Result<(), Error> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(positions.len());
    let mut ids = Vec::with_capacity(positions.len());
    let mut lasts = Vec::with_capacity(positions.len());
    for ((aggregate_type, aggregate_id), last) in positions {
        types.push(aggregate_type.clone());
        ids.push(*aggregate_id);
        lasts.push(*last);
    }
    sqlx::query!(
        r#"update outbox.inbox_position p set last = u.last, updated_at = now()
           from unnest($1::text[], $2::uuid[], $3::int8[]) as u(t, a, last)
           where p.aggregate_type = u.t and p.aggregate_id = u.a"#,
        &types,
        &ids,
        &lasts,
    )
    .execute(conn)
    .await
    .db("Failed to record the consumer's positions")?;
    Ok(())
}
