//! The socket registry and the fan-out that delivers bus events to sockets.
//!
//! Both client gateways register here: the Decent WebSocket at `/` and the SignalR hub at
//! `/hub` (`Protocol` says how each wants its frames). Sockets are spread over shards, one per fan-out thread (as many as HTTP workers, so a large
//! fan-out uses every core). Each fan-out thread reads the event bus and, per event, decides the
//! recipients in its shard once: everyone, one user's sockets, or the sockets whose user (or
//! guest) may read a channel, with one permission resolution per distinct user per event, under
//! one read lock of the index (released before sending). The event's JSON was serialized once
//! by the bus; its WebSocket frame is encoded once per thread and handed to each recipient's
//! `Socket::send`, which writes it straight to the kernel or queues it, never waiting. A socket whose queue is full is marked
//! to close: it never slows delivery to the others and its memory stays bounded.

use actix_web::web::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use tokio::sync::broadcast::error::RecvError;

use super::WsDoor;
use crate::chat::sessions::Session;
use crate::chat::Connections;
use crate::events::{Audience, Event};
use crate::ids::now_ms;
use crate::metrics::{self, METRICS};
use crate::net::limit::{ConnectionLimit, Place};
use crate::net::websocket::{text_frame, Sent, Socket};
use crate::perms::{Permission, PermissionIndex, Requester};
use crate::store::SessionKey;
use tokio::sync::Notify;

/// How a socket wants its events framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `{"evt": name, "data": data}` (the Decent spec, at `/`).
    Decent = 0,
    /// SignalR invocations (`/hub`): `ReceiveEvent(name, data)` and the Resonite-named targets.
    SignalR = 1,
}

impl Protocol {
    /// The gateway's label in the metrics.
    pub fn gateway(self) -> &'static metrics::Gateway {
        match self {
            Protocol::Decent => &metrics::WEBSOCKET,
            Protocol::SignalR => &metrics::HUB,
        }
    }
}

/// The session a connection is bound to, as its user. Events for that user reach the
/// connection only while the binding lasts: until the session ends (the core unbinds it at
/// once) or expires (checked at each delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub user: u64,
    pub session: SessionKey,
    pub expires_ms: u64,
}

impl Binding {
    /// The binding of a resolved session.
    pub fn of(session: &Session) -> Self {
        Self {
            user: session.user.id,
            session: session.key,
            expires_ms: session.record.expires_ms,
        }
    }
}

/// The channels a connection may read, sorted (shared by the connections of one requester).
pub type Visible = Arc<[u64]>;

/// The fan-out's side of one socket.
#[derive(Debug)]
struct Entry {
    binding: Option<Binding>,
    socket: Arc<Socket>,
    protocol: Protocol,
    /// Woken when the core unbinds the connection (its session ended).
    unbound: Arc<Notify>,
    /// The channels the connection was last known to see: what it has been told through
    /// `channel/new` and `channel/delete` (or listed itself when it connected).
    visible: Visible,
}

impl Entry {
    /// The user events are filtered for: None for a guest, or once the session expired.
    fn user(&self, now_ms: u64) -> Option<u64> {
        self.binding
            .filter(|b| b.expires_ms > now_ms)
            .map(|b| b.user)
    }
}

type Shard = RwLock<HashMap<u64, Entry>>;

/// Every open client socket: the WebSockets at `/` and the hub connections at `/hub`.
#[derive(Debug)]
pub struct Hub {
    shards: Vec<Shard>,
    /// The connection limit shared with the other gateways.
    limit: ConnectionLimit,
    next_id: AtomicU64,
}

/// A reserved place for one socket; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    pub id: u64,
    _place: Place,
}

