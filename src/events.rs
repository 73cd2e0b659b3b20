//! The event bus: the one place changes are announced.
//!
//! The core emits an `Event` after its write is durable. Each event is serialized to its
//! `{"evt", "data"}` JSON once, here; consumers (the WebSocket fan-out, the plugin host and the
//! bot gateway) receive the shared frame with what they need to filter it (its audience, and
//! the permission-index sequence number it follows) and decide delivery themselves. A bus never
//! blocks an emitter: a consumer that lags loses events and learns how many.
//!
//! `Bus` is the interface; `LocalBus` (a broadcast channel in this process) its one
//! implementation. A broker-backed bus publishes each `Event` (everything in it serializes)
//! and feeds what it receives from other nodes into the same local subscriptions, after the
//! node's permission index has applied every change up to the event's `perm_seq`.

use bytestring::ByteString;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Audience {
    /// Every connected socket.
    Everyone,
    /// Only the sockets of one user.
    User(u64),
    /// Only the sockets of two users (the two sides of a direct conversation).
    Users(u64, u64),
    /// Sockets whose user (or guest) may read this channel.
    Channel(u64),
}

/// An event, serialized once.
#[derive(Debug, Clone)]
pub struct Event {
    /// The `evt` name, e.g. `user/new`.
    pub name: &'static str,
    pub audience: Audience,
    /// The permission index's sequence number when the event was emitted: a receiver filters
    /// the event by permissions only once its index has applied that many changes.
    pub perm_seq: u64,
    /// The `data` payload, for consumers that need to look inside.
    pub data: Value,
    /// `{"evt": name, "data": data}` as JSON text; clones share the bytes.
    pub frame: ByteString,
    /// Emitted on another cluster node: delivered to this node's sockets and bots, but not
    /// to its plugins (the emitting node's plugins handle it, once in the cluster).
    pub remote: bool,
}

impl Event {
    /// An event, serialized once.
    pub fn new(name: &'static str, data: Value, audience: Audience, perm_seq: u64) -> Self {
        let frame = ByteString::from(json!({ "evt": name, "data": data }).to_string());
        Self {
            name,
            audience,
            perm_seq,
            data,
            frame,
            remote: false,
        }
    }

    /// An event another cluster node emitted.
    pub fn remote(name: &'static str, data: Value, audience: Audience, perm_seq: u64) -> Self {
        Self {
            remote: true,
            ..Self::new(name, data, audience, perm_seq)
        }
    }
}

/// A subscription: every event published after it was made, in order.
pub type Subscription = broadcast::Receiver<Arc<Event>>;

/// Publishing and subscribing to events.
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Announces an event to every subscriber; never blocks.
    fn publish(&self, event: Event);
    /// Receives every event published from now on.
    fn subscribe(&self) -> Subscription;
}

/// The in-process bus: a broadcast channel.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl LocalBus {
    /// A bus that buffers up to `capacity` events for each lagging subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx }
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: Event) {
        // No subscribers is fine: nobody is listening.
        let _ = self.tx.send(Arc::new(event));
    }

    fn subscribe(&self) -> Subscription {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_the_serialized_event() {
        let bus = LocalBus::new(16);
        let mut rx = bus.subscribe();
        bus.publish(Event::new(
            "user/delete",
            json!({"userID": "1"}),
            Audience::Everyone,
            7,
        ));
        let event = rx.recv().await.unwrap();
        assert_eq!(event.name, "user/delete");
        assert_eq!(event.perm_seq, 7);
        let parsed: Value = serde_json::from_str(&event.frame).unwrap();
        assert_eq!(
            parsed,
            json!({"evt": "user/delete", "data": {"userID": "1"}})
        );
    }
}
