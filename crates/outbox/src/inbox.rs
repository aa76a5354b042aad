//! The inbox: the consumer side of exactly-once *effects*. SQS delivers at least
//! once and the relay may re-send after a crash, so a consumer records each event
//! id in the same transaction as the effect. A second delivery finds the id and
//! does nothing.

use anyhow::Context;
use sqlx::PgConnection;
use uuid::Uuid;

/// Records `event_id` as processed on the caller's connection (pass the business
/// transaction). `true`: first time, go ahead with the effect. `false`: already
/// processed, skip it and acknowledge the message.
///
/// Concurrent deliveries of the same event serialise on the primary key: the
/// second insert waits for the first transaction and then sees the conflict.
pub async fn record(
    conn: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    message_id: Option<&str>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query!(
        "insert into inbox (event_id, event_type, message_id) values ($1, $2, $3) on conflict (event_id) do nothing",
        event_id,
        event_type,
        message_id,
    )
    .execute(conn)
    .await
    .context("Failed to record the event in the inbox")?;
    Ok(inserted.rows_affected() == 1)
}
