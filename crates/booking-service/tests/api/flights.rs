use std::collections::HashSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Bookings, assert_problem, sample_body, spawn_app};

#[tokio::test]
async fn booking_the_aws_sample_body_writes_the_flight_and_its_event() {
    let app = spawn_app().await;

    let response = app.book(&sample_body()).await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let flight: Value = response.json().await.unwrap();
    let id = flight["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/flights/{id}"));
    assert_eq!(flight["departureAirport"], "Paris");
    assert_eq!(flight["arrivalAirport"], "London");
    assert_eq!(flight["departureDateTime"], "2023-09-01T08:00:00Z");
    assert_eq!(flight["status"], "PENDING_PAYMENT");
    assert_eq!(flight["fare"], json!({"amount": 9900, "currency": "EUR"}));
    assert!(flight["createdAt"].is_string());

    let (flights, events) = app.counts().await;
    assert_eq!((flights, events), (1, 1));
    let (envelope, aggregate_id, published): (Value, Uuid, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select envelope, aggregate_id, published_at from outbox.event")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(aggregate_id.to_string(), id);
    assert!(published.is_none(), "the relay is off: the event waits");
    assert_eq!(envelope["eventType"], "FlightBooked");
    assert_eq!(envelope["eventVersion"], 1);
    assert_eq!(envelope["aggregateType"], "flight");
    assert_eq!(envelope["aggregateId"], id);
    assert!(envelope["traceparent"].as_str().unwrap().starts_with("00-"));
    assert_eq!(envelope["payload"]["flightId"], id);
    assert_eq!(envelope["payload"]["fare"]["amount"], 9900);

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, flight);
}

#[tokio::test]
async fn fare_and_passenger_are_kept_and_the_traceparent_is_carried() {
    let app = spawn_app().await;
    let mut body = sample_body();
    body["passengerName"] = json!("Ada Lovelace");
    body["fare"] = json!({"amount": 12900, "currency": "GBP"});
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let response = app
        .client
        .post(format!("{}/api/flights", app.address))
        .header("traceparent", traceparent)
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 201);
    let flight: Value = response.json().await.unwrap();
    assert_eq!(flight["passengerName"], "Ada Lovelace");
    assert_eq!(flight["fare"], json!({"amount": 12900, "currency": "GBP"}));
    let envelope: Value = sqlx::query_scalar("select envelope from outbox.event")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(envelope["traceparent"], traceparent);
    assert_eq!(envelope["payload"]["passengerName"], "Ada Lovelace");
}

