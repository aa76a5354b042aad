//! Flights and idempotency keys in the database. Functions that write take a
//! `&mut PgConnection`: the handler owns the transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use contracts::Money;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::NewFlight;

/// A booked flight, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flight {
    /// Booking id (UUIDv7).
    pub id: Uuid,
    #[schema(example = "Paris")]
    pub departure_airport: String,
    #[schema(example = "London")]
    pub arrival_airport: String,
    pub departure_date_time: DateTime<Utc>,
    pub arrival_date_time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passenger_name: Option<String>,
    pub fare: Money,
    /// `BOOKED` once written; payment happens asynchronously in payment-service.
    #[schema(example = "BOOKED")]
    pub status: String,
    pub created_at: DateTime<Utc>,
}

struct FlightRow {
    id: Uuid,
    departure_airport: String,
    arrival_airport: String,
    departure_at: DateTime<Utc>,
    arrival_at: DateTime<Utc>,
    passenger_name: Option<String>,
    fare_amount: i64,
    fare_currency: String,
    status: String,
    created_at: DateTime<Utc>,
}

impl From<FlightRow> for Flight {
    fn from(r: FlightRow) -> Self {
        Self {
            id: r.id,
            departure_airport: r.departure_airport,
            arrival_airport: r.arrival_airport,
            departure_date_time: r.departure_at,
            arrival_date_time: r.arrival_at,
            passenger_name: r.passenger_name,
            fare: Money {
                amount: r.fare_amount,
                currency: r.fare_currency,
            },
            status: r.status,
            created_at: r.created_at,
        }
    }
}

#[tracing::instrument(skip_all, fields(flight_id = %id))]
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    flight: &NewFlight,
) -> anyhow::Result<Flight> {
    let row = sqlx::query_as!(
        FlightRow,
        r#"insert into flight (id, departure_airport, arrival_airport, departure_at, arrival_at,
                               passenger_name, fare_amount, fare_currency)
           values ($1, $2, $3, $4, $5, $6, $7, $8)
           returning id, departure_airport, arrival_airport, departure_at, arrival_at,
                     passenger_name, fare_amount, fare_currency as "fare_currency!", status, created_at"#,
        id,
        flight.departure_airport,
        flight.arrival_airport,
        flight.departure_at,
        flight.arrival_at,
        flight.passenger_name,
        flight.fare.amount,
        flight.fare.currency,
    )
    .fetch_one(conn)
    .await
    .context("Failed to insert the flight")?;
    Ok(row.into())
}

pub async fn find(pool: &PgPool, id: Uuid) -> anyhow::Result<Option<Flight>> {
    let row = sqlx::query_as!(
        FlightRow,
        r#"select id, departure_airport, arrival_airport, departure_at, arrival_at, passenger_name,
                  fare_amount, fare_currency as "fare_currency!", status, created_at
           from flight where id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await
    .context("Failed to look up the flight")?;
    Ok(row.map(Flight::from))
}

/// Newest first; `before` is the last id of the previous page (ids are UUIDv7,
/// so id order is creation order).
pub async fn list(pool: &PgPool, before: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<Flight>> {
    let rows = sqlx::query_as!(
        FlightRow,
        r#"select id, departure_airport, arrival_airport, departure_at, arrival_at, passenger_name,
                  fare_amount, fare_currency as "fare_currency!", status, created_at
           from flight
           where $1::uuid is null or id < $1
           order by id desc
           limit $2"#,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
    .context("Failed to list flights")?;
    Ok(rows.into_iter().map(Flight::from).collect())
}

/// Takes `key` for a new booking. `None`: the key is new and now ours (a
/// concurrent request with the same key waits for our commit). `Some`: it was
/// used before, here is what for.
pub async fn claim_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &[u8],
    flight_id: Uuid,
) -> anyhow::Result<Option<(Vec<u8>, Uuid)>> {
    let inserted = sqlx::query!(
        "insert into idempotency_key (key, request_hash, flight_id) values ($1, $2, $3) on conflict (key) do nothing",
        key,
        request_hash,
        flight_id,
    )
    .execute(&mut *conn)
    .await
    .context("Failed to record the idempotency key")?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    let existing = sqlx::query!(
        "select request_hash, flight_id from idempotency_key where key = $1",
        key
    )
    .fetch_one(&mut *conn)
    .await
    .context("Failed to read the idempotency key")?;
    Ok(Some((existing.request_hash, existing.flight_id)))
}

/// Deletes up to `batch` idempotency keys older than `ttl`; returns how many.
/// A retry after the TTL books again: clients retry within minutes, not days.
pub async fn purge_idempotency_keys(
    pool: &PgPool,
    ttl: std::time::Duration,
    batch: i64,
) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        r#"delete from idempotency_key where key in (
               select key from idempotency_key
               where created_at < now() - make_interval(secs => $1)
               order by created_at
               limit $2)"#,
        ttl.as_secs_f64(),
        batch,
    )
    .execute(pool)
    .await
    .context("Failed to delete old idempotency keys")?;
    Ok(done.rows_affected())
}
