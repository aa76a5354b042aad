//! Settings shared by both services. Each service flattens these into its own
//! `clap` parser, so `--help` lists every variable and a malformed value stops the
//! process at start with a message naming it.

use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

/// Where the service's database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Full connection URL. When unset, the PG* parts below are used (that is
    /// what ECS injects from the Aurora secret).
    #[arg(long, env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Database host (used when DATABASE_URL is unset).
    #[arg(long, env = "PGHOST")]
    pub pghost: Option<String>,
    /// Database port.
    #[arg(long, env = "PGPORT", default_value_t = 5432)]
    pub pgport: u16,
    /// Database user (used when DATABASE_URL is unset).
    #[arg(long, env = "PGUSER")]
    pub pguser: Option<String>,
    /// Database password.
    #[arg(long, env = "PGPASSWORD", value_parser = parse_secret, hide_env_values = true)]
    pub pgpassword: Option<SecretString>,
    /// Database name (used when DATABASE_URL is unset; defaults to the service's own).
    #[arg(long, env = "PGDATABASE")]
    pub pgdatabase: Option<String>,
    /// Connections of the HTTP handlers' pool (the relay and the consumer
    /// have pools of their own).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,
    /// How long a request (or a background loop) waits for a free connection
    /// before failing: a request then gets a 503, not a hang.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub acquire_timeout: Duration,
    /// Longest one SQL statement may run before the server cancels it
    /// (`statement_timeout` of every connection).
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub statement_timeout: Duration,
    /// Longest a statement waits for a row or table lock (`lock_timeout`).
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// A connection left idle inside an open transaction this long is closed by
    /// the server, releasing its locks (`idle_in_transaction_session_timeout`).
    #[arg(long, env = "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_in_transaction_timeout: Duration,
    /// Create the database if missing and apply migrations at start-up.
    #[arg(long, env = "RUN_MIGRATIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub run_migrations: bool,
}

/// A configuration that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    InvalidDatabaseUrl(String),
    #[error(
        "no database configured: set DATABASE_URL, or PGHOST and PGUSER (with PGPASSWORD, PGPORT, PGDATABASE as needed)"
    )]
    MissingDatabase,
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("{0} must be at most {1:?}")]
    TooLong(&'static str, Duration),
    #[error("{0}")]
    Invalid(String),
}