impl Hub {
    /// A registry with `shards` fan-out shards (at least one), counting its sockets against
    /// `limit`.
    pub fn new(shards: usize, limit: ConnectionLimit) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            limit,
            next_id: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: u64) -> &Shard {
        &self.shards[(id % self.shards.len() as u64) as usize]
    }

    fn read(shard: &Shard) -> RwLockReadGuard<'_, HashMap<u64, Entry>> {
        shard.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(shard: &Shard) -> RwLockWriteGuard<'_, HashMap<u64, Entry>> {
        shard.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a place for a socket, unless the gateways' connection limit is reached.
    pub fn reserve(&self) -> Option<Slot> {
        let place = self.limit.reserve()?;
        Some(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            _place: place,
        })
    }

    /// The most connections the gateways take together.
    pub fn max(&self) -> usize {
        self.limit.max()
    }

    /// Starts delivering events to an upgraded socket, framed for `protocol`, bound to a
    /// session (a guest: None; `bind` changes it). `unbound` is woken when the core ends the
    /// session.
    pub fn attach(
        &self,
        state: &WsDoor,
        slot: &Slot,
        socket: Arc<Socket>,
        protocol: Protocol,
        binding: Option<Binding>,
        unbound: Arc<Notify>,
    ) {
        let visible = visible_to(&state.perms(), binding.map(|b| b.user));
        Self::write(self.shard(slot.id)).insert(
            slot.id,
            Entry {
                binding,
                socket,
                protocol,
                unbound,
                visible,
            },
        );
    }

    /// Stops delivering to a socket.
    pub fn detach(&self, id: u64) {
        Self::write(self.shard(id)).remove(&id);
    }

    /// Binds a socket to a session (or to nobody: a guest).
    pub fn bind(&self, id: u64, binding: Option<Binding>) {
        if let Some(entry) = Self::write(self.shard(id)).get_mut(&id) {
            entry.binding = binding;
        }
    }

    /// A socket's binding now (None once the core unbound it).
    pub fn binding(&self, id: u64) -> Option<Binding> {
        Self::read(self.shard(id)).get(&id).and_then(|e| e.binding)
    }

    /// Unbinds every connection whose binding `ended` picks, waking its task; how many.
    fn unbind(&self, ended: impl Fn(&Binding) -> bool) -> usize {
        let mut count = 0;
        for shard in &self.shards {
            for entry in Self::write(shard).values_mut() {
                if entry.binding.as_ref().is_some_and(&ended) {
                    entry.binding = None;
                    entry.unbound.notify_one();
                    count += 1;
                }
            }
        }
        count
    }

    /// Open connections of every gateway.
    pub fn len(&self) -> usize {
        self.limit.open()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings one socket's channels up to date (it logged in, out, or its session ended):
    /// `channel/new` for each channel it may now read, `channel/delete` for each it may not.
    pub fn resync(&self, state: &WsDoor, id: u64) {
        let mut changed = Vec::new();
        {
            // Locks in the fan-out's order, shard then index: the other order can deadlock
            // with a delivery and a waiting index writer.
            let mut sockets = Self::write(self.shard(id));
            if let Some(entry) = sockets.get_mut(&id) {
                let fresh = visible_to(&state.perms(), entry.user(now_ms()));
                if fresh != entry.visible {
                    let before = std::mem::replace(&mut entry.visible, fresh.clone());
                    changed.push((entry.socket.clone(), entry.protocol, before, fresh));
                }
            }
        }
        announce(state, changed);
    }

    /// Brings every socket of one shard up to date after the permission index changed (a role,
    /// a grant, an override, the read-access preset, a channel created or deleted): one
    /// resolution per distinct requester, under the index's read lock; the announcements are
    /// sent after every lock is released.
    fn resync_shard(&self, shard: usize, state: &WsDoor) {
        let mut changed = Vec::new();
        {
            // Shard, then index: the fan-out's order (see `resync`).
            let mut sockets = Self::write(&self.shards[shard]);
            let index = state.perms();
            let now = now_ms();
            let mut fresh: HashMap<Option<u64>, Visible> = HashMap::new();
            for entry in sockets.values_mut() {
                let user = entry.user(now);
                let now_visible = fresh
                    .entry(user)
                    .or_insert_with(|| visible_to(&index, user))
                    .clone();
                if now_visible != entry.visible {
                    let before = std::mem::replace(&mut entry.visible, now_visible.clone());
                    changed.push((entry.socket.clone(), entry.protocol, before, now_visible));
                }
            }
        }
        announce(state, changed);
    }

    /// Sends an event's frame to every socket of one shard in its audience. The recipients are
    /// chosen under the shard's and the index's read locks, and the sends happen after both are
    /// released, so sockets opening or closing and permission changes never wait on a fan-out.
    fn deliver(
        &self,
        shard: usize,
        state: &WsDoor,
        event: &Event,
        recipients: &mut Vec<(Arc<Socket>, Protocol)>,
    ) {
        recipients.clear();
        // Which channels a connection sees changes only through the resync, which announces
        // them to exactly the connections that gained or lost one (a deleted channel goes only
        // to those that could read it).
        if matches!(event.name, "channel/new" | "channel/delete") {
            return;
        }
        {
            let sockets = Self::read(&self.shards[shard]);
            let now = now_ms();
            let to = |e: &Entry| (e.socket.clone(), e.protocol);
            match event.audience {
                Audience::Everyone => {
                    recipients.extend(sockets.values().map(to));
                }
                Audience::User(user) => recipients.extend(
                    sockets
                        .values()
                        .filter(|e| e.user(now) == Some(user))
                        .map(to),
                ),
                Audience::Users(a, b) => recipients.extend(
                    sockets
                        .values()
                        .filter(|e| e.user(now) == Some(a) || e.user(now) == Some(b))
                        .map(to),
                ),
                Audience::Channel(channel) => {
                    let index = state.perms();
                    if !index.has_channel(channel) {
                        return;
                    }
                    let mut may_read: HashMap<Option<u64>, bool> = HashMap::new();
                    for entry in sockets.values() {
                        let user = entry.user(now);
                        let allowed = *may_read.entry(user).or_insert_with(|| {
                            let who = user.map_or(Requester::Guest, Requester::User);
                            index.has(who, Some(channel), Permission::ReadMessages)
                        });
                        if allowed {
                            recipients.push(to(entry));
                        }
                    }
                }
            }
        }
        if recipients.is_empty() {
            return;
        }
        // Each framing is encoded at most once per event and thread.
        let (mut decent, mut signalr): (Option<Bytes>, Option<Bytes>) = (None, None);
        // Delivered and dropped, per protocol: counted here, added to the metrics once.
        let mut counts = [[0u64; 2]; 2];
        for (socket, protocol) in recipients.drain(..) {
            let frame = match protocol {
                Protocol::Decent => decent.get_or_insert_with(|| text_frame(&event.frame)),
                Protocol::SignalR => {
                    signalr.get_or_insert_with(|| super::signalr::protocol::event_frame(event))
                }
            };
            let dropped = matches!(socket.send(frame), Sent::Overflowed | Sent::Dropped);
            counts[protocol as usize][usize::from(dropped)] += 1;
        }
        for protocol in [Protocol::Decent, Protocol::SignalR] {
            let [delivered, dropped] = counts[protocol as usize];
            let gateway = protocol.gateway();
            if delivered > 0 {
                METRICS
                    .events_delivered
                    .get_or_create(gateway)
                    .inc_by(delivered);
            }
            if dropped > 0 {
                METRICS
                    .events_dropped
                    .get_or_create(gateway)
                    .inc_by(dropped);
            }
        }
    }
}

