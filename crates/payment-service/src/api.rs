//! The HTTP surface: payments (read-only), health, metrics, Swagger UI.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use service_kit::error::ApiError;
use service_kit::http::{PageQuery, ProblemQuery, UuidCursor, next_cursor};
use service_kit::problem::Problem;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use outbox::sqs::{Queue, Redrive};
use serde::Deserialize;
use service_kit::admin::{AdminToken, Operator, SecurityAddon};

use crate::payments::{self, Payment};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub relay_metrics: outbox::metrics::RelayMetrics,
    /// The parts this process runs (relay, consumer, pools), for `/health/status`.
    pub parts: service_kit::status::Parts,
    /// The queue consumed (for the DLQ redrive), when configured.
    pub queue: Option<Queue>,
    pub admin: AdminToken,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-service",
        description = "Records one payment per booked flight, consuming FlightBooked events from SQS \
                       idempotently (inbox + payment + its PaymentApproved or PaymentDeclined event \
                       in one transaction), and refunds an approved payment when its booking is \
                       cancelled (FlightCancelled; PaymentRefunded). Its events go back to \
                       booking-service on a second queue, through its own outbox and relay. \n\n\
                       Run locally with `scripts/run.sh`: booking-service's Swagger UI is then \
                       [http://127.0.0.1:8080/swagger-ui/index.html](http://127.0.0.1:8080/swagger-ui/index.html); \
                       the project's README.md explains the whole story.",
        license(name = "MIT")
    ),
    tags((name = "payments", description = "Payments recorded from FlightBooked events, refunded on FlightCancelled"), (name = "health"),
         (name = "operator", description = "Operator actions; need `Authorization: Bearer <ADMIN_TOKEN>` (Swagger UI's \"Authorize\"), as does listing all payments")),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_payments))
        .routes(routes!(get_payment))
        .routes(routes!(service_kit::http::live))
        .routes(routes!(service_kit::http::ready))
        .routes(routes!(status))
        .routes(routes!(redrive_dlq))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().split_for_parts().1;
    service_kit::http::document_errors(&mut doc);
    doc
}

pub fn router(state: AppState, http: &service_kit::config::HttpArgs) -> Router {
    let (api, mut doc) = api().split_for_parts();
    service_kit::http::document_errors(&mut doc);
    let app = api
        .route("/metrics", get(metrics))
        .route("/", get(service_kit::http::to_swagger_ui))
        .with_state(state)
        .merge(service_kit::http::title_swagger_ui(
            SwaggerUi::new("/swagger-ui")
                .url("/api-docs/openapi.json", doc)
                .into(),
            "payment-service",
        ));
    service_kit::http::with_common_layers(app, http)
}

/// Prometheus metrics; the outbox backlog gauges are read from the table now.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(e) = state.relay_metrics.refresh(&state.pool).await {
        tracing::warn!(error = %e, "failed to refresh outbox gauges");
    }
    service_kit::http::render_metrics(&state.registry)
}

/// A page of payments, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPage {
    pub items: Vec<Payment>,
    pub next_cursor: Option<String>,
}

/// List payments
///
/// Every payment, newest first, paged with `limit` and `cursor`. An operator
/// action: send the service's `ADMIN_TOKEN` as a bearer token ("Authorize").
#[utoipa::path(get, path = "/api/payments", tag = "payments", params(PageQuery<UuidCursor>),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of payments", body = PaymentPage),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "limit: must be between 1 and 100", "errors": [{"field": "limit", "message": "must be between 1 and 100"}]})),
        service_kit::admin::Refusals,
    ))]
pub async fn list_payments(
    _: Operator,
    State(pool): State<PgPool>,
    ProblemQuery(query): ProblemQuery<PageQuery<UuidCursor>>,
) -> Result<Json<PaymentPage>, ApiError> {
    let limit = query.limit()?;
    let before = query.cursor::<Uuid>()?;
    let items = payments::list(&pool, before, limit).await?;
    let next_cursor = next_cursor(&items, limit, |p| p.id.to_string());
    Ok(Json(PaymentPage { items, next_cursor }))
}

/// Get the payment of a flight
#[utoipa::path(get, path = "/api/payments/{flightId}", tag = "payments",
    params(("flightId" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, description = "The payment", body = Payment),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "flightId: must be a UUID", "errors": [{"field": "flightId", "message": "must be a UUID"}]})),
        (status = 404, description = "No payment (yet) for this flight", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "No payment for flight 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b (yet)"})),
    ))]
pub async fn get_payment(
    State(pool): State<PgPool>,
    Path(flight_id): Path<String>,
) -> Result<Json<Payment>, ApiError> {
    let flight_id = Uuid::parse_str(&flight_id)
        .map_err(|_| ApiError::bad_field("flightId", "must be a UUID"))?;
    payments::find_by_flight(&pool, flight_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("No payment for flight {flight_id} (yet)")))
}

/// Status of every part
///
/// The database and its pools, the consumer of booking events (running, its
/// circuit breaker, its last receive, the queue's redrive threshold) and the
/// relay of payment events (running, SQS reachable, last publish, backlog): why
/// payments are not being recorded or announced, at a glance.
#[utoipa::path(get, path = "/health/status", tag = "health",
    responses((status = 200, description = "Each part's state; `degraded` lists the problems", body = service_kit::status::Status)))]
pub async fn status(State(state): State<AppState>) -> Json<service_kit::status::Status> {
    Json(service_kit::status::report("payment-service", &state.parts).await)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RedriveQuery {
    /// `true`: only count the messages in the DLQ; move nothing (default `false`).
    pub dry_run: Option<bool>,
}

/// Move the DLQ back to the queue
///
/// Moves every message of the consumed queue's dead-letter queue (named by its
/// redrive policy) back to the queue, keeping each message's group; the inbox
/// makes sure a redriven event that was already processed has no second
/// effect. Use it after fixing what made the messages fail. `dryRun=true` only
/// counts them.
#[utoipa::path(post, path = "/api/admin/dlq/redrive", tag = "operator", params(RedriveQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Moved (or counted)", body = Redrive),
        service_kit::admin::Refusals,
        (status = 409, description = "No queue, or the queue has no DLQ", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/no-dlq", "title": "No dead-letter queue", "status": 409, "detail": "the queue has no redrive policy, hence no DLQ"})),
        (status = 503, description = "SQS unavailable", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/sqs-unavailable", "title": "SQS unavailable", "status": 503, "detail": "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist."})),
    ))]
pub async fn redrive_dlq(
    _: Operator,
    State(state): State<AppState>,
    ProblemQuery(query): ProblemQuery<RedriveQuery>,
) -> Result<Json<Redrive>, ApiError> {
    let Some(queue) = &state.queue else {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "no-queue",
            "No queue configured",
        )
        .detail("Set SQS_QUEUE_URL or SQS_QUEUE_NAME.")
        .into());
    };
    match outbox::sqs::redrive(queue, query.dry_run.unwrap_or(false)).await {
        Ok(report) => {
            tracing::info!(
                moved = report.moved,
                waiting = report.waiting,
                dry_run = report.dry_run,
                "DLQ redrive by an operator"
            );
            Ok(Json(report))
        }
        Err(e) if e.reason == outbox::publish::FailureReason::Other => Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "no-dlq",
            "No dead-letter queue",
        )
        .detail(e.to_string())
        .into()),
        Err(e) => {
            tracing::warn!(error = %service_kit::error::chain(&e), "DLQ redrive failed");
            Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "sqs-unavailable",
                "SQS unavailable",
            )
            .detail(e.to_string())
            .retry_after(5)
            .into())
        }
    }
}