/// Refuses a zero duration, naming its variable (negative ones do not parse).
pub fn require_positive(settings: &[(&'static str, Duration)]) -> Result<(), ConfigError> {
    match settings.iter().find(|(_, value)| value.is_zero()) {
        Some((name, _)) => Err(ConfigError::Zero(name)),
        None => Ok(()),
    }
}

impl DatabaseArgs {
    /// Refuses settings that cannot work (checked at start-up).
    pub fn validate(&self) -> Result<(), ConfigError> {
        require_positive(&[
            ("DATABASE_ACQUIRE_TIMEOUT", self.acquire_timeout),
            ("DATABASE_STATEMENT_TIMEOUT", self.statement_timeout),
            ("DATABASE_LOCK_TIMEOUT", self.lock_timeout),
            (
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
                self.idle_in_transaction_timeout,
            ),
        ])?;
        // PostgreSQL keeps these as 32-bit milliseconds.
        let max = Duration::from_millis(i32::MAX as u64);
        for (name, value) in [
            ("DATABASE_STATEMENT_TIMEOUT", self.statement_timeout),
            ("DATABASE_LOCK_TIMEOUT", self.lock_timeout),
            (
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
                self.idle_in_transaction_timeout,
            ),
        ] {
            if value > max {
                return Err(ConfigError::TooLong(name, max));
            }
        }
        Ok(())
    }

    /// The session settings every pooled connection starts with (sent in the
    /// startup packet's `options`, so no connection is ever without them):
    /// no statement, lock wait or idle transaction outlives its timeout.
    pub fn session_timeouts(&self) -> [(&'static str, String); 3] {
        let ms = |d: Duration| d.as_millis().to_string();
        [
            ("statement_timeout", ms(self.statement_timeout)),
            ("lock_timeout", ms(self.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction_timeout),
            ),
        ]
    }

    /// Connection options, from `DATABASE_URL` when set, else from the PG* parts.
    pub fn connect_options(&self, default_database: &str) -> Result<PgConnectOptions, ConfigError> {
        if let Some(url) = &self.database_url {
            return url
                .expose_secret()
                .parse::<PgConnectOptions>()
                .map_err(|e| ConfigError::InvalidDatabaseUrl(e.to_string()));
        }
        let (Some(host), Some(user)) = (&self.pghost, &self.pguser) else {
            return Err(ConfigError::MissingDatabase);
        };
        // `PgConnectOptions::new()` would also read PG* itself, but only the parts
        // we name here are documented, so build it explicitly.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(self.pgport)
            .username(user)
            .database(self.pgdatabase.as_deref().unwrap_or(default_database));
        if let Some(password) = &self.pgpassword {
            options = options.password(password.expose_secret());
        }
        Ok(options)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for CloudWatch and other collectors).
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// The OTLP transports built in (no gRPC: it would bring tonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    /// Protocol buffers over HTTP, the OTLP default.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// JSON over HTTP.
    #[value(name = "http/json")]
    HttpJson,
}

/// Logging and tracing settings.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// When set, spans are exported over OTLP/HTTP to this collector (an
    /// OpenTelemetry Collector or the ADOT sidecar, e.g. http://127.0.0.1:4318;
    /// spans go to its /v1/traces). Unset: nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The OTLP transport: http/protobuf or http/json.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::HttpProtobuf)]
    pub otel_exporter_otlp_protocol: OtlpProtocol,
}

impl LogArgs {
    /// The collector's traces URL, when export is on (an empty variable is unset).
    pub fn otlp_traces_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(base) = self
            .otel_exporter_otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        else {
            return Ok(None);
        };
        if !base.starts_with("http://") {
            return Err(ConfigError::Invalid(format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT {base:?} must be an http:// URL (a collector or ADOT sidecar next to the service; https and gRPC are not built in)"
            )));
        }
        Ok(Some(format!("{}/v1/traces", base.trim_end_matches('/'))))
    }
}

/// The HTTP edge: limits and timeouts of every connection and request (see
/// [`crate::server`] and [`crate::edge`]). Shared by both services.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Largest accepted request body, in bytes; a larger declared
    /// `Content-Length` is answered 413 at once (also to `Expect: 100-continue`).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(256..=10_485_760))]
    pub max_body_bytes: u32,
    /// Longest a client may take to send a request's line and headers, from the
    /// connection (or the first byte of a kept-alive one's next request); then
    /// 408 and the connection is closed.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub http_header_timeout: Duration,
    /// Longest a client may take to send a request's body; then 408 and the
    /// connection is closed.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub http_body_timeout: Duration,
    /// Longest the service may take to answer a request once it is read; then
    /// 503 (what was being written is rolled back).
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub http_request_timeout: Duration,
    /// How long an idle kept-alive connection stays open. Above the load
    /// balancer's idle timeout (the ALB's is 60 s), so that it is the balancer
    /// that closes, never a connection it is about to reuse.
    #[arg(long, env = "HTTP_KEEP_ALIVE_TIMEOUT", default_value = "75s", value_parser = parse_positive_duration)]
    pub http_keep_alive_timeout: Duration,
    /// Requests handled at once; more are answered 503 with `Retry-After` at
    /// once instead of queueing for database connections (`/health/live` is
    /// never refused).
    #[arg(long, env = "HTTP_MAX_CONCURRENT_REQUESTS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub http_max_concurrent_requests: u32,
}

/// Like [`parse_duration`], but zero is refused.
pub fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

pub(crate) fn parse_secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

