//! A booking request and the rules it must follow, independent of HTTP and SQL:
//! a request that breaks them is an [`Invalid`] naming every field.

use chrono::{DateTime, Utc};
use outbox::envelope::Money;
use serde::{Deserialize, Serialize};
use service_kit::error::{Invalid, Violation};
use utoipa::ToSchema;

/// Airport names are free text (the AWS sample books "Paris" → "London").
pub const MAX_AIRPORT_LEN: usize = 100;
pub const MAX_PASSENGER_NAME_LEN: usize = 200;
/// 100,000.00 in minor units: anything above is a typo or an attack, not a fare.
pub const MAX_FARE_AMOUNT: i64 = 10_000_000;
/// The fare charged when a request names none: 99.00 EUR.
pub const DEFAULT_FARE_AMOUNT: i64 = 9_900;
pub const DEFAULT_FARE_CURRENCY: &str = "EUR";

/// A flight to book: where from and to, when, and optionally who flies and the fare.
// Every field is optional *in the type* so that a missing one is reported by
// name, with all other problems, in one 422; the schema marks them required.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "departureAirport": "Paris",
    "arrivalAirport": "London",
    "departureDateTime": "2023-09-01T08:00:00.000Z",
    "arrivalDateTime": "2023-09-01T08:15:00.000Z"
}))]
pub struct BookFlightRequest {
    /// Required. Where the flight leaves from (1–100 characters).
    #[schema(example = "Paris", required = true, nullable = false)]
    pub departure_airport: Option<String>,
    /// Required. Where it lands; must differ from the departure.
    #[schema(example = "London", required = true, nullable = false)]
    pub arrival_airport: Option<String>,
    /// Required. RFC 3339 date-time, e.g. `2023-09-01T08:00:00.000Z`.
    #[schema(
        example = "2023-09-01T08:00:00.000Z",
        required = true,
        nullable = false
    )]
    pub departure_date_time: Option<String>,
    /// Required. RFC 3339 date-time after the departure.
    #[schema(
        example = "2023-09-01T08:15:00.000Z",
        required = true,
        nullable = false
    )]
    pub arrival_date_time: Option<String>,
    /// Optional, up to 200 characters.
    #[schema(example = "Ada Lovelace")]
    pub passenger_name: Option<String>,
    /// Optional; when absent the standard fare of 99.00 EUR (`{"amount": 9900, "currency": "EUR"}`) is charged.
    pub fare: Option<FareRequest>,
}

/// A fare in minor units of an ISO 4217 currency.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct FareRequest {
    /// Minor units (cents): 1 to 10,000,000.
    #[schema(example = 12900, required = true, nullable = false)]
    pub amount: Option<i64>,
    /// Three upper-case letters, e.g. `EUR`.
    #[schema(example = "EUR", required = true, nullable = false)]
    pub currency: Option<String>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFlight {
    pub departure_airport: String,
    pub arrival_airport: String,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub passenger_name: Option<String>,
    pub fare: Money,
}

impl BookFlightRequest {
    /// Checks every rule and reports every broken one, by field.
    pub fn validate(self) -> Result<NewFlight, Invalid> {
        let mut errors = Vec::new();
        let departure_airport = required_text(
            &mut errors,
            "departureAirport",
            self.departure_airport,
            MAX_AIRPORT_LEN,
        );
        let arrival_airport = required_text(
            &mut errors,
            "arrivalAirport",
            self.arrival_airport,
            MAX_AIRPORT_LEN,
        );
        if let (Some(from), Some(to)) = (&departure_airport, &arrival_airport)
            && from.to_lowercase() == to.to_lowercase()
        {
            errors.push(Violation::new(
                "arrivalAirport",
                "must differ from departureAirport",
            ));
        }
        let departure_at = date_time(&mut errors, "departureDateTime", self.departure_date_time);
        let arrival_at = date_time(&mut errors, "arrivalDateTime", self.arrival_date_time);
        if let (Some(dep), Some(arr)) = (departure_at, arrival_at)
            && arr <= dep
        {
            errors.push(Violation::new(
                "arrivalDateTime",
                "must be after departureDateTime",
            ));
        }
        let passenger_name = match self.passenger_name {
            None => None,
            Some(name) => required_text(
                &mut errors,
                "passengerName",
                Some(name),
                MAX_PASSENGER_NAME_LEN,
            ),
        };
        let fare = match self.fare {
            None => Some(Money {
                amount: DEFAULT_FARE_AMOUNT,
                currency: DEFAULT_FARE_CURRENCY.to_owned(),
            }),
            Some(fare) => money(&mut errors, fare),
        };
        match (
            departure_airport,
            arrival_airport,
            departure_at,
            arrival_at,
            fare,
        ) {
            (
                Some(departure_airport),
                Some(arrival_airport),
                Some(departure_at),
                Some(arrival_at),
                Some(fare),
            ) if errors.is_empty() => Ok(NewFlight {
                departure_airport,
                arrival_airport,
                departure_at,
                arrival_at,
                passenger_name,
                fare,
            }),
            _ => Err(Invalid(errors)),
        }
    }
}

