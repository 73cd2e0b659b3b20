//! One WebSocket connection over its TCP stream, after the HTTP upgrade (see `upgrade`).
//!
//! Both gateways (`/` and the chatbox `/v2`) run on it. Incoming frames are decoded with
//! actix-http's WebSocket codec. Outgoing frames are encoded once (server frames are unmasked,
//! so one encoding serves every recipient) and written by whoever holds them: a fan-out thread
//! writes straight to the socket when nothing is queued before it, so a delivery costs one
//! `send` and no task wake-up; what cannot go out at once waits in the socket's bounded queue
//! and the connection's task writes it when the socket is writable again. A socket whose queue
//! overflows, or whose queued frames make no progress within the write timeout, is reported to
//! its task, which closes it. An idle connection holds no buffers: the read buffer is released
//! whenever it is empty.
//!
//! Incoming data is bounded before it is buffered: each frame's declared length is checked
//! against the message limit as soon as its header is in (a larger one ends the connection
//! with `Ending::TooBig`, close code 1009), reads never grow the buffer past one largest frame,
//! and every frame — control and continuation frames included — takes a token from the
//! connection's rate limit (`Ending::Flood` when it runs dry).

use actix_codec::Decoder;
use actix_http::ws::{CloseReason, Codec, Frame, Item, OpCode, Parser, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use crate::net::Transport;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// Queued frames handed to one vectored write.
const MAX_SLICES: usize = 64;
/// How long a closing connection waits for the client to finish before the socket is dropped.
const LINGER: Duration = Duration::from_secs(1);
/// The longest frame header: 2 bytes, a 64-bit length and a masking key (RFC 6455 §5.2).
const MAX_HEADER: usize = 14;
/// Incoming frames a client may send in a burst, and per second after it.
pub const FRAME_BURST: f64 = 20.0;
pub const FRAMES_PER_SECOND: f64 = 10.0;

/// An unmasked (server) text frame.
pub fn text_frame(text: &str) -> Bytes {
    frame(OpCode::Text, text.as_bytes())
}

/// An unmasked (server) frame of any kind but close (see `Connection::close`).
pub fn frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    Parser::write_message(&mut buf, payload, op, true, false);
    buf.freeze()
}

/// The close reason for `Ending::TooBig`: 1009, message too big.
pub fn too_big() -> Option<CloseReason> {
    Some(CloseReason {
        code: actix_http::ws::CloseCode::Size,
        description: Some("message too big".into()),
    })
}

/// What became of a frame handed to `Socket::send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written to the kernel at once.
    Written,
    /// Queued behind earlier frames, or because the kernel buffer was full.
    Queued,
    /// The queue was full: the socket is now marked to be closed as too slow.
    Overflowed,
    /// The socket is closing or failed; the frame was dropped.
    Dropped,
}

/// Why a connection ended from the server's side.
#[derive(Debug)]
pub enum Ending {
    /// The client sent a close frame, closed the stream, or the stream failed.
    Closed,
    /// The client broke the protocol (bad frame, invalid UTF-8, too large).
    Protocol(ProtocolError),
    /// The send queue overflowed: the client does not read fast enough.
    Overflow,
    /// Queued frames made no progress within the write timeout.
    Stalled,
    /// A frame declared a payload larger than the message limit (close code 1009).
    TooBig,
    /// The client sent frames faster than the rate limit allows.
    Flood,
}

/// A message from the client.
#[derive(Debug)]
pub enum Incoming {
    Text(ByteString),
    Binary(Bytes),
    /// Already answered with a pong.
    Ping(Bytes),
    Pong,
}

#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    /// The first frame is partly written and must finish before anything else, even a close.
    head_started: bool,
    /// When the queue last became non-empty or last made progress.
    waiting_since: Option<Instant>,
    overflowed: bool,
    failed: bool,
    /// A close frame is queued: nothing more is accepted.
    closing: bool,
}

