//! The effect of a `FlightBooked` event: one payment. The consumer (shared,
//! `outbox::consumer`) has already recorded the event id in the inbox on the
//! same transaction, and deletes the message only after it commits; so a
//! redelivered event never reaches this code twice.

use outbox::consumer::{Handled, Handler, Poison};
use outbox::envelope::{EventEnvelope, FlightBookedV1};
use sqlx::PgConnection;

use crate::payments;

pub struct PaymentHandler {
    decline_above: i64,
}

impl PaymentHandler {
    pub fn new(decline_above: i64) -> Self {
        Self { decline_above }
    }
}

impl Handler for PaymentHandler {
    type Event = FlightBookedV1;

    /// Only `FlightBooked` v1 is understood; anything else is poison.
    fn decode(&self, envelope: &EventEnvelope) -> Result<FlightBookedV1, Poison> {
        Ok(envelope.decode()?)
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &FlightBookedV1,
    ) -> anyhow::Result<Handled> {
        let (outcome, reason) = payments::decide(event, self.decline_above);
        if !payments::record(tx, envelope.event_id, event, outcome, reason.as_deref()).await? {
            tracing::warn!(event_id = %envelope.event_id, flight_id = %event.flight_id,
                "flight already paid by another event; not charged twice");
            return Ok(Handled::Duplicate);
        }
        tracing::info!(event_id = %envelope.event_id, flight_id = %event.flight_id, ?outcome, "payment recorded");
        Ok(Handled::Processed)
    }
}
