//! The chatbox bot gateway: external bots speak the chatbox WebSocket API
//! (`decentd_protocol::chatbox`) at `/v2/:licenseKey`.
//!
//! - Licenses (`licenses`): long random keys, stored as SHA-256, with capabilities clamped to
//!   what the owner may do; created over HTTP (`api::licenses`) or with the in-chat
//!   `\chatbox license register`.
//! - `Gateway`: the open bot connections, each with a bounded packet queue; one dispatcher
//!   turns bus events into chatbox packets (chat, join/leave, players) for the connections
//!   whose capabilities and license owner allow them; commands are handed over directly by
//!   the message endpoint.
//! - Bot requests (`say`, `tell`) go through each license's rate limit (`limiter`): sent at
//!   once, or queued for a worker that sends them in order at their slots.
//! - Restarts: a scheduled graceful stop is announced to every bot and cancelled the same way.

pub mod limiter;
mod requests;
pub mod socket;

pub use requests::{request, Refused};

use bytestring::ByteString;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

use crate::chat::{Bots, Chat, Restart};
use crate::events::Event;
use crate::ids::{iso8601, now_ms};
use crate::metrics::{self, Connected, METRICS};
use crate::net::limit::{ConnectionLimit, Place};
use crate::store::UserRecord;
use decentd_protocol::chatbox::{
    parse_command, plain_text, rendered_text, Capability, ChatEvent, CloseReason, CommandText,
    EventPacket, ServerPacket,
};
use decentd_protocol::ChatUser;
use requests::Lane;

/// The bot gateway's door: the core and the connections.
#[derive(Debug)]
pub struct BotDoor {
    pub chat: Arc<Chat>,
    pub gateway: Arc<Gateway>,
    /// The connection limit shared with the other gateways.
    pub connections: ConnectionLimit,
}

impl std::ops::Deref for BotDoor {
    type Target = Chat;
    fn deref(&self) -> &Chat {
        &self.chat
    }
}

/// Packets queued for one bot before it is dropped as too slow.
pub const BOT_QUEUE: usize = 256;

pub use crate::chat::licenses::Identity;

/// Tells a connection to close, once, with a reason.
#[derive(Debug, Default)]
pub struct Kick {
    reason: Mutex<Option<CloseReason>>,
    notify: Notify,
}