/// The sending half of a connection, shared by its task and the fan-out threads.
#[derive(Debug)]
pub struct Socket {
    stream: Transport,
    outbox: Mutex<Outbox>,
    /// Wakes the connection's task: frames were queued, or the queue overflowed.
    wake: Notify,
    capacity: usize,
}

impl Socket {
    /// Wraps an upgraded stream with a queue of at most `capacity` frames.
    pub fn new(stream: Transport, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            stream,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            capacity: capacity.max(1),
        })
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an encoded frame without waiting: written now if nothing is queued and the kernel
    /// takes it, else queued for the connection's task.
    pub fn send(&self, frame: &Bytes) -> Sent {
        let mut out = self.outbox();
        if out.closing || out.failed || out.overflowed {
            return Sent::Dropped;
        }
        if !out.frames.is_empty() {
            if out.frames.len() >= self.capacity {
                out.overflowed = true;
                drop(out);
                self.wake.notify_one();
                return Sent::Overflowed;
            }
            out.frames.push_back(frame.clone());
            return Sent::Queued;
        }
        match self.stream.try_write(frame) {
            // With TLS, encrypted but partly still in the session: the task writes the rest.
            Ok(n) if n == frame.len() && self.stream.has_pending_output() => {}
            Ok(n) if n == frame.len() => return Sent::Written,
            Ok(n) => {
                out.frames.push_back(frame.slice(n..));
                out.head_started = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => out.frames.push_back(frame.clone()),
            Err(_) => {
                out.failed = true;
                drop(out);
                self.wake.notify_one();
                return Sent::Dropped;
            }
        }
        out.waiting_since = Some(Instant::now());
        drop(out);
        self.wake.notify_one();
        Sent::Queued
    }

    /// Writes as much of the queue as the kernel takes. Ok(true) when the queue is empty and,
    /// with TLS, no encrypted bytes are left in the session.
    fn write_queued(&self) -> io::Result<bool> {
        let mut out = self.outbox();
        loop {
            match self.stream.flush() {
                Ok(0) => {}
                Ok(_) => out.waiting_since = Some(Instant::now()),
                Err(e) => {
                    out.failed = true;
                    return Err(e);
                }
            }
            if out.frames.is_empty() {
                break;
            }
            let slices: Vec<IoSlice<'_>> = out
                .frames
                .iter()
                .take(MAX_SLICES)
                .map(|f| IoSlice::new(f))
                .collect();
            let mut written = match self.stream.try_write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    out.failed = true;
                    return Err(e);
                }
            };
            drop(slices);
            out.waiting_since = Some(Instant::now());
            while written > 0 {
                let Some(head) = out.frames.front_mut() else {
                    break;
                };
                if written >= head.len() {
                    written -= head.len();
                    out.frames.pop_front();
                    out.head_started = false;
                } else {
                    *head = head.slice(written..);
                    out.head_started = true;
                    written = 0;
                }
            }
        }
        if self.stream.has_pending_output() {
            return Ok(false);
        }
        out.waiting_since = None;
        Ok(true)
    }

    /// Drops what is queued, except a partly written frame, and accepts frames again after an
    /// overflow (the connection's task sends its last words next).
    fn discard_queued(&self) {
        let mut out = self.outbox();
        let keep = usize::from(out.head_started);
        out.frames.truncate(keep);
        out.overflowed = false;
    }

    /// Queues a close frame after what is queued; nothing is accepted after it.
    fn queue_close(&self, reason: Option<CloseReason>) {
        let mut out = self.outbox();
        let mut frame = BytesMut::new();
        Parser::write_close(&mut frame, reason, false);
        out.frames.push_back(frame.freeze());
        out.waiting_since.get_or_insert_with(Instant::now);
        out.closing = true;
    }

    /// Runs until the queue needs the task's attention: overflow, a failure, or a stall.
    /// Cancel-safe: all progress lives in the outbox.
    async fn drive(&self, timeout: Duration) -> Ending {
        loop {
            let waiting = {
                let out = self.outbox();
                if out.overflowed {
                    return Ending::Overflow;
                }
                if out.failed {
                    return Ending::Closed;
                }
                out.waiting_since
                    .filter(|_| !out.frames.is_empty() || self.stream.has_pending_output())
            };
            let Some(since) = waiting else {
                self.wake.notified().await;
                continue;
            };
            let deadline = tokio::time::Instant::from_std(since + timeout);
            tokio::select! {
                ready = self.stream.writable() => {
                    if ready.is_err() || self.write_queued().is_err() {
                        return Ending::Closed;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if self.outbox().waiting_since == Some(since) {
                        return Ending::Stalled;
                    }
                }
                () = self.wake.notified() => {}
            }
        }
    }
}

