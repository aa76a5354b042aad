//! Distributed traces: one booking is one trace, from `POST /api/flights`
//! through the relay and SQS to the payment. The W3C `traceparent` travels in
//! the request header, with the outbox event (its envelope and the SQS message
//! attribute), and into the consumer; each side makes its spans children of
//! the one it received. All of it is a no-op unless OTLP export is on
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, see [`crate::telemetry`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_enabled() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// Whether spans are exported over OTLP in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// Makes `span` (not entered yet) a child of `traceparent` when that is a
/// valid W3C trace context, and records its trace id in the span's `trace_id`
/// field (declare it `trace_id = tracing::field::Empty`), so every line logged
/// in it names the trace.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(traceparent) = traceparent {
        let parent = TraceContextPropagator::new().extract(&Traceparent(traceparent));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// The W3C `traceparent` naming `span`, to pass on (stored with an event).
pub fn traceparent(span: &Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// A carrier holding just a `traceparent`.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}
