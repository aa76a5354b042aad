//! One error story for both services.
//!
//! - Domain code knows nothing of HTTP. A request that breaks the rules is an
//!   [`Invalid`] naming every [`Violation`] by field; anything unexpected is an
//!   `anyhow::Error` with "Failed to …" context.
//! - Handlers return [`ApiError`], the one enum of the HTTP boundary. Its
//!   `IntoResponse` is the one mapping to RFC 9457 problems: each variant is
//!   documented with its status. Unexpected errors are logged there with their
//!   whole cause chain and answered with a generic body (500, or 503 when the
//!   database is unavailable); nothing internal leaks.
//! - Logs carry the whole cause chain: `{e:#}` for `anyhow`, [`chain`] for any
//!   other error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::problem::{FieldError, Problem};

/// One broken rule of a request, named by the field (a JSON path such as
/// `fare.currency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A request that breaks the rules: every violation, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", summary(.0))]
pub struct Invalid(pub Vec<Violation>);

fn summary(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error with its whole cause chain, `outer: cause: root cause` (what
/// `{e:#}` prints for `anyhow::Error`), for log fields.
pub fn chain<E: std::error::Error + ?Sized>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The one error type of both services' HTTP boundaries.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad-request`: the request is malformed (bad JSON, header, query or
    /// path parameter).
    #[error("bad request: {detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 413 `payload-too-large`: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge { limit: Option<usize> },
    /// 415 `unsupported-media-type`: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422 `validation-error`: well-formed but breaks the rules; names every field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422 `idempotency-key-reused`: an Idempotency-Key reused with a different body.
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    /// 404 `not-found`.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409 `conflict`: the resource is not in a state that allows this.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A problem already shaped by shared code (paging parameters, the
    /// operator token, a missing dependency), sent as it is.
    #[error("{}", .0.title)]
    Problem(Problem),
    /// 500 `internal-error`, or 503 `database-unavailable` (with `Retry-After`)
    /// when the cause is a database that is down, busy or out of pooled
    /// connections. Logged with its cause chain, never sent.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 naming the malformed header, path or query parameter.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self::Problem(crate::http::bad_field(field, &message.into()))
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::Validation(
            invalid
                .0
                .into_iter()
                .map(|v| FieldError::new(v.field, v.message))
                .collect(),
        )
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadRequest { detail, errors } => {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request")
                    .detail(detail)
                    .errors(errors)
            }
            ApiError::PayloadTooLarge { limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            )
            .detail(match limit {
                Some(limit) => format!("The body must be at most {limit} bytes"),
                None => "The body is over the size limit".to_owned(),
            }),
            ApiError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail("Send the body as JSON with `Content-Type: application/json`")
            .errors(vec![FieldError::new(
                "Content-Type",
                "must be application/json",
            )]),
            ApiError::Validation(errors) => Problem::validation(errors),
            ApiError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            )
            .detail(
                "This Idempotency-Key was already used with a different request body; use a new key for a new booking",
            )
            .errors(vec![FieldError::new(
                "Idempotency-Key",
                "was used with a different body",
            )]),
            ApiError::NotFound(detail) => Problem::not_found(detail),
            ApiError::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(detail)
            }
            ApiError::Problem(problem) => problem,
            ApiError::Unexpected(e) => Problem::from_error(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

impl From<outbox::Error> for ApiError {
    fn from(e: outbox::Error) -> Self {
        Self::Unexpected(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_names_every_cause() {
        let e = Outer(std::io::Error::other("root cause"));
        assert_eq!(chain(&e), "outer: root cause");
        let any = anyhow::Error::new(e).context("Failed to do it");
        let dyn_error: &(dyn std::error::Error + Send + Sync) = any.as_ref();
        assert_eq!(chain(dyn_error), format!("{any:#}"));
    }

    #[test]
    fn invalid_requests_become_422_naming_each_field() {
        let problem = Problem::from(ApiError::from(Invalid(vec![
            Violation::new("a", "is required"),
            Violation::new("b.c", "must be positive"),
        ])));
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors.len(), 2);
        assert_eq!(problem.errors[1].field, "b.c");
    }
}
