//! What the JSON logs say about a request: the binary run as in production
//! (`LOG_FORMAT=json`), its stdout read line by line.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::sample_body;

/// Reads JSON lines from `lines` until `done` holds for the lines so far.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<Value>,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !done(seen) {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the service is running");
            seen.push(serde_json::from_str(&line).unwrap_or_else(|_| json!({ "raw": line })));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}; lines so far: {seen:#?}"));
}

fn access_line<'a>(lines: &'a [Value], request_id: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["request_id"] == request_id)
}

// Defect 10: JSON lines lost the request's method, path and id.
#[tokio::test]
async fn json_logs_name_the_request_on_every_line_and_end_it_with_an_access_line() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_booking-service"))
        .env("DATABASE_URL", service_kit::testing::new_database_url("t"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RELAY_ENABLED", "false")
        .env("CONSUMER_ENABLED", "false")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, "the listening line", |l| {
        l.iter()
            .any(|l| l["message"] == "booking-service listening")
    })
    .await;
    let addr = seen
        .iter()
        .find(|l| l["message"] == "booking-service listening")
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();

    let mut body = sample_body();
    body["passengerName"] = json!("Ada Secret-Passenger");
    let response = client
        .post(format!("http://{addr}/api/flights"))
        .header("x-request-id", "log-test-book")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .get(format!("http://{addr}/api/flights/%FF"))
        .header("x-request-id", "log-test-bad")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    read_until(&mut lines, &mut seen, "both access lines", |l| {
        access_line(l, "log-test-book").is_some() && access_line(l, "log-test-bad").is_some()
    })
    .await;

    let booked = seen
        .iter()
        .find(|l| l["message"] == "flight booked")
        .expect("a flight booked line");
    assert_eq!(booked["request_id"], "log-test-book", "{booked}");
    assert_eq!(booked["method"], "POST", "{booked}");
    assert_eq!(booked["route"], "/api/flights", "{booked}");
    assert!(booked["flight_id"].is_string(), "{booked}");

    let access = access_line(&seen, "log-test-book").unwrap();
    assert_eq!(access["method"], "POST", "{access}");
    assert_eq!(access["route"], "/api/flights", "{access}");
    assert_eq!(access["status"], 201, "{access}");
    assert!(access["latency_ms"].as_f64().is_some(), "{access}");
    assert_eq!(access["level"], "INFO", "{access}");

    let access = access_line(&seen, "log-test-bad").unwrap();
    assert_eq!(access["route"], "/api/flights/{id}", "{access}");
    assert_eq!(access["status"], 400, "{access}");

    let per_request = |id: &str| {
        seen.iter()
            .filter(|l| l["message"] == "request completed" && l["request_id"] == id)
            .count()
    };
    assert_eq!(
        per_request("log-test-book"),
        1,
        "one access line per request"
    );
    let all = seen.iter().map(Value::to_string).collect::<String>();
    assert!(
        !all.contains("Secret-Passenger"),
        "no passenger names, no bodies: {all}"
    );
    child.kill().await.unwrap();
}
