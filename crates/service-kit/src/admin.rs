//! Operator actions behind a bearer token (`ADMIN_TOKEN`): the listings of
//! everything (all bookings, all payments) and the DLQ redrive. Reading one
//! booking or payment by its id stays open.
//!
//! - no `Authorization: Bearer …`: 401 problem with `WWW-Authenticate: Bearer`;
//! - a token that is not the service's: 403 problem;
//! - a service started without `ADMIN_TOKEN`: 503 problem saying so — nothing
//!   an operator may do is open to anyone who can reach the port.
//!
//! A handler asks for the operator with the [`Operator`] extractor (or a router
//! with the [`require_admin`] middleware); the OpenAPI document gets the bearer
//! scheme from [`SecurityAddon`] (Swagger UI's "Authorize" button) and the
//! refusals from [`Refusals`].

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// The name of the bearer scheme in the OpenAPI documents.
pub const SECURITY_SCHEME: &str = "admin_token";

/// The operator token setting.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Bearer token for operator actions: the listings of all bookings or
    /// payments, the DLQ redrive (in AWS: a generated Secrets Manager secret).
    /// Unset: they answer 503.
    #[arg(long, env = "ADMIN_TOKEN", value_parser = crate::config::parse_secret, hide_env_values = true)]
    pub admin_token: Option<SecretString>,
}

/// The expected token, as a digest (compared in constant time with the
/// presented token's digest).
#[derive(Clone, Default)]
pub struct AdminToken(Option<Arc<[u8; 32]>>);

impl AdminToken {
    pub fn new(token: Option<&SecretString>) -> Self {
        Self(
            token
                .filter(|t| !t.expose_secret().is_empty())
                .map(|t| Arc::new(digest(t.expose_secret()))),
        )
    }

    /// Whether operator actions are possible at all (a token is configured).
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Lets a request through only with the operator token.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let Some(expected) = &self.0 else {
            return Err(Refused::Disabled);
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Refused::Unauthorized)?;
        let presented = digest(presented);
        let same = expected
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same {
            Ok(())
        } else {
            Err(Refused::Forbidden)
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Why an operator action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 401: no bearer token.
    Unauthorized,
    /// 403: not the service's token.
    Forbidden,
    /// 503: the service was started without `ADMIN_TOKEN`.
    Disabled,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Unauthorized => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Operator token required",
            )
            .detail("Send the service's ADMIN_TOKEN as `Authorization: Bearer <token>`."),
            Self::Forbidden => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Wrong operator token",
            )
            .detail("The bearer token is not this service's ADMIN_TOKEN."),
            Self::Disabled => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin-disabled",
                "Operator actions are disabled",
            )
            .detail(
                "This service was started without ADMIN_TOKEN; start it with one to use operator actions.",
            ),
        };
        let mut response = problem.into_response();
        if self == Self::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"operator\""),
            );
        }
        response
    }
}

/// An extractor that lets a handler run only for the operator: put
/// `_: Operator` first among its arguments.
pub struct Operator;

impl<S> FromRequestParts<S> for Operator
where
    AdminToken: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        AdminToken::from_ref(state).check(&parts.headers)?;
        Ok(Self)
    }
}

/// Middleware: lets the request through only with the operator token.
pub async fn require_admin(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    match token.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// The operator token as the OpenAPI bearer scheme [`SECURITY_SCHEME`]
/// (Swagger UI's "Authorize" button); operations name it with
/// `security(("admin_token" = []))`.
pub struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The service's ADMIN_TOKEN (scripts/run.sh prints the one it generated).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The refusals of an operator action, for the OpenAPI document:
/// `responses(…, Refusals)`.
#[derive(utoipa::IntoResponses)]
pub enum Refusals {
    /// No operator token.
    #[response(status = 401, description = "No operator token (`WWW-Authenticate: Bearer`)",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"operator\"`")),
        example = json!({"type": "/problems/unauthorized", "title": "Operator token required", "status": 401, "detail": "Send the service's ADMIN_TOKEN as `Authorization: Bearer <token>`."}))]
    Unauthorized(Problem),
    /// A token that is not the service's.
    #[response(status = 403, description = "Not the service's operator token",
        content_type = "application/problem+json",
        example = json!({"type": "/problems/forbidden", "title": "Wrong operator token", "status": 403, "detail": "The bearer token is not this service's ADMIN_TOKEN."}))]
    Forbidden(Problem),
    /// The service has no token.
    #[response(status = 503, description = "The service was started without ADMIN_TOKEN",
        content_type = "application/problem+json",
        example = json!({"type": "/problems/admin-disabled", "title": "Operator actions are disabled", "status": 503, "detail": "This service was started without ADMIN_TOKEN; start it with one to use operator actions."}))]
    Disabled(Problem),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = AdminToken::new(Some(&SecretString::from("s3cret")));
        assert_eq!(token.check(&headers(Some("Bearer s3cret"))), Ok(()));
        assert_eq!(token.check(&headers(Some("bearer s3cret"))), Ok(()));
        assert_eq!(
            token.check(&headers(Some("Bearer nope"))),
            Err(Refused::Forbidden)
        );
        assert_eq!(token.check(&headers(None)), Err(Refused::Unauthorized));
        assert_eq!(
            token.check(&headers(Some("Basic czNjcmV0"))),
            Err(Refused::Unauthorized)
        );
        assert_eq!(
            token.check(&headers(Some("Bearer "))),
            Err(Refused::Unauthorized)
        );
    }

    #[test]
    fn without_a_configured_token_everything_is_refused() {
        let token = AdminToken::new(Some(&SecretString::from("")));
        assert!(!token.is_set());
        assert_eq!(
            token.check(&headers(Some("Bearer "))),
            Err(Refused::Disabled)
        );
        assert_eq!(token.check(&headers(None)), Err(Refused::Disabled));
    }
}
