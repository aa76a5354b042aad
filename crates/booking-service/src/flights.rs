//! Flights (bookings), their lifecycle and idempotency keys in the database.
//! Functions that write take a `&mut PgConnection`: the caller (a handler, the
//! consumer) owns the transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use contracts::Money;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::NewFlight;

/// A booking, as the API shows it.
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
    pub status: BookingStatus,
    /// When `status` last changed (the booking's time until then).
    pub status_changed_at: DateTime<Utc>,
    /// When it was cancelled, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The payment, once payment-service has announced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentInfo>,
    pub created_at: DateTime<Utc>,
}

/// Where a booking stands.
///
/// `PENDING_PAYMENT`: booked, its payment not known yet. `CONFIRMED`: the
/// payment was approved. `REJECTED`: the payment was declined (final).
/// `CANCELLED`: cancelled by the customer, from `PENDING_PAYMENT` or `CONFIRMED`
/// (final; an approved payment is refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    PendingPayment,
    Confirmed,
    Rejected,
    Cancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Confirmed => "CONFIRMED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "PENDING_PAYMENT" => Self::PendingPayment,
            "CONFIRMED" => Self::Confirmed,
            "REJECTED" => Self::Rejected,
            "CANCELLED" => Self::Cancelled,
            other => anyhow::bail!("unknown booking status {other:?}"),
        })
    }
}

/// What payment-service said about the booking's payment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInfo {
    /// The payment's id in payment-service.
    pub id: Uuid,
    pub status: PaymentStatus,
    /// Why it was declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When payment-service approved or declined it.
    pub decided_at: DateTime<Utc>,
    /// When payment-service refunded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<DateTime<Utc>>,
}

