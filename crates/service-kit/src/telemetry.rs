//! `tracing` set-up: JSON lines in production (what CloudWatch and friends
//! parse), pretty output in a terminal. `RUST_LOG` filters, default `info`.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (tests do): later
/// calls keep the first subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn")
    });
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    // An error only means a subscriber is already installed.
    let _ = result;
}

/// For tests: logs only when `TEST_LOG` is set, so test output stays readable.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(LogFormat::Pretty);
    }
}
