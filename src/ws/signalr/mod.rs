//! The SignalR hub at `/hub` (extension, after the Resonite API): decentd's events and a few
//! actions for unmodified SignalR clients, over the WebSockets transport and the JSON hub
//! protocol.
//!
//! - `POST /hub/negotiate` answers negotiate version 0 (`connectionId`) or 1 (also
//!   `connectionToken`), offering only the WebSockets transport. A negotiated ID is good for
//!   one connection within `NEGOTIATION_TTL`.
//! - `GET /hub` with a WebSocket upgrade opens a connection, with `?id=` from negotiate or
//!   without (clients that skip negotiation). Other requests at `/hub` are other transports
//!   and are refused with a clear error.
//! - The session comes as `access_token` (what browser clients send), `Authorization: Bearer`,
//!   `Authorization: res <userID>:<sessionID>` or `X-Session-ID`; none is a guest, an invalid
//!   one is 401. It is checked again at every keep-alive and invocation: a connection whose
//!   session ended is closed without a reconnect.
//! - After the handshake the connection joins the fan-out (`ws::hub`) like a socket at `/`:
//!   the same events with the same filtering, framed by `protocol::event_frame`, the same
//!   bounded send queue, write timeout, frame rate limit and shared connection limit. A user's
//!   connection counts for presence like a ponging socket at `/`.
//! - The hub sends a Ping every `--hub-keep-alive` and closes a client silent for
//!   `--hub-client-timeout`; at shutdown it sends a Close message that allows a reconnect.

pub mod methods;
pub mod protocol;

use actix_http::ws::{CloseCode, CloseReason};
use actix_web::http::StatusCode;
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::protocol::{ClientMessage, Records};
use super::hub::{Binding, Protocol, Slot};
use super::{ending_reason, WsDoor};
use crate::auth::random_bytes;
use crate::chat::presence;
use crate::chat::sessions::{resolve, Session};
use crate::error::{ApiError, ApiResult};
use crate::net::upgrade;
use crate::net::websocket::{Connection, Ending, Incoming, Socket};
use crate::params::{resolve_given, session_headers, HeaderSession};

/// Largest message (and record) a client may send: room for a message of the longest text
/// allowed, escaped.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// How long a client has for its handshake (ASP.NET Core's default).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a negotiated connection ID waits for its WebSocket.
pub const NEGOTIATION_TTL: Duration = Duration::from_secs(60);
/// The query parameter browser clients carry their token in.
const ACCESS_TOKEN: &str = "access_token";

/// Negotiated connections not yet opened, by the ID the client will present (the token in
/// negotiate version 1, the connection ID in version 0). Bounded: at most as many as the
/// gateways' connection limit, each for `NEGOTIATION_TTL`.
#[derive(Debug)]
pub struct Negotiations {
    pending: Mutex<HashMap<String, (String, Instant)>>,
    max: usize,
}

