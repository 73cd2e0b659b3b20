//! Time limits on HTTP connections, for clients that stop sending or stop reading.
//!
//! - `limit_body_reads` (middleware): a request body that makes no progress for
//!   `--http-body-timeout` fails with `io::ErrorKind::TimedOut`; the body readers answer 408
//!   and actix-http closes the connection, whose body was never finished. Without it, a
//!   request announcing `Content-Length: 100` and sending 7 bytes held its worker slot and
//!   buffers indefinitely.
//! - `TimedStream`: every HTTP connection's socket. A write the kernel cannot take for
//!   `--http-write-timeout` fails, and the connection is dropped together with the response
//!   bytes it held. What one client that never reads can hold is therefore bounded in size
//!   (the kernel send buffer `--tcp-send-buffer`, actix-http's 32 KiB write buffer, and the
//!   one response being written: pipelined requests wait unparsed) and in time. Across clients,
//!   a `StallBudget` bounds how many connections may wait on their client at once
//!   (`MAX_STALLED`): beyond it, a connection whose write cannot go out is dropped at once, so
//!   many clients that never read cannot add up to unbounded memory within the timeout.
//!
//! - `connection_failed`: what ends an HTTP connection with an error. Malformed requests are
//!   an unauthenticated client's to send, so each is logged at debug only (actix-http's own
//!   ERROR line per request is filtered out in `logging`), counted, and summarised once a
//!   minute by `summarize_failed_connections`.
//!
//! WebSocket connections leave `TimedStream` at the upgrade (`into_inner`): they have their own
//! write timeout and queue bound (`net::websocket`). `TimedStream` wraps plain TCP or TLS alike
//! (`transport::Io`; the handshake is `tls::handshake`).

pub mod limit;
pub mod rate;
pub mod tls;
pub mod transport;
pub mod upgrade;
pub mod websocket;

pub use transport::{Io, Transport};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use futures_util::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::chat::Chat;

/// Malformed requests since the last summary.
static MALFORMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes an HTTP connection that ended with an error (see the module doc).
pub fn connection_failed(error: &actix_http::error::DispatchError) {
    use actix_http::error::DispatchError;
    if matches!(error, DispatchError::Parse(_)) {
        MALFORMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::debug!(error = %error, "HTTP connection ended with an error");
}

/// Logs, once a minute, how many malformed requests arrived (when there were any).
pub async fn summarize_failed_connections() {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let malformed = MALFORMED.swap(0, std::sync::atomic::Ordering::Relaxed);
        if malformed > 0 {
            tracing::info!(
                malformed,
                "malformed HTTP requests in the last minute (answered 400; details at debug level)"
            );
        }
    }
}

/// The error a stalled body read ends with.
pub fn is_body_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

/// Middleware: wraps every request body in an inactivity timeout.
pub async fn limit_body_reads(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = match req.app_data::<web::Data<Chat>>() {
        Some(state) => state.config.http_body_timeout,
        None => Duration::from_secs(crate::config::DEFAULT_HTTP_BODY_TIMEOUT_SECS),
    };
    let (http, payload) = req.into_parts();
    let body: actix_http::BoxedPayloadStream = Box::pin(TimedBody {
        inner: payload,
        timeout,
        idle: None,
    });
    let payload = Payload::Stream { payload: body };
    next.call(ServiceRequest::from_parts(http, payload)).await
}

/// A request body that fails when no bytes arrive for `timeout`.
struct TimedBody {
    inner: Payload,
    timeout: Duration,
    /// Running while the body waits for bytes.
    idle: Option<Pin<Box<Sleep>>>,
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                this.idle = None;
                Poll::Ready(item)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no request body bytes for {} s", timeout.as_secs()),
                    ))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// HTTP connections that may wait on a client that does not read, at once.
pub const MAX_STALLED: usize = 1024;

/// How many connections are waiting for their client to read, and how many may.
#[derive(Debug)]
pub struct StallBudget {
    max: usize,
    waiting: std::sync::atomic::AtomicUsize,
}

