//! What booking-service learns from payment-service: `PaymentApproved`,
//! `PaymentDeclined` and `PaymentRefunded` (queue `payment-events.fifo`), each
//! applied to its booking by the shared consumer (`outbox::consumer`) in one
//! transaction with its inbox entry, exactly once and in each payment's order.

use contracts::{PaymentApprovedV1, PaymentDeclinedV1, PaymentRefundedV1};
use outbox::envelope::{ContractError, EventEnvelope};
use outbox::{Event, Handled, Handler, HandlerError, Poison};
use sqlx::PgConnection;

use crate::flights::{self, PaymentOutcome, Transition};

/// A payment event booking-service understands.
#[derive(Debug, Clone)]
pub enum PaymentEvent {
    Approved(PaymentApprovedV1),
    Declined(PaymentDeclinedV1),
    Refunded(PaymentRefundedV1),
}

/// Applies payment events to bookings.
pub struct PaymentEventsHandler;

impl Handler for PaymentEventsHandler {
    type Event = PaymentEvent;

    /// The three payment events at version 1; anything else is poison, decided
    /// here so it never reaches the database.
    fn decode(&self, envelope: &EventEnvelope) -> Result<PaymentEvent, Poison> {
        Ok(match envelope.event_type.as_str() {
            PaymentApprovedV1::TYPE => PaymentEvent::Approved(envelope.decode()?),
            PaymentDeclinedV1::TYPE => PaymentEvent::Declined(envelope.decode()?),
            PaymentRefundedV1::TYPE => PaymentEvent::Refunded(envelope.decode()?),
            other => return Err(ContractError::UnknownType(other.to_owned()).into()),
        })
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &PaymentEvent,
    ) -> Result<Handled, HandlerError> {
        let (flight_id, transition) = match event {
            PaymentEvent::Approved(e) => (
                e.flight_id,
                flights::record_payment(
                    tx,
                    e.flight_id,
                    e.payment_id,
                    &PaymentOutcome::Approved,
                    e.approved_at,
                )
                .await?,
            ),
            PaymentEvent::Declined(e) => (
                e.flight_id,
                flights::record_payment(
                    tx,
                    e.flight_id,
                    e.payment_id,
                    &PaymentOutcome::Declined {
                        reason: e.reason.clone(),
                    },
                    e.declined_at,
                )
                .await?,
            ),
            PaymentEvent::Refunded(e) => (
                e.flight_id,
                flights::record_refund(tx, e.flight_id, e.payment_id, e.refunded_at).await?,
            ),
        };
        let Some(Transition { before, after }) = transition else {
            // payment-service pays only bookings it heard of from us: this one
            // was never ours (another environment's queue?). Never applicable.
            return Err(Poison {
                reason: "unknown_flight",
                detail: format!(
                    "{} for flight {flight_id}, which does not exist here",
                    envelope.event_type
                ),
            }
            .into());
        };
        let (event_id, event_type) = (envelope.event_id, envelope.event_type.as_str());
        match event {
            PaymentEvent::Refunded(_) if before != flights::BookingStatus::Cancelled => {
                tracing::warn!(%event_id, %flight_id, status = before.as_str(),
                    "payment refunded for a booking that is not cancelled; recorded, status unchanged")
            }
            _ if before != after => {
                tracing::info!(%event_id, %flight_id, event_type, from = before.as_str(),
                    to = after.as_str(), "booking status changed")
            }
            _ => tracing::info!(%event_id, %flight_id, event_type, status = after.as_str(),
                "payment recorded; booking status unchanged"),
        }
        Ok(Handled::Processed)
    }
}
