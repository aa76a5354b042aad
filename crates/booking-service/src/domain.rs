//! A booking request and the rules it must follow, independent of HTTP and SQL:
//! a request that breaks them is an [`Invalid`] naming every field.

use chrono::{DateTime, Timelike, Utc};
use contracts::Money;
use serde::{Deserialize, Serialize};
use service_kit::error::{Invalid, Violation};
use unicode_normalization::UnicodeNormalization;
use utoipa::ToSchema;

/// Airport names are free text (the AWS sample books "Paris" → "London").
pub const MAX_AIRPORT_LEN: usize = 100;
pub const MAX_PASSENGER_NAME_LEN: usize = 200;
/// 100,000.00 in minor units: anything above is a typo or an attack, not a fare.
pub const MAX_FARE_AMOUNT: i64 = 10_000_000;
/// The fare charged when a request names none: 99.00 EUR.
pub const DEFAULT_FARE_AMOUNT: i64 = 9_900;
pub const DEFAULT_FARE_CURRENCY: &str = "EUR";

/// RFC 3339 with an offset and without a leap second, as a JSON Schema pattern.
pub const DATE_TIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

/// A flight to book: where from and to, when, and optionally who flies and the fare.
///
/// Text is NFC-normalised before it is compared, counted and stored; control and
/// format characters (bidi overrides, zero-width characters) are refused, and so
/// are unknown fields and repeated keys.
// Every field is optional *in the type* so that a missing one is reported by
// name, with all other problems, in one 422; the schema marks them required.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "departureAirport": "Paris",
    "arrivalAirport": "London",
    "departureDateTime": "2023-09-01T08:00:00.000Z",
    "arrivalDateTime": "2023-09-01T08:15:00.000Z"
}))]
pub struct BookFlightRequest {
    #[schema(schema_with = departure_airport_schema, required = true)]
    pub departure_airport: Option<String>,
    #[schema(schema_with = arrival_airport_schema, required = true)]
    pub arrival_airport: Option<String>,
    /// Required. When the flight leaves: an RFC 3339 date-time with an offset,
    /// e.g. `2023-09-01T08:00:00.000Z`. Digits past the microsecond are dropped
    /// (PostgreSQL stores microseconds); a leap second (`:60`) is refused; the
    /// instant must lie between `0000-01-01T00:00:00Z` and
    /// `9999-12-31T23:59:59.999999Z` in UTC.
    #[schema(
        value_type = String,
        format = DateTime,
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
        example = "2023-09-01T08:00:00.000Z",
        required = true,
        nullable = false
    )]
    pub departure_date_time: Option<String>,
    /// Required. When it lands: the same rules as `departureDateTime` (RFC 3339
    /// with an offset, digits past the microsecond dropped, no leap second,
    /// between `0000-01-01T00:00:00Z` and `9999-12-31T23:59:59.999999Z` in UTC),
    /// and at least one microsecond after the departure.
    #[schema(
        value_type = String,
        format = DateTime,
        pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
        example = "2023-09-01T08:15:00.000Z",
        required = true,
        nullable = false
    )]
    pub arrival_date_time: Option<String>,
    #[schema(schema_with = passenger_name_schema)]
    pub passenger_name: Option<String>,
    /// Optional; when absent (or `null`) the standard fare of 99.00 EUR (`{"amount": 9900, "currency": "EUR"}`) is charged.
    pub fare: Option<FareRequest>,
}

fn departure_airport_schema() -> utoipa::openapi::Object {
    service_kit::json::text_schema(
        1,
        MAX_AIRPORT_LEN,
        false,
        "Required. Where the flight leaves from: 1–100 characters, not blank, no control or \
         format characters; surrounding white space is removed.",
        "Paris",
    )
}

fn arrival_airport_schema() -> utoipa::openapi::Object {
    service_kit::json::text_schema(
        1,
        MAX_AIRPORT_LEN,
        false,
        "Required. Where it lands, the same rules as `departureAirport`, and not the same \
         airport (compared case-insensitively).",
        "London",
    )
}

fn passenger_name_schema() -> utoipa::openapi::Object {
    service_kit::json::text_schema(
        1,
        MAX_PASSENGER_NAME_LEN,
        true,
        "Optional. Who flies: 1–200 characters, not blank, no control or format characters; \
         surrounding white space is removed.",
        "Ada Lovelace",
    )
}

