//! The WebSocket endpoint at `/` (spec 3).
//!
//! Sends `pingdata` on connect and every ping interval; a `pongdata` associates the socket with
//! its session's user (or with nobody: a guest), which drives `user/online` and `user/offline`.
//! A user socket that stops ponging for two intervals loses its user (and the user may go
//! offline) but stays open as a guest. Events reach the socket from the fan-out threads in
//! `hub` (which filter by audience and permission) through `connection::Socket`; a socket whose
//! queue overflows, or whose writes stall past the write timeout, is closed with a policy close
//! code and a logged reason. `upgrade` takes connections over from the HTTP layer. Incoming frames are capped in size and rate: invalid JSON and unknown
//! events are ignored, as the spec says, but a client that floods is closed.

pub mod hub;
pub mod signalr;

use crate::net::upgrade;
use crate::net::websocket::{self as connection, Connection, Ending, Incoming, Socket};
use actix_http::ws::{CloseCode, CloseReason};
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::chat::sessions::resolve;
use crate::chat::{presence, Chat};
use crate::error::{ApiError, ErrorCode};

/// The WebSocket door: the core and the open sockets.
#[derive(Debug)]
pub struct WsDoor {
    pub chat: Arc<Chat>,
    /// Open WebSockets and hub connections, fed by the fan-out threads (`hub`).
    pub hub: hub::Hub,
    /// The SignalR hub's negotiated connections not yet opened.
    pub negotiations: signalr::Negotiations,
}

impl WsDoor {
    pub fn new(chat: Arc<Chat>, limit: crate::net::limit::ConnectionLimit) -> Self {
        let shards = chat.config.workers;
        Self {
            chat,
            hub: hub::Hub::new(shards, limit.clone()),
            negotiations: signalr::Negotiations::new(limit.max()),
        }
    }

    /// Reserves a place for a connection: None (logged) when the gateways' connection limit
    /// is reached.
    pub fn reserve(&self) -> Option<hub::Slot> {
        let slot = self.hub.reserve();
        if slot.is_none() {
            tracing::warn!(
                max = self.hub.max(),
                "refusing a connection: connection limit reached"
            );
        }
        slot
    }
}

/// The answer to an upgrade refused by the connection limit: 503.
pub fn too_many_connections() -> HttpResponse {
    actix_web::ResponseError::error_response(
        &ApiError::new(ErrorCode::No, "too many connections; try again later")
            .status(StatusCode::SERVICE_UNAVAILABLE),
    )
}

impl std::ops::Deref for WsDoor {
    type Target = Chat;
    fn deref(&self) -> &Chat {
        &self.chat
    }
}

/// Largest message a client may send; pongdata is tiny.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// `{"evt":"pingdata"}` as a frame, encoded once.
static PINGDATA_FRAME: LazyLock<Bytes> =
    LazyLock::new(|| connection::text_frame(r#"{"evt":"pingdata"}"#));

/// When a socket's periodic pingdata starts, within the first interval after its connection
/// (which got one at once): spread by socket ID, so that sockets that connected together — all
/// clients reconnecting after a restart — do not all ping, and answer, at the same moment.
fn ping_phase(socket: u64, interval: Duration) -> Duration {
    // Multiples of the golden ratio's fraction spread evenly over [0, 1).
    let fraction = (socket as f64 * 0.618_033_988_749_895).fract();
    interval.mul_f64(fraction.max(0.01))
}

/// Upgrades `GET /` with `Upgrade: websocket`; 503 when `--max-websockets` connections are
/// open in the gateways together.
pub async fn upgrade(req: HttpRequest, state: web::Data<WsDoor>) -> HttpResponse {
    let Some(slot) = state.reserve() else {
        return too_many_connections();
    };
    let state = state.into_inner();
    upgrade::accept(&req, move |stream, read| run(state, slot, stream, read))
}

/// The session a `pongdata` names, if its session ID is valid (Some(None): a guest's pong).
fn pong_user(state: &WsDoor, text: &str) -> Option<Option<hub::Binding>> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("evt")?.as_str()? != "pongdata" {
        return None;
    }
    let session_id = value
        .get("data")
        .and_then(|d| d.get("sessionID"))
        .and_then(Value::as_str);
    Some(session_id.and_then(|id| {
        resolve(state, id.to_owned())
            .ok()
            .map(|s| hub::Binding::of(&s))
    }))
}

/// Binds the socket to a session (or makes it a guest's), and moves presence with its user.
fn set_user(
    state: &Arc<WsDoor>,
    socket: u64,
    current: &mut Option<u64>,
    next: Option<hub::Binding>,
) {
    // Always rebound: a new session of the same user, or a later expiry.
    state.hub.bind(socket, next);
    let next = next.map(|b| b.user);
    if *current == next {
        return;
    }
    if let Some(old) = current.take() {
        presence::leave(&state.chat, old);
    }
    if let Some(new) = next {
        presence::arrive(&state.chat, new);
    }
    *current = next;
    // A guest's channels are not a user's: the socket hears what it gained and lost.
    state.hub.resync(state, socket);
}

fn policy(reason: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::Policy,
        description: Some(reason.to_owned()),
    })
}