/// A token bucket for incoming frames: `FRAME_BURST` at once, `FRAMES_PER_SECOND` after.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new() -> Self {
        Self {
            tokens: FRAME_BURST,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * FRAMES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(FRAME_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The payload length a frame header declares, once enough of the header is in.
fn declared_length(buf: &[u8]) -> Option<u64> {
    let short = buf.get(1)? & 0x7f;
    match short {
        126 => Some(u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]))),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }
        n => Some(u64::from(n)),
    }
}

/// A connection's receiving half and its task's view of the socket.
pub struct Connection {
    socket: Arc<Socket>,
    read_buf: BytesMut,
    codec: Codec,
    /// A fragmented message being assembled: whether it is text, and its bytes so far.
    fragments: Option<(bool, BytesMut)>,
    max_message: usize,
    write_timeout: Duration,
    /// Writes made no progress: closing will not wait for the client.
    stalled: bool,
    limit: RateLimit,
}

impl Connection {
    /// `read_buf` holds whatever the client sent after the upgrade request.
    pub fn new(
        socket: Arc<Socket>,
        read_buf: BytesMut,
        max_message: usize,
        write_timeout: Duration,
    ) -> Self {
        Self {
            socket,
            read_buf,
            codec: Codec::new().max_size(max_message),
            fragments: None,
            max_message,
            write_timeout,
            stalled: false,
            limit: RateLimit::new(),
        }
    }

    /// Sends an encoded frame (see `Socket::send`).
    pub fn send(&self, frame: &Bytes) -> Sent {
        self.socket.send(frame)
    }

    /// Sends a text frame.
    pub fn send_text(&self, text: &str) -> Sent {
        self.socket.send(&text_frame(text))
    }

    /// Drops the frames still queued (except one partly written), for a client that fell
    /// behind; what is sent next goes out first.
    pub fn discard_queued(&self) {
        self.socket.discard_queued();
    }

    /// A message already read with the upgrade request, if any (never touches the socket).
    pub fn buffered(&mut self) -> Option<Result<Incoming, Ending>> {
        loop {
            match self.decode() {
                Ok(Some(Some(message))) => return Some(Ok(message)),
                Ok(Some(None)) => continue,
                Ok(None) => return None,
                Err(ending) => return Some(Err(ending)),
            }
        }
    }

    /// The next message from the client, while writing what is queued. Cancel-safe.
    pub async fn next(&mut self) -> Result<Incoming, Ending> {
        loop {
            if let Some(message) = self.buffered() {
                return message;
            }
            let socket = self.socket.clone();
            // Bytes a TLS session decrypted already: the socket will not signal them.
            if socket.stream.has_buffered_input() {
                self.read_some()?;
                continue;
            }
            tokio::select! {
                ready = socket.stream.readable() => {
                    if ready.is_err() {
                        return Err(Ending::Closed);
                    }
                    self.read_some()?;
                }
                ending = socket.drive(self.write_timeout) => {
                    self.stalled = matches!(ending, Ending::Stalled);
                    return Err(ending);
                }
            }
        }
    }