impl Negotiations {
    pub fn new(max: usize) -> Self {
        Self {
            pending: Mutex::default(),
            max: max.max(1),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection: its ID and token; None when too many wait.
    fn start(&self) -> Option<(String, String)> {
        let id = hex::encode(random_bytes::<16>());
        let token = hex::encode(random_bytes::<16>());
        let mut pending = self.pending();
        if pending.len() >= self.max {
            pending.retain(|_, (_, at)| at.elapsed() < NEGOTIATION_TTL);
            if pending.len() >= self.max {
                return None;
            }
        }
        Some((id, token))
    }

    fn insert(&self, key: String, id: String) {
        self.pending().insert(key, (id, Instant::now()));
    }

    /// Takes a negotiated connection: its connection ID, if `key` names one still waiting.
    fn take(&self, key: &str) -> Option<String> {
        self.pending()
            .remove(key)
            .filter(|(_, at)| at.elapsed() < NEGOTIATION_TTL)
            .map(|(id, _)| id)
    }
}

/// An error answer in the transport's shape: `{"error": "..."}`.
fn refuse(status: StatusCode, error: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": error.to_string() }))
}

/// The session a hub request carries: in `access_token` or the session headers (one of them).
fn session_of(req: &HttpRequest, state: &WsDoor) -> ApiResult<Option<Session>> {
    let mut given = session_headers(req.headers())?;
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        if key == ACCESS_TOKEN {
            given.push(HeaderSession {
                id: value.into_owned(),
                user: None,
            });
        }
    }
    if given.len() > 1 {
        return Err(ApiError::repeated(ACCESS_TOKEN));
    }
    resolve_given(state, given.pop())
}

/// One query parameter.
fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `POST /hub/negotiate[?negotiateVersion=N]`.
pub async fn negotiate(req: HttpRequest, state: web::Data<WsDoor>) -> HttpResponse {
    let version = match query_param(&req, "negotiateVersion") {
        None => 0,
        Some(raw) => match raw.parse::<u32>() {
            Ok(v) => v.min(1),
            Err(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "negotiateVersion must be a whole number",
                )
            }
        },
    };
    // A session that does not resolve is 401: the client must not go on as a guest.
    if let Err(e) = session_of(&req, &state) {
        return refuse(StatusCode::UNAUTHORIZED, e);
    }
    let Some((id, token)) = state.negotiations.start() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections are being negotiated; try again later",
        );
    };
    let transports = json!([{ "transport": "WebSockets", "transferFormats": ["Text", "Binary"] }]);
    let answer = if version == 0 {
        state.negotiations.insert(id.clone(), id.clone());
        json!({ "connectionId": id, "negotiateVersion": 0, "availableTransports": transports })
    } else {
        state.negotiations.insert(token.clone(), id.clone());
        json!({
            "connectionId": id,
            "connectionToken": token,
            "negotiateVersion": 1,
            "availableTransports": transports,
        })
    };
    HttpResponse::Ok().json(answer)
}

/// `GET /hub` with a WebSocket upgrade: a hub connection.
pub async fn connect(req: HttpRequest, state: web::Data<WsDoor>) -> HttpResponse {
    let connection = match query_param(&req, "id") {
        Some(key) => match state.negotiations.take(&key) {
            Some(id) => id,
            None => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "no negotiated connection has that id (it was used, or it expired); \
                     negotiate again",
                )
            }
        },
        None => hex::encode(random_bytes::<16>()),
    };
    let session = match session_of(&req, &state) {
        Ok(session) => session,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e),
    };
    let Some(slot) = state.reserve() else {
        return super::too_many_connections();
    };
    let state = state.into_inner();
    upgrade::accept(&req, move |stream, read| {
        run(state, slot, stream, read, session, connection)
    })
}

/// Any other request at `/hub`: Server-Sent Events, long polling and their sends are not
/// offered.
pub async fn other_transport() -> HttpResponse {
    refuse(
        StatusCode::BAD_REQUEST,
        "this hub offers only the WebSockets transport: open a WebSocket to /hub \
         (POST /hub/negotiate lists it)",
    )
}

/// Why a connection ends.
enum End {
    /// The client closed, or the socket failed: a close frame (or none).
    Socket(Option<CloseReason>),
    /// The hub closes: a Close message with an error, whether to reconnect, and the close
    /// frame.
    Hub {
        error: String,
        reconnect: bool,
        code: CloseCode,
    },
}

/// A hub connection after its handshake.
struct HubConnection {
    state: Arc<WsDoor>,
    conn: Connection,
    records: Records,
    id: u64,
    /// The connection ID of negotiate, for the logs.
    connection: String,
    session: Option<Session>,
    last_received: Instant,
    /// Woken when the core ends the connection's session.
    unbound: Arc<tokio::sync::Notify>,
}

