//! The bot WebSocket: `/v2/:licenseKey`, `/v2/guest`, and every other `/v2` path.
//!
//! The upgrade always succeeds for a WebSocket request, so that a refused bot learns why from a
//! `closing` packet and a 4000-range close code (the chatbox API's close table). An accepted
//! bot gets `hello`, then `players` (with `read`) and a pending `server_restart_scheduled`;
//! frames it sent before it could have seen `hello` are answered with `not_connected`.

use actix_http::ws::{CloseCode, OpCode};
use actix_web::web::BytesMut;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::Arc;
use std::time::Instant;

use super::{players, BotDoor, Identity, Registration};
use crate::chat::licenses;
use crate::net::websocket::{self as connection, Connection, Ending, Incoming, Socket};
use decentd_protocol::chatbox::{parse_request, Capability, CloseReason, ErrorKind, ServerPacket};

/// Largest frame a bot may send (a `say` of the longest message fits).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// `GET /v2/{key}`.
pub async fn connect(
    req: HttpRequest,
    state: web::Data<BotDoor>,
    key: web::Path<String>,
) -> HttpResponse {
    let verdict = licenses::identify(&state, &key);
    upgrade(&req, state, verdict)
}

/// `GET /v2/guest`: read-only guests, when `--chatbox-guests` allows them.
pub async fn guest(req: HttpRequest, state: web::Data<BotDoor>) -> HttpResponse {
    let verdict = if state.config.chatbox_guests {
        Ok(Identity {
            license: None,
            owner: None,
            capabilities: Capability::Read.bit(),
        })
    } else {
        Err(CloseReason::ExternalGuestsNotAllowed)
    };
    upgrade(&req, state, verdict)
}

/// Any other `/v2` path: WebSockets are told `unsupported_endpoint`, plain requests get 404.
pub async fn unsupported(req: HttpRequest, state: web::Data<BotDoor>) -> HttpResponse {
    if !crate::net::is_websocket_upgrade(req.head()) {
        return crate::net::not_found(req).await;
    }
    upgrade(&req, state, Err(CloseReason::UnsupportedEndpoint))
}

fn upgrade(
    req: &HttpRequest,
    state: web::Data<BotDoor>,
    verdict: Result<Identity, CloseReason>,
) -> HttpResponse {
    if let Err(reason) = verdict {
        tracing::info!(reason = reason.code(), "refusing a chatbox connection");
    }
    let state = state.into_inner();
    crate::net::upgrade::accept(req, move |stream, read| run(state, verdict, stream, read))
}

/// Sends the `closing` packet and the close frame with the reason's close code.
async fn close(conn: Connection, reason: CloseReason) {
    conn.send_text(&ServerPacket::closing(reason).to_json());
    conn.close(Some(actix_http::ws::CloseReason {
        code: CloseCode::Other(reason.close_code()),
        description: Some(reason.code().into()),
    }))
    .await;
}

async fn run(
    state: Arc<BotDoor>,
    verdict: Result<Identity, CloseReason>,
    stream: crate::net::Transport,
    read: BytesMut,
) {
    let timeout = state.config.ws_write_timeout;
    let socket = Socket::new(stream, state.config.ws_send_queue);
    let mut conn = Connection::new(socket, read, MAX_FRAME_BYTES, timeout);
    let identity = match verdict {
        Ok(identity) => identity,
        Err(reason) => return close(conn, reason).await,
    };
    // Frames that arrived with the upgrade request were sent before the bot could have seen
    // `hello`.
    while let Some(message) = conn.buffered() {
        match message {
            Ok(Incoming::Text(_)) => {
                let packet = ServerPacket::error(ErrorKind::NotConnected, None);
                conn.send_text(&packet.to_json());
            }
            Ok(_) => {}
            Err(Ending::TooBig) => return conn.close(connection::too_big()).await,
            Err(_) => return conn.close(None).await,
        }
    }
    let Some(registration) = state.gateway.register(identity.clone(), &state.connections) else {
        tracing::warn!("refusing a chatbox connection: connection limit reached");
        return close(conn, CloseReason::FatalError).await;
    };
    tracing::info!(
        connection = registration.id,
        license = identity.license,
        owner = identity.owner.as_ref().map(|o| o.username.as_str()),
        "chatbox bot connected"
    );
    let id = registration.id;
    let exit = serve(&state, &identity, registration, &mut conn).await;
    state.gateway.unregister(id);
    tracing::info!(
        connection = id,
        license = identity.license,
        reason = match &exit {
            Exit::Closing(reason) => reason.code(),
            Exit::Left => "left",
            Exit::TooBig => "frame too big",
        },
        "chatbox bot disconnected"
    );
    match exit {
        Exit::Closing(reason) => close(conn, reason).await,
        Exit::Left => conn.close(None).await,
        Exit::TooBig => conn.close(connection::too_big()).await,
    }
}

