//! A JSON body extractor whose every rejection is problem+json naming what is
//! wrong: the content type, the size, the syntax, or the field with a wrong type.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The body as `T`, plus the canonical form of the JSON it was read from (what
/// idempotency keys are compared on: key order and white space do not matter).
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
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
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
        // Syntax first, as a 400; then the shape, as a 422 naming the field.
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
                detail: format!("The body is not valid JSON: {e}"),
                errors: Vec::new(),
            })?;
        if !json.is_object() {
            return Err(ApiError::Validation(vec![
                service_kit::problem::FieldError::new("$", "must be a JSON object"),
            ]));
        }
        let canonical = serde_json::to_vec(&sorted(&json)).map_err(anyhow::Error::from)?;
        let value = serde_path_to_error::deserialize(json).map_err(|e| {
            let field = e.path().to_string();
            let message = e.inner().to_string();
            ApiError::Validation(vec![service_kit::problem::FieldError::new(field, message)])
        })?;
        Ok(Self { value, canonical })
    }
}

/// The same JSON with object keys sorted at every level (serde_json may be built
/// with `preserve_order`, so this cannot be left to the map type).
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_ignores_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"c":3,"d":2},"b":1}"#).unwrap();
        assert_eq!(
            serde_json::to_vec(&sorted(&a)).unwrap(),
            serde_json::to_vec(&sorted(&b)).unwrap()
        );
    }
}
