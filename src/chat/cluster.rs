//! Cluster mode (`--bus nats://...`): the nodes sharing one PostgreSQL database tell each other
//! about events and permission changes through NATS.
//!
//! Every node publishes, on one subject (so a node's messages arrive in the order it sent
//! them), two kinds of message:
//!
//! - a permission change, under a cluster-wide number taken from storage. Each node applies
//!   changes as they come and tracks which numbers it has applied; a number that stays missing
//!   (a node died between taking it and publishing), a change arriving after a later one, or a
//!   reconnection to NATS (messages were lost meanwhile) makes the node reload its whole
//!   permission index from storage, which holds every committed change;
//! - an event, stamped with the highest change number its node had applied. A receiving node
//!   delivers it to its own sockets, bots and hub connections once it has applied every change
//!   up to that number (or reloaded), so an event never meets permissions older than it.
//!
//! Each event is delivered to the plugins of the node it happened on only: every plugin event
//! is handled exactly once in the cluster.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::presence::Status;
use super::Chat;
use crate::events::{Audience, Event};
use crate::perms::Change;

/// How long an event may wait for a missing permission change before the index is reloaded.
const GAP_WAIT: Duration = Duration::from_millis(500);
/// How often a node compares its permission changes with storage's count (a change whose
/// message was lost, with no event waiting on it, is caught here).
const CHECK_EVERY: Duration = Duration::from_secs(15);
/// How long a request waits for a permission change storage has numbered but this node has
/// not received yet, before the node reloads its index instead.
const CATCH_UP_WAIT: Duration = Duration::from_millis(250);
/// How long a starting node waits for NATS before it serves anyway (not ready).
const STARTUP_WAIT: Duration = Duration::from_secs(10);
/// How often a node tells the others everyone connected to it.
const PRESENCE_EVERY: Duration = Duration::from_secs(5);

/// What travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Packet {
    Changes {
        origin: String,
        number: u64,
        changes: Vec<Change>,
    },
    /// Who is connected to the origin: all of them (`full`, sent every few seconds), or
    /// changes (None: gone).
    Presence {
        origin: String,
        users: Vec<(u64, Option<Status>)>,
        full: bool,
    },
    Event {
        origin: String,
        /// The highest change number the origin had applied.
        after: u64,
        name: String,
        audience: Audience,
        data: Value,
    },
}

/// Which change numbers this node has applied.
#[derive(Debug, Default)]
struct Applied {
    /// Every number up to this one.
    through: u64,
    /// Numbers past `through`.
    ahead: BTreeSet<u64>,
}

