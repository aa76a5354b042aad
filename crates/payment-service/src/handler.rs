//! The effect of booking-service's events. The consumer (shared,
//! `outbox::consumer`) has already recorded the event id in the inbox on the
//! same transaction, checked that it is its booking's next event, and deletes
//! the message only after it commits; so a redelivered event never reaches this
//! code twice, and a `FlightCancelled` never before its `FlightBooked`.
//!
//! - `FlightBooked`: one payment, approved or declined by the rule in
//!   [`crate::payments::decide`], and its `PaymentApproved` / `PaymentDeclined`
//!   written to payment-service's outbox in the same transaction.
//! - `FlightCancelled`: an approved payment is refunded, with its
//!   `PaymentRefunded` in the same transaction; a declined one had nothing
//!   charged, so nothing happens.

use contracts::{
    FlightBookedV1, FlightCancelledV1, Money, PaymentApprovedV1, PaymentDeclinedV1,
    PaymentRefundedV1,
};
use outbox::envelope::{ContractError, EventEnvelope, NewEvent};
use outbox::{Event, Handled, Handler, HandlerError, Poison};
use sqlx::PgConnection;

use crate::payments::{self, Decision, Payment, Refund};

/// A booking event payment-service understands.
#[derive(Debug, Clone)]
pub enum BookingEvent {
    Booked(FlightBookedV1),
    Cancelled(FlightCancelledV1),
}

pub struct PaymentHandler {
    decline_above: i64,
}

impl PaymentHandler {
    pub fn new(decline_above: i64) -> Self {
        Self { decline_above }
    }
}

impl Handler for PaymentHandler {
    type Event = BookingEvent;

    /// `FlightBooked` v1 with a payable fare and `FlightCancelled` v1 are
    /// understood; anything else is poison, decided here so it never reaches
    /// the database.
    fn decode(&self, envelope: &EventEnvelope) -> Result<BookingEvent, Poison> {
        match envelope.event_type.as_str() {
            FlightBookedV1::TYPE => {
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
                Ok(BookingEvent::Booked(event))
            }
            FlightCancelledV1::TYPE => Ok(BookingEvent::Cancelled(envelope.decode()?)),
            other => Err(ContractError::UnknownType(other.to_owned()).into()),
        }
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope,
        event: &BookingEvent,
    ) -> Result<Handled, HandlerError> {
        match event {
            BookingEvent::Booked(event) => self.pay(tx, envelope, event).await,
            BookingEvent::Cancelled(event) => refund(tx, envelope, event).await,
        }
    }
}

impl PaymentHandler {
    async fn pay(
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
        let Some(payment) =
            payments::record(tx, envelope.event_id, event, outcome, reason.as_deref()).await?
        else {
            tracing::warn!(event_id = %envelope.event_id, flight_id = %event.flight_id,
                "flight already paid by another event; not charged twice");
            return Ok(Handled::Duplicate);
        };
        let announcement = match outcome {
            Decision::Approved => NewEvent::of(
                payment.id,
                &PaymentApprovedV1 {
                    payment_id: payment.id,
                    flight_id: payment.flight_id,
                    amount: amount(&payment),
                    approved_at: payment.processed_at,
                },
                envelope.traceparent.clone(),
            )?,
            Decision::Declined => NewEvent::of(
                payment.id,
                &PaymentDeclinedV1 {
                    payment_id: payment.id,
                    flight_id: payment.flight_id,
                    amount: amount(&payment),
                    reason: payment.reason.clone().unwrap_or_default(),
                    declined_at: payment.processed_at,
                },
                envelope.traceparent.clone(),
            )?,
        };
        outbox::store::enqueue(tx, announcement).await?;
        tracing::info!(event_id = %envelope.event_id, flight_id = %event.flight_id,
            payment_id = %payment.id, ?outcome, "payment recorded");
        Ok(Handled::Processed)
    }
}

async fn refund(
    tx: &mut PgConnection,
    envelope: &EventEnvelope,
    event: &FlightCancelledV1,
) -> Result<Handled, HandlerError> {
    let flight_id = event.flight_id;
    match payments::refund(tx, flight_id).await? {
        Refund::Refunded(payment) => {
            let refunded_at = payment.refunded_at.unwrap_or(payment.processed_at);
            let announcement = NewEvent::of(
                payment.id,
                &PaymentRefundedV1 {
                    payment_id: payment.id,
                    flight_id,
                    amount: amount(&payment),
                    refunded_at,
                },
                envelope.traceparent.clone(),
            )?;
            outbox::store::enqueue(tx, announcement).await?;
            tracing::info!(event_id = %envelope.event_id, %flight_id, payment_id = %payment.id,
                "booking cancelled: payment refunded");
            Ok(Handled::Processed)
        }
        Refund::NothingCharged(payment) => {
            tracing::info!(event_id = %envelope.event_id, %flight_id, payment_id = %payment.id,
                "booking cancelled: its payment was declined, nothing to refund");
            Ok(Handled::Processed)
        }
        Refund::AlreadyRefunded(payment) => {
            tracing::warn!(event_id = %envelope.event_id, %flight_id, payment_id = %payment.id,
                "booking cancelled again by another event; refunded once already");
            Ok(Handled::Duplicate)
        }
        // Its FlightBooked comes first (sequence order), so a payment exists
        // unless the booking was never paid here at all. Never applicable.
        Refund::NoPayment => Err(Poison {
            reason: "unknown_flight",
            detail: format!("FlightCancelled for flight {flight_id}, which has no payment here"),
        }
        .into()),
    }
}

fn amount(payment: &Payment) -> Money {
    Money {
        amount: payment.amount,
        currency: payment.currency.clone(),
    }
}
