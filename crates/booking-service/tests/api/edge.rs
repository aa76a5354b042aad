//! The HTTP edge, as a client on a raw connection sees it: problem+json from
//! every layer (extractors, Swagger UI's assets, hyper's own refusals), the
//! header, body, idle and request timeouts, the concurrency cap, security
//! headers and request ids. (The same code serves payment-service.)

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Bookings, TestApp, assert_problem, eventually, sample_body, spawn_app, spawn_app_with,
};

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
    /// Everything the server sent, interim responses included.
    wire: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Asserts a problem+json of `status` and returns its body.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.wire);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.wire
        );
        let body: Value = serde_json::from_str(&self.body).expect(&self.wire);
        assert_eq!(body["status"], status, "{body}");
        assert!(
            body["type"].as_str().unwrap().starts_with("/problems/"),
            "{body}"
        );
        assert!(body["title"].is_string(), "{body}");
        body
    }
}

fn address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads from `stream` until the server closes it (or `deadline` passes: a panic).
async fn read_to_close(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut bytes = Vec::new();
    tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The final response in `wire` (after any `100 Continue`).
fn parse(wire: String) -> Raw {
    let mut rest = wire.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").expect(&wire);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect(&wire);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        return Raw {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
            wire: wire.clone(),
        };
    }
}

/// Sends `request` on a new connection and reads until the server closes it.
async fn exchange(app: &TestApp, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(address(app)).await.unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(request).await;
    parse(read_to_close(&mut stream, Duration::from_secs(10)).await)
}