/// The close frame for a connection of `protocol` that `ending` ended (logged and counted
/// here), for both gateways.
fn ending_reason(
    conn: &Connection,
    ending: Ending,
    protocol: hub::Protocol,
    socket: u64,
    user: Option<u64>,
    queue: usize,
) -> Option<CloseReason> {
    if matches!(ending, Ending::Overflow | Ending::Stalled) {
        crate::metrics::METRICS
            .closed_slow
            .get_or_create(protocol.gateway())
            .inc();
    }
    match ending {
        Ending::Closed => None,
        Ending::Protocol(e) => {
            tracing::debug!(socket, error = %e, "closing a socket after a protocol error");
            Some(CloseReason {
                code: CloseCode::Protocol,
                description: Some(e.to_string()),
            })
        }
        Ending::Overflow => {
            tracing::warn!(
                socket,
                user,
                queue,
                "closing a socket that fell behind: its send queue is full"
            );
            conn.discard_queued();
            policy("too slow: send queue full")
        }
        Ending::Stalled => {
            tracing::warn!(socket, user, "closing a socket whose writes stalled");
            policy("write timed out")
        }
        Ending::TooBig => {
            tracing::debug!(
                socket,
                user,
                "closing a socket that announced an oversized frame"
            );
            connection::too_big()
        }
        Ending::Flood => {
            tracing::warn!(socket, user, "closing a socket that sends too many frames");
            policy("too many messages")
        }
    }
}

async fn run(state: Arc<WsDoor>, slot: hub::Slot, stream: crate::net::Transport, read: BytesMut) {
    let id = slot.id;
    let socket = Socket::new(stream, state.config.ws_send_queue);
    let mut conn = Connection::new(
        socket.clone(),
        read,
        MAX_FRAME_BYTES,
        state.config.ws_write_timeout,
    );
    let unbound = Arc::new(tokio::sync::Notify::new());
    state.hub.attach(
        &state,
        &slot,
        socket,
        hub::Protocol::Decent,
        None,
        unbound.clone(),
    );
    let _counted = crate::metrics::Connected::new(&crate::metrics::WEBSOCKET);
    let interval = state.config.ping_interval;
    conn.send(&PINGDATA_FRAME);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + ping_phase(id, interval),
        interval,
    );
    let mut shutdown = state.shutdown.subscribe();
    let mut user: Option<u64> = None;
    let mut last_pong = Instant::now();
    let close = loop {
        tokio::select! {
            _ = ticker.tick() => {
                if user.is_some() && last_pong.elapsed() > interval * 2 + Duration::from_secs(1) {
                    tracing::info!(socket = id, user, "socket stopped answering pingdata; treating it as a guest");
                    set_user(&state, id, &mut user, None);
                }
                // A full queue or a failed socket is reported by `next` below.
                conn.send(&PINGDATA_FRAME);
            }
            message = conn.next() => {
                let message = match message {
                    Ok(message) => message,
                    Err(ending) => break ending_reason(&conn, ending, hub::Protocol::Decent, id, user, state.config.ws_send_queue),
                };
                match message {
                    Incoming::Text(text) => {
                        if let Some(next) = pong_user(&state, &text) {
                            last_pong = Instant::now();
                            set_user(&state, id, &mut user, next);
                        }
                    }
                    Incoming::Ping(_) | Incoming::Binary(_) | Incoming::Pong => {}
                }
            }
            _ = unbound.notified() => {
                // The core ended the session (logout, a new password, ...): a guest from now.
                if user.is_some() && state.hub.binding(id).is_none() {
                    tracing::info!(socket = id, user, "the socket's session ended; treating it as a guest");
                    set_user(&state, id, &mut user, None);
                }
            }
            _ = shutdown.changed() => {
                break Some(CloseReason { code: CloseCode::Away, description: Some("server stopping".into()) });
            }
        }
    };
    state.hub.detach(id);
    set_user(&state, id, &mut user, None);
    conn.close(close).await;
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_pings_of_consecutive_sockets_spread_over_the_interval() {
        let interval = Duration::from_secs(30);
        let mut buckets = [0usize; 10];
        for socket in 0..1000 {
            let phase = ping_phase(socket, interval);
            assert!(phase > Duration::ZERO && phase < interval);
            buckets[(phase.as_secs_f64() / 3.0) as usize] += 1;
        }
        // Each tenth of the interval gets about a tenth of the sockets.
        assert!(
            buckets.iter().all(|&n| (80..=120).contains(&n)),
            "{buckets:?}"
        );
    }
}