/// A fare in minor units of an ISO 4217 currency.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FareRequest {
    /// Minor units (cents): 1 to 10,000,000.
    #[schema(
        value_type = i64,
        minimum = 1,
        maximum = 10_000_000,
        example = 12900,
        required = true,
        nullable = false
    )]
    pub amount: Option<i64>,
    /// An ISO 4217 code: three upper-case letters, e.g. `EUR`.
    #[schema(
        value_type = String,
        min_length = 3,
        max_length = 3,
        pattern = "^[A-Z]{3}$",
        example = "EUR",
        required = true,
        nullable = false
    )]
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
    // Counted, compared and stored composed: "Zu\u{308}rich" is "Zürich", 6 characters.
    let value: String = value.nfc().collect();
    if value.chars().any(service_kit::json::is_refused_char) {
        errors.push(Violation::new(
            field,
            "must not contain control or format characters",
        ));
        return None;
    }
    if value.chars().count() > max {
        errors.push(Violation::new(
            field,
            format!("must be at most {max} characters"),
        ));
        return None;
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(Violation::new(field, "must not be blank"));
        return None;
    }
    Some(trimmed.to_owned())
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
    match parse_date_time(&value) {
        Ok(at) => Some(at),
        Err(message) => {
            errors.push(Violation::new(field, message));
            None
        }
    }
}

/// The earliest and latest instants a booking may name: what RFC 3339 can write
/// in UTC (four-digit years).
fn utc_range() -> (DateTime<Utc>, DateTime<Utc>) {
    let earliest = DateTime::parse_from_rfc3339("0000-01-01T00:00:00Z").expect("a valid constant");
    let latest =
        DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z").expect("a valid constant");
    (earliest.with_timezone(&Utc), latest.with_timezone(&Utc))
}

/// An RFC 3339 date-time with an offset, as the instant PostgreSQL will store:
/// digits past the microsecond dropped, no leap second, within [`utc_range`].
pub fn parse_date_time(value: &str) -> Result<DateTime<Utc>, &'static str> {
    const FORMAT: &str =
        "must be an RFC 3339 date-time with an offset, such as 2023-09-01T08:00:00.000Z";
    // chrono also takes a space for the `T` and other liberties: check the grammar first.
    if !is_rfc3339(value) {
        return Err(FORMAT);
    }
    let parsed = DateTime::parse_from_rfc3339(value).map_err(|_| FORMAT)?;
    // chrono keeps a leap second as a nanosecond count of 1e9 or more.
    if parsed.nanosecond() >= 1_000_000_000 {
        return Err("must not be a leap second (:60): PostgreSQL cannot store one");
    }
    let utc = parsed.with_timezone(&Utc);
    let utc = utc
        .with_nanosecond(utc.nanosecond() / 1_000 * 1_000)
        .ok_or(FORMAT)?;
    let (earliest, latest) = utc_range();
    if utc < earliest || utc > latest {
        return Err("must lie between 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in UTC");
    }
    Ok(utc)
}

/// `YYYY-MM-DD(T|t)hh:mm:ss[.f+](Z|z|±hh:mm)`, digits where digits belong
/// ([`DATE_TIME_PATTERN`] without the leap-second rule, which is reported on its own).
fn is_rfc3339(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
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

    #[test]
    fn date_times_are_stored_as_postgresql_can_hold_them() {
        let at = |v: &str| {
            parse_date_time(v).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        };
        assert_eq!(
            at("2023-09-01T10:00:00.1234569+02:00").unwrap(),
            "2023-09-01T08:00:00.123456Z"
        );
        assert_eq!(at("2023-09-01t08:00:00z").unwrap(), "2023-09-01T08:00:00Z");
        assert_eq!(at("0000-01-01T00:00:00Z").unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(
            at("9999-12-31T23:59:59.9999999Z").unwrap(),
            "9999-12-31T23:59:59.999999Z"
        );
        for bad in [
            "2023-09-01T08:14:60Z",
            "9999-12-31T23:00:00-05:00",
            "0000-01-01T00:00:00+01:00",
            "2023-09-01 08:00:00Z",
            "2023-09-01T08:00:00",
            "2023-09-01T08:00:00.Z",
            "2023-09-01T08:00:00+0200",
            "+2023-09-01T08:00:00Z",
            "2023-02-30T08:00:00Z",
            " 2023-09-01T08:00:00Z",
        ] {
            assert!(parse_date_time(bad).is_err(), "{bad}");
        }
    }
}