#[tokio::test]
async fn a_failing_outbox_insert_rolls_the_flight_back() {
    let app = spawn_app().await;
    // Inject the failure in the database itself: every outbox insert raises.
    sqlx::raw_sql(
        "create function fail_outbox() returns trigger language plpgsql as $$
         begin raise exception 'injected outbox failure'; end $$;
         create trigger fail_outbox before insert on outbox.event for each row execute function fail_outbox();",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let response = app.book(&sample_body()).await;

    let problem = assert_problem(response, 500).await;
    assert!(
        !problem.to_string().contains("injected"),
        "internals are not leaked: {problem}"
    );
    assert_eq!(
        app.counts().await,
        (0, 0),
        "neither the flight nor its event exists"
    );
}

#[tokio::test]
async fn no_event_exists_without_its_flight_and_no_flight_without_its_event() {
    let app = spawn_app().await;
    for _ in 0..10 {
        app.book_sample().await;
    }
    let orphans: i64 = sqlx::query_scalar(
        "select (select count(*) from outbox.event o where not exists (select 1 from flight f where f.id = o.aggregate_id))
              + (select count(*) from flight f where not exists (select 1 from outbox.event o where o.aggregate_id = f.id))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    assert_eq!(app.counts().await, (10, 10));
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_original_booking() {
    let app = spawn_app().await;
    let post = |key: &'static str, body: Value| {
        app.client
            .post(format!("{}/api/flights", app.address))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };

    let first = post("booking-42", sample_body()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // Same body, other key order and white space: still the same request.
    let reordered: Value = serde_json::from_str(
        r#"{ "arrivalDateTime":"2023-09-01T08:15:00.000Z", "arrivalAirport":"London",
             "departureDateTime":"2023-09-01T08:00:00.000Z", "departureAirport":"Paris" }"#,
    )
    .unwrap();
    let retry = post("booking-42", reordered).await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();

    assert_eq!(retry, first);
    assert_eq!(app.counts().await, (1, 1), "one flight, one event");

    let mut other = sample_body();
    other["arrivalAirport"] = json!("Berlin");
    let problem = assert_problem(post("booking-42", other).await.unwrap(), 422).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(app.counts().await, (1, 1), "nothing written");
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_book_once() {
    let app = spawn_app().await;
    let requests = (0..8).map(|_| {
        app.client
            .post(format!("{}/api/flights", app.address))
            .header("Idempotency-Key", "same-key")
            .json(&sample_body())
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut ids = HashSet::new();
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.counts().await, (1, 1));
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/api/flights", app.address))
        .header("Idempotency-Key", "x".repeat(300))
        .json(&sample_body())
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn flights_are_listed_newest_first_in_pages() {
    let app = spawn_app().await;
    let mut booked = Vec::new();
    for _ in 0..5 {
        booked.push(app.book_sample().await.to_string());
    }
    booked.reverse();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/flights?limit=2&cursor={c}"),
            None => "/api/flights?limit=2".to_owned(),
        };
        let page: Value = app.get_as_operator(&path).await.json().await.unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, booked);
}

#[tokio::test]
async fn unknown_flights_and_bad_ids_are_problems() {
    let app = spawn_app().await;
    let problem = assert_problem(
        app.get(&format!("/api/flights/{}", Uuid::new_v4())).await,
        404,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("No flight"));
    let problem = assert_problem(app.get("/api/flights/not-a-uuid").await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "id");
    let problem = assert_problem(app.get_as_operator("/api/flights?limit=500").await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "limit");
    let problem = assert_problem(app.get_as_operator("/api/flights?cursor=bogus").await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "cursor");
    let problem = assert_problem(
        app.get_as_operator("/api/flights?limit=1&limit=2").await,
        400,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("limit"),
        "{problem}"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems() {
    let app = spawn_app().await;
    assert_problem(app.get("/nope").await, 404).await;
    let response = app
        .client
        .delete(format!("{}/api/flights", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405).await;
}

#[tokio::test]
async fn health_swagger_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/live").await.status(), 200);
    let ready: Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["status"], "up");
    let swagger = app.get("/swagger-ui/index.html").await;
    assert_eq!(swagger.status(), 200);
    assert!(swagger.text().await.unwrap().contains("swagger"));
    let spec: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/api/flights"]["post"].is_object());
    app.book_sample().await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("outbox_pending_events 1"), "{metrics}");
    let response = app.get("/health/ready").await;
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn committed_openapi_json_matches_the_code() {
    let generated = booking_service::api::openapi().to_pretty_json().unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/booking-service/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p booking-service openapi`"
    );
}

#[tokio::test]
async fn help_lists_every_setting_and_bad_config_names_the_variable() {
    let bin = env!("CARGO_BIN_EXE_booking-service");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for var in [
        "DATABASE_URL",
        "PGHOST",
        "PGPASSWORD",
        "BIND_ADDR",
        "LOG_FORMAT",
        "DATABASE_MAX_CONNECTIONS",
        "RUN_MIGRATIONS",
        "RELAY_ENABLED",
        "SQS_QUEUE_URL",
        "SQS_QUEUE_NAME",
        "RELAY_MAX_ATTEMPTS",
        "OUTBOX_RETENTION",
        "MAX_BODY_BYTES",
        "HTTP_HEADER_TIMEOUT",
        "HTTP_BODY_TIMEOUT",
        "HTTP_REQUEST_TIMEOUT",
        "HTTP_KEEP_ALIVE_TIMEOUT",
        "HTTP_MAX_CONCURRENT_REQUESTS",
        "DATABASE_STATEMENT_TIMEOUT",
        "DATABASE_LOCK_TIMEOUT",
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
        "RELAY_DATABASE_MAX_CONNECTIONS",
        "ADMIN_TOKEN",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
    let bad = std::process::Command::new(bin)
        .env_clear()
        .env("BIND_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("BIND_ADDR"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let no_db = std::process::Command::new(bin)
        .env_clear()
        .env("RELAY_ENABLED", "false")
        .output()
        .unwrap();
    assert!(!no_db.status.success());
    // Logged like every other line (stdout; JSON with LOG_FORMAT=json), with
    // its cause chain and no Debug dump.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&no_db.stdout),
        String::from_utf8_lossy(&no_db.stderr)
    );
    assert!(said.contains("DATABASE_URL"), "{said}");
    assert!(!said.contains("Stack backtrace"), "{said}");
}