/// The channels `user` (a guest: None) may read, sorted.
pub fn visible_to(index: &PermissionIndex, user: Option<u64>) -> Visible {
    let mut channels = index.readable_channels(user.map_or(Requester::Guest, Requester::User));
    channels.sort_unstable();
    channels.into()
}

/// Sends each connection whose channels changed a `channel/new` for every channel it gained
/// and a `channel/delete` for every one it lost. The channel objects are read once each.
fn announce(state: &WsDoor, changed: Vec<(Arc<Socket>, Protocol, Visible, Visible)>) {
    if changed.is_empty() {
        return;
    }
    let mut frames: HashMap<(u64, bool, Protocol), Option<Bytes>> = HashMap::new();
    let mut frame = |channel: u64, gained: bool, protocol: Protocol| -> Option<Bytes> {
        frames
            .entry((channel, gained, protocol))
            .or_insert_with(|| {
                let event = if gained {
                    let record = state.store.channel(channel).ok().flatten()?;
                    let object =
                        crate::chat::channels::channel_json(&state.chat, &record, None).ok()?;
                    Event::new(
                        "channel/new",
                        serde_json::json!({ "channel": object }),
                        Audience::Everyone,
                        0,
                    )
                } else {
                    Event::new(
                        "channel/delete",
                        serde_json::json!({ "channelID": channel.to_string() }),
                        Audience::Everyone,
                        0,
                    )
                };
                Some(match protocol {
                    Protocol::Decent => text_frame(&event.frame),
                    Protocol::SignalR => super::signalr::protocol::event_frame(&event),
                })
            })
            .clone()
    };
    for (socket, protocol, before, after) in changed {
        let lost = before.iter().filter(|c| after.binary_search(c).is_err());
        let gained = after.iter().filter(|c| before.binary_search(c).is_err());
        for (channel, gained) in lost.map(|c| (*c, false)).chain(gained.map(|c| (*c, true))) {
            if let Some(bytes) = frame(channel, gained, protocol) {
                let _ = socket.send(&bytes);
            }
        }
    }
}

