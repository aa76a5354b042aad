//! The HTTP plumbing both services share: middleware, health checks, metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Serialize;
use sqlx::PgPool;

use crate::problem::Problem;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the edge rules of [`crate::edge`] (request ids, the
/// request span and access line, security headers, problem+json for every
/// error, limits and timeouts), with problem+json fallbacks for unknown paths
/// and methods.
pub fn with_common_layers(router: Router, http: &crate::config::HttpArgs) -> Router {
    let router = router
        .fallback(crate::problem::no_such_path)
        .method_not_allowed_fallback(crate::problem::no_such_method);
    crate::edge::layers(router, http)
}

/// Swagger UI's page, titled after the service (the vendored page says only
/// "Swagger UI", and two of them side by side look alike). Only HTML answers are
/// touched, and the services serve no other HTML.
pub fn title_swagger_ui(router: Router, service: &'static str) -> Router {
    router.layer(axum::middleware::map_response(
        move |response: Response| async move {
            let html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/html"));
            if !html {
                return response;
            }
            let (mut parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
                return Problem::internal().into_response();
            };
            let page = String::from_utf8_lossy(&bytes).replace(
                "<title>Swagger UI</title>",
                &format!("<title>{service} · Swagger UI</title>"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(page))
        },
    ))
}

/// `/`: a person who opens the service's address lands on its Swagger UI.
pub async fn to_swagger_ui() -> axum::response::Redirect {
    axum::response::Redirect::temporary("/swagger-ui/index.html")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "up" })
}

/// Readiness: the database answers within a second.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json", example = json!({"type": "/problems/not-ready", "title": "Not ready", "status": 503, "detail": "The database does not answer"})),
    ))]
pub async fn ready(State(pool): State<PgPool>) -> Response {
    let check = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("select 1").execute(&pool),
    )
    .await;
    match check {
        Ok(Ok(_)) => Json(Health { status: "up" }).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::chain(&e), "readiness check failed");
            not_ready()
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            not_ready()
        }
    }
}

fn not_ready() -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready")
        .detail("The database does not answer")
        .retry_after(crate::problem::DATABASE_RETRY_AFTER_SECONDS)
        .into_response()
}

/// Renders a Prometheus registry in the text exposition format.
pub fn render_metrics(registry: &Registry) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        tracing::error!(error = %crate::error::chain(&e), "failed to encode metrics");
        return Problem::internal().into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A registry shared by the handlers that fill it.
pub type SharedRegistry = Arc<Registry>;

/// `/health/live` and `/health/ready`.
pub fn health_routes(pool: PgPool) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(pool)
}

/// `axum::extract::Query` whose rejection (a malformed or repeated parameter)
/// is problem+json like every other error.
pub struct ProblemQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ProblemQuery<T>
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(
                    Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request")
                        .detail(rejection.body_text())
                        .instance(parts.uri.path()),
                )
            }
        }
    }
}

/// `limit` and `cursor` of the paged listings, parsed into problem+json on
/// failure (both stay strings in the type so a bad one is reported by name).
/// `C` says what a cursor looks like, for the OpenAPI document; unknown
/// parameters are refused (a typo like `limt` is not ignored).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct PageQuery<C: CursorFormat = SeqCursor> {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    #[serde(skip)]
    format: std::marker::PhantomData<C>,
}

/// The shape of a listing's cursor, as the OpenAPI document states it.
pub trait CursorFormat {
    fn schema() -> utoipa::openapi::Object;
}

/// A cursor that is a sequence number (the outbox listing).
#[derive(Debug)]
pub struct SeqCursor;

impl CursorFormat for SeqCursor {
    fn schema() -> utoipa::openapi::Object {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{1,18}$"))
            .build()
    }
}

/// A cursor that is an id (UUID).
#[derive(Debug)]
pub struct UuidCursor;

impl CursorFormat for UuidCursor {
    fn schema() -> utoipa::openapi::Object {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Uuid,
            )))
            .build()
    }
}

impl<C: CursorFormat> utoipa::IntoParams for PageQuery<C> {
    fn into_params(
        _parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, schema::Type};
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("Items per page, 1–100 (default 20)."))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(100)),
                ))
                .build(),
            ParameterBuilder::new()
                .name("cursor")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("`nextCursor` of the previous page."))
                .schema(Some(C::schema()))
                .build(),
        ]
    }
}

impl<C: CursorFormat> PageQuery<C> {
    pub fn limit(&self) -> Result<i64, Problem> {
        match &self.limit {
            None => Ok(20),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| bad_field("limit", "must be a whole number from 1 to 100")),
        }
    }

    /// The cursor as `T`, which is what the API itself hands out.
    pub fn cursor<T: std::str::FromStr>(&self) -> Result<Option<T>, Problem> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse::<T>()
                    .map_err(|_| bad_field("cursor", "is not a cursor this API returned"))
            })
            .transpose()
    }
}

/// The `nextCursor` of a page: the last item's, when the page is full.
pub fn next_cursor<T>(items: &[T], limit: i64, cursor_of: impl Fn(&T) -> String) -> Option<String> {
    if items.len() as i64 == limit {
        items.last().map(cursor_of)
    } else {
        None
    }
}

/// Adds to every operation of `doc` the `default` response: whatever layer
/// answers with a status the operation does not list, it is problem+json.
pub fn document_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let default = ResponseBuilder::new()
        .description(
            "Any other error, whichever layer answers it: 400 malformed HTTP, 405 method not \
             allowed (with `Allow`), 408 request head or body too slow, 413 body too large, \
             414/431 request target or headers too large, 417 unsupported `Expect`, 500, 503 \
             too many concurrent requests, request timed out or database unavailable (with \
             `Retry-After` when retrying helps). Always RFC 9457 problem+json.",
        )
        .content(
            crate::problem::CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .example(Some(serde_json::json!({
                    "type": "/problems/overloaded",
                    "title": "Too many concurrent requests",
                    "status": 503,
                    "detail": "The service is handling as many requests as it may; nothing was changed. Retry shortly."
                })))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| default.clone().into());
        }
    }
}

/// A 400 naming the field (header, path or query parameter) that is malformed.
pub fn bad_field(field: &str, message: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request")
        .detail(format!("{field}: {message}"))
        .errors(vec![crate::problem::FieldError::new(field, message)])
}
