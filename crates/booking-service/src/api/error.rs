//! The one error type of the HTTP boundary. Each variant maps to one status and
//! a problem+json body; unexpected errors are logged in full and answered with a
//! generic 500 that leaks nothing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::problem::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, bad header, bad query parameter).
    #[error("bad request: {detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 413: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge { limit: Option<usize> },
    /// 415: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: well-formed but breaks the rules; names every field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422: an Idempotency-Key reused with a different body.
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    /// 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the resource is not in a state that allows this.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A problem already shaped by shared code (paging parameters).
    #[error("{}", .0.title)]
    Problem(Problem),
    /// 500: anything else; logged, never sent.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<outbox::Error> for ApiError {
    fn from(e: outbox::Error) -> Self {
        Self::Unexpected(anyhow::Error::new(e))
    }
}

impl ApiError {
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self::Problem(service_kit::http::bad_field(field, &message.into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::BadRequest { detail, errors } => {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request").detail(detail).errors(errors)
            }
            Self::PayloadTooLarge { limit } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large").detail(
                    match limit {
                        Some(limit) => format!("The body must be at most {limit} bytes"),
                        None => "The body is over the size limit".to_owned(),
                    },
                )
            }
            Self::UnsupportedMediaType => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
                    .detail("Send the body as JSON with `Content-Type: application/json`")
                    .errors(vec![FieldError::new("Content-Type", "must be application/json")])
            }
            Self::Validation(errors) => Problem::validation(errors),
            Self::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            )
            .detail("This Idempotency-Key was already used with a different request body; use a new key for a new booking")
            .errors(vec![FieldError::new("Idempotency-Key", "was used with a different body")]),
            Self::NotFound(detail) => Problem::not_found(detail),
            Self::Conflict(detail) => Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(detail),
            Self::Problem(problem) => problem,
            Self::Unexpected(e) => Problem::from_error(&e),
        };
        problem.into_response()
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}
