//! W3C trace context: the `traceparent` of the request that books a flight is
//! stored with its event and sent as an SQS message attribute, so the consumer's
//! spans and logs carry the same trace id. With OTLP export on it names the
//! booking's own span (a child of the caller's `traceparent`, when it sent
//! one); without, it is the caller's, or a new trace.

use axum::http::HeaderMap;
use rand::Rng;

/// The current span's `traceparent` with OTLP export on; else the request's
/// if well-formed, else a new one (sampled).
pub fn traceparent(headers: &HeaderMap) -> String {
    if let Some(current) = service_kit::trace::traceparent(&tracing::Span::current()) {
        return current;
    }
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid(v))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut rng = rand::rng();
            format!(
                "00-{:032x}-{:016x}-01",
                rng.random::<u128>() | 1,
                rng.random::<u64>() | 1
            )
        })
}

fn is_valid(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_traceparent_and_replaces_a_bad_one() {
        let mut headers = HeaderMap::new();
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", good.parse().unwrap());
        assert_eq!(traceparent(&headers), good);

        headers.insert("traceparent", "00-zz-00f067aa0ba902b7-01".parse().unwrap());
        let fresh = traceparent(&headers);
        assert!(is_valid(&fresh), "{fresh}");
        assert!(is_valid(&traceparent(&HeaderMap::new())));
    }
}
