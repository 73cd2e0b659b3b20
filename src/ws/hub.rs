//! The socket registry and the fan-out that delivers bus events to sockets.
//!
//! Sockets are spread over shards, one per fan-out thread (as many as HTTP workers, so a large
//! fan-out uses every core). Each fan-out thread reads the event bus and, per event, decides the
//! recipients in its shard once: everyone, one user's sockets, or the sockets whose user (or
//! guest) may read a channel, with one permission resolution per distinct user per event, under
//! one read lock of the index (released before sending). The event's JSON was serialized once
//! by the bus; its WebSocket frame is encoded once per thread and handed to each recipient's
//! `Socket::send`, which writes it straight to the kernel or queues it, never waiting. A socket whose queue is full is marked
//! to close: it never slows delivery to the others and its memory stays bounded.

use actix_web::web::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use tokio::sync::broadcast::error::RecvError;

use super::WsDoor;
use crate::events::{Audience, Event};
use crate::net::websocket::{text_frame, Socket};
use crate::perms::{Permission, Requester};

/// The fan-out's side of one socket.
#[derive(Debug)]
struct Entry {
    user: Option<u64>,
    socket: Arc<Socket>,
}

type Shard = RwLock<HashMap<u64, Entry>>;

/// Every open WebSocket at `/`.
#[derive(Debug)]
pub struct Hub {
    shards: Vec<Shard>,
    /// Sockets open or being opened (reserved slots).
    open: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

/// A reserved place for one socket; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    pub id: u64,
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hub {
    /// A registry with `shards` fan-out shards (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            open: Arc::default(),
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

    /// Reserves a place for a socket, unless `max` sockets are open.
    pub fn reserve(&self, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            open: self.open.clone(),
        })
    }

    /// Starts delivering events to an upgraded socket (as a guest until `set_user`).
    pub fn attach(&self, slot: &Slot, socket: Arc<Socket>) {
        Self::write(self.shard(slot.id)).insert(slot.id, Entry { user: None, socket });
    }

    /// Stops delivering to a socket.
    pub fn detach(&self, id: u64) {
        Self::write(self.shard(id)).remove(&id);
    }

    /// Associates a socket with a user (or with nobody: a guest).
    pub fn set_user(&self, id: u64, user: Option<u64>) {
        if let Some(entry) = Self::write(self.shard(id)).get_mut(&id) {
            entry.user = user;
        }
    }

    /// Open sockets.
    pub fn len(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends an event's frame to every socket of one shard in its audience. The recipients are
    /// chosen under the shard's and the index's read locks, and the sends happen after both are
    /// released, so sockets opening or closing and permission changes never wait on a fan-out.
    fn deliver(
        &self,
        shard: usize,
        state: &WsDoor,
        event: &Event,
        recipients: &mut Vec<Arc<Socket>>,
    ) {
        recipients.clear();
        {
            let sockets = Self::read(&self.shards[shard]);
            match event.audience {
                Audience::Everyone => {
                    recipients.extend(sockets.values().map(|e| e.socket.clone()));
                }
                Audience::User(user) => recipients.extend(
                    sockets
                        .values()
                        .filter(|e| e.user == Some(user))
                        .map(|e| e.socket.clone()),
                ),
                Audience::Users(a, b) => recipients.extend(
                    sockets
                        .values()
                        .filter(|e| e.user == Some(a) || e.user == Some(b))
                        .map(|e| e.socket.clone()),
                ),
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
                            recipients.push(entry.socket.clone());
                        }
                    }
                }
            }
        }
        if recipients.is_empty() {
            return;
        }
        let frame: Bytes = text_frame(&event.frame);
        for socket in recipients.drain(..) {
            socket.send(&frame);
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
                loop {
                    match events.blocking_recv() {
                        Ok(event) => {
                            let Some(state) = state.upgrade() else { return };
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
    fn reservations_stop_at_the_maximum_and_free_on_drop() {
        let hub = Hub::new(2);
        let a = hub.reserve(2).unwrap();
        let b = hub.reserve(2).unwrap();
        assert_ne!(a.id, b.id);
        assert!(hub.reserve(2).is_none());
        drop(a);
        assert!(hub.reserve(2).is_some());
        assert_eq!(hub.len(), 1, "the reservation above was dropped at once");
    }
}
