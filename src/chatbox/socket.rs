//! The bot WebSocket: `/v2/:licenseKey`, `/v2/guest`, and every other `/v2` path.
//!
//! The upgrade always succeeds for a WebSocket request, so that a refused bot learns why from a
//! `closing` packet and a 4000-range close code (the chatbox API's close table). An accepted
//! bot gets `hello`, then `players` (with `read`) and a pending `server_restart_scheduled`;
//! frames it sent before it could have seen `hello` are answered with `not_connected`.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, Message};
use bytestring::ByteString;
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{licenses, players, Identity, Registration};
use crate::state::AppState;
use crate::ws::RateLimit;
use decentd_protocol::chatbox::{parse_request, Capability, CloseReason, ErrorKind, ServerPacket};

/// Largest frame a bot may send (a `say` of the longest message fits).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// `GET /v2/{key}`.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    key: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let verdict = licenses::identify(&state, &key);
    upgrade(req, body, state, verdict)
}

/// `GET /v2/guest`: read-only guests, when `--chatbox-guests` allows them.
pub async fn guest(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let verdict = if state.config.chatbox_guests {
        Ok(Identity {
            license: None,
            owner: None,
            capabilities: Capability::Read.bit(),
        })
    } else {
        Err(CloseReason::ExternalGuestsNotAllowed)
    };
    upgrade(req, body, state, verdict)
}

/// Any other `/v2` path: WebSockets are told `unsupported_endpoint`, plain requests get 404.
pub async fn unsupported(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if !crate::api::is_websocket_upgrade(req.head()) {
        return Ok(crate::api::not_found(req).await);
    }
    upgrade(req, body, state, Err(CloseReason::UnsupportedEndpoint))
}

fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    verdict: Result<Identity, CloseReason>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(MAX_FRAME_BYTES);
    if let Err(reason) = verdict {
        tracing::info!(reason = reason.code(), "refusing a chatbox connection");
    }
    actix_web::rt::spawn(run(state.into_inner(), verdict, session, stream));
    Ok(response)
}

/// Sends a packet, giving up when the bot has not read for the write timeout.
async fn send(
    session: &mut actix_ws::Session,
    text: impl Into<ByteString>,
    timeout: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(timeout, session.text(text.into())).await,
        Ok(Ok(()))
    )
}

async fn close(mut session: actix_ws::Session, reason: CloseReason, timeout: Duration) {
    send(
        &mut session,
        ServerPacket::closing(reason).to_json(),
        timeout,
    )
    .await;
    let close = actix_ws::CloseReason {
        code: CloseCode::Other(reason.close_code()),
        description: Some(reason.code().into()),
    };
    let _ = tokio::time::timeout(timeout, session.close(Some(close))).await;
}

async fn run(
    state: Arc<AppState>,
    verdict: Result<Identity, CloseReason>,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    let timeout = state.config.ws_write_timeout;
    let identity = match verdict {
        Ok(identity) => identity,
        Err(reason) => return close(session, reason, timeout).await,
    };
    // Frames that arrived with the upgrade request were sent before the bot could have seen
    // `hello`.
    while let Some(Some(frame)) = stream.recv().now_or_never() {
        match frame {
            Ok(Message::Text(_)) => {
                let packet = ServerPacket::error(ErrorKind::NotConnected, None);
                if !send(&mut session, packet.to_json(), timeout).await {
                    return;
                }
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
    let Some(registration) = state
        .chatbox
        .register(identity.clone(), state.config.max_websockets)
    else {
        tracing::warn!("refusing a chatbox connection: connection limit reached");
        return close(session, CloseReason::FatalError, timeout).await;
    };
    tracing::info!(
        connection = registration.id,
        license = identity.license,
        owner = identity.owner.as_ref().map(|o| o.username.as_str()),
        "chatbox bot connected"
    );
    let id = registration.id;
    let reason = serve(&state, &identity, registration, &mut session, &mut stream).await;
    state.chatbox.unregister(id);
    tracing::info!(
        connection = id,
        license = identity.license,
        reason = reason.map(CloseReason::code),
        "chatbox bot disconnected"
    );
    match reason {
        Some(reason) => close(session, reason, timeout).await,
        None => {
            let _ = session.close(None).await;
        }
    }
}

/// The connection's life after registration; the close reason, or None when the bot left (or
/// stopped reading).
async fn serve(
    state: &Arc<AppState>,
    identity: &Identity,
    registration: Registration,
    session: &mut actix_ws::Session,
    stream: &mut actix_ws::MessageStream,
) -> Option<CloseReason> {
    let Registration {
        mut packets,
        out,
        kick,
        ..
    } = registration;
    let timeout = state.config.ws_write_timeout;
    let capabilities: Vec<Capability> = Capability::from_bits(identity.capabilities);
    let hello = ServerPacket::Hello {
        guest: identity.license.is_none(),
        license_owner: identity.owner.as_ref().map(|o| o.username.clone()),
        license_owner_user: identity.owner.as_ref().map(|o| state.chat_user(o)),
        capabilities,
    };
    let mut first = vec![hello];
    if identity.has(Capability::Read) {
        first.push(players(state));
    }
    if let Some(restart) = state.chatbox.restart.borrow().clone() {
        first.push(restart.packet());
    }
    for packet in first {
        if !send(session, packet.to_json(), timeout).await {
            return None;
        }
    }
    let interval = state.config.ping_interval;
    let mut ticker = tokio::time::interval(interval);
    let mut shutdown = state.shutdown.subscribe();
    let mut heard = Instant::now();
    let mut limit = RateLimit::new();
    let max_text = state.config.max_message_length;
    loop {
        tokio::select! {
            frame = stream.recv() => {
                heard = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(bytes))) => {
                        let _ = session.pong(&bytes).await;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "closing a chatbox connection after a protocol error");
                        return None;
                    }
                    Some(Ok(_)) => continue,
                };
                if !limit.allow() {
                    tracing::warn!(license = identity.license, "closing a chatbox connection that sends too many frames");
                    return Some(CloseReason::FatalError);
                }
                let answer = match parse_request(&text, |c| identity.has(c), max_text) {
                    Ok(request) => super::request(state, identity, request, &out).await,
                    Err(refusal) => ServerPacket::error(refusal.kind, refusal.id),
                };
                if !send(session, answer.to_json(), timeout).await {
                    return None;
                }
            }
            Some(packet) = packets.recv() => {
                if !send(session, packet, timeout).await {
                    tracing::warn!(license = identity.license, "closing a chatbox connection whose writes stalled");
                    return None;
                }
            }
            reason = kick.wait() => return Some(reason),
            _ = shutdown.changed() => return Some(CloseReason::ServerStopping),
            _ = ticker.tick() => {
                if heard.elapsed() > interval * 3 {
                    tracing::info!(license = identity.license, "closing a silent chatbox connection");
                    return None;
                }
                if session.ping(b"").await.is_err() {
                    return None;
                }
            }
        }
    }
}
