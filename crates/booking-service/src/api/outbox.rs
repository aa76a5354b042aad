//! `/api/outbox`: what is still waiting to be published, and the operator's
//! "retry" for parked events. This is where a user watches events wait while
//! the queue is blocked.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use outbox::store::{self, OutboxEntry, RetryOutcome};
use serde::Serialize;
use service_kit::admin::Operator;
use service_kit::http::{PageQuery, ProblemQuery, next_cursor};
use service_kit::problem::Problem;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;

/// A page of unpublished events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxPage {
    pub items: Vec<OutboxEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List unpublished events
///
/// Events not yet accepted by SQS, oldest first, with their delivery state:
/// attempts, last error, next attempt, parked.
#[utoipa::path(
    get,
    path = "/api/outbox",
    tag = "outbox",
    security(("admin_token" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of unpublished events", body = OutboxPage),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "cursor: is not a cursor this API returned", "errors": [{"field": "cursor", "message": "is not a cursor this API returned"}]})),
        service_kit::admin::Refusals,
    )
)]
pub async fn list_outbox(
    _: Operator,
    State(pool): State<PgPool>,
    ProblemQuery(query): ProblemQuery<PageQuery>,
) -> Result<Json<OutboxPage>, ApiError> {
    let limit = query.limit()?;
    // Sequence numbers are positive: a negative cursor fails to parse.
    let after = query.cursor::<u64>()?.unwrap_or(0) as i64;
    let items = store::list_unpublished(&pool, after, limit).await?;
    let next_cursor = next_cursor(&items, limit, |e| e.seq.to_string());
    Ok(Json(OutboxPage { items, next_cursor }))
}

/// Retry an event
///
/// Puts a parked (or backing-off) event back in line now, with a fresh set of
/// attempts, and wakes the relay.
#[utoipa::path(
    post,
    path = "/api/outbox/{eventId}/retry",
    tag = "outbox",
    security(("admin_token" = [])),
    params(("eventId" = Uuid, Path, description = "The event's id")),
    responses(
        (status = 200, description = "Back in line", body = OutboxEntry),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "eventId: must be a UUID", "errors": [{"field": "eventId", "message": "must be a UUID"}]})),
        (status = 404, description = "No such event (or already deleted by retention)", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "No event with id 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"})),
        (status = 409, description = "Already published", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/conflict", "title": "Conflict", "status": 409, "detail": "Event 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b was already published"})),
        (status = 429, description = "Retried less than a second ago (each retry resets the backoff, so retries are rate-limited per event)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait")),
            example = json!({"type": "/problems/too-many-requests", "title": "Too many requests", "status": 429, "detail": "Event 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b was retried less than 1s ago"})),
        service_kit::admin::Refusals,
    )
)]
pub async fn retry_event(
    _: Operator,
    State(pool): State<PgPool>,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    let event_id =
        Uuid::parse_str(&event_id).map_err(|_| ApiError::bad_field("eventId", "must be a UUID"))?;
    match store::retry(&pool, event_id).await? {
        RetryOutcome::Requeued(entry) => {
            tracing::info!(%event_id, "event put back in line by an operator");
            Ok(Json(entry).into_response())
        }
        RetryOutcome::TooSoon(_) => {
            let wait = store::RETRY_INTERVAL;
            let problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            )
            .detail(format!(
                "Event {event_id} was retried less than {wait:?} ago"
            ));
            Ok((
                [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
                problem,
            )
                .into_response())
        }
        RetryOutcome::AlreadyPublished => Err(ApiError::Conflict(format!(
            "Event {event_id} was already published"
        ))),
        RetryOutcome::NotFound => Err(ApiError::NotFound(format!("No event with id {event_id}"))),
    }
}
