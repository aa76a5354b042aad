//! The HTTP/1.1 server: hyper's connection driver, with what a public endpoint
//! needs and `axum::serve` does not offer.
//!
//! - **Header timeout.** A connection must deliver a request's line and headers
//!   within `HTTP_HEADER_TIMEOUT` of opening (or of the first byte of a
//!   kept-alive connection's next request); otherwise it gets a 408 problem and
//!   is closed. Slow-header clients cannot hold connections.
//! - **Idle timeout.** A kept-alive connection without a request in flight is
//!   closed after `HTTP_KEEP_ALIVE_TIMEOUT`. (hyper's own header timer starts
//!   when a connection becomes idle, so it cannot be both: both are kept here.)
//! - **A backstop.** A connection whose request is neither answered nor written
//!   within `HTTP_BODY_TIMEOUT + HTTP_REQUEST_TIMEOUT + 30 s` is closed.
//! - **hyper's own refusals become problem+json.** hyper answers a request it
//!   cannot parse (malformed request line or header, bad `Content-Length` or
//!   `Transfer-Encoding`, a head over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`]) by
//!   itself, with an empty body, before any middleware runs. Such an answer is
//!   recognised because hyper writes it while no request of ours is in flight,
//!   and is replaced on the wire by a problem+json of the same status.
//! - **Lingering close.** A connection is closed by shutting down our side and
//!   reading what the client still sends for a moment, so that an early answer
//!   (413, 431) is not lost to a TCP reset.
//!
//! The request-level rules (body limit and timeout, concurrency cap, request
//! timeout, problem+json for every error, security headers) are in
//! [`crate::edge`].

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpArgs;
use crate::problem::Problem;

/// Largest request line plus headers, in bytes (431 above).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request (431 above).
pub const MAX_HEADERS: usize = 100;
/// Time a response may take to be written after its request's deadlines.
const WRITE_GRACE: Duration = Duration::from_secs(30);
/// How long a closing connection is drained of what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// The connection-level timeouts.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
    busy: Duration,
}

/// Serves `router` on `listener` until `shutdown`; then stops accepting, lets
/// every connection finish the request it is handling, and returns once all
/// are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    http: &HttpArgs,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let timeouts = Timeouts {
        header: http.http_header_timeout,
        idle: http.http_keep_alive_timeout,
        busy: http.http_body_timeout + http.http_request_timeout + WRITE_GRACE,
    };
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(
                    stream,
                    router.clone(),
                    timeouts,
                    shutdown.clone(),
                ));
            }
            // A connection reset before it was accepted is simply gone.
            Err(e) if is_per_connection(&e) => {}
            // Out of file descriptors and the like: wait instead of spinning.
            Err(e) => {
                static ACCEPT: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
                if let Some(suppressed) = ACCEPT.allow(Duration::from_secs(30)) {
                    tracing::warn!(error = %e, suppressed, "cannot accept connections");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // New connections are refused from now on, instead of waiting in the backlog.
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Why the connection loop ended.
enum End {
    /// hyper finished (the client closed, or it was shut down gracefully).
    Done,
    /// The request head did not arrive in time: answer 408, then close.
    HeadTimeout,
    /// Idle too long, or the backstop: close.
    Close,
}

async fn connection(
    stream: TcpStream,
    router: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let state = Arc::new(ConnState::new());
    // The stream stays reachable after hyper is dropped, to answer a header
    // timeout and to close lingering.
    let slot = Arc::new(Mutex::new(Some(stream)));
    let io = TokioIo::new(EdgeIo {
        slot: slot.clone(),
        state: state.clone(),
        captured: Vec::new(),
        replacement: Vec::new(),
    });
    let service = hyper::service::service_fn({
        let state = state.clone();
        move |request: Request<Incoming>| {
            state.request_started();
            let router = router.clone();
            let state = state.clone();
            async move {
                let response = router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { inner: body, state })))
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD_BYTES);
    let mut conn = Box::pin(builder.serve_connection(io, service));
    let mut draining = false;
    let end = loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break End::Done;
            }
            () = shutdown.cancelled(), if !draining => {
                // Idle connections close now; a busy one after its response.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            phase = state.expired(timeouts) => break match phase {
                Phase::Head(_) => End::HeadTimeout,
                _ => End::Close,
            },
        }
    };
    // hyper is gone: the stream is ours again.
    drop(conn);
    let stream = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut stream) = stream else { return };
    if let End::HeadTimeout = end {
        let answer = automatic_response(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "The request line and headers did not arrive within {}.",
                humantime::format_duration(timeouts.header)
            ),
        );
        let _ = tokio::time::timeout(LINGER, stream.write_all(&answer)).await;
    }
    linger_close(stream).await;
}

