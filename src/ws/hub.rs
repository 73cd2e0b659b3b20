//! The socket registry and the dispatcher that fans bus events out to sockets.
//!
//! One dispatcher task reads the event bus. For each event it decides the recipients once:
//! everyone, one user's sockets, or the sockets whose user (or guest) may read a channel, with
//! one permission resolution per distinct user per event, under one read lock of the index.
//! The event's frame was serialized once by the bus; each recipient gets a cheap clone of it
//! in its bounded queue (`try_send`, never waiting). A socket whose queue is full is told to
//! close: it never slows delivery to the others and its memory stays bounded.

use bytestring::ByteString;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

use crate::events::{Audience, Event};
use crate::perms::{Permission, Requester};
use crate::state::AppState;

/// The dispatcher's side of one socket.
#[derive(Debug)]
struct Entry {
    user: Option<u64>,
    queue: mpsc::Sender<ByteString>,
    /// Wakes the socket task to close because its queue overflowed.
    overflow: Arc<Notify>,
}

/// Every open WebSocket.
#[derive(Debug, Default)]
pub struct Hub {
    sockets: RwLock<HashMap<u64, Entry>>,
    next_id: AtomicU64,
}

/// What a socket task keeps of its registration.
#[derive(Debug)]
pub struct Registration {
    pub id: u64,
    pub events: mpsc::Receiver<ByteString>,
    pub overflow: Arc<Notify>,
}

impl Hub {
    /// Registers a socket with a queue of `capacity` frames, unless `max` sockets are open.
    pub fn register(&self, capacity: usize, max: usize) -> Option<Registration> {
        let mut sockets = self.sockets.write().unwrap_or_else(|e| e.into_inner());
        if sockets.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, events) = mpsc::channel(capacity);
        let overflow = Arc::new(Notify::new());
        sockets.insert(
            id,
            Entry {
                user: None,
                queue,
                overflow: overflow.clone(),
            },
        );
        Some(Registration {
            id,
            events,
            overflow,
        })
    }

    pub fn unregister(&self, id: u64) {
        self.sockets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Associates a socket with a user (or with nobody: a guest).
    pub fn set_user(&self, id: u64, user: Option<u64>) {
        if let Some(entry) = self
            .sockets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
        {
            entry.user = user;
        }
    }

    /// Open sockets.
    pub fn len(&self) -> usize {
        self.sockets.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues an event's frame for every socket in its audience.
    pub fn deliver(&self, state: &AppState, event: &Event) {
        let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
        match event.audience {
            Audience::Everyone => {
                for entry in sockets.values() {
                    push(entry, &event.frame);
                }
            }
            Audience::User(user) => {
                for entry in sockets.values().filter(|e| e.user == Some(user)) {
                    push(entry, &event.frame);
                }
            }
            Audience::Channel(channel) => {
                let index = state.perms();
                if !index.has_channel(channel) {
                    return;
                }
                let mut may_read: HashMap<Option<u64>, bool> = HashMap::new();
                for entry in sockets.values() {
                    let allowed = *may_read.entry(entry.user).or_insert_with(|| {
                        let who = entry.user.map_or(Requester::Guest, Requester::User);
                        index.has(who, Some(channel), Permission::ReadMessages)
                    });
                    if allowed {
                        push(entry, &event.frame);
                    }
                }
            }
        }
    }
}

fn push(entry: &Entry, frame: &ByteString) {
    if let Err(mpsc::error::TrySendError::Full(_)) = entry.queue.try_send(frame.clone()) {
        entry.overflow.notify_one();
    }
}

/// Runs the dispatcher until the bus closes.
pub async fn dispatch(state: Arc<AppState>) {
    let mut events = state.bus.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => state.hub.deliver(&state, &event),
            Err(RecvError::Lagged(missed)) => {
                tracing::error!(missed, "the WebSocket dispatcher fell behind the event bus");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_signals_overflow_and_drops_nothing_else() {
        let hub = Hub::default();
        let mut slow = hub.register(2, 10).unwrap();
        let mut fast = hub.register(8, 10).unwrap();
        let frame = ByteString::from_static("{}");
        let sockets = hub.sockets.read().unwrap();
        for _ in 0..3 {
            for entry in sockets.values() {
                push(entry, &frame);
            }
        }
        drop(sockets);
        assert_eq!(slow.events.try_recv().unwrap(), frame);
        assert_eq!(slow.events.try_recv().unwrap(), frame);
        assert!(slow.events.try_recv().is_err());
        // The overflow was signalled (a stored permit: notified() resolves at once).
        let notified = slow.overflow.notified();
        futures_util::pin_mut!(notified);
        assert!(futures_util::FutureExt::now_or_never(notified).is_some());
        for _ in 0..3 {
            assert_eq!(fast.events.try_recv().unwrap(), frame);
        }
    }

    #[test]
    fn registration_stops_at_the_maximum() {
        let hub = Hub::default();
        let a = hub.register(1, 2).unwrap();
        let _b = hub.register(1, 2).unwrap();
        assert!(hub.register(1, 2).is_none());
        hub.unregister(a.id);
        assert!(hub.register(1, 2).is_some());
        assert_eq!(hub.len(), 2);
    }
}
