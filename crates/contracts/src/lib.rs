//! The events booking-service and payment-service exchange. Each type is one
//! event type at one version ([`outbox::Event`]); a change that is not
//! backwards compatible is a new type with the next version, published next to
//! the old one until every consumer reads it.
//!
//! | event | aggregate | published by | consumed by | queue |
//! |---|---|---|---|---|
//! | [`FlightBookedV1`] | `flight` (the booking) | booking-service | payment-service | `bookings.fifo` |
//! | [`FlightCancelledV1`] | `flight` | booking-service | payment-service | `bookings.fifo` |
//! | [`PaymentApprovedV1`] | `payment` | payment-service | booking-service | `payment-events.fifo` |
//! | [`PaymentDeclinedV1`] | `payment` | payment-service | booking-service | `payment-events.fifo` |
//! | [`PaymentRefundedV1`] | `payment` | payment-service | booking-service | `payment-events.fifo` |
//!
//! Events of one aggregate carry consecutive sequence numbers (the envelope's
//! `sequence`) and are applied in that order: a booking's `FlightCancelled`
//! (sequence 2) is never applied before its `FlightBooked` (1), a payment's
//! `PaymentRefunded` (2) never before its `PaymentApproved` (1).

#![warn(missing_docs)]

use chrono::{DateTime, Utc};
use outbox::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The fare of a booking, in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units, e.g. 12900 for 129.00.
    #[schema(example = 12900)]
    pub amount: i64,
    /// ISO 4217 code, three upper-case letters.
    #[schema(example = "EUR")]
    pub currency: String,
}

/// `FlightBooked` v1: a flight was booked and should be paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlightBookedV1 {
    /// The booking (the aggregate: its events are delivered in order).
    pub flight_id: Uuid,
    /// Where the flight leaves from.
    pub departure_airport: String,
    /// Where it lands.
    pub arrival_airport: String,
    /// Departure, UTC.
    pub departure_date_time: DateTime<Utc>,
    /// Arrival, UTC, after the departure.
    pub arrival_date_time: DateTime<Utc>,
    /// The passenger, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passenger_name: Option<String>,
    /// The amount to charge.
    pub fare: Money,
    /// When the booking was made.
    pub booked_at: DateTime<Utc>,
}

impl Event for FlightBookedV1 {
    const TYPE: &'static str = "FlightBooked";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "flight";
}

/// `FlightCancelled` v1: a booking was cancelled (while its payment was pending,
/// or after it was approved); an approved payment is to be refunded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlightCancelledV1 {
    /// The booking (the aggregate of its `FlightBooked`).
    pub flight_id: Uuid,
    /// When it was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

impl Event for FlightCancelledV1 {
    const TYPE: &'static str = "FlightCancelled";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "flight";
}

/// `PaymentApproved` v1: the booking's fare was charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentApprovedV1 {
    /// The payment (the aggregate: one per booking).
    pub payment_id: Uuid,
    /// The booking it pays for.
    pub flight_id: Uuid,
    /// What was charged.
    pub amount: Money,
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
}

impl Event for PaymentApprovedV1 {
    const TYPE: &'static str = "PaymentApproved";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "payment";
}

/// `PaymentDeclined` v1: the booking's fare was not charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclinedV1 {
    /// The payment (the aggregate).
    pub payment_id: Uuid,
    /// The booking it was for.
    pub flight_id: Uuid,
    /// What was asked for.
    pub amount: Money,
    /// Why it was declined.
    pub reason: String,
    /// When it was declined.
    pub declined_at: DateTime<Utc>,
}

impl Event for PaymentDeclinedV1 {
    const TYPE: &'static str = "PaymentDeclined";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "payment";
}

/// `PaymentRefunded` v1: an approved payment was paid back, because its booking
/// was cancelled. Always after the payment's `PaymentApproved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefundedV1 {
    /// The payment (the aggregate).
    pub payment_id: Uuid,
    /// The booking it was for.
    pub flight_id: Uuid,
    /// What was paid back: the whole amount charged.
    pub amount: Money,
    /// When it was refunded.
    pub refunded_at: DateTime<Utc>,
}

