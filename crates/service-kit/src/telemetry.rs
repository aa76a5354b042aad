//! `tracing` set-up: JSON lines in production (what CloudWatch and friends
//! parse), pretty output in a terminal. `RUST_LOG` filters the log lines,
//! default `info`. With `OTEL_EXPORTER_OTLP_ENDPOINT`, the service's own spans
//! are also exported over OTLP/HTTP (see [`crate::trace`]); without it nothing
//! is exported and nothing else changes.
//!
//! A JSON line carries the fields of every span it was logged in (`spans`):
//! a line logged while handling a request has the request's `request_id`, and
//! its `trace_id` when traces are exported.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogArgs, LogFormat, OtlpProtocol};

/// The installed telemetry; dropping it flushes the spans not exported yet.
#[must_use = "dropping it ends the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans ended so far (tests; shutdown does it by itself).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            tracing::warn!(error = %e, "failed to flush spans to the OTLP collector");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "failed to export the last spans to the OTLP collector");
        }
    }
}

/// Installs the global subscriber for `service` (its crate name, with `_`
/// for `-`, names the spans that are exported). Safe to call more than once
/// (tests do): later calls keep the first subscriber. Logging is installed
/// whatever happens; an `Err` is an OTLP setting that cannot work, for the
/// caller to stop on (it is then logged like any start-up error).
pub fn init(args: &LogArgs, service: &'static str) -> anyhow::Result<Telemetry> {
    let provider = tracer_provider(args, service);
    let (provider, error) = match provider {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    install(Some(args.log_format), provider.as_ref(), service);
    match error {
        Some(e) => Err(e),
        None => Ok(Telemetry { provider }),
    }
}

/// For a test that checks the span export: like [`init`], with log lines only
/// when `TEST_LOG` is set.
pub fn init_for_tests_exporting(
    args: &LogArgs,
    service: &'static str,
) -> anyhow::Result<Telemetry> {
    let provider = tracer_provider(args, service)?;
    let logs = std::env::var_os("TEST_LOG").map(|_| LogFormat::Pretty);
    install(logs, provider.as_ref(), service);
    Ok(Telemetry { provider })
}

fn tracer_provider(
    args: &LogArgs,
    service: &'static str,
) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(url) = args.otlp_traces_url()? else {
        return Ok(None);
    };
    let protocol = match args.otel_exporter_otlp_protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
    };
    // Other standard variables (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
    // OTEL_BSP_*) are read by the exporter and the batch processor themselves.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_protocol(protocol)
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT: failed to build the OTLP span exporter")?;
    let provider = SdkTracerProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    crate::trace::set_enabled();
    Ok(Some(provider))
}

fn install(format: Option<LogFormat>, provider: Option<&SdkTracerProvider>, service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn")
    });
    let logs = format.map(|format| {
        match format {
            LogFormat::Json => fmt::layer()
                .json()
                .event_format(crate::log_json::FlatJson)
                .boxed(),
            LogFormat::Pretty => fmt::layer().compact().boxed(),
        }
        .with_filter(filter)
    });
    // Only this service's own spans (and the shared HTTP span) are exported:
    // the libraries' would be traces of their own, unconnected to a booking.
    let traces = provider.map(|provider| {
        let tracer = provider.tracer(service);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::OFF)
                    .with_target("service_kit", LevelFilter::INFO)
                    .with_target(service.replace('-', "_"), LevelFilter::INFO),
            )
    });
    // An error only means a subscriber is already installed.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
}

/// Ends `main`: a failure (at start-up, say: a setting that cannot work, a
/// database that refuses) is logged as one line in the configured format — a
/// JSON line when `LOG_FORMAT=json` — with its cause chain and no Debug dump or
/// backtrace, and the process exits 1.
pub fn exit_code(service: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{service} stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

/// For tests: logs only when `TEST_LOG` is set, so test output stays readable.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        install(Some(LogFormat::Pretty), None, "tests");
    }
}

/// At most one log line per interval for a condition that repeats (a database
/// outage seen by every request): the first occurrence is logged at once, the
/// next ones are counted and reported with the next line that is let through.
pub struct Throttle {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    suppressed: std::sync::atomic::AtomicU64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self {
            last: std::sync::Mutex::new(None),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(occurrences suppressed since the last line)` when a line may be logged now.
    pub fn allow(&self, every: std::time::Duration) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(std::time::Instant::now());
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}