impl HubConnection {
    fn user(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.user.id)
    }

    /// The session again (it may have ended, or its user changed); Err when it ended.
    fn refresh_session(&mut self) -> Result<(), End> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        match resolve(&self.state, session.id.clone()) {
            Ok(fresh) => {
                // A later expiry (the session was extended) reaches the fan-out too.
                self.state.hub.bind(self.id, Some(Binding::of(&fresh)));
                self.session = Some(fresh);
                Ok(())
            }
            Err(_) => {
                tracing::info!(
                    socket = self.id,
                    user = self.user(),
                    "closing a hub connection whose session ended"
                );
                Err(End::Hub {
                    error: "the session ended; log in again".into(),
                    reconnect: false,
                    code: CloseCode::Policy,
                })
            }
        }
    }

    /// Handles the records of one WebSocket message, in order.
    async fn receive(&mut self, bytes: &[u8]) -> Result<(), End> {
        let records = self.records.push(bytes).map_err(protocol_error)?;
        for record in records {
            match protocol::parse(&record).map_err(protocol_error)? {
                ClientMessage::Invocation {
                    id,
                    target,
                    arguments,
                } => {
                    self.refresh_session()?;
                    let outcome = methods::invoke(
                        &self.state.chat,
                        self.session.as_ref(),
                        &target,
                        arguments,
                    )
                    .await;
                    if let Err(error) = &outcome {
                        tracing::debug!(socket = self.id, target, error, "hub invocation failed");
                    }
                    let Some(id) = id else {
                        continue;
                    };
                    let result = outcome.map(|reply| {
                        for before in &reply.before {
                            self.conn.send_text(before);
                        }
                        reply.result
                    });
                    self.conn.send_text(&protocol::completion(&id, result));
                }
                ClientMessage::Streaming { id, target } => {
                    if let Some(id) = id {
                        let error = format!("hub method '{target}' does not stream; invoke it");
                        self.conn.send_text(&protocol::completion(&id, Err(error)));
                    }
                }
                ClientMessage::Close { error } => {
                    tracing::debug!(socket = self.id, error, "hub client closed");
                    return Err(End::Socket(None));
                }
                ClientMessage::Ping | ClientMessage::Cancel | ClientMessage::Ignored => {}
            }
        }
        Ok(())
    }

    /// Runs the connection until it ends.
    async fn serve(&mut self) -> End {
        let config = &self.state.chat.config;
        let (keep_alive, timeout) = (config.hub_keep_alive, config.hub_client_timeout);
        let queue = config.ws_send_queue;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        let mut shutdown = self.state.chat.shutdown.subscribe();
        loop {
            let deadline = tokio::time::Instant::from_std(self.last_received + timeout);
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(end) = self.refresh_session() {
                        return end;
                    }
                    self.conn.send_text(protocol::PING);
                }
                _ = self.unbound.notified() => {
                    tracing::info!(socket = self.id, user = self.user(), "closing a hub connection whose session ended");
                    return End::Hub {
                        error: "the session ended; log in again".into(),
                        reconnect: false,
                        code: CloseCode::Policy,
                    };
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(socket = self.id, user = self.user(), "closing a silent hub connection");
                    return End::Hub {
                        error: format!("the client sent nothing for {} seconds", timeout.as_secs()),
                        reconnect: true,
                        code: CloseCode::Normal,
                    };
                }
                message = self.conn.next() => {
                    self.last_received = Instant::now();
                    let message = match message {
                        Ok(message) => message,
                        Err(Ending::Overflow) => {
                            let reason = ending_reason(&self.conn, Ending::Overflow, Protocol::SignalR, self.id, self.user(), queue);
                            self.conn.send_text(&protocol::close(Some("too slow: the send queue is full"), true));
                            return End::Socket(reason);
                        }
                        Err(ending) => return End::Socket(ending_reason(&self.conn, ending, Protocol::SignalR, self.id, self.user(), queue)),
                    };
                    let outcome = match &message {
                        Incoming::Text(text) => self.receive(text.as_bytes()).await,
                        Incoming::Binary(bytes) => self.receive(bytes).await,
                        Incoming::Ping(_) | Incoming::Pong => Ok(()),
                    };
                    if let Err(end) = outcome {
                        return end;
                    }
                }
                _ = shutdown.changed() => {
                    return End::Hub {
                        error: "the server is stopping".into(),
                        reconnect: true,
                        code: CloseCode::Away,
                    };
                }
            }
        }
    }
}

