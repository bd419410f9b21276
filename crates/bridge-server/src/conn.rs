//! Connections: the accept loop [`crate::serve`] runs, over hyper's HTTP/1.1 server.
//!
//! What `axum::serve` does not bound, this module does, per connection:
//!
//! - **the header timeout** (`server.header_timeout_secs`): a request's head must be complete
//!   within it, counted from the connection's start for its first request and from the
//!   request's first byte for the next ones, so a client that trickles a header line at a
//!   time, or connects and sends nothing, is closed;
//! - **the idle timeout** (`server.idle_timeout_secs`): a keep-alive connection with no
//!   request in flight and no byte of a new one is closed after it. A request in flight (a
//!   live stream too, which keeps itself alive with comments) is never cut by it;
//! - **the connection limit** (`server.max_connections`): a connection above it is answered
//!   `503 {error, detail}` and closed at once, never served.
//!
//! It also keeps the one error shape: hyper answers a request it cannot parse (a URI over
//! 64 KiB: 414, a head over its buffer: 431, a malformed request line or header: 400)
//! itself, with an empty body. The connection's writer sees that answer (written while a
//! head is being read and no handler has been called for it) and sends the same status with
//! a JSON `{error, detail}` body instead.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::error::ErrorBody;

/// What bounds each connection (from [`crate::ServerOptions`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// How many refusals (over the connection limit) may be in progress at once; past them a
/// connection is closed without an answer.
const REFUSING: usize = 64;
/// How long a refused connection is given to read its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` and serves `app` on each until `signal` resolves;
/// then stops accepting, asks every connection to finish its request in flight and close,
/// and returns once all have.
pub(crate) async fn run(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection holds a receiver; `closed()` resolves when the last one is dropped.
    let (open_tx, open_rx) = watch::channel(());
    tokio::pin!(signal);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(
                    stream,
                    app.clone(),
                    limits,
                    permit,
                    stop_rx.clone(),
                    open_rx.clone(),
                ));
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(refuse(stream, limits.max_connections, permit));
                }
                Err(_) => drop(stream),
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}

/// As `axum::serve`: a connection's own failure is skipped; any other (out of file
/// descriptors) waits a second before accepting again.
async fn accept_error(e: io::Error) {
    let per_connection = matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    );
    if !per_connection {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Answers a connection over the limit with a 503 and closes it, giving the client a moment
/// to read the answer (closing with its request unread would reset the connection first).
async fn refuse(mut stream: TcpStream, max: usize, _permit: OwnedSemaphorePermit) {
    let answer = json_answer(
        503,
        "unavailable",
        &format!(
            "the server holds its most connections ({max}, server.max_connections); retry shortly"
        ),
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    app: axum::Router,
    limits: Limits,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        rewrite: Rewrite::Watching,
    });
    let service = Tracked {
        app,
        activity: activity.clone(),
    };
    let mut conn =
        Box::pin(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            // Dropping the connection closes the socket.
            () = activity.expired(limits) => break,
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                } else {
                    break;
                }
            }
        }
    }
    // The place is free before the socket closes, so a client that sees the close and
    // connects again finds it.
    drop(permit);
    drop(conn);
}

/// Where a connection is between requests.
struct Phase {
    /// Requests whose answer is not finished (handler running or body being sent).
    active: usize,
    /// A request's head is being read: since when (the connection's start, or the first
    /// byte after the last answer).
    head_since: Option<Instant>,
    /// When the last answer finished (or the connection started).
    idle_since: Instant,
}

struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            phase: Mutex::new(Phase {
                active: 0,
                head_since: Some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: with no request in flight, they begin a head.
    fn read(&self) {
        let mut phase = self.phase();
        if phase.active == 0 && phase.head_since.is_none() {
            phase.head_since = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A head was read and handed to the app.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        phase.active += 1;
        phase.head_since = None;
        drop(phase);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Whether a write now is hyper's own answer to a head it could not parse: a head is
    /// being read and no handler has been given it.
    fn answering_head(&self) -> bool {
        let phase = self.phase();
        phase.active == 0 && phase.head_since.is_some()
    }

    /// Resolves when the connection has been idle, or reading one head, for too long.
    async fn expired(&self, limits: Limits) {
        loop {
            let deadline = {
                let phase = self.phase();
                if phase.active > 0 {
                    None
                } else {
                    Some(match phase.head_since {
                        Some(since) => since + limits.header_timeout,
                        None => phase.idle_since + limits.idle_timeout,
                    })
                }
            };
            match deadline {
                None => self.changed.notified().await,
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in flight; dropped when its answer is finished or abandoned.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.active = phase.active.saturating_sub(1);
        if phase.active == 0 {
            phase.idle_since = Instant::now();
        }
        drop(phase);
        self.0.changed.notify_one();
    }
}

/// The app as hyper's service, counting each request in flight until its body is sent.
struct Tracked {
    app: axum::Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = tower_service::Service::call(&mut app, req.map(Body::new)).await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// An answer's body; the request counts as in flight until it is dropped.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What the writer does with hyper's own answers.
enum Rewrite {
    Watching,
    /// Sending the JSON answer in place of hyper's; `claimed` is what hyper handed over.
    Sending {
        answer: Vec<u8>,
        sent: usize,
        claimed: usize,
    },
    /// The JSON answer is out; hyper's rest (and anything after: it closes) is dropped.
    Done,
}

/// The socket, telling [`Activity`] of bytes read and replacing hyper's empty error
/// answers with JSON ones.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    rewrite: Rewrite,
}

impl Watched {
    /// Writes `bufs` (what hyper hands over), or the JSON answer in place of hyper's own.
    fn write_through(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Rewrite::Watching = self.rewrite
            && self.activity.answering_head()
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(status) = hyper_status(first)
        {
            let (code, detail) = describe(status);
            self.rewrite = Rewrite::Sending {
                answer: json_answer(status, code, detail),
                sent: 0,
                claimed: total,
            };
        }
        match &mut self.rewrite {
            Rewrite::Watching => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            Rewrite::Sending {
                answer,
                sent,
                claimed,
            } => {
                while *sent < answer.len() {
                    let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*sent..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *sent += n;
                }
                let claimed = *claimed;
                self.rewrite = Rewrite::Done;
                Poll::Ready(Ok(claimed))
            }
            Rewrite::Done => Poll::Ready(Ok(total)),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_through(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_through(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status of an answer hyper writes on its own, if `bytes` begin one: an error status
/// line (`HTTP/1.1 414 …`) whose head says `content-length: 0` and has no content type.
/// Every answer of the app has a JSON body, so none is taken for one of these.
fn hyper_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let digits = rest.get(..3)?;
    if rest.get(3) != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = std::str::from_utf8(digits).ok()?.parse::<u16>().ok()?;
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = bytes[..end + 2].to_ascii_lowercase();
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    ((400..=599).contains(&status)
        && has(b"\r\ncontent-length: 0\r\n")
        && !has(b"\r\ncontent-type:"))
    .then_some(status)
}

/// The code and detail of an answer hyper gives a request it could not parse.
fn describe(status: u16) -> (&'static str, &'static str) {
    match status {
        414 => (
            "uri_too_long",
            "the request's URI is longer than the server reads (64 KiB)",
        ),
        431 => (
            "headers_too_large",
            "the request's head (request line and headers) is larger than the server reads",
        ),
        _ => (
            "bad_request",
            "the request is not well-formed HTTP/1.1 (request line or a header)",
        ),
    }
}

/// A whole HTTP/1.1 answer with the JSON error body, closing the connection.
fn json_answer(status: u16, code: &str, detail: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        error: code.to_owned(),
        detail: detail.to_owned(),
    })
    .unwrap_or_default();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_status_line_is_taken_for_hyper_s_answer() {
        let empty = |line: &str| format!("{line}\r\ncontent-length: 0\r\ndate: now\r\n\r\n");
        assert_eq!(
            hyper_status(empty("HTTP/1.1 414 URI Too Long").as_bytes()),
            Some(414)
        );
        assert_eq!(
            hyper_status(empty("HTTP/1.1 400 Bad Request").as_bytes()),
            Some(400)
        );
        assert_eq!(hyper_status(empty("HTTP/1.1 200 OK").as_bytes()), None);
        assert_eq!(hyper_status(empty("HTTP/1.1 4x4 Odd").as_bytes()), None);
        assert_eq!(hyper_status(b"HTTP/1.1 "), None);
        // The app's own error answers carry a JSON body.
        let app =
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_status(app.as_bytes()), None);
        let app = "HTTP/1.1 404 Not Found\r\ncontent-length: 40\r\n\r\n{";
        assert_eq!(hyper_status(app.as_bytes()), None);
        assert_eq!(hyper_status(b"{\"HTTP/1.1 400 \"}"), None);
    }

    #[test]
    fn the_json_answer_is_a_whole_response() {
        let answer = String::from_utf8(json_answer(414, "uri_too_long", "long")).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "uri_too_long");
    }
}
