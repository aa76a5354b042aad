//! Operator actions behind a bearer token (`ADMIN_TOKEN`). Without the right
//! token: 401 problem with `WWW-Authenticate: Bearer`. A service started
//! without a token refuses every operator action (403): nothing that changes
//! the system's state is open to anyone who can reach the port.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// The operator token setting.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Bearer token for operator actions (in AWS: a generated Secrets Manager
    /// secret). Unset: operator actions are refused.
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

    fn accepts(&self, presented: &str) -> Result<(), Problem> {
        let Some(expected) = &self.0 else {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "admin-disabled",
                "Operator actions are disabled",
            )
            .detail("This service was started without ADMIN_TOKEN."));
        };
        let presented = digest(presented);
        let same = expected
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same { Ok(()) } else { Err(unauthorized()) }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unauthorized() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Operator token required",
    )
    .detail("Send the service's ADMIN_TOKEN as `Authorization: Bearer <token>`.")
}

/// Middleware: lets the request through only with the operator token.
pub async fn require_admin(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let verdict = match presented {
        Some(presented) => token.accepts(presented),
        None if token.0.is_none() => token.accepts(""),
        None => Err(unauthorized()),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(problem) => {
            let unauthorized = problem.status == StatusCode::UNAUTHORIZED.as_u16();
            let mut response = problem.into_response();
            if unauthorized {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"operator\""),
                );
            }
            response
        }
    }
}