/// Shuts down our side, then reads (and drops) what the client still sends for
/// a moment: closing with unread data would reset the connection and could
/// destroy the answer just written.
async fn linger_close(mut stream: TcpStream) {
    let _ = tokio::time::timeout(LINGER, async {
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 8192];
        let mut left: usize = 256 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// An answer written by us on the wire, not by a handler: hyper's refusals
/// rewritten, and the header timeout's 408.
fn automatic_response(status: StatusCode, detail: &str) -> Vec<u8> {
    let request_id = uuid::Uuid::new_v4().to_string();
    tracing::info!(
        status = status.as_u16(),
        request_id = %request_id,
        "request refused before routing"
    );
    let problem = Problem::for_status(status).detail(detail);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\ncache-control: no-store\r\nx-request-id: {request_id}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        crate::problem::CONTENT_TYPE,
        body.len(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The detail of a hyper refusal, by status.
fn refusal_detail(status: StatusCode) -> String {
    match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => format!(
            "The request line and headers must fit in {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} header fields."
        ),
        StatusCode::URI_TOO_LONG => "The request target is too long.".to_owned(),
        _ => "The request is not valid HTTP/1.1: its request line, a header, or its \
              Content-Length or Transfer-Encoding could not be read."
            .to_owned(),
    }
}

// --- Connection state -------------------------------------------------------------

/// Where a connection is in its request/response cycle, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head(Instant),
    /// A request is being handled or its response written.
    Busy { since: Instant, body_done: bool },
    /// Kept alive, nothing in flight.
    Idle(Instant),
}

/// The phase, watched by the connection's timer: a change of phase wakes it,
/// so a new deadline (a short idle one after a long busy one) holds at once.
struct ConnState {
    phase: tokio::sync::watch::Sender<Phase>,
}

impl ConnState {
    fn new() -> Self {
        Self {
            phase: tokio::sync::watch::Sender::new(Phase::Head(Instant::now())),
        }
    }

    /// Changes the phase when `change` says it did; wakes the timer then.
    fn change(&self, change: impl FnOnce(&mut Phase) -> bool) {
        self.phase.send_if_modified(change);
    }

    fn bytes_read(&self) {
        self.change(|phase| match phase {
            Phase::Idle(_) => {
                *phase = Phase::Head(Instant::now());
                true
            }
            _ => false,
        });
    }

    fn request_started(&self) {
        self.change(|phase| {
            *phase = Phase::Busy {
                since: Instant::now(),
                body_done: false,
            };
            true
        });
    }

    fn body_done(&self) {
        // The deadline does not change: no need to wake the timer.
        self.change(|phase| {
            if let Phase::Busy { body_done, .. } = phase {
                *body_done = true;
            }
            false
        });
    }

    /// hyper flushed: when the response body has ended, everything of it is
    /// now written, and the connection is idle.
    fn flushed(&self) {
        self.change(|phase| match phase {
            Phase::Busy {
                body_done: true, ..
            } => {
                *phase = Phase::Idle(Instant::now());
                true
            }
            _ => false,
        });
    }

    fn busy(&self) -> bool {
        matches!(*self.phase.borrow(), Phase::Busy { .. })
    }

    /// Resolves with the phase whose deadline passed.
    async fn expired(&self, timeouts: Timeouts) -> Phase {
        let mut changes = self.phase.subscribe();
        loop {
            let phase = *changes.borrow_and_update();
            let deadline = match phase {
                Phase::Head(since) => since + timeouts.header,
                Phase::Busy { since, .. } => since + timeouts.busy,
                Phase::Idle(since) => since + timeouts.idle,
            };
            if Instant::now() >= deadline {
                return phase;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                // The sender lives as long as `self`.
                _ = changes.changed() => {}
            }
        }
    }
}

/// A response body that tells the connection when it has ended.
struct Tracked {
    inner: Body,
    state: Arc<ConnState>,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.state.body_done();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.state.body_done();
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.state.body_done();
    }
}

// --- The stream as hyper sees it ----------------------------------------------------

/// The TCP stream, shared with the connection task, watching what hyper reads
/// and writes.
struct EdgeIo {
    slot: Arc<Mutex<Option<TcpStream>>>,
    state: Arc<ConnState>,
    /// Bytes hyper wrote while no request was in flight: its own refusal.
    captured: Vec<u8>,
    /// What goes on the wire instead (still to be written).
    replacement: Vec<u8>,
}

impl EdgeIo {
    fn with_stream<T>(
        &self,
        f: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(stream) => f(Pin::new(stream)),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Writes what is left of the replacement.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.replacement.is_empty() {
            let replacement = std::mem::take(&mut self.replacement);
            let written = self.with_stream(|s| s.poll_write(cx, &replacement));
            self.replacement = replacement;
            match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.replacement.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = self.with_stream(|s| s.poll_read(cx, buf));
        if let Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
        {
            self.state.bytes_read();
        }
        read
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.state.busy() && self.captured.is_empty() {
            return self.with_stream(|s| s.poll_write(cx, buf));
        }
        // Nothing of ours is in flight, so this is hyper answering a request it
        // could not parse: keep its head, and answer in our words instead.
        if self.captured.len() < 4096 {
            let room = 4096 - self.captured.len();
            self.captured.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        if self.replacement.is_empty() && self.captured.windows(4).any(|w| w == b"\r\n\r\n") {
            let status = std::str::from_utf8(&self.captured)
                .ok()
                .and_then(|head| head.split(' ').nth(1))
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            self.replacement = automatic_response(status, &refusal_detail(status));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        let flushed = self.with_stream(|s| s.poll_flush(cx));
        if let Poll::Ready(Ok(())) = flushed {
            self.state.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        self.with_stream(|s| s.poll_shutdown(cx))
    }
}
