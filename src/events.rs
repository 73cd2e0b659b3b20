//! The event bus: the one place changes are announced.
//!
//! Handlers emit an `Event` after their write is durable. Each event is serialized to its
//! `{"evt", "data"}` JSON once, here; consumers (the WebSocket dispatcher, and later plugins and
//! the bot gateway) receive the shared frame and its audience and decide delivery themselves. The bus
//! never blocks an emitter: a consumer that lags loses events and learns how many.

use bytestring::ByteString;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Who may receive an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every connected socket.
    Everyone,
    /// Only the sockets of one user.
    User(u64),
    /// Sockets whose user (or guest) may read this channel.
    Channel(u64),
}

/// An event, serialized once.
#[derive(Debug, Clone)]
pub struct Event {
    /// The `evt` name, e.g. `user/new`.
    pub name: &'static str,
    pub audience: Audience,
    /// The `data` payload, for consumers that need to look inside.
    pub data: Value,
    /// `{"evt": name, "data": data}` as JSON text; clones share the bytes.
    pub frame: ByteString,
}

/// Broadcasts events to every subscriber.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    /// A bus that buffers up to `capacity` events for each lagging subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx }
    }

    /// Announces an event to current subscribers.
    pub fn emit(&self, name: &'static str, data: Value, audience: Audience) {
        let frame = ByteString::from(json!({ "evt": name, "data": data }).to_string());
        let event = Arc::new(Event {
            name,
            audience,
            data,
            frame,
        });
        // No subscribers is fine: nobody is listening.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_the_serialized_event() {
        let bus = EventBus::new(16);
        let mut rx = bus.subscribe();
        bus.emit("user/delete", json!({"userID": "1"}), Audience::Everyone);
        let event = rx.recv().await.unwrap();
        assert_eq!(event.name, "user/delete");
        let parsed: Value = serde_json::from_str(&event.frame).unwrap();
        assert_eq!(
            parsed,
            json!({"evt": "user/delete", "data": {"userID": "1"}})
        );
    }
}