fn required_text(
    errors: &mut Vec<Violation>,
    field: &str,
    value: Option<String>,
    max: usize,
) -> Option<String> {
    let Some(value) = value else {
        errors.push(Violation::new(field, "is required"));
        return None;
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(Violation::new(field, "must not be blank"));
        None
    } else if trimmed.chars().count() > max {
        errors.push(Violation::new(
            field,
            format!("must be at most {max} characters"),
        ));
        None
    } else if trimmed.chars().any(char::is_control) {
        errors.push(Violation::new(field, "must not contain control characters"));
        None
    } else {
        Some(trimmed.to_owned())
    }
}

fn date_time(
    errors: &mut Vec<Violation>,
    field: &str,
    value: Option<String>,
) -> Option<DateTime<Utc>> {
    let Some(value) = value else {
        errors.push(Violation::new(field, "is required"));
        return None;
    };
    match DateTime::parse_from_rfc3339(value.trim()) {
        Ok(parsed) => Some(parsed.with_timezone(&Utc)),
        Err(_) => {
            errors.push(Violation::new(
                field,
                "must be an RFC 3339 date-time such as 2023-09-01T08:00:00.000Z",
            ));
            None
        }
    }
}

fn money(errors: &mut Vec<Violation>, fare: FareRequest) -> Option<Money> {
    let amount = match fare.amount {
        None => {
            errors.push(Violation::new("fare.amount", "is required"));
            None
        }
        Some(a) if a <= 0 => {
            errors.push(Violation::new(
                "fare.amount",
                "must be a positive number of minor units",
            ));
            None
        }
        Some(a) if a > MAX_FARE_AMOUNT => {
            errors.push(Violation::new(
                "fare.amount",
                format!("must be at most {MAX_FARE_AMOUNT} minor units"),
            ));
            None
        }
        Some(a) => Some(a),
    };
    let currency = match fare.currency {
        None => {
            errors.push(Violation::new("fare.currency", "is required"));
            None
        }
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => Some(c),
        Some(_) => {
            errors.push(Violation::new(
                "fare.currency",
                "must be an ISO 4217 code: three upper-case letters",
            ));
            None
        }
    };
    Some(Money {
        amount: amount?,
        currency: currency?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BookFlightRequest {
        BookFlightRequest {
            departure_airport: Some("Paris".into()),
            arrival_airport: Some("London".into()),
            departure_date_time: Some("2023-09-01T08:00:00.000Z".into()),
            arrival_date_time: Some("2023-09-01T08:15:00.000Z".into()),
            passenger_name: None,
            fare: None,
        }
    }

    fn fields(invalid: Invalid) -> Vec<String> {
        invalid.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn sample_is_valid_and_gets_the_default_fare() {
        let flight = sample().validate().unwrap();
        assert_eq!(
            flight.fare,
            Money {
                amount: DEFAULT_FARE_AMOUNT,
                currency: "EUR".into()
            }
        );
        assert_eq!(
            flight.departure_at.to_rfc3339(),
            "2023-09-01T08:00:00+00:00"
        );
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let request = BookFlightRequest {
            departure_airport: Some("  ".into()),
            arrival_airport: None,
            departure_date_time: Some("yesterday".into()),
            arrival_date_time: None,
            passenger_name: Some("x".repeat(201)),
            fare: Some(FareRequest {
                amount: Some(-5),
                currency: Some("eur".into()),
            }),
        };
        assert_eq!(
            fields(request.validate().unwrap_err()),
            [
                "departureAirport",
                "arrivalAirport",
                "departureDateTime",
                "arrivalDateTime",
                "passengerName",
                "fare.amount",
                "fare.currency"
            ]
        );
    }

    #[test]
    fn same_airports_and_time_travel_are_refused() {
        let mut request = sample();
        request.arrival_airport = Some("paris".into());
        request.arrival_date_time = request.departure_date_time.clone();
        assert_eq!(
            fields(request.validate().unwrap_err()),
            ["arrivalAirport", "arrivalDateTime"]
        );
    }

    #[test]
    fn absurd_fares_are_refused() {
        let mut request = sample();
        request.fare = Some(FareRequest {
            amount: Some(MAX_FARE_AMOUNT + 1),
            currency: Some("EUR".into()),
        });
        assert_eq!(fields(request.validate().unwrap_err()), ["fare.amount"]);
    }
}
