//! The effect of a `FlightBooked` event: one payment. The consumer (shared,
//! `outbox::consumer`) has already recorded the event id in the inbox on the
//! same transaction, and deletes the message only after it commits; so a
//! redelivered event never reaches this code twice.

use contracts::FlightBookedV1;
use outbox::envelope::EventEnvelope;
use outbox::{Handled, Handler, HandlerError, Poison};
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

    /// Only `FlightBooked` v1 with a payable fare is understood; anything else
    /// is poison, decided here so it never reaches the database.
    fn decode(&self, envelope: &EventEnvelope) -> Result<FlightBookedV1, Poison> {
        let event: FlightBookedV1 = envelope.decode()?;
        let currency_ok = event.fare.currency.len() == 3
            && event.fare.currency.bytes().all(|b| b.is_ascii_uppercase());
        if event.fare.amount <= 0 || !currency_ok {
            return Err(Poison {
                reason: "bad_payload",
                detail: format!(
                    "fare {} {:?} cannot be paid",
                    event.fare.amount, event.fare.currency
                ),
            });
        }
        Ok(event)
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &FlightBookedV1,
    ) -> Result<Handled, HandlerError> {
        // In the booking's trace (its `traceparent` came with the event).
        let span = tracing::info_span!("record_payment", event_id = %envelope.event_id,
            flight_id = %event.flight_id, trace_id = tracing::field::Empty);
        service_kit::trace::continue_trace(&span, envelope.traceparent.as_deref());
        tracing::Instrument::instrument(self.record(tx, envelope, event), span)
            .await
            .map_err(Into::into)
    }
}

impl PaymentHandler {
    async fn record(
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