impl Applied {
    fn mark(&mut self, number: u64) {
        if number > self.through {
            self.ahead.insert(number);
        }
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
    fn highest(&self) -> u64 {
        self.ahead
            .last()
            .copied()
            .unwrap_or(self.through)
            .max(self.through)
    }
    /// After a reload from storage: everything up to `number` is in the index.
    fn reloaded(&mut self, number: u64) {
        self.through = self.through.max(number);
        self.ahead.retain(|n| *n > number);
        while self.ahead.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

/// This node's link to the others.
#[derive(Debug)]
pub struct Cluster {
    node: String,
    client: async_nats::Client,
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    applied: Mutex<Applied>,
    /// Woken whenever `applied` moves (for requests waiting on a change).
    progressed: tokio::sync::Notify,
}

impl Cluster {
    /// Connects to NATS at `url` (retrying in the background while it is down) and starts
    /// receiving. `first` is the change number storage had handed out before this node
    /// loaded its permission index.
    pub async fn connect(chat: Arc<Chat>, url: &str, first: u64) -> Result<Arc<Self>, String> {
        let (reconnected_tx, mut reconnected) = mpsc::unbounded_channel::<()>();
        let up = Arc::new(tokio::sync::Notify::new());
        let up_tx = up.clone();
        // When the connection was lost (Unix ms; 0: connected).
        let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lost_tx = lost.clone();
        let client = async_nats::ConnectOptions::new()
            .name("decentd")
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let reconnected_tx = reconnected_tx.clone();
                let up_tx = up_tx.clone();
                let lost_tx = lost_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            up_tx.notify_one();
                            let _ = reconnected_tx.send(());
                        }
                        async_nats::Event::Disconnected => {
                            let now = crate::ids::now_ms();
                            let _ = lost_tx.compare_exchange(
                                0,
                                now,
                                std::sync::atomic::Ordering::Relaxed,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            tracing::warn!("lost the connection to NATS; reconnecting")
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        let subject = "decentd.cluster".to_owned();
        let mut subscription = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| format!("cannot subscribe to NATS: {e}"))?;
        // Serve only once subscribed: a node that listened before would miss what others say
        // meanwhile. NATS down at startup: the node starts, not ready, and joins when it can.
        if tokio::time::timeout(STARTUP_WAIT, up.notified())
            .await
            .is_err()
        {
            tracing::warn!(
                bus = url,
                "NATS does not answer yet; /readyz reports the bus until it does"
            );
        }
        let (outbox, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let cluster = Arc::new(Self {
            node: hex::encode(crate::auth::random_bytes::<8>()),
            client: client.clone(),
            outbox,
            applied: Mutex::new(Applied {
                through: first,
                ahead: BTreeSet::new(),
            }),
            progressed: tokio::sync::Notify::new(),
        });
        // Sending: one task, so messages leave in the order they were made.
        let sender = client.clone();
        tokio::spawn(async move {
            while let Some(payload) = queued.recv().await {
                if let Err(e) = sender.publish(subject.clone(), payload.into()).await {
                    tracing::error!(error = %e, "could not publish to NATS");
                }
            }
        });
        // Receiving.
        let receiver = cluster.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut held: VecDeque<(Instant, u64, Event)> = VecDeque::new();
            let mut first_connect = true;
            let mut check =
                tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
            let mut presence = tokio::time::interval(PRESENCE_EVERY);
            loop {
                let wait = held.front().map_or(GAP_WAIT, |(since, _, _)| {
                    GAP_WAIT.saturating_sub(since.elapsed())
                });
                tokio::select! {
                    message = subscription.next() => {
                        let Some(message) = message else { return };
                        receiver.receive(&chat, &message.payload, &mut held);
                    }
                    Some(()) = reconnected.recv() => {
                        // Messages sent while this node was away are lost: start from storage.
                        if !std::mem::take(&mut first_connect) {
                            receiver.reload(&chat, "reconnected to NATS");
                            let since = lost.swap(0, std::sync::atomic::Ordering::Relaxed);
                            catch_up_search(&chat, since);
                        }
                    }
                    _ = tokio::time::sleep(wait), if !held.is_empty() => {
                        receiver.reload(&chat, "a permission change did not arrive");
                    }
                    _ = presence.tick() => {
                        let users: Vec<(u64, Option<Status>)> = chat
                            .presence
                            .local_users()
                            .into_iter()
                            .map(|(id, status)| (id, Some(status)))
                            .collect();
                        receiver.send(&Packet::Presence {
                            origin: receiver.node.clone(),
                            users,
                            full: true,
                        });
                    }
                    _ = check.tick() => {
                        let stored = chat.store.last_change_number().ok().flatten().unwrap_or(0);
                        if stored > receiver.highest_applied() {
                            receiver.reload(&chat, "storage holds changes that did not arrive");
                        }
                    }
                }
                receiver.release(&chat, &mut held);
            }
        });
        Ok(cluster)
    }

    /// Whether this node is connected to NATS now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The highest change number this node has applied (the stamp of its events).
    pub fn highest_applied(&self) -> u64 {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .highest()
    }

    /// Tells the other nodes about permission changes this node made (already applied here),
    /// under `number`.
    pub fn changed(&self, number: u64, changes: Vec<Change>) {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mark(number);
        self.send(&Packet::Changes {
            origin: self.node.clone(),
            number,
            changes,
        });
    }

    /// Before a request is served: waits until this node has applied every permission change
    /// storage has numbered (they arrive within a NATS hop), reloading the index if one does
    /// not arrive in time. So a change made on any node applies to the next request here.
    pub async fn catch_up(&self, chat: &Chat) {
        let stored = match chat.store.last_change_number() {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the permission change number");
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let progressed = self.progressed.notified();
            if self
                .applied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .through
                >= stored
            {
                return;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                self.reload(chat, "a request needed a change that did not arrive");
                return;
            }
        }
    }

    /// Tells the other nodes that users connected here came, changed status or went.
    pub fn presence(&self, users: &[(u64, Option<Status>)]) {
        self.send(&Packet::Presence {
            origin: self.node.clone(),
            users: users.to_vec(),
            full: false,
        });
    }

    /// Tells the other nodes about an event of this node.
    pub fn emitted(&self, event: &Event) {
        self.send(&Packet::Event {
            origin: self.node.clone(),
            after: event.perm_seq,
            name: event.name.to_owned(),
            audience: event.audience,
            data: event.data.clone(),
        });
    }

    fn send(&self, packet: &Packet) {
        match serde_json::to_vec(packet) {
            Ok(payload) => {
                let _ = self.outbox.send(payload);
            }
            Err(e) => tracing::error!(error = %e, "could not encode a cluster message"),
        }
    }

    fn receive(&self, chat: &Chat, payload: &[u8], held: &mut VecDeque<(Instant, u64, Event)>) {
        let packet: Packet = match serde_json::from_slice(payload) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::warn!(error = %e, "ignored a cluster message that does not decode");
                return;
            }
        };
        match packet {
            Packet::Changes { origin, .. }
            | Packet::Event { origin, .. }
            | Packet::Presence { origin, .. }
                if origin == self.node => {}
            Packet::Presence {
                origin,
                users,
                full,
            } => chat.presence.remote_update(&origin, &users, full),
            Packet::Changes {
                number, changes, ..
            } => {
                let late = {
                    let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
                    number <= applied.through || number < applied.highest()
                };
                if late {
                    // Applied out of order, the index could differ from storage: reload it.
                    self.reload(chat, "a permission change arrived after a later one");
                    return;
                }
                chat.apply_changes(changes);
                self.applied
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mark(number);
                self.progressed.notify_waiters();
                // Durable on the node that made it: this node's connections hear of it now.
                chat.permissions_changed();
            }
            Packet::Event {
                after,
                name,
                audience,
                data,
                ..
            } => {
                let event = Event::remote(intern(&name), data, audience, after);
                held.push_back((Instant::now(), after, event));
            }
        }
    }

