//! The event contract. Every message on the queue is one [`EventEnvelope`] as
//! JSON; `eventType` + `eventVersion` say how to read `payload`. Consumers refuse
//! a type or version they do not know instead of guessing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    /// Unique per event; the FIFO deduplication id and the consumer's inbox key.
    pub event_id: Uuid,
    /// The event's type, e.g. `FlightBooked`.
    #[cfg_attr(feature = "utoipa", schema(example = "FlightBooked"))]
    pub event_type: String,
    /// The version of the type's payload.
    #[cfg_attr(feature = "utoipa", schema(example = 1))]
    pub event_version: i32,
    /// The kind of entity it is about, e.g. `flight`.
    #[cfg_attr(feature = "utoipa", schema(example = "flight"))]
    pub aggregate_type: String,
    /// The entity the event is about; events of one aggregate are delivered in order.
    pub aggregate_id: Uuid,
    /// The event's position among its aggregate's events: 1, 2, 3… without gaps,
    /// assigned by [`crate::store::enqueue`] in the writer's transaction. A
    /// consumer applies an aggregate's events only in this order (see
    /// [`crate::consumer`]). Absent in events written before sequences existed;
    /// those are applied unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(example = 1))]
    pub sequence: Option<i64>,
    /// When the event was written to the outbox.
    pub occurred_at: DateTime<Utc>,
    /// W3C `traceparent` of the request that caused the event, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's data, shaped by `eventType` + `eventVersion`.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub payload: serde_json::Value,
}

/// An event about to be written to the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event's type.
    pub event_type: &'static str,
    /// The version of its payload.
    pub event_version: i32,
    /// The kind of entity it is about.
    pub aggregate_type: &'static str,
    /// The entity (order is kept per aggregate).
    pub aggregate_id: Uuid,
    /// W3C `traceparent` to continue, when known.
    pub traceparent: Option<String>,
    /// The event's data.
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// Wraps a typed event for `aggregate_id`.
    pub fn of<E: Event>(
        aggregate_id: Uuid,
        event: &E,
        traceparent: Option<String>,
    ) -> Result<Self, crate::Error> {
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
    /// The event type, e.g. `FlightBooked`.
    const TYPE: &'static str;
    /// The payload version; a breaking change is a new version.
    const VERSION: i32;
    /// The kind of entity the event is about, e.g. `flight`.
    const AGGREGATE_TYPE: &'static str;
}

/// Why an envelope cannot be turned into a known event.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The body is not an envelope.
    #[error("body is not an event envelope: {0}")]
    Malformed(String),
    /// A type this consumer does not know.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// A version of a known type this consumer does not read.
    #[error("unsupported version {version} of {event_type}")]
    UnsupportedVersion {
        /// The type.
        event_type: String,
        /// The version received.
        version: i32,
    },
    /// The payload does not match the type's contract.
    #[error("payload of {event_type} v{version} does not match the contract: {reason}")]
    BadPayload {
        /// The type.
        event_type: String,
        /// The version.
        version: i32,
        /// What does not match.
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
    /// Reads an envelope from a message body.
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

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Seated {
        seat: String,
    }

    impl Event for Seated {
        const TYPE: &'static str = "Seated";
        const VERSION: i32 = 1;
        const AGGREGATE_TYPE: &'static str = "ticket";
    }

    fn sample() -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::nil(),
            event_type: "Seated".into(),
            event_version: 1,
            aggregate_type: "ticket".into(),
            aggregate_id: Uuid::nil(),
            sequence: Some(1),
            occurred_at: DateTime::from_timestamp(0, 0).unwrap(),
            traceparent: None,
            payload: serde_json::json!({"seat": "12A"}),
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
    fn an_envelope_without_a_sequence_still_parses() {
        let mut old = serde_json::to_value(sample()).unwrap();
        old.as_object_mut().unwrap().remove("sequence");
        let parsed = EventEnvelope::parse(&old.to_string()).unwrap();
        assert_eq!(parsed.sequence, None);
        assert!(!serde_json::to_string(&parsed).unwrap().contains("sequence"));
    }

    #[test]
    fn decode_checks_type_version_and_payload() {
        let event: Seated = sample().decode().unwrap();
        assert_eq!(event.seat, "12A");

        let mut other = sample();
        other.event_type = "Unseated".into();
        assert!(matches!(
            other.decode::<Seated>(),
            Err(ContractError::UnknownType(_))
        ));
        let mut v2 = sample();
        v2.event_version = 2;
        assert!(matches!(
            v2.decode::<Seated>(),
            Err(ContractError::UnsupportedVersion { .. })
        ));
        let mut bad = sample();
        bad.payload = serde_json::json!({"seat": 5});
        assert!(matches!(
            bad.decode::<Seated>(),
            Err(ContractError::BadPayload { .. })
        ));
        assert!(matches!(
            EventEnvelope::parse("nope"),
            Err(ContractError::Malformed(_))
        ));
    }
}