impl Event for PaymentRefundedV1 {
    const TYPE: &'static str = "PaymentRefunded";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "payment";
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbox::{ContractError, EventEnvelope};

    fn sample() -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::nil(),
            event_type: "FlightBooked".into(),
            event_version: 1,
            aggregate_type: "flight".into(),
            aggregate_id: Uuid::nil(),
            sequence: Some(1),
            occurred_at: DateTime::from_timestamp(0, 0).unwrap(),
            traceparent: None,
            payload: serde_json::json!({
                "flightId": Uuid::nil(), "departureAirport": "Paris", "arrivalAirport": "London",
                "departureDateTime": "2023-09-01T08:00:00Z", "arrivalDateTime": "2023-09-01T08:15:00Z",
                "fare": {"amount": 100, "currency": "EUR"}, "bookedAt": "2023-08-01T00:00:00Z"
            }),
        }
    }

    #[test]
    fn decode_checks_type_and_version() {
        let event: FlightBookedV1 = sample().decode().unwrap();
        assert_eq!(event.fare.amount, 100);

        let mut other = sample();
        other.event_type = "FlightCancelled".into();
        assert!(matches!(
            other.decode::<FlightBookedV1>(),
            Err(ContractError::UnknownType(_))
        ));

        let mut v2 = sample();
        v2.event_version = 2;
        assert!(matches!(
            v2.decode::<FlightBookedV1>(),
            Err(ContractError::UnsupportedVersion { .. })
        ));

        let mut bad = sample();
        bad.payload = serde_json::json!({"flightId": 5});
        assert!(matches!(
            bad.decode::<FlightBookedV1>(),
            Err(ContractError::BadPayload { .. })
        ));
    }

    /// The wire names are the contract: camelCase fields, the documented types.
    #[test]
    fn the_saga_events_have_their_documented_shape() {
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let money = Money {
            amount: 9900,
            currency: "EUR".into(),
        };
        let cancelled = serde_json::to_value(FlightCancelledV1 {
            flight_id: Uuid::nil(),
            cancelled_at: at,
        })
        .unwrap();
        assert_eq!(
            cancelled,
            serde_json::json!({"flightId": Uuid::nil(), "cancelledAt": "1970-01-01T00:00:00Z"})
        );
        let approved = serde_json::to_value(PaymentApprovedV1 {
            payment_id: Uuid::nil(),
            flight_id: Uuid::nil(),
            amount: money.clone(),
            approved_at: at,
        })
        .unwrap();
        assert_eq!(
            approved,
            serde_json::json!({"paymentId": Uuid::nil(), "flightId": Uuid::nil(),
                "amount": {"amount": 9900, "currency": "EUR"}, "approvedAt": "1970-01-01T00:00:00Z"})
        );
        let declined = serde_json::to_value(PaymentDeclinedV1 {
            payment_id: Uuid::nil(),
            flight_id: Uuid::nil(),
            amount: money.clone(),
            reason: "too much".into(),
            declined_at: at,
        })
        .unwrap();
        assert_eq!(declined["reason"], "too much");
        assert_eq!(declined["declinedAt"], "1970-01-01T00:00:00Z");
        let refunded = serde_json::to_value(PaymentRefundedV1 {
            payment_id: Uuid::nil(),
            flight_id: Uuid::nil(),
            amount: money,
            refunded_at: at,
        })
        .unwrap();
        assert_eq!(refunded["refundedAt"], "1970-01-01T00:00:00Z");
        assert_eq!(
            [
                (FlightCancelledV1::TYPE, FlightCancelledV1::AGGREGATE_TYPE),
                (PaymentApprovedV1::TYPE, PaymentApprovedV1::AGGREGATE_TYPE),
                (PaymentDeclinedV1::TYPE, PaymentDeclinedV1::AGGREGATE_TYPE),
                (PaymentRefundedV1::TYPE, PaymentRefundedV1::AGGREGATE_TYPE),
            ],
            [
                ("FlightCancelled", "flight"),
                ("PaymentApproved", "payment"),
                ("PaymentDeclined", "payment"),
                ("PaymentRefunded", "payment"),
            ]
        );
    }
}
