//! One booking, one trace: booking-service and payment-service export their
//! spans over OTLP/HTTP (JSON here) to a collector, and the spans of the POST,
//! of the relay's send and of the payment carry one trace id, the one of the
//! caller's `traceparent`.
//!
//! A test binary of its own: the tracing subscriber (with its OTLP exporter)
//! is global to a process. booking-service runs in this process, exporting as
//! "booking-service"; payment-service runs as its own binary, configured as in
//! production by `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use serde_json::{Value, json};
use service_kit::config::{LogArgs, LogFormat, OtlpProtocol};
use service_kit::testing::eventually;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type Received = Arc<Mutex<Vec<Value>>>;

/// A tiny OTLP/HTTP collector: keeps every JSON body posted to /v1/traces.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(r): State<Received>, body: axum::Json<Value>| async move {
                    r.lock().unwrap().push(body.0);
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// (service.name, trace id, span name) of every span received.
fn spans(received: &Received) -> Vec<(String, String, String)> {
    let mut spans = Vec::new();
    for body in received.lock().unwrap().iter() {
        for resource_spans in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource_spans["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for scope in resource_spans["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    spans.push((
                        service.clone(),
                        span["traceId"].as_str().unwrap_or_default().to_owned(),
                        span["name"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
        }
    }
    spans
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_booking_and_its_payment_are_one_trace_across_both_services() {
    let (collector_url, received) = collector().await;
    let telemetry = service_kit::telemetry::init_for_tests_exporting(
        &LogArgs {
            log_format: LogFormat::Json,
            otel_exporter_otlp_endpoint: Some(collector_url.clone()),
            otel_exporter_otlp_protocol: OtlpProtocol::HttpJson,
        },
        "booking-service",
    )
    .unwrap();
    assert!(telemetry.exporting());

    let client = outbox::sqs::client().await;
    let queue =
        outbox::sqs::create_queue(&client, &format!("traces-{}.fifo", Uuid::new_v4().simple()))
            .await
            .unwrap();

    // booking-service, in this process.
    let booking = booking_service::startup::build(booking_service::config::Config::parse_from([
        "booking-service".to_owned(),
        "--bind-addr=127.0.0.1:0".to_owned(),
        format!(
            "--database-url={}",
            service_kit::testing::new_database_url("t")
        ),
        format!("--sqs-queue-url={queue}"),
        "--consumer-enabled=false".to_owned(),
        "--max-connections=3".to_owned(),
    ]))
    .await
    .unwrap();
    let booking_url = format!("http://127.0.0.1:{}", booking.port());
    let shutdown = CancellationToken::new();
    let booking = tokio::spawn(booking.run(shutdown.clone()));

    // payment-service, as its own process, exporting as configured by the standard variables.
    let payment_port = free_port();
    let log = tempfile_path("payment-traces.log");
    let mut payment = Command::new(env!("CARGO_BIN_EXE_payment-service"))
        .env("BIND_ADDR", format!("127.0.0.1:{payment_port}"))
        .env("DATABASE_URL", service_kit::testing::new_database_url("t"))
        .env("SQS_QUEUE_URL", &queue)
        .env("RELAY_ENABLED", "false")
        .env("CONSUMER_WAIT_TIME", "1s")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The caller's trace: the booking's spans continue it.
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let http = reqwest::Client::new();
    let booked: Value = http
        .post(format!("{booking_url}/api/flights"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({
            "departureAirport": "Paris",
            "arrivalAirport": "London",
            "departureDateTime": "2023-09-01T08:00:00.000Z",
            "arrivalDateTime": "2023-09-01T08:15:00.000Z"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flight = booked["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), "the booking is paid", || async {
        let paid = http
            .get(format!(
                "http://127.0.0.1:{payment_port}/api/payments/{flight}"
            ))
            .send()
            .await;
        paid.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    telemetry.flush();

    let found = eventually(
        Duration::from_secs(15),
        "both services' spans arrive",
        || async {
            let of_trace: Vec<(String, String)> = spans(&received)
                .into_iter()
                .filter(|(_, t, _)| *t == trace_id)
                .map(|(service, _, name)| (service, name))
                .collect();
            let has =
                |service: &str, name: &str| of_trace.iter().any(|(s, n)| s == service && n == name);
            (has("booking-service", "request")
                && has("booking-service", "book_flight")
                && has("booking-service", "publish")
                && has("payment-service", "record_payment"))
            .then_some(of_trace)
        },
    )
    .await;
    assert!(found.len() >= 4, "{found:?}");

    // The payment's log line names the trace too.
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("payment recorded"))
        .unwrap_or_else(|| panic!("no payment line in {logged}"));
    assert!(line.contains(&trace_id), "{line}");

    payment.kill().unwrap();
    payment.wait().unwrap();
    shutdown.cancel();
    booking.await.unwrap().unwrap();
    if std::env::var_os("KEEP_LOG").is_none() {
        let _ = std::fs::remove_file(&log);
    } else {
        eprintln!("{found:?}\n{line}");
    }
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", Uuid::new_v4().simple()))
}
