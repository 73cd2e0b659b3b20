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
//!   one response being written: pipelined requests wait unparsed) and in time.
//!
//! - `connection_failed`: what ends an HTTP connection with an error. Malformed requests are
//!   an unauthenticated client's to send, so each is logged at debug only (actix-http's own
//!   ERROR line per request is filtered out in `logging`), counted, and summarised once a
//!   minute by `summarize_failed_connections`.
//!
//! WebSocket connections leave `TimedStream` at the upgrade (`into_inner`): they have their own
//! write timeout and queue bound (`ws::connection`).

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
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::state::AppState;

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
    let timeout = match req.app_data::<web::Data<AppState>>() {
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

/// A TCP connection whose writes fail after making no progress for a while.
#[derive(Debug)]
pub struct TimedStream {
    inner: TcpStream,
    timeout: Duration,
    /// Running while a write waits for the kernel to take bytes.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimedStream {
    pub fn new(inner: TcpStream, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// The TCP stream, for a connection that leaves HTTP (a WebSocket takeover).
    pub fn into_inner(self) -> TcpStream {
        self.inner
    }

    /// A write that went through resets the stall clock; a pending one starts or checks it.
    fn after_write(
        &mut self,
        poll: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.pending_write(cx),
        }
    }

    /// Turns a pending write into an error once it has been pending for the timeout.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(
                    seconds = timeout.as_secs(),
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
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