    /// Reads what the socket has, without waiting. The buffer holds less than one whole frame
    /// (complete ones are decoded first), so it never grows past the largest frame allowed.
    fn read_some(&mut self) -> Result<(), Ending> {
        let room = (self.max_message + MAX_HEADER)
            .saturating_sub(self.read_buf.len())
            .clamp(1, READ_CHUNK);
        let mut chunk = [0u8; READ_CHUNK];
        match self.socket.stream.try_read(&mut chunk[..room]) {
            Ok(0) => Err(Ending::Closed),
            Ok(n) => {
                self.read_buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(_) => Err(Ending::Closed),
        }
    }

    /// Decodes one frame from the read buffer: Ok(None) when more bytes are needed,
    /// Ok(Some(None)) for a frame that completes no message (a fragment).
    fn decode(&mut self) -> Result<Option<Option<Incoming>>, Ending> {
        if self.read_buf.is_empty() {
            return Ok(None);
        }
        match declared_length(&self.read_buf) {
            None => return Ok(None),
            Some(n) if n > self.max_message as u64 => return Err(Ending::TooBig),
            Some(_) => {}
        }
        let frame = self.codec.decode(&mut self.read_buf);
        if self.read_buf.is_empty() {
            // Idle connections keep no read buffer.
            self.read_buf = BytesMut::new();
        }
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Ending::Protocol(e)),
        };
        if !self.limit.allow() {
            return Err(Ending::Flood);
        }
        let message = match frame {
            Frame::Text(bytes) => Some(Incoming::Text(utf8(bytes)?)),
            Frame::Binary(bytes) => Some(Incoming::Binary(bytes)),
            Frame::Ping(bytes) => {
                // Answered here, for every gateway; the caller still sees it (rate limits).
                self.socket.send(&self::frame(OpCode::Pong, &bytes));
                Some(Incoming::Ping(bytes))
            }
            Frame::Pong(_) => Some(Incoming::Pong),
            Frame::Close(_) => return Err(Ending::Closed),
            Frame::Continuation(item) => return self.continuation(item).map(Some),
        };
        Ok(Some(message))
    }

    /// Assembles a fragmented message (the codec checks the fragments' order), bounded by the
    /// message size limit.
    fn continuation(&mut self, item: Item) -> Result<Option<Incoming>, Ending> {
        let (bytes, last) = match item {
            Item::FirstText(b) => {
                self.fragments = Some((true, BytesMut::new()));
                (b, false)
            }
            Item::FirstBinary(b) => {
                self.fragments = Some((false, BytesMut::new()));
                (b, false)
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some((_, buf)) = self.fragments.as_mut() else {
            return Err(Ending::Protocol(ProtocolError::ContinuationNotStarted));
        };
        if buf.len() + bytes.len() > self.max_message {
            return Err(Ending::Protocol(ProtocolError::Overflow));
        }
        buf.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let Some((text, buf)) = self.fragments.take() else {
            return Ok(None);
        };
        let bytes = buf.freeze();
        Ok(Some(if text {
            Incoming::Text(utf8(bytes)?)
        } else {
            Incoming::Binary(bytes)
        }))
    }

    /// Closes the connection: sends a close frame (with `reason`) after what is queued, waits
    /// up to the write timeout for it to go out, then ends the stream. A stalled connection is
    /// dropped at once.
    pub async fn close(self, reason: Option<CloseReason>) {
        if self.stalled {
            return;
        }
        self.socket.queue_close(reason);
        self.socket.wake.notify_one();
        let flushed = tokio::time::timeout(self.write_timeout, async {
            loop {
                match self.socket.write_queued() {
                    Ok(true) => return true,
                    Ok(false) => {
                        if self.socket.stream.writable().await.is_err() {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
        })
        .await;
        if matches!(flushed, Ok(true)) {
            self.linger().await;
        }
    }

    /// After the close frame: end our side and read until the client ends theirs, so that
    /// unread input does not turn the close into a reset that could destroy the close frame.
    async fn linger(&self) {
        self.socket.stream.shutdown_write();
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 512];
            let tcp = self.socket.stream.tcp();
            loop {
                if tcp.readable().await.is_err() {
                    return;
                }
                // Raw: what the client still sends is thrown away, TLS records included.
                match tcp.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }
}

fn utf8(bytes: Bytes) -> Result<ByteString, Ending> {
    ByteString::try_from(bytes).map_err(|_| {
        Ending::Protocol(ProtocolError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "text frame is not valid UTF-8",
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A masked client frame.
    fn client_frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        Parser::write_message(&mut buf, payload, op, fin, true);
        buf.to_vec()
    }

    /// A connection over `server` with a queue of `capacity` frames.
    fn open(
        server: TcpStream,
        capacity: usize,
        max_message: usize,
        write_timeout: Duration,
    ) -> (Arc<Socket>, Connection) {
        let socket = Socket::new(Transport::plain(server), capacity);
        let conn = Connection::new(socket.clone(), BytesMut::new(), max_message, write_timeout);
        (socket, conn)
    }

    fn big_frames(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| text_frame(&format!("{i:05}{}", "x".repeat(2000))))
            .collect()
    }

    #[tokio::test]
    async fn frames_go_out_whole_and_in_order_when_the_kernel_buffer_fills() {
        let (server, mut client) = crate::net::loopback_pair().await;
        let (socket, mut conn) = open(server, 10_000, 1024, Duration::from_secs(10));
        let frames = big_frames(500);
        let sent: Vec<Sent> = frames.iter().map(|f| socket.send(f)).collect();
        assert_eq!(sent[0], Sent::Written);
        assert!(sent.contains(&Sent::Queued), "the kernel buffer filled");
        // The connection's task writes the queue as the client reads.
        let task = tokio::spawn(async move { conn.next().await.err() });
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let mut received = vec![0u8; expected.len()];
        client.read_exact(&mut received).await.unwrap();
        assert!(received == expected, "frames arrived whole and in order");
        drop(client);
        assert!(matches!(task.await.unwrap(), Some(Ending::Closed)));
    }

    #[tokio::test]
    async fn a_full_queue_overflows_and_the_task_hears_of_it() {
        let (server, _client) = crate::net::loopback_pair().await;
        let (socket, mut conn) = open(server, 4, 1024, Duration::from_secs(10));
        let results: Vec<Sent> = big_frames(2000).iter().map(|f| socket.send(f)).collect();
        let overflow = results
            .iter()
            .position(|s| *s == Sent::Overflowed)
            .expect("the queue overflowed");
        assert!(results[overflow + 1..].iter().all(|s| *s == Sent::Dropped));
        let ending = tokio::time::timeout(Duration::from_secs(5), conn.next())
            .await
            .unwrap();
        assert!(matches!(ending, Err(Ending::Overflow)), "{ending:?}");
    }

    #[tokio::test]
    async fn queued_frames_that_make_no_progress_stall() {
        let (server, _client) = crate::net::loopback_pair().await;
        let (socket, mut conn) = open(server, 10_000, 1024, Duration::from_millis(200));
        for frame in big_frames(1000) {
            socket.send(&frame);
        }
        let ending = tokio::time::timeout(Duration::from_secs(5), conn.next())
            .await
            .unwrap();
        assert!(matches!(ending, Err(Ending::Stalled)), "{ending:?}");
    }

    #[tokio::test]
    async fn early_bytes_come_first_and_fragments_are_assembled() {
        let (server, mut client) = crate::net::loopback_pair().await;
        let early = client_frame(OpCode::Text, true, b"early");
        let mut conn = Connection::new(
            Socket::new(Transport::plain(server), 16),
            BytesMut::from(&early[..]),
            1024,
            Duration::from_secs(5),
        );
        assert!(matches!(conn.buffered(), Some(Ok(Incoming::Text(t))) if t == "early"));
        assert!(conn.buffered().is_none());
        // A control frame may come between the fragments of a message.
        let mut bytes = client_frame(OpCode::Text, false, b"hel");
        bytes.extend(client_frame(OpCode::Ping, true, b"p"));
        bytes.extend(client_frame(OpCode::Continue, true, b"lo"));
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(conn.next().await, Ok(Incoming::Ping(p)) if &p[..] == b"p"));
        assert!(matches!(conn.next().await, Ok(Incoming::Text(t)) if t == "hello"));
    }

    #[tokio::test]
    async fn oversized_fragmented_messages_and_bad_text_are_protocol_errors() {
        for bytes in [
            [
                client_frame(OpCode::Text, false, &[b'a'; 10]),
                client_frame(OpCode::Continue, true, &[b'a'; 10]),
            ]
            .concat(),
            client_frame(OpCode::Text, true, &[0xff, 0xfe]),
        ] {
            let (server, mut client) = crate::net::loopback_pair().await;
            let mut conn = Connection::new(
                Socket::new(Transport::plain(server), 16),
                BytesMut::new(),
                16,
                Duration::from_secs(5),
            );
            client.write_all(&bytes).await.unwrap();
            let ending = conn.next().await;
            assert!(matches!(ending, Err(Ending::Protocol(_))), "{ending:?}");
        }
    }

    #[tokio::test]
    async fn close_sends_what_is_queued_then_the_close_frame_and_ends_the_stream() {
        let (server, mut client) = crate::net::loopback_pair().await;
        let (_, conn) = open(server, 16, 1024, Duration::from_secs(5));
        conn.send_text("last");
        let closing = tokio::spawn(conn.close(Some(CloseReason {
            code: actix_http::ws::CloseCode::Away,
            description: None,
        })));
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(&received[..], b"\x81\x04last\x88\x02\x03\xe9");
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn an_oversized_frame_ends_the_connection_at_its_header() {
        let (server, mut client) = crate::net::loopback_pair().await;
        let (_, mut conn) = open(server, 16, 1024, Duration::from_secs(5));
        // 2^40 bytes announced; only the header and a little payload ever arrive.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0]);
        client.write_all(&header).await.unwrap();
        let ending = conn.next().await;
        assert!(matches!(ending, Err(Ending::TooBig)), "{ending:?}");
        // 16-bit lengths are checked the same way.
        assert_eq!(declared_length(&[0x81, 0x80 | 126, 0x04, 0x01]), Some(1025));
        assert_eq!(declared_length(&[0x81, 0x80 | 126, 0x04]), None);
        assert_eq!(declared_length(&[0x81, 0x85]), Some(5));
    }

    #[tokio::test]
    async fn the_read_buffer_never_holds_more_than_one_largest_frame() {
        let (server, mut client) = crate::net::loopback_pair().await;
        let (_, mut conn) = open(server, 16, 1024, Duration::from_secs(5));
        // A frame of exactly the limit, sent whole: read in bounded pieces and decoded.
        client
            .write_all(&client_frame(OpCode::Binary, true, &[7u8; 1024]))
            .await
            .unwrap();
        let message = conn.next().await;
        assert!(matches!(message, Ok(Incoming::Binary(b)) if b.len() == 1024));
        assert!(conn.read_buf.capacity() <= 1024 + MAX_HEADER + READ_CHUNK);
    }

    #[tokio::test]
    async fn every_frame_takes_a_token_fragments_and_control_frames_included() {
        let (server, mut client) = crate::net::loopback_pair().await;
        let (_, mut conn) = open(server, 64, 1024, Duration::from_secs(5));
        let mut bytes = client_frame(OpCode::Text, false, b"x");
        for _ in 0..FRAME_BURST as usize {
            bytes.extend(client_frame(OpCode::Continue, false, b""));
        }
        client.write_all(&bytes).await.unwrap();
        let ending = conn.next().await;
        assert!(matches!(ending, Err(Ending::Flood)), "{ending:?}");
    }

    #[test]
    fn the_frame_rate_limit_allows_a_burst_then_refuses() {
        let mut limit = RateLimit::new();
        for _ in 0..FRAME_BURST as usize {
            assert!(limit.allow());
        }
        assert!(!limit.allow());
        limit.last -= Duration::from_millis(500);
        assert!(limit.allow(), "half a second refills five frames");
    }
}