impl Kick {
    pub fn kick(&self, reason: CloseReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
            self.notify.notify_one();
        }
    }

    /// Resolves with the reason once kicked.
    pub async fn wait(&self) -> CloseReason {
        loop {
            if let Some(reason) = *self.reason.lock().unwrap_or_else(|e| e.into_inner()) {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

/// The gateway's side of one connection.
#[derive(Debug)]
struct Conn {
    identity: Identity,
    out: mpsc::Sender<ByteString>,
    kick: Arc<Kick>,
    /// Its place under the gateways' shared connection limit.
    _place: Place,
    _counted: Connected,
}

/// What a connection task keeps of its registration.
#[derive(Debug)]
pub struct Registration {
    pub id: u64,
    pub packets: mpsc::Receiver<ByteString>,
    pub out: mpsc::Sender<ByteString>,
    pub kick: Arc<Kick>,
}

/// A scheduled stop as a chatbox event.
pub fn restart_packet(restart: &Restart) -> ServerPacket {
    event_packet(
        ChatEvent::ServerRestartScheduled {
            restart_type: restart.kind.into(),
            restart_seconds: restart.seconds,
            restart_at: iso8601(restart.at_ms),
        },
        restart.scheduled_ms,
        None,
    )
}

/// Every open bot connection, the rate limits, and the pending restart.
#[derive(Debug, Default)]
pub struct Gateway {
    conns: RwLock<HashMap<u64, Conn>>,
    next_id: AtomicU64,
    lanes: Mutex<HashMap<u64, Arc<Lane>>>,
}

impl Gateway {
    /// Registers a connection, unless the gateways' shared connection limit is reached.
    pub fn register(&self, identity: Identity, limit: &ConnectionLimit) -> Option<Registration> {
        let place = limit.reserve()?;
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (out, packets) = mpsc::channel(BOT_QUEUE);
        let kick = Arc::new(Kick::default());
        conns.insert(
            id,
            Conn {
                identity,
                out: out.clone(),
                kick: kick.clone(),
                _place: place,
                _counted: Connected::new(&metrics::CHATBOX),
            },
        );
        Some(Registration {
            id,
            packets,
            out,
            kick,
        })
    }

    pub fn unregister(&self, id: u64) {
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Open bot connections.
    pub fn len(&self) -> usize {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Open connections of one license.
    pub fn connections_of(&self, license: u64) -> usize {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.identity.license == Some(license))
            .count()
    }

    /// Closes every connection of a license.
    /// Closes every connection of a deleted user's licenses with `changed_license_key`.
    pub fn kick_owner(&self, user: u64) {
        let licenses: Vec<u64> = self
            .conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.identity.owner.as_ref().is_some_and(|o| o.id == user))
            .filter_map(|c| c.identity.license)
            .collect();
        for license in licenses {
            self.kick_license(license, CloseReason::ChangedLicenseKey);
        }
    }

    pub fn kick_license(&self, license: u64, reason: CloseReason) {
        for conn in self
            .conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.identity.license == Some(license))
        {
            conn.kick.kick(reason);
        }
        if reason != CloseReason::DisabledLicense {
            self.lanes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&license);
        }
    }

    /// Queues a packet for every connection `wants` picks. The packet is built and serialized
    /// once, and only if some connection wants it.
    fn send(
        &self,
        packet: impl FnOnce() -> ServerPacket,
        mut wants: impl FnMut(&Identity) -> bool,
    ) {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        let mut packet = Some(packet);
        let mut frame: Option<ByteString> = None;
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for (id, conn) in conns.iter() {
            if !wants(&conn.identity) {
                continue;
            }
            let frame = frame.get_or_insert_with(|| match packet.take() {
                Some(make) => make().to_json().into(),
                None => ByteString::new(),
            });
            match conn.out.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    tracing::warn!(
                        connection = id,
                        license = conn.identity.license,
                        queue = BOT_QUEUE,
                        "closing a bot connection that fell behind: its packet queue is full"
                    );
                    METRICS.closed_slow.get_or_create(&metrics::CHATBOX).inc();
                    conn.kick.kick(CloseReason::FatalError);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => dropped += 1,
            }
        }
        if delivered > 0 {
            METRICS
                .events_delivered
                .get_or_create(&metrics::CHATBOX)
                .inc_by(delivered);
        }
        if dropped > 0 {
            METRICS
                .events_dropped
                .get_or_create(&metrics::CHATBOX)
                .inc_by(dropped);
        }
    }
}

/// Whether an identity may see events of a channel, memoized per owner for one event.
fn reader(state: &Chat, channel: u64) -> impl FnMut(&Identity) -> bool + '_ {
    let mut seen: HashMap<Option<u64>, bool> = HashMap::new();
    move |identity: &Identity| {
        let owner = identity.owner.as_ref().map(|o| o.id);
        *seen
            .entry(owner)
            .or_insert_with(|| state.can_read(identity.requester(), channel))
    }
}

/// An event packet stamped with `time_ms`, in `channel` if it concerns one.
fn event_packet(event: ChatEvent, time_ms: u64, channel: Option<u64>) -> ServerPacket {
    ServerPacket::Event(EventPacket {
        event,
        time: iso8601(time_ms),
        channel: channel.map(|c| c.to_string()),
        message_id: None,
    })
}

/// A decimal-string ID in a JSON payload, by JSON pointer (`/message/authorID`).
fn id_at(value: &Value, pointer: &str) -> Option<u64> {
    value.pointer(pointer)?.as_str()?.parse().ok()
}

/// A user as bots see them, by ID (None if the user is gone).
fn chat_user_by_id(state: &Chat, id: u64) -> Option<ChatUser> {
    let user = state.store.user(id).ok()??;
    Some(state.chat_user(&user))
}

/// The `players` packet: every online user.
pub fn players(state: &Chat) -> ServerPacket {
    let mut players: Vec<ChatUser> = state
        .presence
        .online()
        .into_iter()
        .filter_map(|id| chat_user_by_id(state, id))
        .collect();
    players.sort_by_key(|p| p.name.to_lowercase());
    ServerPacket::Players {
        time: iso8601(now_ms()),
        players,
    }
}

