//! The HTTP surface. Routes are declared with utoipa-axum, so the OpenAPI
//! document served to Swagger UI is generated from the same handlers.

pub mod error;
pub mod extract;
pub mod flights;
pub mod outbox;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Router, extract::DefaultBodyLimit};
use prometheus_client::registry::Registry;
use service_kit::admin::SecurityAddon;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

/// What handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub relay_metrics: ::outbox::metrics::RelayMetrics,
    /// The operator token (listing all bookings).
    pub admin: service_kit::admin::AdminToken,
    /// The parts this process runs (relay, consumer, pools), for `/health/status`.
    pub parts: service_kit::status::Parts,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "booking-service",
        description = "Books flights. Each booking and its FlightBooked event are written in one \
                       PostgreSQL transaction (the transactional outbox); a relay publishes the \
                       events to Amazon SQS, where payment-service picks them up. Its answers \
                       (PaymentApproved, PaymentDeclined, PaymentRefunded) come back on a second \
                       queue and move the booking from PENDING_PAYMENT to CONFIRMED or REJECTED; \
                       a cancellation (FlightCancelled) has an approved payment refunded. \n\n\
                       Run locally with `scripts/run.sh`: payment-service's Swagger UI is then \
                       [http://127.0.0.1:8081/swagger-ui/index.html](http://127.0.0.1:8081/swagger-ui/index.html); \
                       the project's README.md explains the whole story.",
        license(name = "MIT")
    ),
    tags(
        (name = "flights", description = "Book, read and cancel flights; listing all of them is an operator action (`Authorization: Bearer <ADMIN_TOKEN>`, Swagger UI's \"Authorize\")"),
        (name = "outbox", description = "Watch events waiting to be published, and resume parked ones"),
        (name = "health", description = "Liveness and readiness")
    ),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(flights::book_flight, flights::list_flights))
        .routes(routes!(flights::get_flight))
        .routes(routes!(flights::cancel_flight))
        .routes(routes!(outbox::list_outbox))
        .routes(routes!(outbox::retry_event))
        .routes(routes!(service_kit::http::live))
        .routes(routes!(service_kit::http::ready))
        .routes(routes!(status))
}

/// The OpenAPI document (also committed as `openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().split_for_parts().1;
    service_kit::http::document_errors(&mut doc);
    doc
}

/// The whole HTTP application.
pub fn router(state: AppState, http: &service_kit::config::HttpArgs) -> Router {
    let (api, mut doc) = api().split_for_parts();
    service_kit::http::document_errors(&mut doc);
    let app = api
        .route("/metrics", get(metrics))
        .route("/", get(service_kit::http::to_swagger_ui))
        .layer(DefaultBodyLimit::max(http.max_body_bytes as usize))
        .with_state(state)
        .merge(service_kit::http::title_swagger_ui(
            SwaggerUi::new("/swagger-ui")
                .url("/api-docs/openapi.json", doc)
                .into(),
            "booking-service",
        ));
    service_kit::http::with_common_layers(app, http)
}

/// Status of every part
///
/// The database and its pools, the relay (running, SQS reachable, last
/// publish, the backlog and its oldest event) and the consumer of payment
/// events (running, breaker, last receive): why events are waiting, at a glance.
#[utoipa::path(get, path = "/health/status", tag = "health",
    responses((status = 200, description = "Each part's state; `degraded` lists the problems", body = service_kit::status::Status)))]
async fn status(State(state): State<AppState>) -> axum::Json<service_kit::status::Status> {
    axum::Json(service_kit::status::report("booking-service", &state.parts).await)
}

/// Prometheus metrics; the backlog gauges are read from the outbox table now.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(e) = state.relay_metrics.refresh(&state.pool).await {
        tracing::warn!(error = %format!("{e:#}"), "failed to refresh outbox gauges");
    }
    service_kit::http::render_metrics(&state.registry)
}
