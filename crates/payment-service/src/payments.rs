//! Payments: the deterministic rule that decides them, their lifecycle
//! (`APPROVED` or `DECLINED`, then `REFUNDED` for an approved one whose booking
//! was cancelled), and their SQL. Functions that write take the consumer's
//! transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use contracts::FlightBookedV1;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

/// What the payment rule decided for a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Approved,
    Declined,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
        }
    }
}

/// The rule, deterministic so demos and tests can produce both outcomes: a fare
/// above `decline_above` minor units is declined, any other is approved.
pub fn decide(event: &FlightBookedV1, decline_above: i64) -> (Decision, Option<String>) {
    if event.fare.amount > decline_above {
        (
            Decision::Declined,
            Some(format!(
                "fare {} {} is above the limit of {decline_above}",
                event.fare.amount, event.fare.currency
            )),
        )
    } else {
        (Decision::Approved, None)
    }
}

/// Where a payment stands now.
///
/// `APPROVED`: charged. `DECLINED`: not charged (final). `REFUNDED`: charged,
/// then paid back because its booking was cancelled (final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Approved,
    Declined,
    Refunded,
}

/// A recorded payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: Uuid,
    /// The booking this pays for (one payment per booking).
    pub flight_id: Uuid,
    /// The event that caused it.
    pub event_id: Uuid,
    /// Minor units.
    #[schema(example = 9900)]
    pub amount: i64,
    #[schema(example = "EUR")]
    pub currency: String,
    /// What was decided when the booking arrived (a refund does not change it).
    pub outcome: Decision,
    pub status: PaymentStatus,
    /// Why it was declined.
    pub reason: Option<String>,
    pub booked_at: DateTime<Utc>,
    /// When it was decided.
    pub processed_at: DateTime<Utc>,
    /// When it was refunded, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<DateTime<Utc>>,
}

struct PaymentRow {
    id: Uuid,
    flight_id: Uuid,
    event_id: Uuid,
    amount: i64,
    currency: String,
    outcome: String,
    status: String,
    reason: Option<String>,
    booked_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
    refunded_at: Option<DateTime<Utc>>,
}

impl From<PaymentRow> for Payment {
    fn from(r: PaymentRow) -> Self {
        Self {
            id: r.id,
            flight_id: r.flight_id,
            event_id: r.event_id,
            amount: r.amount,
            currency: r.currency,
            outcome: if r.outcome == "DECLINED" {
                Decision::Declined
            } else {
                Decision::Approved
            },
            // The table's check constraint allows these three only.
            status: match r.status.as_str() {
                "REFUNDED" => PaymentStatus::Refunded,
                "DECLINED" => PaymentStatus::Declined,
                _ => PaymentStatus::Approved,
            },
            reason: r.reason,
            booked_at: r.booked_at,
            processed_at: r.processed_at,
            refunded_at: r.refunded_at,
        }
    }
}

/// Records the payment for `event` on the caller's transaction and returns it.
/// `None` when the flight already has a payment (a second event for one
/// booking): the unique constraint on `flight_id` backs the inbox up.
pub async fn record(
    conn: &mut PgConnection,
    event_id: Uuid,
    event: &FlightBookedV1,
    outcome: Decision,
    reason: Option<&str>,
) -> anyhow::Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"insert into payment (id, flight_id, event_id, amount, currency, outcome, status, reason, booked_at)
           values ($1, $2, $3, $4, $5, $6, $6, $7, $8)
           on conflict (flight_id) do nothing
           returning id, flight_id, event_id, amount, currency as "currency!", outcome, status,
                     reason, booked_at, processed_at, refunded_at"#,
        Uuid::now_v7(),
        event.flight_id,
        event_id,
        event.fare.amount,
        event.fare.currency,
        outcome.as_str(),
        reason,
        event.booked_at,
    )
    .fetch_optional(conn)
    .await
    .context("Failed to record the payment")?;
    Ok(row.map(Payment::from))
}

/// What [`refund`] found.
#[derive(Debug)]
pub enum Refund {
    /// Approved, now refunded: announce it in the same transaction.
    Refunded(Payment),
    /// Declined: nothing was charged, nothing to refund.
    NothingCharged(Payment),
    /// Refunded before: no second refund.
    AlreadyRefunded(Payment),
    /// No payment for this flight.
    NoPayment,
}

/// Refunds the payment of `flight_id` on the caller's transaction, if it was
/// approved. The payment's row is locked first, so a refund happens once
/// however often it is asked for.
pub async fn refund(conn: &mut PgConnection, flight_id: Uuid) -> anyhow::Result<Refund> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"select id, flight_id, event_id, amount, currency as "currency!", outcome, status,
                  reason, booked_at, processed_at, refunded_at
           from payment where flight_id = $1 for update"#,
        flight_id,
    )
    .fetch_optional(&mut *conn)
    .await
    .context("Failed to lock the payment")?;
    let Some(payment) = row.map(Payment::from) else {
        return Ok(Refund::NoPayment);
    };
    match payment.status {
        PaymentStatus::Declined => return Ok(Refund::NothingCharged(payment)),
        PaymentStatus::Refunded => return Ok(Refund::AlreadyRefunded(payment)),
        PaymentStatus::Approved => {}
    }
    let refunded = sqlx::query_as!(
        PaymentRow,
        r#"update payment set status = 'REFUNDED', refunded_at = now()
           where id = $1
           returning id, flight_id, event_id, amount, currency as "currency!", outcome, status,
                     reason, booked_at, processed_at, refunded_at"#,
        payment.id,
    )
    .fetch_one(&mut *conn)
    .await
    .context("Failed to refund the payment")?;
    Ok(Refund::Refunded(refunded.into()))
}

pub async fn find_by_flight(pool: &PgPool, flight_id: Uuid) -> anyhow::Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"select id, flight_id, event_id, amount, currency as "currency!", outcome, status,
                  reason, booked_at, processed_at, refunded_at
           from payment where flight_id = $1"#,
        flight_id,
    )
    .fetch_optional(pool)
    .await
    .context("Failed to look up the payment")?;
    Ok(row.map(Payment::from))
}

/// Newest first; `before` is the last id of the previous page (UUIDv7).
pub async fn list(pool: &PgPool, before: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<Payment>> {
    let rows = sqlx::query_as!(
        PaymentRow,
        r#"select id, flight_id, event_id, amount, currency as "currency!", outcome, status,
                  reason, booked_at, processed_at, refunded_at
           from payment
           where $1::uuid is null or id < $1
           order by id desc
           limit $2"#,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
    .context("Failed to list payments")?;
    Ok(rows.into_iter().map(Payment::from).collect())
}
