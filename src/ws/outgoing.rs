//! The outgoing half of a socket: a response body that the HTTP dispatcher pulls frames from.
//!
//! The dispatcher in `hub` pushes event frames into the socket's bounded queue and the
//! connection's own HTTP task encodes them straight onto the wire: one task wake-up per
//! delivery, and every frame queued since the last write goes out in one write. The socket
//! task only sends control frames (pingdata, pongs, the close frame) through a small second
//! queue, which is read first so a close overtakes queued events.

use actix_http::ws::{CloseReason, Codec, Message};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Frames the socket task sends.
#[derive(Debug)]
pub enum Control {
    Text(ByteString),
    Pong(Bytes),
    /// The last frame: the body ends after it.
    Close(Option<CloseReason>),
}

/// Control frames waiting at most; a socket task blocked on a full control queue has a
/// stalled client (see `--ws-write-timeout`).
pub const CONTROL_QUEUE: usize = 4;

/// Largest chunk handed to the connection per poll, so one busy socket yields regularly.
const MAX_CHUNK: usize = 64 * 1024;

/// The WebSocket response body.
pub struct OutgoingBody {
    events: mpsc::Receiver<ByteString>,
    control: mpsc::Receiver<Control>,
    codec: Codec,
    buf: BytesMut,
    done: bool,
}

impl OutgoingBody {
    pub fn new(events: mpsc::Receiver<ByteString>, control: mpsc::Receiver<Control>) -> Self {
        Self {
            events,
            control,
            codec: Codec::new(),
            buf: BytesMut::new(),
            done: false,
        }
    }

    fn encode(&mut self, message: Message) {
        // Encoding an outgoing server frame cannot fail (no size limit applies to it).
        let _ = actix_codec::Encoder::encode(&mut self.codec, message, &mut self.buf);
    }
}

impl Stream for OutgoingBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        while this.buf.len() < MAX_CHUNK {
            match this.control.poll_recv(cx) {
                Poll::Ready(Some(Control::Text(text))) => this.encode(Message::Text(text)),
                Poll::Ready(Some(Control::Pong(bytes))) => this.encode(Message::Pong(bytes)),
                Poll::Ready(Some(Control::Close(reason))) => {
                    this.encode(Message::Close(reason));
                    this.done = true;
                    break;
                }
                // The socket task is gone: end the connection.
                Poll::Ready(None) => {
                    this.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !this.done {
            while this.buf.len() < MAX_CHUNK {
                match this.events.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => this.encode(Message::Text(frame)),
                    // Unregistered from the hub; the socket task ends the body via control.
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
        }
        if !this.buf.is_empty() {
            Poll::Ready(Some(Ok(this.buf.split().freeze())))
        } else if this.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn control_frames_overtake_events_and_close_ends_the_body() {
        let (event_tx, events) = mpsc::channel(8);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let mut body = OutgoingBody::new(events, control);
        event_tx.try_send(ByteString::from_static("ab")).unwrap();
        event_tx.try_send(ByteString::from_static("cd")).unwrap();
        // Two queued events go out in one chunk: two unmasked text frames.
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"\x81\x02ab\x81\x02cd");
        event_tx.try_send(ByteString::from_static("ef")).unwrap();
        control_tx.try_send(Control::Close(None)).unwrap();
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(
            &chunk[..],
            b"\x88\x00",
            "the close frame goes first, events after it never"
        );
        assert!(body.next().await.is_none());
    }
}
