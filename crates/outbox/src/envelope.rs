//! The event contract. Every message on the queue is one [`EventEnvelope`] as
//! JSON; `eventType` + `eventVersion` say how to read `payload`. Consumers refuse
//! a type or version they do not know instead of guessing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    /// Unique per event; the FIFO deduplication id and the consumer's inbox key.
    pub event_id: Uuid,
    #[schema(example = "FlightBooked")]
    pub event_type: String,
    #[schema(example = 1)]
    pub event_version: i32,
    #[schema(example = "flight")]
    pub aggregate_type: String,
    /// The entity the event is about; events of one aggregate are delivered in order.
    pub aggregate_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// W3C `traceparent` of the request that caused the event, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's data, shaped by `eventType` + `eventVersion`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// An event about to be written to the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub event_version: i32,
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// Wraps a typed event for `aggregate_id`.
    pub fn of<E: Event>(
        aggregate_id: Uuid,
        event: &E,
        traceparent: Option<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            event_type: E::TYPE,
            event_version: E::VERSION,
            aggregate_type: E::AGGREGATE_TYPE,
            aggregate_id,
            traceparent,
            payload: serde_json::to_value(event)?,
        })
    }
}

/// A typed event of the contract.
pub trait Event: Serialize + for<'de> Deserialize<'de> {
    const TYPE: &'static str;
    const VERSION: i32;
    const AGGREGATE_TYPE: &'static str;
}

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
    pub flight_id: Uuid,
    pub departure_airport: String,
    pub arrival_airport: String,
    pub departure_date_time: DateTime<Utc>,
    pub arrival_date_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passenger_name: Option<String>,
    pub fare: Money,
    pub booked_at: DateTime<Utc>,
}

impl Event for FlightBookedV1 {
    const TYPE: &'static str = "FlightBooked";
    const VERSION: i32 = 1;
    const AGGREGATE_TYPE: &'static str = "flight";
}

/// Why an envelope cannot be turned into a known event.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("body is not an event envelope: {0}")]
    Malformed(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("unsupported version {version} of {event_type}")]
    UnsupportedVersion { event_type: String, version: i32 },
    #[error("payload of {event_type} v{version} does not match the contract: {reason}")]
    BadPayload {
        event_type: String,
        version: i32,
        reason: String,
    },
}

impl ContractError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownType(_) => "unknown_type",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::BadPayload { .. } => "bad_payload",
        }
    }
}

impl EventEnvelope {
    pub fn parse(body: &str) -> Result<Self, ContractError> {
        serde_json::from_str(body).map_err(|e| ContractError::Malformed(e.to_string()))
    }

    /// The payload as `E`, after checking type and version.
    pub fn decode<E: Event>(&self) -> Result<E, ContractError> {
        if self.event_type != E::TYPE {
            return Err(ContractError::UnknownType(self.event_type.clone()));
        }
        if self.event_version != E::VERSION {
            return Err(ContractError::UnsupportedVersion {
                event_type: self.event_type.clone(),
                version: self.event_version,
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|e| ContractError::BadPayload {
            event_type: self.event_type.clone(),
            version: self.event_version,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn envelope_round_trips_in_camel_case() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(
            json.contains("\"eventId\"") && json.contains("\"occurredAt\""),
            "{json}"
        );
        assert_eq!(EventEnvelope::parse(&json).unwrap(), sample());
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
        assert!(matches!(
            EventEnvelope::parse("nope"),
            Err(ContractError::Malformed(_))
        ));
    }
}
