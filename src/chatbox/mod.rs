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
pub mod socket;

use bytestring::ByteString;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

use crate::chat::{licenses, Bots, Chat, Restart};
use crate::events::Event;
use crate::ids::{iso8601, now_ms};
use crate::perms::{Permission, Requester};
use crate::store::UserRecord;
use decentd_protocol::chatbox::{
    parse_command, plain_text, rendered_text, BotRequest, Capability, ChatEvent, CloseReason,
    CommandText, ErrorKind, EventPacket, ServerPacket, RATE_INTERVAL_MS, RATE_QUEUE,
};
use decentd_protocol::ChatUser;
use limiter::{Admit, Limiter};

/// The bot gateway's door: the core and the connections.
#[derive(Debug)]
pub struct BotDoor {
    pub chat: Arc<Chat>,
    pub gateway: Arc<Gateway>,
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

/// One license's rate limit and the worker that sends its queued messages.
#[derive(Debug)]
struct Lane {
    limiter: Mutex<Limiter>,
    jobs: mpsc::UnboundedSender<Queued>,
}

/// A message waiting for its slot.
#[derive(Debug)]
struct Queued {
    at: Instant,
    identity: Identity,
    action: Prepared,
    id: Option<i64>,
    reply: mpsc::Sender<ByteString>,
}

/// A checked request, ready to carry out as `owner` (loaded when it was checked).
#[derive(Debug, Clone)]
struct Prepared {
    owner: UserRecord,
    target: Target,
    text: String,
    /// The chatbox name shown.
    name: String,
}

/// Where a checked request goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// `say`: a channel the owner may post in.
    Channel(u64),
    /// `tell`: an online user.
    User(u64),
}

/// Every open bot connection, the rate limits, and the pending restart.
#[derive(Debug, Default)]
pub struct Gateway {
    conns: RwLock<HashMap<u64, Conn>>,
    next_id: AtomicU64,
    lanes: Mutex<HashMap<u64, Arc<Lane>>>,
}

