//! The request-level rules every route of both services gets, as one stack of
//! middleware ([`layers`]), outermost first:
//!
//! 1. **Request id**: a client's `X-Request-Id` is kept when it is 1–64 visible
//!    ASCII characters, else replaced by a generated one; echoed on the response.
//! 2. **Request span and access line**: every line logged while handling the
//!    request carries its method, route template and id; one `request
//!    completed` line per request with status and latency. No bodies, no
//!    query strings.
//! 3. **Security headers** on every response.
//! 4. **problem+json for every error**: a response of status 400 or above that
//!    is not already `application/problem+json` (an extractor's rejection, a
//!    Swagger UI asset that does not exist, ...) is replaced by one of the same
//!    status, keeping its headers (`Allow`, `Retry-After`, ...).
//! 5. **Panics** become a 500 problem.
//! 6. **Head and body**: a request target over [`MAX_URI_BYTES`] is 414; an
//!    `Expect` other than `100-continue` is 417; a declared `Content-Length`
//!    over `MAX_BODY_BYTES` is 413 before anything is read (so
//!    `Expect: 100-continue` gets 413, not `100 Continue`); the body is read in
//!    full within `HTTP_BODY_TIMEOUT` (else 408, connection closed) and within
//!    the limit (else 413), before any handler runs.
//! 7. **Concurrency cap**: at most `HTTP_MAX_CONCURRENT_REQUESTS` requests are
//!    handled at once; more get a 503 problem with `Retry-After` at once
//!    (`/health/live` is exempt, so a busy task is not mistaken for a dead one).
//! 8. **Request timeout**: a handler that has not answered within
//!    `HTTP_REQUEST_TIMEOUT` is dropped (its transaction rolls back) and the
//!    client gets a 503 problem.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::PropagateRequestIdLayer;
use tracing::Instrument;

use crate::config::HttpArgs;
use crate::http::REQUEST_ID;
use crate::problem::Problem;

/// Longest request target (path and query), in bytes (414 above).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Longest request id kept from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Swagger UI's Content Security Policy: everything from this origin only;
/// inline styles, which Swagger UI sets on its elements, and `data:` images,
/// its icons. No inline script, no framing.
pub const SWAGGER_UI_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body_bytes: usize,
    body_timeout: Duration,
    request_timeout: Duration,
}

/// Wraps every route of `router` (and its fallbacks) in the stack above.
pub fn layers(router: Router, http: &HttpArgs) -> Router {
    let limits = Limits {
        max_body_bytes: http.max_body_bytes as usize,
        body_timeout: http.http_body_timeout,
        request_timeout: http.http_request_timeout,
    };
    let permits = Arc::new(Semaphore::new(http.http_max_concurrent_requests as usize));
    router
        .layer(middleware::from_fn_with_state(limits, request_timeout))
        .layer(middleware::from_fn_with_state(permits, concurrency_cap))
        .layer(middleware::from_fn_with_state(limits, read_head_and_body))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("request handler panicked");
            Problem::internal().into_response()
        }))
        .layer(middleware::map_response(problem_for_every_error))
        .layer(middleware::from_fn(security_headers))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(middleware::from_fn(request_span))
        .layer(middleware::from_fn(request_id))
}

// --- 1. Request id -------------------------------------------------------------------

/// Whether a client's request id is kept: 1–64 visible ASCII characters.
pub fn acceptable_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
}

async fn request_id(mut request: Request, next: Next) -> Response {
    let keep = request
        .headers()
        .get(&REQUEST_ID)
        .is_some_and(|v| acceptable_request_id(v.as_bytes()));
    if !keep {
        let id = uuid::Uuid::new_v4().to_string();
        request.headers_mut().insert(
            REQUEST_ID,
            HeaderValue::from_str(&id).expect("a UUID is a valid header value"),
        );
    }
    next.run(request).await
}

// --- 2. Span and access line -----------------------------------------------------------

async fn request_span(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    // With OTLP on: a child of the caller's `traceparent`, its trace id on every line.
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    crate::trace::continue_trace(&span, traceparent);
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request completed"
        );
        response
    }
    .instrument(span)
    .await
}

// --- 3. Security headers ---------------------------------------------------------------