/// The client gateways as the core's `Connections` port (holding the door weakly: the core
/// holds the port).
#[derive(Debug)]
pub struct Port(pub Weak<WsDoor>);

impl Connections for Port {
    fn end_sessions(&self, sessions: &[SessionKey]) {
        let Some(door) = self.0.upgrade() else { return };
        if !sessions.is_empty() {
            let count = door.hub.unbind(|b| sessions.contains(&b.session));
            if count > 0 {
                tracing::info!(
                    connections = count,
                    "unbound connections whose session ended"
                );
            }
        }
    }

    fn end_user(&self, user: u64) {
        let Some(door) = self.0.upgrade() else { return };
        let count = door.hub.unbind(|b| b.user == user);
        if count > 0 {
            tracing::info!(
                user,
                connections = count,
                "unbound connections of a user whose sessions ended"
            );
        }
    }

    fn permissions_changed(&self) {
        let Some(door) = self.0.upgrade() else { return };
        for shard in 0..door.hub.shards.len() {
            door.hub.resync_shard(shard, &door);
        }
    }
}

/// Starts one fan-out thread per shard. Each holds the state weakly and ends with the bus.
pub fn start_fanout(state: &Arc<WsDoor>) -> std::io::Result<()> {
    for shard in 0..state.hub.shards.len() {
        // Subscribed here, so no event emitted after startup is missed.
        let mut events = state.subscribe();
        let state: Weak<WsDoor> = Arc::downgrade(state);
        std::thread::Builder::new()
            .name(format!("ws-fanout-{shard}"))
            .spawn(move || {
                let mut recipients = Vec::new();
                // The index changes this shard's connections have been brought up to.
                let mut synced = state.upgrade().map_or(0, |s| s.perms().seq());
                loop {
                    match events.blocking_recv() {
                        Ok(event) => {
                            let Some(state) = state.upgrade() else { return };
                            // Every index change is followed by its event: the connections
                            // hear what they gained and lost before the event itself.
                            let seq = state.perms().seq();
                            if seq != synced {
                                synced = seq;
                                state.hub.resync_shard(shard, &state);
                            }
                            state.hub.deliver(shard, &state, &event, &mut recipients);
                        }
                        Err(RecvError::Lagged(missed)) => {
                            tracing::error!(
                                shard,
                                missed,
                                "a WebSocket fan-out thread fell behind the event bus"
                            );
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_have_distinct_ids_and_count_against_the_shared_limit() {
        let limit = ConnectionLimit::new(2);
        let hub = Hub::new(2, limit.clone());
        let a = hub.reserve().unwrap();
        let b = hub.reserve().unwrap();
        assert_ne!(a.id, b.id);
        assert!(
            limit.reserve().is_none(),
            "the other gateways share the limit"
        );
        drop(a);
        assert!(hub.reserve().is_some());
        assert_eq!(hub.len(), 1, "the reservation above was dropped at once");
    }
}
