//! The WebSocket endpoint at `/` (spec 3).
//!
//! Sends `pingdata` on connect and every ping interval; a `pongdata` associates the socket with
//! its session's user (or with nobody), which drives `user/online` and `user/offline`. Events
//! from the bus addressed to everyone, or to this socket's user, are forwarded as they are
//! (serialized once by the bus). Frames from clients are capped in size; invalid JSON and
//! unknown events are ignored. A socket that falls behind the bus is closed.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

use crate::events::Audience;
use crate::params::resolve_session;
use crate::perms::Requester;
use crate::state::AppState;

/// Largest frame a client may send; pongdata is tiny.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
const PINGDATA: &str = r#"{"evt":"pingdata"}"#;

/// Upgrades `GET /` with `Upgrade: websocket`.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(MAX_FRAME_BYTES);
    actix_web::rt::spawn(run(state.into_inner(), session, stream));
    Ok(response)
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

fn set_user(state: &AppState, current: &mut Option<u64>, next: Option<u64>) {
    if *current == next {
        return;
    }
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

async fn run(
    state: Arc<AppState>,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    let mut ticker = tokio::time::interval(state.config.ping_interval);
    let mut events = state.bus.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    let mut user: Option<u64> = None;
    let close = loop {
        tokio::select! {
            _ = ticker.tick() => {
                if session.text(PINGDATA).await.is_err() {
                    break None;
                }
            }
            msg = stream.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Some(next) = pong_user(&state, &text) {
                        set_user(&state, &mut user, next);
                    }
                }
                Some(Ok(Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "closing socket after a protocol error");
                    break Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) });
                }
                Some(Ok(_)) => {}
            },
            event = events.recv() => match event {
                Ok(event) => {
                    let deliver = match event.audience {
                        Audience::Everyone => true,
                        Audience::User(id) => user == Some(id),
                        // Checked at delivery time, so a lost permission takes effect at once.
                        Audience::Channel(channel) => state.can_read(
                            user.map_or(Requester::Guest, Requester::User),
                            channel,
                        ),
                    };
                    if deliver && session.text(event.json.to_string()).await.is_err() {
                        break None;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "closing a socket that fell behind the event stream");
                    break Some(CloseReason { code: CloseCode::Policy, description: Some("too slow: events were dropped".into()) });
                }
                Err(RecvError::Closed) => break None,
            },
            _ = shutdown.changed() => {
                break Some(CloseReason { code: CloseCode::Away, description: Some("server stopping".into()) });
            }
        }
    };
    set_user(&state, &mut user, None);
    let _ = session.close(close).await;
}