// Defect 4: a non-UTF-8 path segment got 400 text/plain, a missing Swagger UI
// asset an empty 404, and hyper's own refusals empty bodies.
#[tokio::test]
async fn every_error_is_problem_json_whoever_refuses_the_request() {
    let app = spawn_app().await;
    assert_problem(app.get("/api/flights/%FF").await, 400).await;
    assert_problem(app.get("/swagger-ui/nope.js").await, 404).await;
    let not_allowed = app
        .client
        .delete(format!("{}/api/flights", app.address))
        .send()
        .await
        .unwrap();
    let allow = not_allowed.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let problem = assert_problem(not_allowed, 405).await;
    assert_eq!(problem["type"], "/problems/method-not-allowed");

    let huge_header = format!(
        "GET /api/flights HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let many_headers = format!(
        "GET /api/flights HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let long_target = format!(
        "GET /api/flights?cursor={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let very_long_target = format!(
        "GET /api/flights?cursor={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cases: [(&str, &str, u16, &str); 8] = [
        (
            "a 20 KiB header",
            &huge_header,
            431,
            "header-fields-too-large",
        ),
        ("150 headers", &many_headers, 431, "header-fields-too-large"),
        ("a 10 KiB target", &long_target, 414, "uri-too-long"),
        (
            "a 70 KiB target",
            &very_long_target,
            431,
            "header-fields-too-large",
        ),
        (
            "a Content-Length that is not a number",
            "POST /api/flights HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            400,
            "bad-request",
        ),
        (
            "two different Content-Lengths",
            "POST /api/flights HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
            400,
            "bad-request",
        ),
        ("not HTTP", "HELLO\r\n\r\n", 400, "bad-request"),
        (
            "an Expect the server does not know",
            "GET /api/flights HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nConnection: close\r\n\r\n",
            417,
            "expectation-failed",
        ),
    ];
    for (what, request, status, kind) in cases {
        let raw = exchange(&app, request.as_bytes()).await;
        let problem = raw.problem(status);
        assert_eq!(problem["type"], format!("/problems/{kind}"), "{what}");
        assert_eq!(
            raw.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
        assert!(raw.header("x-request-id").is_some(), "{what}");
    }
    assert_eq!(app.counts().await, (0, 0));
}

// Defect 6: 200 slow-header connections were all held for a minute.
#[tokio::test]
async fn slow_header_clients_are_cut_after_the_header_timeout() {
    let app = spawn_app_with(&["--http-header-timeout=500ms"]).await;
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..100 {
        let address = address(&app);
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            // Half the clients send part of a head, the others nothing at all.
            if i % 2 == 0 {
                stream
                    .write_all(b"GET /api/flights HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
            }
            parse(read_to_close(&mut stream, Duration::from_secs(10)).await)
        }));
    }
    for client in clients {
        let raw = client.await.unwrap();
        assert_eq!(
            raw.problem(408)["type"],
            "/problems/request-timeout",
            "{}",
            raw.wire
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(5),
        "all cut after the timeout, not before: {elapsed:?}"
    );
    // The server still serves.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

// Defect 6: `Content-Length: 10^12` without a body was held forever.
#[tokio::test]
async fn a_body_that_does_not_arrive_is_refused_or_cut_after_the_body_timeout() {
    let app = spawn_app_with(&["--http-body-timeout=500ms"]).await;
    let started = Instant::now();
    let raw = exchange(
        &app,
        b"POST /api/flights HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    .await;
    assert_eq!(raw.problem(413)["type"], "/problems/payload-too-large");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let raw = exchange(
        &app,
        b"POST /api/flights HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"departure",
    )
    .await;
    assert_eq!(raw.problem(408)["type"], "/problems/request-timeout");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(app.counts().await, (0, 0));
}

// Defect 6: `Expect: 100-continue` with a huge length got `100 Continue`.
#[tokio::test]
async fn expect_100_continue_with_a_huge_length_gets_413_not_100_continue() {
    let app = spawn_app().await;
    let raw = exchange(
        &app,
        b"POST /api/flights HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    raw.problem(413);
    assert!(!raw.wire.contains("100 Continue"), "{}", raw.wire);

    // Within the limit, the client is asked for its body and the booking is made.
    let body = serde_json::to_string(&sample_body()).unwrap();
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /api/flights HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let raw = parse(read_to_close(&mut stream, Duration::from_secs(10)).await);
    assert_eq!(raw.status, 201, "{}", raw.wire);
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed_after_the_keep_alive_timeout() {
    let app = spawn_app_with(&[
        // Long header and request timeouts: the close must come from the idle
        // deadline set when the response was written, not an earlier phase's.
        "--http-keep-alive-timeout=500ms",
        "--http-header-timeout=30s",
        "--http-request-timeout=60s",
    ])
    .await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // The answer, then the close once the connection has been idle for 500 ms.
    let raw = parse(read_to_close(&mut stream, Duration::from_secs(3)).await);
    assert_eq!(raw.status, 200, "{}", raw.wire);
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

/// Holds an exclusive lock on `flight` until the returned transaction ends, and
/// waits until `waiting` requests queue behind it.
async fn block_flights(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table flight in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

async fn wait_for_lock_waiters(app: &TestApp, waiting: i64) {
    eventually(Duration::from_secs(10), "a request waiting on the lock", || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (n >= waiting).then_some(())
    })
    .await;
}

#[tokio::test]
async fn requests_over_the_concurrency_cap_get_503_with_retry_after() {
    let app = spawn_app_with(&["--http-max-concurrent-requests=1"]).await;
    let lock = block_flights(&app).await;
    let blocked = tokio::spawn({
        let client = app.client.clone();
        let url = format!("{}/api/flights", app.address);
        async move {
            let request = client.get(url).bearer_auth(crate::helpers::ADMIN_TOKEN);
            request.send().await.unwrap().status()
        }
    });
    wait_for_lock_waiters(&app, 1).await;

    let response = app.get_as_operator("/api/flights").await;
    assert_eq!(
        response.headers()["retry-after"].to_str().unwrap(),
        "1",
        "Retry-After"
    );
    let problem = assert_problem(response, 503).await;
    assert_eq!(problem["type"], "/problems/overloaded");
    // A liveness probe is never refused.
    assert_eq!(app.get("/health/live").await.status(), 200);

    lock.rollback().await.unwrap();
    assert_eq!(blocked.await.unwrap(), 200);
    assert_eq!(app.get_as_operator("/api/flights").await.status(), 200);
}

#[tokio::test]
async fn a_request_over_the_request_timeout_gets_503_and_writes_nothing() {
    let app = spawn_app_with(&["--http-request-timeout=500ms"]).await;
    let lock = block_flights(&app).await;
    let started = Instant::now();
    let response = app.book(&sample_body()).await;
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 503).await;
    assert_eq!(problem["type"], "/problems/request-timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    lock.rollback().await.unwrap();
    assert_eq!(app.counts().await, (0, 0));
}

// Defect 8: no security headers.
#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/api/flights",
        "/api/flights/nope",
        "/health/live",
        "/api-docs/openapi.json",
    ] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
    let page = app.get("/swagger-ui/index.html").await;
    let headers = page.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
}

// Defect 8: `X-Request-Id` was trusted and echoed whatever its length.
#[tokio::test]
async fn client_request_ids_are_kept_only_when_short_and_printable() {
    let app = spawn_app().await;
    let echoed = |id: &'static str| {
        let request = app
            .client
            .get(format!("{}/health/live", app.address))
            .header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(echoed("trace-abc_123").await, "trace-abc_123");
    let long: &'static str = "x".repeat(65).leak();
    for bad in [long, "has space", "caf\u{e9}"] {
        let id = echoed(bad).await;
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let generated = app.get("/health/live").await;
    assert!(uuid::Uuid::parse_str(generated.headers()["x-request-id"].to_str().unwrap()).is_ok());
}