/// A payment's state, as payment-service shows it
/// (`GET /api/payments/{flightId}` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Approved,
    Declined,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
            Self::Refunded => "REFUNDED",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "APPROVED" => Self::Approved,
            "DECLINED" => Self::Declined,
            "REFUNDED" => Self::Refunded,
            other => anyhow::bail!("unknown payment status {other:?}"),
        })
    }
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
    status_changed_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
    payment_id: Option<Uuid>,
    payment_status: Option<String>,
    payment_reason: Option<String>,
    payment_decided_at: Option<DateTime<Utc>>,
    payment_refunded_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<FlightRow> for Flight {
    type Error = anyhow::Error;

    fn try_from(r: FlightRow) -> anyhow::Result<Self> {
        let payment = match (r.payment_id, r.payment_status, r.payment_decided_at) {
            (Some(id), Some(status), Some(decided_at)) => Some(PaymentInfo {
                id,
                status: PaymentStatus::parse(&status)?,
                reason: r.payment_reason,
                decided_at,
                refunded_at: r.payment_refunded_at,
            }),
            _ => None,
        };
        Ok(Self {
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
            status: BookingStatus::parse(&r.status)?,
            status_changed_at: r.status_changed_at,
            cancelled_at: r.cancelled_at,
            payment,
            created_at: r.created_at,
        })
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
                     passenger_name, fare_amount, fare_currency as "fare_currency!", status,
                     status_changed_at, cancelled_at, payment_id, payment_status, payment_reason,
                     payment_decided_at, payment_refunded_at, created_at"#,
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
    row.try_into()
}

/// One booking, read on `conn` (a pool, or a transaction that wrote it).
pub async fn find(conn: impl sqlx::PgExecutor<'_>, id: Uuid) -> anyhow::Result<Option<Flight>> {
    let row = sqlx::query_as!(
        FlightRow,
        r#"select id, departure_airport, arrival_airport, departure_at, arrival_at, passenger_name,
                  fare_amount, fare_currency as "fare_currency!", status, status_changed_at,
                  cancelled_at, payment_id, payment_status, payment_reason, payment_decided_at,
                  payment_refunded_at, created_at
           from flight where id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
    .context("Failed to look up the flight")?;
    row.map(Flight::try_from).transpose()
}

/// Newest first; `before` is the last id of the previous page (ids are UUIDv7,
/// so id order is creation order).
pub async fn list(pool: &PgPool, before: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<Flight>> {
    let rows = sqlx::query_as!(
        FlightRow,
        r#"select id, departure_airport, arrival_airport, departure_at, arrival_at, passenger_name,
                  fare_amount, fare_currency as "fare_currency!", status, status_changed_at,
                  cancelled_at, payment_id, payment_status, payment_reason, payment_decided_at,
                  payment_refunded_at, created_at
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
    rows.into_iter().map(Flight::try_from).collect()
}

/// What [`cancel`] found.
#[derive(Debug)]
pub enum Cancellation {
    /// Cancelled now: write its `FlightCancelled` in the same transaction.
    Cancelled(Flight),
    /// Cancelled before: nothing to do (no second event).
    AlreadyCancelled(Flight),
    /// Its payment was declined: a rejected booking cannot be cancelled.
    Rejected(Flight),
}

/// Cancels booking `id` on the caller's transaction, from `PENDING_PAYMENT` or
/// `CONFIRMED`. The booking's row is locked first, so concurrent cancels (and
/// the consumer applying its payment) take turns: exactly one of them cancels.
/// `None`: no such booking.
pub async fn cancel(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Cancellation>> {
    let status = sqlx::query_scalar!("select status from flight where id = $1 for update", id)
        .fetch_optional(&mut *conn)
        .await
        .context("Failed to lock the flight")?;
    let Some(status) = status else {
        return Ok(None);
    };
    let outcome = match BookingStatus::parse(&status)? {
        BookingStatus::Cancelled => Cancellation::AlreadyCancelled(found(conn, id).await?),
        BookingStatus::Rejected => Cancellation::Rejected(found(conn, id).await?),
        BookingStatus::PendingPayment | BookingStatus::Confirmed => {
            sqlx::query!(
                r#"update flight set status = 'CANCELLED', cancelled_at = now(), status_changed_at = now()
                   where id = $1"#,
                id,
            )
            .execute(&mut *conn)
            .await
            .context("Failed to cancel the flight")?;
            Cancellation::Cancelled(found(conn, id).await?)
        }
    };
    Ok(Some(outcome))
}

async fn found(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Flight> {
    find(conn, id)
        .await?
        .with_context(|| format!("Failed to read back flight {id}"))
}

/// A payment's outcome as payment-service announced it.
#[derive(Debug, Clone)]
pub enum PaymentOutcome {
    Approved,
    Declined { reason: String },
}

/// A status change [`record_payment`] or [`record_refund`] made (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub before: BookingStatus,
    pub after: BookingStatus,
}

/// Records the decided payment of booking `flight_id` on the caller's
/// transaction: `PENDING_PAYMENT` becomes `CONFIRMED` (approved) or `REJECTED`
/// (declined). A booking cancelled meanwhile stays `CANCELLED` (an approved
/// payment is then refunded by payment-service, which has its
/// `FlightCancelled`). `None`: no such booking.
pub async fn record_payment(
    conn: &mut PgConnection,
    flight_id: Uuid,
    payment_id: Uuid,
    outcome: &PaymentOutcome,
    decided_at: DateTime<Utc>,
) -> anyhow::Result<Option<Transition>> {
    let Some(before) = lock_status(conn, flight_id).await? else {
        return Ok(None);
    };
    let (after, payment_status, reason) = match (before, outcome) {
        (BookingStatus::PendingPayment, PaymentOutcome::Approved) => {
            (BookingStatus::Confirmed, PaymentStatus::Approved, None)
        }
        (BookingStatus::PendingPayment, PaymentOutcome::Declined { reason }) => (
            BookingStatus::Rejected,
            PaymentStatus::Declined,
            Some(reason),
        ),
        (_, PaymentOutcome::Approved) => (before, PaymentStatus::Approved, None),
        (_, PaymentOutcome::Declined { reason }) => (before, PaymentStatus::Declined, Some(reason)),
    };
    sqlx::query!(
        r#"update flight
           set status = $2,
               status_changed_at = case when status = $2 then status_changed_at else now() end,
               payment_id = $3, payment_status = $4, payment_reason = $5, payment_decided_at = $6
           where id = $1"#,
        flight_id,
        after.as_str(),
        payment_id,
        payment_status.as_str(),
        reason,
        decided_at,
    )
    .execute(&mut *conn)
    .await
    .context("Failed to record the payment on the flight")?;
    Ok(Some(Transition { before, after }))
}

/// Records that booking `flight_id`'s payment was refunded (its status stays:
/// refunds follow cancellations). `None`: no such booking.
pub async fn record_refund(
    conn: &mut PgConnection,
    flight_id: Uuid,
    payment_id: Uuid,
    refunded_at: DateTime<Utc>,
) -> anyhow::Result<Option<Transition>> {
    let Some(before) = lock_status(conn, flight_id).await? else {
        return Ok(None);
    };
    sqlx::query!(
        r#"update flight
           set payment_id = $2, payment_status = 'REFUNDED', payment_refunded_at = $3,
               payment_decided_at = coalesce(payment_decided_at, $3)
           where id = $1"#,
        flight_id,
        payment_id,
        refunded_at,
    )
    .execute(&mut *conn)
    .await
    .context("Failed to record the refund on the flight")?;
    Ok(Some(Transition {
        before,
        after: before,
    }))
}

async fn lock_status(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<BookingStatus>> {
    sqlx::query_scalar!("select status from flight where id = $1 for update", id)
        .fetch_optional(&mut *conn)
        .await
        .context("Failed to lock the flight")?
        .map(|status| BookingStatus::parse(&status))
        .transpose()
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
) -> Result<u64, sqlx::Error> {
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
    .await?;
    Ok(done.rows_affected())
}
