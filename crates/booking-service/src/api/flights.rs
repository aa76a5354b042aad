//! `/api/flights`: book a flight (flight + event in one transaction), read one,
//! list them, cancel one (status + event in one transaction).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contracts::{FlightBookedV1, FlightCancelledV1};
use outbox::envelope::NewEvent;
use serde::Serialize;
use service_kit::admin::Operator;
use service_kit::http::{PageQuery, ProblemQuery, UuidCursor, next_cursor};
use service_kit::problem::Problem;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::domain::BookFlightRequest;
use crate::flights::{self, Cancellation, Flight};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Book a flight
///
/// Writes the flight and its `FlightBooked` event in one transaction: both are
/// committed, or neither. The relay then publishes the event to SQS.
///
/// Send an `Idempotency-Key` header to make retries safe: a retry with the same
/// key and body returns the original booking (same id, no second event).
#[utoipa::path(
    post,
    path = "/api/flights",
    tag = "flights",
    request_body = BookFlightRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$",
         description = "Makes retries safe: 1 to 255 visible ASCII characters, unique per booking"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, carried to the consumer; a malformed one is ignored (a new trace is started)"),
    ),
    responses(
        (status = 201, description = "Booked (or the original booking, for a retried Idempotency-Key)", body = Flight,
         headers(("Location" = String, description = "URL of the booking"))),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "The body is not valid JSON: EOF while parsing an object at line 1 column 42"})),
        (status = 413, description = "Body over the size limit", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/payload-too-large", "title": "Request body too large", "status": 413, "detail": "The body is larger than 16384 bytes"})),
        (status = 415, description = "Body is not application/json", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/unsupported-media-type", "title": "Unsupported media type", "status": 415, "detail": "Send the body as application/json"})),
        (status = 422, description = "Invalid fields, or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/validation-error", "title": "Invalid request", "status": 422, "detail": "arrivalDateTime: must be after departureDateTime", "errors": [{"field": "arrivalDateTime", "message": "must be after departureDateTime"}]})),
        (status = 500, description = "Nothing was written", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/internal-error", "title": "Internal server error", "status": 500, "detail": "The request could not be completed; it has been logged. Retrying is safe."})),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn book_flight(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: JsonBody<BookFlightRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let new_flight = body.value.validate()?;
    let traceparent = crate::trace::traceparent(&headers);
    let flight_id = Uuid::now_v7();

    let mut tx = pool.begin().await.map_err(anyhow::Error::from)?;
    if let Some(key) = &key {
        let hash = Sha256::digest(&body.canonical).to_vec();
        if let Some((stored_hash, original)) =
            flights::claim_idempotency_key(&mut tx, key, &hash, flight_id).await?
        {
            tx.rollback().await.map_err(anyhow::Error::from)?;
            if stored_hash != hash {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let flight = flights::find(&pool, original).await?.ok_or_else(|| {
                anyhow::anyhow!("idempotency key points to a missing flight {original}")
            })?;
            tracing::info!(flight_id = %flight.id, "idempotent retry answered with the original booking");
            return Ok(created(flight, true));
        }
    }
    let flight = flights::insert(&mut tx, flight_id, &new_flight).await?;
    let event = FlightBookedV1 {
        flight_id: flight.id,
        departure_airport: flight.departure_airport.clone(),
        arrival_airport: flight.arrival_airport.clone(),
        departure_date_time: flight.departure_date_time,
        arrival_date_time: flight.arrival_date_time,
        passenger_name: flight.passenger_name.clone(),
        fare: flight.fare.clone(),
        booked_at: flight.created_at,
    };
    let envelope =
        outbox::store::enqueue(&mut tx, NewEvent::of(flight.id, &event, Some(traceparent))?)
            .await?;
    tx.commit()
        .await
        .map_err(|e| anyhow::Error::from(e).context("Failed to commit the booking"))?;

    tracing::info!(flight_id = %flight.id, event_id = %envelope.event_id, "flight booked");
    Ok(created(flight, false))
}

fn created(flight: Flight, replayed: bool) -> Response {
    let location = format!("/api/flights/{}", flight.id);
    let mut response = (StatusCode::CREATED, Json(flight)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a path is a valid header"),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Cancel a booking
///
/// Cancels a `PENDING_PAYMENT` or `CONFIRMED` booking: writes its status
/// `CANCELLED` and a `FlightCancelled` event in one transaction. payment-service
/// then refunds an approved payment (`PaymentRefunded`, shown under `payment`
/// here once it arrives); the booking stays `CANCELLED` whatever its payment's
/// outcome. Cancelling a cancelled booking changes nothing and answers it again
/// (no second event); a `REJECTED` booking cannot be cancelled.
#[utoipa::path(
    post,
    path = "/api/flights/{id}/cancel",
    tag = "flights",
    params(
        ("id" = Uuid, Path, description = "Booking id"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, carried to payment-service"),
    ),
    responses(
        (status = 200, description = "The booking, `CANCELLED` (now, or already before)", body = Flight),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "id: must be a UUID", "errors": [{"field": "id", "message": "must be a UUID"}]})),
        (status = 404, description = "No such booking", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "No flight with id 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"})),
        (status = 409, description = "The booking was rejected (its payment was declined): nothing to cancel", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/conflict", "title": "Conflict", "status": 409, "detail": "Flight 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b is REJECTED (its payment was declined): only PENDING_PAYMENT and CONFIRMED bookings can be cancelled"})),
        (status = 500, description = "Nothing was written", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/internal-error", "title": "Internal server error", "status": 500, "detail": "The request could not be completed; it has been logged. Retrying is safe."})),
    )
)]
#[tracing::instrument(skip_all, fields(flight_id = %id))]
pub async fn cancel_flight(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Flight>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad_field("id", "must be a UUID"))?;
    let mut tx = pool.begin().await.map_err(anyhow::Error::from)?;
    let flight = match flights::cancel(&mut tx, id).await? {
        None => return Err(ApiError::NotFound(format!("No flight with id {id}"))),
        Some(Cancellation::Rejected(_)) => {
            return Err(ApiError::Conflict(format!(
                "Flight {id} is REJECTED (its payment was declined): only PENDING_PAYMENT and CONFIRMED bookings can be cancelled"
            )));
        }
        Some(Cancellation::AlreadyCancelled(flight)) => flight,
        Some(Cancellation::Cancelled(flight)) => {
            let event = FlightCancelledV1 {
                flight_id: flight.id,
                cancelled_at: flight.cancelled_at.unwrap_or(flight.status_changed_at),
            };
            let traceparent = crate::trace::traceparent(&headers);
            let envelope = outbox::store::enqueue(
                &mut tx,
                NewEvent::of(flight.id, &event, Some(traceparent))?,
            )
            .await?;
            tracing::info!(flight_id = %flight.id, event_id = %envelope.event_id, "flight cancelled");
            flight
        }
    };
    tx.commit()
        .await
        .map_err(|e| anyhow::Error::from(e).context("Failed to commit the cancellation"))?;
    Ok(Json(flight))
}

