//! The WebSocket endpoint at `/` (spec 3).
//!
//! Sends `pingdata` on connect and every ping interval; a `pongdata` associates the socket with
//! its session's user (or with nobody: a guest), which drives `user/online` and `user/offline`.
//! A user socket that stops ponging for two intervals loses its user (and the user may go
//! offline) but stays open as a guest. Events reach the socket through its bounded queue, fed
//! by the dispatcher in `hub` (which filters by audience and permission); a socket whose queue
//! overflows, or whose writes stall past the write timeout, is closed with a policy close code
//! and a logged reason. Incoming frames are capped in size and rate: invalid JSON and unknown
//! events are ignored, as the spec says, but a client that floods is closed.

pub mod hub;
pub mod outgoing;

use actix_web::body::{BodyStream, BoxBody};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use bytestring::ByteString;
use outgoing::{Control, OutgoingBody};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{ApiError, ErrorCode};
use crate::events::Audience;
use crate::params::resolve_session;
use crate::state::AppState;

/// Largest frame a client may send; pongdata is tiny.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Incoming frames a client may send in a burst, and per second after it.
pub const FRAME_BURST: f64 = 20.0;
pub const FRAMES_PER_SECOND: f64 = 10.0;
const PINGDATA: &str = r#"{"evt":"pingdata"}"#;

/// Upgrades `GET /` with `Upgrade: websocket`; 503 when `--max-websockets` are open.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(registration) = state
        .hub
        .register(state.config.ws_send_queue, state.config.max_websockets)
    else {
        tracing::warn!(
            max = state.config.max_websockets,
            "refusing a WebSocket: connection limit reached"
        );
        return Ok(actix_web::ResponseError::error_response(
            &ApiError::new(
                ErrorCode::No,
                "too many WebSocket connections; try again later",
            )
            .status(StatusCode::SERVICE_UNAVAILABLE),
        ));
    };
    // actix-ws decodes the incoming frames; its own outgoing channel is not used: our body
    // is fed directly by the dispatcher (see `outgoing`).
    let (stream, mut response) = match actix_ws::handle(&req, body)
        .and_then(|(_, _, stream)| Ok((stream, actix_http::ws::handshake(req.head())?)))
    {
        Ok(parts) => parts,
        Err(e) => {
            state.hub.unregister(registration.id);
            return Err(e);
        }
    };
    let hub::Registration {
        id,
        events,
        overflow,
    } = registration;
    let (control, control_rx) = tokio::sync::mpsc::channel(outgoing::CONTROL_QUEUE);
    let body = OutgoingBody::new(events, control_rx);
    let stream = stream.max_frame_size(MAX_FRAME_BYTES);
    actix_web::rt::spawn(run(state.into_inner(), id, overflow, control, stream));
    let response = response.message_body(BoxBody::new(BodyStream::new(body)))?;
    Ok(response.into())
}

/// The user a `pongdata` names, if its session ID is valid.
fn pong_user(state: &AppState, text: &str) -> Option<Option<u64>> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("evt")?.as_str()? != "pongdata" {
        return None;
    }
    let session_id = value
        .get("data")
        .and_then(|d| d.get("sessionID"))
        .and_then(Value::as_str);
    Some(session_id.and_then(|id| {
        resolve_session(id.to_owned(), state)
            .ok()
            .map(|s| s.user.id)
    }))
}

fn set_user(state: &AppState, socket: u64, current: &mut Option<u64>, next: Option<u64>) {
    if *current == next {
        return;
    }
    state.hub.set_user(socket, next);
    if let Some(old) = current.take() {
        if state.presence.disconnect(old) {
            state.bus.emit(
                "user/offline",
                json!({ "userID": old.to_string() }),
                Audience::Everyone,
            );
        }
    }
    if let Some(new) = next {
        if state.presence.connect(new) {
            state.bus.emit(
                "user/online",
                json!({ "userID": new.to_string() }),
                Audience::Everyone,
            );
        }
    }
    *current = next;
}

/// A token bucket for incoming frames (the bot gateway uses it too).
pub(crate) struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new() -> Self {
        Self {
            tokens: FRAME_BURST,
            last: Instant::now(),
        }
    }

    pub(crate) fn allow(&mut self) -> bool {
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

fn policy(reason: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::Policy,
        description: Some(reason.to_owned()),
    })
}

/// Sends a control frame, giving up when the client has not read for the write timeout.
async fn send(
    control: &tokio::sync::mpsc::Sender<Control>,
    frame: Control,
    timeout: Duration,
) -> Result<(), Option<CloseReason>> {
    match tokio::time::timeout(timeout, control.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(policy("write timed out")),
    }
}

async fn run(
    state: Arc<AppState>,
    id: u64,
    overflow: Arc<tokio::sync::Notify>,
    control: tokio::sync::mpsc::Sender<Control>,
    mut stream: actix_ws::MessageStream,
) {
    let interval = state.config.ping_interval;
    let write_timeout = state.config.ws_write_timeout;
    let mut ticker = tokio::time::interval(interval);
    let mut shutdown = state.shutdown.subscribe();
    let mut user: Option<u64> = None;
    let mut last_pong = Instant::now();
    let mut limit = RateLimit::new();
    let close = loop {
        tokio::select! {
            _ = ticker.tick() => {
                if user.is_some() && last_pong.elapsed() > interval * 2 + Duration::from_secs(1) {
                    tracing::info!(socket = id, user, "socket stopped answering pingdata; treating it as a guest");
                    set_user(&state, id, &mut user, None);
                }
                if let Err(close) = send(&control, Control::Text(ByteString::from_static(PINGDATA)), write_timeout).await {
                    if close.is_some() {
                        tracing::warn!(socket = id, user, "closing a socket whose writes stalled");
                    }
                    break close;
                }
            }
            _ = overflow.notified() => {
                tracing::warn!(socket = id, user, queue = state.config.ws_send_queue, "closing a socket that fell behind: its send queue is full");
                break policy("too slow: send queue full");
            }
            msg = stream.recv() => {
                if !matches!(msg, Some(Ok(Message::Close(_))) | None) && !limit.allow() {
                    tracing::warn!(socket = id, user, "closing a socket that sends too many frames");
                    break policy("too many messages");
                }
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(next) = pong_user(&state, &text) {
                            last_pong = Instant::now();
                            set_user(&state, id, &mut user, next);
                        }
                    }
                    Some(Ok(Message::Ping(bytes))) => {
                        if let Err(close) = send(&control, Control::Pong(bytes), write_timeout).await {
                            break close;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        tracing::debug!(socket = id, error = %e, "closing a socket after a protocol error");
                        break Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) });
                    }
                    Some(Ok(_)) => {}
                }
            }
            _ = shutdown.changed() => {
                break Some(CloseReason { code: CloseCode::Away, description: Some("server stopping".into()) });
            }
        }
    };
    state.hub.unregister(id);
    set_user(&state, id, &mut user, None);
    // Ending the body (after the close frame, or at once if the client stalled) ends the
    // connection.
    let _ = control.try_send(Control::Close(close));
}

#[cfg(test)]
mod tests {
    use super::*;

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