/// How a registered connection ends.
enum Exit {
    /// With a `closing` packet and its close code.
    Closing(CloseReason),
    /// The bot left, stopped reading, or broke the protocol: a plain close.
    Left,
    /// A frame announced more than the limit: close code 1009.
    TooBig,
}

/// The connection's life after registration, until it ends.
async fn serve(
    state: &Arc<BotDoor>,
    identity: &Identity,
    registration: Registration,
    conn: &mut Connection,
) -> Exit {
    let Registration {
        mut packets,
        out,
        kick,
        ..
    } = registration;
    let capabilities: Vec<Capability> = Capability::from_bits(identity.capabilities);
    let hello = ServerPacket::Hello {
        guest: identity.license.is_none(),
        license_owner: identity.owner.as_ref().map(|o| o.username.clone()),
        license_owner_user: identity.owner.as_ref().map(|o| state.chat_user(o)),
        capabilities,
    };
    conn.send_text(&hello.to_json());
    if identity.has(Capability::Read) {
        conn.send_text(&players(&state.chat).to_json());
    }
    if let Some(restart) = state.restart.borrow().clone() {
        conn.send_text(&super::restart_packet(&restart).to_json());
    }
    let interval = state.config.ping_interval;
    let mut ticker = tokio::time::interval(interval);
    let mut shutdown = state.shutdown.subscribe();
    let mut heard = Instant::now();
    let max_text = state.config.max_message_length;
    loop {
        tokio::select! {
            message = conn.next() => {
                heard = Instant::now();
                let text = match message {
                    Ok(Incoming::Text(text)) => text,
                    Ok(Incoming::Ping(_) | Incoming::Binary(_) | Incoming::Pong) => continue,
                    Err(Ending::Closed) => return Exit::Left,
                    Err(Ending::Protocol(e)) => {
                        tracing::debug!(error = %e, "closing a chatbox connection after a protocol error");
                        return Exit::Left;
                    }
                    Err(Ending::Overflow) => {
                        tracing::warn!(license = identity.license, queue = state.config.ws_send_queue, "closing a bot connection that fell behind: its send queue is full");
                        conn.discard_queued();
                        return Exit::Closing(CloseReason::FatalError);
                    }
                    Err(Ending::Stalled) => {
                        tracing::warn!(license = identity.license, "closing a chatbox connection whose writes stalled");
                        return Exit::Left;
                    }
                    Err(Ending::TooBig) => {
                        tracing::debug!(license = identity.license, "closing a chatbox connection that announced an oversized frame");
                        return Exit::TooBig;
                    }
                    Err(Ending::Flood) => {
                        tracing::warn!(license = identity.license, "closing a chatbox connection that sends too many frames");
                        return Exit::Closing(CloseReason::FatalError);
                    }
                };
                let answer = match parse_request(&text, |c| identity.has(c), max_text) {
                    Ok(request) => super::request(&state.chat, &state.gateway, identity, request, &out).await,
                    Err(refusal) => ServerPacket::error(refusal.kind, refusal.id),
                };
                conn.send_text(&answer.to_json());
            }
            Some(packet) = packets.recv() => {
                conn.send_text(&packet);
            }
            reason = kick.wait() => return Exit::Closing(reason),
            _ = shutdown.changed() => return Exit::Closing(CloseReason::ServerStopping),
            _ = ticker.tick() => {
                if heard.elapsed() > interval * 3 {
                    tracing::info!(license = identity.license, "closing a silent chatbox connection");
                    return Exit::Left;
                }
                conn.send(&connection::frame(OpCode::Ping, b""));
            }
        }
    }
}
