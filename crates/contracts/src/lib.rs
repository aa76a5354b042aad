//! The events booking-service and payment-service exchange. Each type is one
//! event type at one version ([`outbox::Event`]); a change that is not
//! backwards compatible is a new type with the next version, published next to
//! the old one until every consumer reads it.

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
}