/// A chat event from a `message/new` or `message/edit` payload, with its channel.
fn chat_event(state: &Chat, message: &Value, edited: bool) -> Option<(u64, ServerPacket)> {
    let author = id_at(message, "/authorID")?; // system messages have no author: not chat
    let channel = id_at(message, "/channelID")?;
    let text = message.get("text")?.as_str()?;
    if parse_command(text).is_some() {
        return None; // bots got it as a command event
    }
    let user = state.chat_user_named(author, message.get("authorUsername")?.as_str()?);
    // A license's say carries its chatbox name; a plugin's bot speaks under its own name.
    let chatbox_name = match message.pointer("/chatbox/name") {
        Some(name) => Some(name.as_str()?.to_owned()),
        None => user.bot.then(|| user.name.clone()),
    };
    let (text, raw_text, rendered_text) = (plain_text(text), text.to_owned(), rendered_text(text));
    let event = match chatbox_name {
        // Bot messages have no edited form in the API.
        Some(_) if edited => return None,
        Some(name) => ChatEvent::ChatChatbox {
            text,
            raw_text,
            rendered_text,
            user,
            raw_name: name.clone(),
            name,
        },
        None => ChatEvent::ChatIngame {
            text,
            raw_text,
            rendered_text,
            user,
            edited,
        },
    };
    let seconds = message
        .get(if edited { "dateEdited" } else { "dateCreated" })
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Some((
        channel,
        ServerPacket::Event(EventPacket {
            event,
            time: iso8601((seconds * 1000.0) as u64),
            channel: Some(channel.to_string()),
            message_id: message.get("id").and_then(Value::as_str).map(str::to_owned),
        }),
    ))
}

/// Turns one bus event into bot packets.
fn on_event(state: &Chat, gateway: &Gateway, event: &Event) {
    match event.name {
        "user/delete" => {
            // Their licenses went with the user record; end the connections that used them.
            if let Some(user) = id_at(&event.data, "/userID") {
                gateway.kick_owner(user);
            }
        }
        _ if gateway.is_empty() => {}
        "message/new" | "message/edit" => {
            let Some(message) = event.data.get("message") else {
                return;
            };
            let Some((channel, packet)) = chat_event(state, message, event.name == "message/edit")
            else {
                return;
            };
            let from_license = id_at(message, "/chatbox/licenseID");
            let mut may_read = reader(state, channel);
            gateway.send(
                || packet,
                |who| {
                    who.has(Capability::Read)
                        && (from_license.is_none() || who.license != from_license)
                        && may_read(who)
                },
            );
        }
        "user/online" | "user/offline" => {
            let Some(user) =
                id_at(&event.data, "/userID").and_then(|id| chat_user_by_id(state, id))
            else {
                return;
            };
            let event = if event.name == "user/online" {
                ChatEvent::Join { user }
            } else {
                ChatEvent::Leave { user }
            };
            let packet = event_packet(event, now_ms(), None);
            let readers = |who: &Identity| who.has(Capability::Read);
            gateway.send(|| packet, readers);
            gateway.send(|| players(state), readers);
        }
        _ => {}
    }
}

/// Feeds bus events to bots until the bus closes.
pub async fn dispatch(state: Arc<Chat>, gateway: Arc<Gateway>) {
    let mut events = state.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => on_event(&state, &gateway, &event),
            Err(RecvError::Lagged(missed)) => {
                tracing::error!(missed, "the chatbox dispatcher fell behind the event bus");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl Bots for Gateway {
    /// Hands a chat command to bots: public commands to every bot with `command` whose owner
    /// may read the channel, owner-only commands only to the invoker's own bots. Returns how
    /// many connections got it.
    fn command(
        &self,
        state: &Chat,
        user: &UserRecord,
        channel: u64,
        command: &CommandText,
    ) -> usize {
        let packet = event_packet(
            ChatEvent::Command {
                user: state.chat_user(user),
                command: command.name.clone(),
                args: command.args.clone(),
                owner_only: command.owner_only,
            },
            now_ms(),
            Some(channel),
        );
        let mut may_read = reader(state, channel);
        let mut delivered = 0;
        self.send(
            || packet,
            |who| {
                let wanted = who.has(Capability::Command)
                    && (!command.owner_only || who.owner.as_ref().map(|o| o.id) == Some(user.id))
                    && may_read(who);
                delivered += usize::from(wanted);
                wanted
            },
        );
        delivered
    }

    fn connections_of(&self, license: u64) -> usize {
        Gateway::connections_of(self, license)
    }

    fn kick_license(&self, license: u64, reason: CloseReason) {
        Gateway::kick_license(self, license, reason)
    }

    /// Announces a graceful stop to every bot.
    fn restart_scheduled(&self, restart: &Restart) {
        self.send(|| restart_packet(restart), |_| true);
    }

    fn restart_cancelled(&self, restart: &Restart) {
        let packet = event_packet(
            ChatEvent::ServerRestartCancelled {
                restart_type: restart.kind.into(),
            },
            now_ms(),
            None,
        );
        self.send(|| packet, |_| true);
    }
}
