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

use crate::payments::{self, Payment};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-service",
        description = "Records one payment per booked flight, consuming FlightBooked events from SQS \
                       idempotently (inbox + payment in one transaction).",
        license(name = "MIT")
    ),
    tags((name = "payments", description = "Payments recorded from FlightBooked events"), (name = "health"))
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_payments))
        .routes(routes!(get_payment))
        .routes(routes!(service_kit::http::live))
        .routes(routes!(service_kit::http::ready))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api().split_for_parts();
    let app = api
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", doc));
    service_kit::http::with_common_layers(app)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    service_kit::http::render_metrics(&registry)
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = ?e, "request failed");
    Problem::internal().into_response()
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
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
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
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No payment (yet) for this flight", body = Problem, content_type = "application/problem+json"),
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
