//! A connection's bytes: plain TCP, or TLS over TCP when decentd serves HTTPS (`net::tls`).
//!
//! - `Io` is what actix-http's HTTP/1 dispatcher reads and writes (inside `TimedStream`).
//! - `Transport` is what a WebSocket connection keeps after the upgrade (`net::websocket`). It
//!   is driven by hand and without waiting, from the connection's task and the fan-out threads
//!   alike: `try_read` and `try_write` never block, and readiness comes from the TCP socket. With
//!   TLS, the rustls session sits behind a mutex; plaintext is taken only while no encrypted
//!   bytes wait for the kernel, so what a slow client leaves unsent stays bounded by one write.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// An HTTP connection's stream.
#[derive(Debug)]
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Io {
    /// The connection for a WebSocket takeover. Whatever the TLS session holds (plaintext read
    /// ahead, records not yet written) moves with it.
    pub fn into_transport(self) -> Transport {
        match self {
            Io::Plain(tcp) => Transport { tcp, tls: None },
            Io::Tls(stream) => {
                let (tcp, session) = stream.into_inner();
                Transport {
                    tcp,
                    tls: Some(Mutex::new(session)),
                }
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A WebSocket connection's stream after the upgrade; shared (`&self`) by its task and the
/// fan-out threads.
#[derive(Debug)]
pub struct Transport {
    tcp: TcpStream,
    tls: Option<Mutex<rustls::ServerConnection>>,
}

/// The TCP socket as blocking-style `Read`/`Write` that never block: for rustls.
struct NonBlocking<'a>(&'a TcpStream);

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport {
    /// A plain TCP connection.
    pub fn plain(tcp: TcpStream) -> Self {
        Self { tcp, tls: None }
    }

    /// The TCP socket underneath (readiness, socket options).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn session(&self) -> Option<MutexGuard<'_, rustls::ServerConnection>> {
        self.tls
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until the socket may have bytes to read.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    /// Waits until the socket may take bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Reads what is there without waiting: Ok(0) at the end of the stream, `WouldBlock` when
    /// nothing is. With TLS, plaintext already decrypted comes first; records are read and
    /// decrypted only when none is left, so rustls never holds more than one read's worth.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut tls) = self.session() else {
            return self.tcp.try_read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut NonBlocking(&self.tcp))? == 0 {
                return Ok(0);
            }
            tls.process_new_packets().map_err(io::Error::other)?;
            // The session may have something to say (an alert, a key update); it goes out with
            // the next write when the kernel cannot take it now.
            Self::write_records(&self.tcp, &mut tls)?;
        }
    }

    /// Whether decrypted bytes wait in the TLS session (readiness of the socket says nothing
    /// about them).
    pub fn has_buffered_input(&self) -> bool {
        let Some(mut tls) = self.session() else {
            return false;
        };
        match tls.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0,
            // Reading again reports the error.
            Err(_) => true,
        }
    }

    /// Writes what the kernel takes without waiting; `WouldBlock` when it takes nothing. With
    /// TLS, the bytes are encrypted and Ok(n) counts the plaintext taken: records the kernel
    /// could not take yet stay in the session (`has_pending_output`) and go out on `flush`.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(buf)])
    }

    /// `try_write` for several buffers.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(mut tls) = self.session() else {
            return self.tcp.try_write_vectored(bufs);
        };
        Self::write_records(&self.tcp, &mut tls)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write_vectored(bufs)?;
        Self::write_records(&self.tcp, &mut tls)?;
        Ok(n)
    }

    /// Writes encrypted records the kernel did not take before; returns how many bytes went.
    pub fn flush(&self) -> io::Result<usize> {
        match self.session() {
            Some(mut tls) => Self::write_records(&self.tcp, &mut tls),
            None => Ok(0),
        }
    }

    /// Whether encrypted records wait for the kernel.
    pub fn has_pending_output(&self) -> bool {
        self.session().is_some_and(|tls| tls.wants_write())
    }

    /// Ends the sending side: a TLS close_notify (when the kernel takes it), then the TCP
    /// shutdown.
    pub fn shutdown_write(&self) {
        if let Some(mut tls) = self.session() {
            tls.send_close_notify();
            let _ = Self::write_records(&self.tcp, &mut tls);
        }
        let _ = socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write);
    }

    fn write_records(tcp: &TcpStream, tls: &mut rustls::ServerConnection) -> io::Result<usize> {
        let mut written = 0;
        while tls.wants_write() {
            match tls.write_tls(&mut NonBlocking(tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}