fn protocol_error(error: impl std::fmt::Display) -> End {
    End::Hub {
        error: format!("protocol error: {error}"),
        reconnect: false,
        code: CloseCode::Protocol,
    }
}

/// Reads the handshake request (with any records after it in the same message); the error
/// close when it is missing or refused.
async fn handshake(
    conn: &mut Connection,
    records: &mut Records,
) -> Result<Vec<String>, Option<CloseReason>> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let message = match tokio::time::timeout_at(deadline, conn.next()).await {
            Err(_) => {
                conn.send_text(&protocol::handshake_error(
                    "no handshake request arrived in time",
                ));
                return Err(Some(CloseCode::Policy.into()));
            }
            Ok(Err(Ending::TooBig)) => return Err(crate::net::websocket::too_big()),
            Ok(Err(_)) => return Err(None),
            Ok(Ok(message)) => message,
        };
        let bytes: &[u8] = match &message {
            Incoming::Text(text) => text.as_bytes(),
            Incoming::Binary(bytes) => bytes,
            Incoming::Ping(_) | Incoming::Pong => continue,
        };
        let mut received = match records.push(bytes) {
            Ok(received) => received,
            Err(error) => {
                conn.send_text(&protocol::handshake_error(&error));
                return Err(Some(CloseCode::Protocol.into()));
            }
        };
        if received.is_empty() {
            continue;
        }
        let request = received.remove(0);
        return match protocol::handshake(&request) {
            Ok(()) => Ok(received),
            Err(error) => {
                tracing::debug!(error, "refusing a hub handshake");
                conn.send_text(&protocol::handshake_error(&error));
                Err(Some(CloseCode::Normal.into()))
            }
        };
    }
}

async fn run(
    state: Arc<WsDoor>,
    slot: Slot,
    stream: crate::net::Transport,
    read: BytesMut,
    session: Option<Session>,
    connection: String,
) {
    let id = slot.id;
    let socket = Socket::new(stream, state.config.ws_send_queue);
    let mut conn = Connection::new(
        socket.clone(),
        read,
        MAX_MESSAGE_BYTES,
        state.config.ws_write_timeout,
    );
    let mut records = Records::new(MAX_MESSAGE_BYTES);
    let early = match handshake(&mut conn, &mut records).await {
        Ok(early) => early,
        Err(close) => return conn.close(close).await,
    };
    conn.send_text(protocol::HANDSHAKE_OK);
    let user = session.as_ref().map(|s| s.user.id);
    let unbound = Arc::new(tokio::sync::Notify::new());
    state.hub.attach(
        &state,
        &slot,
        socket,
        Protocol::SignalR,
        session.as_ref().map(Binding::of),
        unbound.clone(),
    );
    let _counted = crate::metrics::Connected::new(&crate::metrics::HUB);
    if let Some(user) = user {
        presence::arrive(&state.chat, user);
    }
    tracing::info!(socket = id, connection, user, "hub connection opened");
    let mut hub = HubConnection {
        state: state.clone(),
        conn,
        records,
        id,
        connection,
        session,
        last_received: Instant::now(),
        unbound,
    };
    let mut end = None;
    for record in early {
        let mut bytes = record.into_bytes();
        bytes.push(protocol::RECORD_SEPARATOR);
        if let Err(e) = hub.receive(&bytes).await {
            end = Some(e);
            break;
        }
    }
    let end = match end {
        Some(end) => end,
        None => hub.serve().await,
    };
    state.hub.detach(id);
    if let Some(user) = user {
        presence::leave(&state.chat, user);
    }
    let reason = match end {
        End::Socket(reason) => reason,
        End::Hub {
            error,
            reconnect,
            code,
        } => {
            hub.conn
                .send_text(&protocol::close(Some(&error), reconnect));
            // A close frame's reason holds at most 123 bytes; the Close message has it all.
            let mut description = error;
            while description.len() > 120 {
                description.pop();
            }
            Some(CloseReason {
                code,
                description: Some(description),
            })
        }
    };
    tracing::info!(
        socket = id,
        connection = hub.connection,
        user,
        "hub connection closed"
    );
    hub.conn.close(reason).await;
    drop(slot);
}