/// Get a flight
#[utoipa::path(
    get,
    path = "/api/flights/{id}",
    tag = "flights",
    params(("id" = Uuid, Path, description = "Booking id")),
    responses(
        (status = 200, description = "The booking", body = Flight),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "id: must be a UUID", "errors": [{"field": "id", "message": "must be a UUID"}]})),
        (status = 404, description = "No such booking", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "No flight with id 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"})),
    )
)]
pub async fn get_flight(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
) -> Result<Json<Flight>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad_field("id", "must be a UUID"))?;
    flights::find(&pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("No flight with id {id}")))
}

/// A page of flights, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlightPage {
    pub items: Vec<Flight>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List flights
///
/// Every booking, newest first, paged with `limit` and `cursor`. An operator
/// action: send the service's `ADMIN_TOKEN` as a bearer token ("Authorize").
#[utoipa::path(
    get,
    path = "/api/flights",
    tag = "flights",
    params(PageQuery<UuidCursor>),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of bookings", body = FlightPage),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "limit: must be between 1 and 100", "errors": [{"field": "limit", "message": "must be between 1 and 100"}]})),
        service_kit::admin::Refusals,
    )
)]
pub async fn list_flights(
    _: Operator,
    State(state): State<AppState>,
    ProblemQuery(query): ProblemQuery<PageQuery<UuidCursor>>,
) -> Result<Json<FlightPage>, ApiError> {
    let limit = query.limit()?;
    let before = query.cursor::<Uuid>()?;
    let items = flights::list(&state.pool, before, limit).await?;
    let next_cursor = next_cursor(&items, limit, |f| f.id.to_string());
    Ok(Json(FlightPage { items, next_cursor }))
}
