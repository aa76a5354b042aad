"""Schemathesis hooks: the API's rules that JSON Schema cannot state.

The OpenAPI documents state every rule about one field (types, lengths,
patterns, ranges, formats, no unknown fields). A few rules relate two values
or a value and the server's state, and no schema can say them; they are in the
documents' descriptions and enforced with a 422. Schemathesis generates
schema-valid requests that break them and would call those rejections "valid
request rejected". So, for *positive* (schema-valid) cases only, these hooks
make the generated request follow them as a client must:

- POST /api/flights: the arrival is after the departure (both as instants in
  UTC, to the microsecond), both lie within 0000-01-01T00:00:00Z ..
  9999-12-31T23:59:59.999999Z in UTC, and the airports differ (compared
  case-insensitively after NFC normalisation, white space trimmed).
- Idempotency-Key: a new key for each new booking (reusing one with another
  body is a 422 by design, as the IETF Idempotency-Key draft specifies).

Negative cases are left alone: they must be refused as generated.
"""

import datetime
import re
import unicodedata
import uuid

import schemathesis

DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$"
)


def utc_instant(value):
    """The instant as a UTC datetime (microseconds), or None when it is not
    one the API accepts (or Python cannot represent it: years 0 and 10000)."""
    if not isinstance(value, str):
        return None
    match = DATE_TIME.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        local = datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros
        )
        offset = datetime.timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
        utc = local - offset if sign != "-" else local + offset
    except (ValueError, OverflowError):
        return None
    return utc


def rfc3339(utc):
    # Not strftime: its %Y writes year 180 as "180" on Linux, and RFC 3339 wants four digits.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def same_airport(a, b):
    def norm(text):
        return unicodedata.normalize("NFC", text).strip()

    a, b = norm(a), norm(b)
    return a.lower() == b.lower() or a.casefold() == b.casefold()


def follow_booking_rules(body):
    departure = utc_instant(body.get("departureDateTime"))
    arrival = utc_instant(body.get("arrivalDateTime"))
    if departure is None:
        departure = datetime.datetime(2023, 9, 1, 8, 0)
        body["departureDateTime"] = "2023-09-01T08:00:00Z"
    if arrival is None or arrival <= departure:
        try:
            later = departure + datetime.timedelta(hours=1)
        except OverflowError:
            later = None
        if later is None:
            body["departureDateTime"] = "2023-09-01T08:00:00Z"
            body["arrivalDateTime"] = "2023-09-01T09:00:00Z"
        else:
            body["arrivalDateTime"] = rfc3339(later)
    departure_airport = body.get("departureAirport")
    arrival_airport = body.get("arrivalAirport")
    if isinstance(departure_airport, str) and isinstance(arrival_airport, str):
        if same_airport(departure_airport, arrival_airport):
            body["arrivalAirport"] = (
                "Somewhere" if same_airport(departure_airport, "Elsewhere") else "Elsewhere"
            )


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    operation = case.operation
    if (
        operation.method.upper() == "POST"
        and operation.path == "/api/flights"
        and isinstance(case.body, dict)
    ):
        follow_booking_rules(case.body)
    return case