impl Gateway {
    /// Registers a connection unless `max` are open.
    pub fn register(&self, identity: Identity, max: usize) -> Option<Registration> {
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (out, packets) = mpsc::channel(BOT_QUEUE);
        let kick = Arc::new(Kick::default());
        conns.insert(
            id,
            Conn {
                identity,
                out: out.clone(),
                kick: kick.clone(),
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
        for (id, conn) in conns.iter() {
            if !wants(&conn.identity) {
                continue;
            }
            let frame = frame.get_or_insert_with(|| match packet.take() {
                Some(make) => make().to_json().into(),
                None => ByteString::new(),
            });
            if let Err(mpsc::error::TrySendError::Full(_)) = conn.out.try_send(frame.clone()) {
                tracing::warn!(
                    connection = id,
                    license = conn.identity.license,
                    queue = BOT_QUEUE,
                    "closing a bot connection that fell behind: its packet queue is full"
                );
                conn.kick.kick(CloseReason::FatalError);
            }
        }
    }

    /// The rate-limit lane of a license (created on first use).
    fn lane(&self, state: &Arc<Chat>, license: u64) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .entry(license)
            .or_insert_with(|| {
                let (jobs, rx) = mpsc::unbounded_channel();
                let lane = Arc::new(Lane {
                    limiter: Mutex::new(Limiter::new(
                        Duration::from_millis(RATE_INTERVAL_MS),
                        RATE_QUEUE,
                    )),
                    jobs,
                });
                actix_web::rt::spawn(lane_worker(state.clone(), Arc::downgrade(&lane), rx));
                lane
            })
            .clone()
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

/// A refusal with an optional message other than the documented one.
pub type Refused = (ErrorKind, Option<String>);

/// The channel a `say` goes to: the one named (ID or name), else the configured default, else
/// the oldest channel the owner may post in.
fn say_channel(state: &Chat, owner: &UserRecord, named: Option<&str>) -> Result<u64, Refused> {
    let who = Requester::User(owner.id);
    let may_post = |channel: u64| {
        state.can_read(who, channel)
            && state
                .perms()
                .has(who, Some(channel), Permission::SendMessages)
    };
    let unknown = |what: &str| {
        (
            ErrorKind::UnknownChannel,
            Some(format!(
                "Channel {what:?} does not exist or you may not post in it."
            )),
        )
    };
    let channels = state
        .store
        .channels()
        .map_err(|e| (ErrorKind::UnknownError, Some(e.to_string())))?;
    let find = |wanted: &str| {
        let by_id = wanted.parse::<u64>().ok();
        channels
            .iter()
            .find(|c| Some(c.id) == by_id || c.name.eq_ignore_ascii_case(wanted))
            .map(|c| c.id)
    };
    let wanted = named.or(state.config.chatbox_channel.as_deref());
    match wanted {
        Some(wanted) => find(wanted)
            .filter(|c| may_post(*c))
            .ok_or_else(|| unknown(wanted)),
        None => channels
            .iter()
            .map(|c| c.id)
            .find(|c| may_post(*c))
            .ok_or_else(|| {
                (
                    ErrorKind::UnknownChannel,
                    Some("There is no channel you may post in.".into()),
                )
            }),
    }
}

/// The online user a `tell` names (by the UUID of its user object, ID or username).
fn tell_target(state: &Chat, user: &str) -> Result<u64, Refused> {
    state
        .user_named(user)
        .ok()
        .flatten()
        .map(|u| u.id)
        .filter(|id| state.presence.is_online(*id))
        .ok_or((ErrorKind::UnknownUser, None))
}

/// Checks a request against the current state of the server.
fn prepare(state: &Chat, identity: &Identity, request: BotRequest) -> Result<Prepared, Refused> {
    // The owner as they are now: renamed, or no longer allowed to send.
    let owner = identity
        .owner
        .as_ref()
        .and_then(|o| state.store.user(o.id).ok().flatten())
        .ok_or((ErrorKind::MissingCapability, None))?;
    if licenses::allowed(state, owner.id) & request.needs().bit() == 0 {
        return Err((ErrorKind::MissingCapability, None));
    }
    let (target, text, name) = match request {
        BotRequest::Say {
            text,
            name,
            channel,
            ..
        } => (
            Target::Channel(say_channel(state, &owner, channel.as_deref())?),
            text,
            name,
        ),
        BotRequest::Tell {
            user, text, name, ..
        } => (Target::User(tell_target(state, &user)?), text, name),
    };
    Ok(Prepared {
        name: name.unwrap_or_else(|| owner.username.clone()),
        owner,
        target,
        text,
    })
}

/// Carries out a prepared request as the license owner.
async fn execute(state: &Arc<Chat>, identity: &Identity, action: Prepared) -> Result<(), Refused> {
    let Some(license) = identity.license else {
        return Err((ErrorKind::MissingCapability, None));
    };
    let Prepared {
        owner,
        target,
        text,
        name,
    } = action;
    match target {
        Target::Channel(channel) => {
            let via = json!({ "name": name, "licenseID": license.to_string() });
            crate::chat::messages::say_for_bot(state, &owner, channel, text, via)
                .await
                .map(|_| ())
                .map_err(|e| (ErrorKind::UnknownError, Some(e.message)))
        }
        Target::User(user) => {
            if !crate::chat::tells::from_bot(state, &owner, user, &name, &text) {
                return Err((ErrorKind::UnknownUser, None));
            }
            Ok(())
        }
    }
}

fn error_packet((kind, message): Refused, id: Option<i64>) -> ServerPacket {
    match message {
        Some(message) => ServerPacket::Error {
            error: kind.code().into(),
            message,
            id,
        },
        None => ServerPacket::error(kind, id),
    }
}

/// Handles one `say` or `tell` from a connection: the packet to answer with now.
pub async fn request(
    state: &Arc<Chat>,
    gateway: &Gateway,
    identity: &Identity,
    request: BotRequest,
    reply: &mpsc::Sender<ByteString>,
) -> ServerPacket {
    let id = request.id();
    let action = match prepare(state, identity, request) {
        Ok(action) => action,
        Err(refused) => return error_packet(refused, id),
    };
    let Some(license) = identity.license else {
        return ServerPacket::error(ErrorKind::MissingCapability, id);
    };
    let lane = gateway.lane(state, license);
    let admit = lane
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(Instant::now());
    match admit {
        Admit::Now => match execute(state, identity, action).await {
            Ok(()) => ServerPacket::Success {
                id,
                reason: decentd_protocol::chatbox::SuccessReason::MessageSent,
            },
            Err(refused) => error_packet(refused, id),
        },
        Admit::Queued(at) => {
            let job = Queued {
                at,
                identity: identity.clone(),
                action,
                id,
                reply: reply.clone(),
            };
            if lane.jobs.send(job).is_err() {
                return ServerPacket::error(ErrorKind::UnknownError, id);
            }
            ServerPacket::Success {
                id,
                reason: decentd_protocol::chatbox::SuccessReason::MessageQueued,
            }
        }
        Admit::Limited => ServerPacket::error(ErrorKind::RateLimited, id),
    }
}

/// Sends a license's queued messages in order, each at its slot; the outcome (`message_sent`
/// or the error) is reported to the connection that sent the message (if it is still open).
async fn lane_worker(
    state: Arc<Chat>,
    lane: std::sync::Weak<Lane>,
    mut jobs: mpsc::UnboundedReceiver<Queued>,
) {
    while let Some(job) = jobs.recv().await {
        tokio::time::sleep_until(job.at.into()).await;
        if let Some(lane) = lane.upgrade() {
            lane.limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .dequeued();
        }
        // A license revoked or disabled while its messages waited sends nothing more.
        let active = job.identity.license.is_some_and(
            |id| matches!(state.store.license(id), Ok(Some(license)) if !license.disabled),
        );
        if !active {
            continue;
        }
        // v2 client libraries resolve a `say` only on `message_sent`: a queued message is
        // answered again, with the same id, once it is stored.
        let packet = match execute(&state, &job.identity, job.action).await {
            Ok(()) => ServerPacket::Success {
                id: job.id,
                reason: decentd_protocol::chatbox::SuccessReason::MessageSent,
            },
            Err(refused) => error_packet(refused, job.id),
        };
        let _ = job.reply.try_send(packet.to_json().into());
    }
}
