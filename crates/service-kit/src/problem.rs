//! RFC 9457 problem details: every error a client sees has the same shape,
//! `application/problem+json` with `type`, `title`, `status`, `detail` and, for
//! validation failures, the offending fields under `errors`.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field: a body field's path (`arrivalDateTime`, `fare.currency`; `$` is
    /// the whole body), or the name of a header, path or query parameter.
    #[schema(example = "arrivalDateTime")]
    pub field: String,
    /// For a body field: its RFC 6901 JSON pointer (`/fare/currency`; `""` is the
    /// whole body). Absent for headers and parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/arrivalDateTime", nullable = false)]
    pub pointer: Option<String>,
    /// What is wrong with it.
    #[schema(example = "must be after departureDateTime")]
    pub message: String,
}

impl FieldError {
    /// A field without a pointer (a header or parameter), or a body field whose
    /// pointer [`Problem::validation`] derives from its dotted path.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            pointer: None,
            message: message.into(),
        }
    }

    /// A body field with its JSON pointer.
    pub fn at(
        field: impl Into<String>,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            pointer: Some(pointer.into()),
            message: message.into(),
        }
    }
}

/// The JSON pointer of a dotted body path: `fare.currency` → `/fare/currency`,
/// `items[0]` → `/items/0`, `$` → `""`.
pub fn pointer_of(field: &str) -> String {
    if field == "$" {
        return String::new();
    }
    let mut pointer = String::new();
    for part in field.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        pointer.push('/');
        pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        for index in indexes.split(['[', ']']).filter(|i| !i.is_empty()) {
            pointer.push('/');
            pointer.push_str(index);
        }
    }
    pointer
}

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type", serialize_with = "problem_type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Short summary of the kind of problem.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The fields that failed validation, when that is the problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds after which a retry may work: sent as `Retry-After` (503s).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: None,
            instance: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// The problem for a bare status, where no handler said more: what the
    /// edge answers for an error response that was not problem+json, and for
    /// hyper's own refusals.
    pub fn for_status(status: StatusCode) -> Self {
        let (kind, title) = match status.as_u16() {
            400 => ("bad-request", "Malformed request"),
            401 => ("unauthorized", "Unauthorized"),
            403 => ("forbidden", "Forbidden"),
            404 => ("not-found", "Not found"),
            405 => ("method-not-allowed", "Method not allowed"),
            406 => ("not-acceptable", "Not acceptable"),
            408 => ("request-timeout", "Request timeout"),
            409 => ("conflict", "Conflict"),
            411 => ("length-required", "Length required"),
            413 => ("payload-too-large", "Request body too large"),
            414 => ("uri-too-long", "Request target too long"),
            415 => ("unsupported-media-type", "Unsupported media type"),
            417 => ("expectation-failed", "Expectation failed"),
            422 => ("validation-error", "Invalid request"),
            429 => ("too-many-requests", "Too many requests"),
            431 => ("header-fields-too-large", "Request header fields too large"),
            500 => ("internal-error", "Internal server error"),
            501 => ("not-implemented", "Not implemented"),
            503 => ("service-unavailable", "Service unavailable"),
            505 => ("http-version-not-supported", "HTTP version not supported"),
            _ if status.is_server_error() => ("server-error", "Server error"),
            _ => ("client-error", "Client error"),
        };
        Self::new(status, kind, title)
    }

    /// The generic 500: the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal server error",
        )
        .detail("The request could not be completed; it has been logged. Retrying is safe.")
    }

    /// The response for an unexpected error, logged here with its whole cause
    /// chain (never a backtrace, never sent to the client): 503 when the
    /// database is unavailable (a degraded state, WARN; retrying later works),
    /// else 500 (ERROR).
    pub fn from_error(e: &anyhow::Error) -> Self {
        if database_unavailable(e) {
            // Once per outage (at most every 30 s), not once per request.
            static OUTAGE: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
            if let Some(suppressed) = OUTAGE.allow(std::time::Duration::from_secs(30)) {
                tracing::warn!(error = %format!("{e:#}"), suppressed,
                    "database unavailable: requests are answered 503 until it is back");
            }
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "Service unavailable",
            )
            .detail("The database is unavailable or busy; nothing was changed. Retry later.")
            .retry_after(DATABASE_RETRY_AFTER_SECONDS);
        }
        tracing::error!(error = %format!("{e:#}"), "request failed");
        Self::internal()
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
    }

    /// 422 for a body that breaks the rules; every field gets its JSON pointer.
    pub fn validation(mut errors: Vec<FieldError>) -> Self {
        for error in &mut errors {
            if error.pointer.is_none() {
                error.pointer = Some(pointer_of(&error.field));
            }
        }
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            "Invalid request",
        )
        .detail(detail)
        .errors(errors)
    }
}

/// `type` is a URI reference: `/problems/<kind>`.
fn problem_type<S: serde::Serializer>(
    kind: &&'static str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("/problems/{kind}"))
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// `Retry-After` of a 503 for a database that is down, busy or out of pooled
/// connections: long enough not to hammer it, short enough for a blip.
pub const DATABASE_RETRY_AFTER_SECONDS: u32 = 2;

/// Fallback for paths no route matches.
/// Whether `e` says the database cannot be reached (as opposed to a bug or a
/// refused statement).
pub fn database_unavailable(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // Class 08 (connection exception), 57P01-03 (shutdown, cannot connect
            // now), 53300 (too many connections), 3D000 (no such database),
            // 57014 (statement_timeout), 55P03 (lock_timeout): the database is
            // down or too busy to answer in time, not refusing the request.
            // 55000 "not currently accepting connections": a database of a
            // shared cluster taken offline (ALTER DATABASE … ALLOW_CONNECTIONS).
            Some(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "53300"
                    || code == "3D000"
                    || code == "57014"
                    || code == "55P03"
                    || (code == "55000" && db.message().contains("accepting connections"))
            }),
            _ => false,
        })
}

pub async fn no_such_path(uri: Uri) -> Problem {
    Problem::not_found(format!("No resource at {}", uri.path())).instance(uri.path())
}

/// Fallback for a known path called with a method it does not support.
pub async fn no_such_method(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .detail(format!("{} does not support this method", uri.path()))
    .instance(uri.path())
}
