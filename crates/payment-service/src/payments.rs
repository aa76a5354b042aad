//! Payments: the deterministic rule that decides them, and their SQL.

use anyhow::Context;
use chrono::{DateTime, Utc};
use contracts::FlightBookedV1;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

/// How a payment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Approved,
    Declined,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
        }
    }
}

/// The rule, deterministic so demos and tests can produce both outcomes: a fare
/// above `decline_above` minor units is declined, any other is approved.
pub fn decide(event: &FlightBookedV1, decline_above: i64) -> (Outcome, Option<String>) {
    if event.fare.amount > decline_above {
        (
            Outcome::Declined,
            Some(format!(
                "fare {} {} is above the limit of {decline_above}",
                event.fare.amount, event.fare.currency
            )),
        )
    } else {
        (Outcome::Approved, None)
    }
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
    pub outcome: Outcome,
    /// Why it was declined.
    pub reason: Option<String>,
    pub booked_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

struct PaymentRow {
    id: Uuid,
    flight_id: Uuid,
    event_id: Uuid,
    amount: i64,
    currency: String,
    outcome: String,
    reason: Option<String>,
    booked_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
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
                Outcome::Declined
            } else {
                Outcome::Approved
            },
            reason: r.reason,
            booked_at: r.booked_at,
            processed_at: r.processed_at,
        }
    }
}

/// Records the payment for `event` on the caller's transaction. `false` when the
/// flight already has a payment (a second event for one booking): the unique
/// constraint on `flight_id` backs the inbox up.
pub async fn record(
    conn: &mut PgConnection,
    event_id: Uuid,
    event: &FlightBookedV1,
    outcome: Outcome,
    reason: Option<&str>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query!(
        r#"insert into payment (id, flight_id, event_id, amount, currency, outcome, reason, booked_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8)
           on conflict (flight_id) do nothing"#,
        Uuid::now_v7(),
        event.flight_id,
        event_id,
        event.fare.amount,
        event.fare.currency,
        outcome.as_str(),
        reason,
        event.booked_at,
    )
    .execute(conn)
    .await
    .context("Failed to record the payment")?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn find_by_flight(pool: &PgPool, flight_id: Uuid) -> anyhow::Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"select id, flight_id, event_id, amount, currency as "currency!", outcome, reason, booked_at, processed_at
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
        r#"select id, flight_id, event_id, amount, currency as "currency!", outcome, reason, booked_at, processed_at
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