    /// Delivers held events whose permission changes are all applied, in order.
    fn release(&self, chat: &Chat, held: &mut VecDeque<(Instant, u64, Event)>) {
        let through = self
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .through;
        while held.front().is_some_and(|(_, after, _)| *after <= through) {
            if let Some((_, _, event)) = held.pop_front() {
                super::search::follow_remote(chat, event.name, &event.data);
                chat.deliver(event);
            }
        }
    }

    /// Rebuilds the permission index from storage: it then holds every committed change.
    fn reload(&self, chat: &Chat, why: &str) {
        let number = match chat.store.last_change_number() {
            Ok(number) => number.unwrap_or(0),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the permission change number");
                return;
            }
        };
        match chat.reload_perms() {
            Ok(()) => {
                tracing::info!(why, number, "reloaded the permission index from storage");
                self.applied
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reloaded(number);
                self.progressed.notify_waiters();
                chat.permissions_changed();
            }
            Err(e) => tracing::error!(error = %e, "cannot reload the permission index"),
        }
    }
}

/// Indexes the messages stored since a moment before the connection to NATS was lost (their
/// events did not arrive), on a blocking thread.
fn catch_up_search(chat: &Arc<Chat>, lost_ms: u64) {
    if chat.search.is_none() || lost_ms == 0 {
        return;
    }
    let chat = chat.clone();
    let after = crate::ids::first_id_at(lost_ms.saturating_sub(SEARCH_MARGIN_MS));
    tokio::task::spawn_blocking(move || {
        if let Some(index) = &chat.search {
            match super::search::index_since(&*chat.store, index, after, &|_| {}) {
                Ok(n) => tracing::info!(messages = n, "indexed what arrived while NATS was away"),
                Err(e) => tracing::warn!(error = %e.message, "could not catch the search index up"),
            }
        }
    });
}

/// How far before a lost connection the search catch-up starts (messages in flight then).
const SEARCH_MARGIN_MS: u64 = 10_000;

/// Event names as the `&'static str` events carry (a handful, each leaked once).
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_numbers_count_through_the_first_gap() {
        let mut applied = Applied {
            through: 3,
            ahead: BTreeSet::new(),
        };
        applied.mark(5);
        assert_eq!((applied.through, applied.highest()), (3, 5));
        applied.mark(4);
        assert_eq!((applied.through, applied.highest()), (5, 5));
        applied.mark(2);
        assert_eq!(applied.through, 5);
        applied.mark(9);
        applied.reloaded(7);
        assert_eq!((applied.through, applied.highest()), (7, 9));
        applied.mark(8);
        assert_eq!(applied.through, 9);
    }
}
