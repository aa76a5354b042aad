//! A JSON body extractor whose every rejection is problem+json naming what is
//! wrong: the media type, the size, the syntax, or each field that breaks the
//! rules of [`service_kit::json`] (duplicate keys, unknown fields, arrays where
//! objects belong, control and format characters, wrong types).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use service_kit::json::{self, JsonError};

use super::error::ApiError;

/// The body as `T` (strings in NFC), plus the canonical form of the JSON it was
/// read from (what idempotency keys are compared on: key order, white space and
/// Unicode normalisation do not matter).
pub struct JsonBody<T> {
    pub value: T,
    pub canonical: Vec<u8>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(json::is_json_media_type);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: None }
            } else {
                ApiError::BadRequest {
                    detail: rejection.body_text(),
                    errors: Vec::new(),
                }
            }
        })?;
        match json::from_slice(&bytes) {
            Ok(parsed) => Ok(Self {
                value: parsed.value,
                canonical: parsed.canonical,
            }),
            Err(JsonError::Syntax(detail)) => Err(ApiError::BadRequest {
                detail,
                errors: Vec::new(),
            }),
            Err(JsonError::Invalid(errors)) => Err(ApiError::Validation(errors)),
        }
    }
}