impl StallBudget {
    pub fn new(max: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            max,
            waiting: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn take(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A TCP connection whose writes fail after making no progress for a while.
#[derive(Debug)]
pub struct TimedStream {
    inner: Io,
    timeout: Duration,
    budget: std::sync::Arc<StallBudget>,
    /// Running while a write waits for the kernel to take bytes, with the budget slot held.
    stalled: Option<(Pin<Box<Sleep>>, StallSlot)>,
}

/// A connection's place in the `StallBudget`, given back when dropped.
#[derive(Debug)]
struct StallSlot(std::sync::Arc<StallBudget>);

impl Drop for StallSlot {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

impl TimedStream {
    pub fn new(inner: Io, timeout: Duration, budget: std::sync::Arc<StallBudget>) -> Self {
        Self {
            inner,
            timeout,
            budget,
            stalled: None,
        }
    }

    /// The connection, for one that leaves HTTP (a WebSocket takeover).
    pub fn into_inner(self) -> Transport {
        self.inner.into_transport()
    }

    /// A write (or flush) that went through resets the stall clock; a pending one starts or
    /// checks it.
    fn after_write<T>(
        &mut self,
        poll: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.pending_write(cx),
        }
    }

    /// Turns a pending write into an error once it has been pending for the timeout, or at
    /// once when the stall budget is spent.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.stalled.is_none() {
            if !self.budget.take() {
                tracing::debug!(
                    max = self.budget.max,
                    "dropping an HTTP connection that would wait on its client: too many do"
                );
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "too many clients are not reading their responses",
                )));
            }
            let slot = StallSlot(self.budget.clone());
            self.stalled = Some((Box::pin(tokio::time::sleep(self.timeout)), slot));
        }
        let Some((sleep, _)) = self.stalled.as_mut() else {
            return Poll::Pending;
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(
                    seconds = self.timeout.as_secs(),
                    "dropping an HTTP connection whose client stopped reading"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read the response in time",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // With TLS, a flush writes the records still held.
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.after_write(poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connected pair over loopback with small kernel buffers: (server side, client side). For
/// the unit tests of code that writes to slow clients (here and in `ws::connection`).
#[cfg(test)]
pub(crate) async fn loopback_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpSocket::new_v4().unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    let client = client
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    socket2::SockRef::from(&server)
        .set_send_buffer_size(4096)
        .unwrap();
    (server, client)
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(head: &actix_web::dev::RequestHead) -> bool {
    head.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The fallback for every unknown route or method: NOT_FOUND as JSON under `/api`, a plain 404
/// elsewhere.
pub async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    let path = req.path();
    if path == "/api" || path.starts_with("/api/") {
        actix_web::ResponseError::error_response(&crate::error::ApiError::not_found("API route"))
    } else {
        actix_web::HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("404 Not Found\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Writes to a client that never reads until the write fails; how long that took.
    async fn write_until_refused(stream: &mut TimedStream) -> (Duration, io::ErrorKind) {
        let start = std::time::Instant::now();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = stream.write_all(&chunk).await {
                return (start.elapsed(), e.kind());
            }
        }
    }

    #[tokio::test]
    async fn a_write_that_waits_past_the_timeout_fails_and_the_budget_bounds_waiters() {
        let budget = StallBudget::new(1);
        let (first, _first_client) = loopback_pair().await;
        let (second, _second_client) = loopback_pair().await;
        let timeout = Duration::from_millis(300);
        let mut first = TimedStream::new(Io::Plain(first), timeout, budget.clone());
        let mut second = TimedStream::new(Io::Plain(second), timeout, budget.clone());
        // The first fills its buffers and waits; meanwhile the second has no slot left.
        let waiting = tokio::spawn(async move {
            let outcome = write_until_refused(&mut first).await;
            (first, outcome)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (quick, kind) = write_until_refused(&mut second).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(
            quick < Duration::from_millis(250),
            "refused at once: {quick:?}"
        );
        let (first, (took, kind)) = waiting.await.unwrap();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        // Dropping the stalled connection gives its slot back.
        drop(first);
        drop(second);
        assert_eq!(budget.waiting.load(std::sync::atomic::Ordering::Acquire), 0);
    }
}
