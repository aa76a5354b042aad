//! The HTTP surface: payments (read-only), health, metrics, Swagger UI.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use service_kit::http::{PageQuery, ProblemQuery, next_cursor};
use service_kit::problem::Problem;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use std::sync::Mutex;

use axum::extract::Query;
use outbox::consumer::ConsumerStatus;
use outbox::sqs::{Queue, Redrive};
use serde::Deserialize;
use service_kit::admin::{AdminToken, require_admin};

use crate::payments::{self, Payment};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub relay_metrics: outbox::metrics::RelayMetrics,
    /// The consumer's status, when it runs in this process.
    pub consumer: Option<Arc<Mutex<ConsumerStatus>>>,
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
         (name = "operator", description = "Operator actions; need `Authorization: Bearer <ADMIN_TOKEN>`")),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The operator token as an OpenAPI security scheme (Swagger UI's "Authorize").
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_payments))
        .routes(routes!(get_payment))
        .routes(routes!(service_kit::http::live))
        .routes(routes!(service_kit::http::ready))
        .routes(routes!(status))
}

/// Operator actions: behind the admin token (see [`router`]).
fn operator_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(redrive_dlq))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    api().merge(operator_api()).split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let operator = operator_api().route_layer(axum::middleware::from_fn_with_state(
        state.admin.clone(),
        require_admin,
    ));
    let (api, doc) = api().merge(operator).split_for_parts();
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
    service_kit::http::with_common_layers(app)
}

/// Prometheus metrics; the outbox backlog gauges are read from the table now.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(e) = state.relay_metrics.refresh(&state.pool).await {
        tracing::warn!(error = %e, "failed to refresh outbox gauges");
    }
    service_kit::http::render_metrics(&state.registry)
}

fn internal(e: anyhow::Error) -> Response {
    Problem::from_error(&e).into_response()
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
/// Newest first, paged with `limit` and `cursor`.
#[utoipa::path(get, path = "/api/payments", tag = "payments", params(PageQuery),
    responses(
        (status = 200, description = "A page of payments", body = PaymentPage),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "limit: must be between 1 and 100", "errors": [{"field": "limit", "message": "must be between 1 and 100"}]})),
    ))]
pub async fn list_payments(
    State(pool): State<PgPool>,
    ProblemQuery(query): ProblemQuery<PageQuery>,
) -> Response {
    let (limit, before) = match (query.limit(), query.cursor::<Uuid>()) {
        (Ok(limit), Ok(before)) => (limit, before),
        (Err(problem), _) | (_, Err(problem)) => return problem.into_response(),
    };
    match payments::list(&pool, before, limit).await {
        Ok(items) => {
            let next_cursor = next_cursor(&items, limit, |p| p.id.to_string());
            Json(PaymentPage { items, next_cursor }).into_response()
        }
        Err(e) => internal(e),
    }
}

/// Get the payment of a flight
#[utoipa::path(get, path = "/api/payments/{flightId}", tag = "payments",
    params(("flightId" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, description = "The payment", body = Payment),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Malformed request", "status": 400, "detail": "flightId: must be a UUID", "errors": [{"field": "flightId", "message": "must be a UUID"}]})),
        (status = 404, description = "No payment (yet) for this flight", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "No payment for flight 0192b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b (yet)"})),
    ))]
pub async fn get_payment(State(pool): State<PgPool>, Path(flight_id): Path<String>) -> Response {
    let Ok(flight_id) = Uuid::parse_str(&flight_id) else {
        return service_kit::http::bad_field("flightId", "must be a UUID").into_response();
    };
    match payments::find_by_flight(&pool, flight_id).await {
        Ok(Some(payment)) => Json(payment).into_response(),
        Ok(None) => {
            Problem::not_found(format!("No payment for flight {flight_id} (yet)")).into_response()
        }
        Err(e) => internal(e),
    }
}

/// What each part of the service is doing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `up`, or `degraded` when the database does not answer or the consumer's breaker is open.
    #[schema(example = "up")]
    pub status: &'static str,
    pub database: DatabaseStatus,
    /// Absent when the consumer is off in this process.
    pub consumer: Option<ConsumerStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    pub reachable: bool,
}

/// Status of every part
///
/// The database and the consumer (its circuit breaker, its last receive, the
/// queue's redrive threshold): why payments are not being recorded, at a glance.
#[utoipa::path(get, path = "/health/status", tag = "health",
    responses((status = 200, description = "Each part's state", body = Status)))]
pub async fn status(State(state): State<AppState>) -> Json<Status> {
    let reachable = matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            sqlx::query("select 1").execute(&state.pool)
        )
        .await,
        Ok(Ok(_))
    );
    let consumer = state
        .consumer
        .as_ref()
        .map(|c| c.lock().expect("not poisoned").clone());
    let degraded = !reachable || consumer.as_ref().is_some_and(|c| c.breaker == "open");
    Json(Status {
        status: if degraded { "degraded" } else { "up" },
        database: DatabaseStatus { reachable },
        consumer,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RedriveQuery {
    /// Only count the messages in the DLQ; move nothing.
    #[serde(default)]
    pub dry_run: bool,
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
        (status = 401, description = "No or wrong operator token", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/unauthorized", "title": "Operator token required", "status": 401, "detail": "Send the service's ADMIN_TOKEN as `Authorization: Bearer <token>`."})),
        (status = 403, description = "Operator actions are disabled (no ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/admin-disabled", "title": "Operator actions are disabled", "status": 403, "detail": "This service was started without ADMIN_TOKEN."})),
        (status = 409, description = "No queue, or the queue has no DLQ", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/no-dlq", "title": "No dead-letter queue", "status": 409, "detail": "the queue has no redrive policy, hence no DLQ"})),
        (status = 503, description = "SQS unavailable", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/sqs-unavailable", "title": "SQS unavailable", "status": 503, "detail": "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist."})),
    ))]
pub async fn redrive_dlq(
    State(state): State<AppState>,
    Query(query): Query<RedriveQuery>,
) -> Response {
    let Some(queue) = &state.queue else {
        return Problem::new(
            axum::http::StatusCode::CONFLICT,
            "no-queue",
            "No queue configured",
        )
        .detail("Set SQS_QUEUE_URL or SQS_QUEUE_NAME.")
        .into_response();
    };
    match outbox::sqs::redrive(queue, query.dry_run).await {
        Ok(report) => {
            tracing::info!(
                moved = report.moved,
                waiting = report.waiting,
                dry_run = report.dry_run,
                "DLQ redrive by an operator"
            );
            Json(report).into_response()
        }
        Err(e) if e.reason == outbox::publish::FailureReason::Other => Problem::new(
            axum::http::StatusCode::CONFLICT,
            "no-dlq",
            "No dead-letter queue",
        )
        .detail(e.to_string())
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "DLQ redrive failed");
            Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "sqs-unavailable",
                "SQS unavailable",
            )
            .detail(e.to_string())
            .into_response()
        }
    }
}
