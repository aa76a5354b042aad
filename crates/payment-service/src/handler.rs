//! One message, one transaction: record the event id in the inbox and, only if
//! it is new, the payment; commit; only then may the consumer delete the
//! message. A duplicate finds its id in the inbox and changes nothing.

use outbox::consumer::{HandleError, Handled, Handler, Received};
use outbox::envelope::{EventEnvelope, FlightBookedV1};
use sqlx::PgPool;

use crate::payments;

pub struct PaymentHandler {
    pool: PgPool,
    decline_above: i64,
}

impl PaymentHandler {
    pub fn new(pool: PgPool, decline_above: i64) -> Self {
        Self {
            pool,
            decline_above,
        }
    }
}

fn poison(e: outbox::envelope::ContractError) -> HandleError {
    HandleError::Poison {
        reason: e.reason(),
        detail: e.to_string(),
    }
}

impl Handler for PaymentHandler {
    async fn handle(&self, message: &Received) -> Result<Handled, HandleError> {
        let envelope = EventEnvelope::parse(&message.body).map_err(poison)?;
        let event: FlightBookedV1 = envelope.decode().map_err(poison)?;

        let mut tx = self.pool.begin().await.map_err(anyhow::Error::from)?;
        let first_time = outbox::inbox::record(
            &mut tx,
            envelope.event_id,
            &envelope.event_type,
            Some(&message.message_id),
        )
        .await?;
        if !first_time {
            tx.rollback().await.map_err(anyhow::Error::from)?;
            tracing::info!(event_id = %envelope.event_id, flight_id = %event.flight_id, "duplicate delivery skipped");
            return Ok(Handled::Duplicate);
        }
        let (outcome, reason) = payments::decide(&event, self.decline_above);
        let recorded = payments::record(
            &mut tx,
            envelope.event_id,
            &event,
            outcome,
            reason.as_deref(),
        )
        .await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        if !recorded {
            tracing::warn!(event_id = %envelope.event_id, flight_id = %event.flight_id,
                "flight already paid by another event; not charged twice");
            return Ok(Handled::Duplicate);
        }
        tracing::info!(event_id = %envelope.event_id, flight_id = %event.flight_id, ?outcome, "payment recorded");
        Ok(Handled::Processed)
    }
}