async fn security_headers(request: Request, next: Next) -> Response {
    let swagger_ui = request.uri().path().starts_with("/swagger-ui");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if swagger_ui {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(SWAGGER_UI_CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    } else {
        // API answers are about one moment of the data: never stored by a cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

// --- 4. problem+json for every error -------------------------------------------------------

async fn problem_for_every_error(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == crate::problem::CONTENT_TYPE.as_bytes());
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let plain_text = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let mut problem = Problem::for_status(status);
    // An extractor's rejection says what was wrong in a short plain text.
    if plain_text
        && let Ok(bytes) = axum::body::to_bytes(body, 1024).await
        && let Ok(text) = std::str::from_utf8(&bytes)
        && !text.trim().is_empty()
        && text.len() <= 300
    {
        problem = problem.detail(text.trim());
    }
    let fresh = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, fresh.into_body())
}

// --- 6. Head and body ------------------------------------------------------------------------

async fn read_head_and_body(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_BYTES {
        return Problem::for_status(StatusCode::URI_TOO_LONG)
            .detail(format!(
                "The path and query must be at most {MAX_URI_BYTES} bytes."
            ))
            .into_response();
    }
    if let Some(expect) = request.headers().get(header::EXPECT)
        && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
    {
        return Problem::for_status(StatusCode::EXPECTATION_FAILED)
            .detail("Only `Expect: 100-continue` is supported.")
            .into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        // Answered before the body is touched: hyper sends `100 Continue` only
        // when the body is first read, so a client that asked gets this instead.
        return too_large(limits.max_body_bytes);
    }
    let (parts, body) = request.into_parts();
    let body = if http_body::Body::is_end_stream(&body) {
        body
    } else {
        let read = tokio::time::timeout(
            limits.body_timeout,
            Limited::new(body, limits.max_body_bytes).collect(),
        )
        .await;
        match read {
            Ok(Ok(collected)) => Body::from(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return too_large(limits.max_body_bytes);
            }
            Ok(Err(_)) => {
                return Problem::for_status(StatusCode::BAD_REQUEST)
                    .detail("The request body could not be read.")
                    .into_response();
            }
            Err(_) => {
                let mut response = Problem::for_status(StatusCode::REQUEST_TIMEOUT)
                    .detail(format!(
                        "The request body did not arrive within {}.",
                        humantime::format_duration(limits.body_timeout)
                    ))
                    .into_response();
                // The rest of the body may still come: this connection is done.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        }
    };
    next.run(Request::from_parts(parts, body)).await
}

fn too_large(limit: usize) -> Response {
    let mut response = Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE)
        .detail(format!("The body must be at most {limit} bytes."))
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

// --- 7. Concurrency cap ----------------------------------------------------------------------

async fn concurrency_cap(
    State(permits): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/health/live" {
        return next.run(request).await;
    }
    let Ok(_permit) = permits.try_acquire() else {
        static OVERLOADED: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
        if let Some(suppressed) = OVERLOADED.allow(Duration::from_secs(30)) {
            tracing::warn!(
                suppressed,
                "too many concurrent requests: answering 503 until some finish"
            );
        }
        return retry_later(
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many concurrent requests",
            )
            .detail("The service is handling as many requests as it may; nothing was changed. Retry shortly."),
        );
    };
    next.run(request).await
}

fn retry_later(problem: Problem) -> Response {
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

// --- 8. Request timeout ----------------------------------------------------------------------

async fn request_timeout(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout = %humantime::format_duration(limits.request_timeout),
                "request timed out: abandoned, its transaction rolled back"
            );
            retry_later(
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request-timeout",
                    "Request timed out",
                )
                .detail(format!(
                    "The request was not completed within {}; it was rolled back. Retrying is safe \
                     (with the same Idempotency-Key for a booking).",
                    humantime::format_duration(limits.request_timeout)
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_short_and_visible() {
        assert!(acceptable_request_id(b"abc-123_XYZ"));
        assert!(acceptable_request_id("x".repeat(64).as_bytes()));
        for bad in [
            b"".as_slice(),
            "x".repeat(65).as_bytes(),
            b"with space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(!acceptable_request_id(bad), "{bad:?}");
        }
    }
}