/// Parses "500ms", "5s", "4h" and the like.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (expected e.g. 500ms, 5s, 4h)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        db: DatabaseArgs,
    }

    // Built directly, not parsed: the environment running the tests may set DATABASE_URL.
    fn args() -> DatabaseArgs {
        DatabaseArgs {
            database_url: None,
            pghost: None,
            pgport: 5432,
            pguser: None,
            pgpassword: None,
            pgdatabase: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(60),
            run_migrations: true,
        }
    }

    #[test]
    fn pg_parts_are_used_without_url() {
        let db = DatabaseArgs {
            pghost: Some("db.example".into()),
            pguser: Some("app".into()),
            pgport: 6543,
            pgpassword: Some(SecretString::from("secret")),
            ..args()
        };
        let options = db.connect_options("booking").unwrap();
        assert_eq!(options.get_host(), "db.example");
        assert_eq!(options.get_port(), 6543);
        assert_eq!(options.get_database(), Some("booking"));
    }

    #[test]
    fn missing_database_is_a_named_error() {
        let err = args().connect_options("booking").unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn malformed_url_is_a_named_error() {
        let db = DatabaseArgs {
            database_url: Some(SecretString::from(
                "postgres://db.example:not-a-port/booking",
            )),
            ..args()
        };
        let err = db.connect_options("booking").unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL"), "{err}");
    }

    #[derive(Parser)]
    struct HttpCli {
        #[command(flatten)]
        http: HttpArgs,
    }

    #[test]
    fn http_settings_have_defaults_and_refuse_zero() {
        let cli = HttpCli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.http.max_body_bytes, 16 * 1024);
        assert_eq!(cli.http.http_keep_alive_timeout, Duration::from_secs(75));
        for zero in [
            "--http-header-timeout=0s",
            "--http-request-timeout=0ms",
            "--http-max-concurrent-requests=0",
        ] {
            let err = HttpCli::try_parse_from(["x", zero]).err().unwrap();
            assert!(
                err.to_string().contains(zero.split('=').next().unwrap()),
                "{err}"
            );
        }
    }

    #[test]
    fn zero_or_huge_timeouts_are_refused_by_name() {
        for (db, name) in [
            (
                DatabaseArgs {
                    acquire_timeout: Duration::ZERO,
                    ..args()
                },
                "DATABASE_ACQUIRE_TIMEOUT",
            ),
            (
                DatabaseArgs {
                    statement_timeout: Duration::ZERO,
                    ..args()
                },
                "DATABASE_STATEMENT_TIMEOUT",
            ),
            (
                DatabaseArgs {
                    lock_timeout: Duration::ZERO,
                    ..args()
                },
                "DATABASE_LOCK_TIMEOUT",
            ),
            (
                DatabaseArgs {
                    idle_in_transaction_timeout: Duration::from_secs(100 * 24 * 3600),
                    ..args()
                },
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
            ),
        ] {
            let err = db.validate().unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
        args().validate().unwrap();
        assert_eq!(
            args().session_timeouts()[0],
            ("statement_timeout", "10000".to_owned())
        );
    }

    #[test]
    fn otlp_export_is_off_unless_an_http_endpoint_is_set() {
        let log = |endpoint: Option<&str>| LogArgs {
            log_format: LogFormat::Json,
            otel_exporter_otlp_endpoint: endpoint.map(str::to_owned),
            otel_exporter_otlp_protocol: OtlpProtocol::HttpProtobuf,
        };
        assert_eq!(log(None).otlp_traces_url().unwrap(), None);
        assert_eq!(log(Some(" ")).otlp_traces_url().unwrap(), None);
        assert_eq!(
            log(Some("http://127.0.0.1:4318/"))
                .otlp_traces_url()
                .unwrap(),
            Some("http://127.0.0.1:4318/v1/traces".to_owned())
        );
        let err = log(Some("https://collector:4318"))
            .otlp_traces_url()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{err}"
        );
    }

    #[test]
    fn bad_pool_size_is_rejected() {
        let err = Cli::try_parse_from(["x", "--max-connections", "0"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("max-connections"), "{err}");
    }
}
