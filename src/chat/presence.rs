//! Which users are online and what status they show, with a grace period for sockets that come
//! back at once.
//!
//! A connected user shows `online` until they choose another status (through the SignalR hub's
//! `BroadcastStatus`): `away` and `busy` are shown to everyone (`user/status`), `invisible`
//! shows them offline (`user/offline`; they stay connected and receive their events). The
//! status lasts while the user is connected: one who goes offline comes back `online`.

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;

use super::Chat;

/// What a connected user chose to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    Busy,
    /// Shown to others as offline.
    Invisible,
}

impl Status {
    /// A status by name, in any case (`online`, `away`, `busy`, `invisible`).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Online, Self::Away, Self::Busy, Self::Invisible]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Invisible => "invisible",
        }
    }

    /// What others see: the status, or `offline` for an invisible user.
    pub fn shown(self) -> &'static str {
        match self {
            Self::Invisible => OFFLINE,
            other => other.name(),
        }
    }
}

/// What others see of a user who is not connected (or invisible).
pub const OFFLINE: &str = "offline";

/// How long a user whose last socket went away still counts as online. A user who comes back
/// within it (a reload, a flaky network, a client toggling its session) causes no
/// `user/offline` and `user/online` pair for every socket of the server.
pub const PRESENCE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Which users are online: the number of live, ponging sockets (and hub connections) per user,
/// and the status each shows.
#[derive(Debug, Default)]
pub struct Presence {
    users: Mutex<HashMap<u64, PresenceEntry>>,
    /// Tells apart successive departures of one user.
    generation: std::sync::atomic::AtomicU64,
    /// Cluster mode: who is connected to each other node, as that node last told.
    remote: Mutex<HashMap<String, RemoteNode>>,
}

/// The connected users of another cluster node.
#[derive(Debug)]
struct RemoteNode {
    heard: std::time::Instant,
    users: HashMap<u64, Status>,
}

/// How long another node's presence counts without news from it (it sends all of it every
/// few seconds): a node that died takes its users offline after this.
pub const REMOTE_PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug)]
struct PresenceEntry {
    sockets: usize,
    /// The user's last socket left: the departure's generation, settled after the grace.
    leaving: Option<u64>,
    status: Status,
}

impl Presence {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PresenceEntry>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether others see the user online (connected and not invisible).
    pub fn is_online(&self, user: u64) -> bool {
        self.status(user).is_some_and(|s| s != Status::Invisible)
    }

    /// The status of a connected user; None when they are offline.
    pub fn status(&self, user: u64) -> Option<Status> {
        self.local_status(user).or_else(|| self.remote_status(user))
    }

    /// The status of a user connected to this node.
    pub fn local_status(&self, user: u64) -> Option<Status> {
        self.users().get(&user).map(|e| e.status)
    }

    /// The status of a user connected to another node (a visible one first).
    fn remote_status(&self, user: u64) -> Option<Status> {
        let remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for node in remote.values() {
            if node.heard.elapsed() > REMOTE_PRESENCE_TTL {
                continue;
            }
            match node.users.get(&user) {
                Some(Status::Invisible) => found = found.or(Some(Status::Invisible)),
                Some(status) => return Some(*status),
                None => {}
            }
        }
        found
    }

    /// Every user connected to this node with their status (what this node tells others).
    pub fn local_users(&self) -> Vec<(u64, Status)> {
        self.users().iter().map(|(id, e)| (*id, e.status)).collect()
    }

    /// What another node says about its users: all of them (`full`), or changes (None: gone).
    pub fn remote_update(&self, node: &str, users: &[(u64, Option<Status>)], full: bool) {
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        remote.retain(|_, n| n.heard.elapsed() <= REMOTE_PRESENCE_TTL * 4);
        let entry = remote.entry(node.to_owned()).or_insert_with(|| RemoteNode {
            heard: std::time::Instant::now(),
            users: HashMap::new(),
        });
        entry.heard = std::time::Instant::now();
        if full {
            entry.users.clear();
        }
        for (user, status) in users {
            match status {
                Some(status) => entry.users.insert(*user, *status),
                None => entry.users.remove(user),
            };
        }
    }

    /// What others see of a user: `online`, `away`, `busy` or `offline`.
    pub fn shown(&self, user: u64) -> &'static str {
        self.status(user).map_or(OFFLINE, Status::shown)
    }

    /// Every user others see online, with their status (on any node of a cluster).
    pub fn online_statuses(&self) -> Vec<(u64, Status)> {
        let mut all: HashMap<u64, Status> = HashMap::new();
        {
            let remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            for node in remote.values() {
                if node.heard.elapsed() <= REMOTE_PRESENCE_TTL {
                    all.extend(node.users.iter().map(|(id, s)| (*id, *s)));
                }
            }
        }
        all.extend(self.users().iter().map(|(id, e)| (*id, e.status)));
        let mut visible: Vec<(u64, Status)> = all
            .into_iter()
            .filter(|(_, s)| *s != Status::Invisible)
            .collect();
        visible.sort_unstable_by_key(|(id, _)| *id);
        visible
    }

    /// Every user others see online.
    pub fn online(&self) -> Vec<u64> {
        self.online_statuses()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Sets a connected user's status; the previous one, or None when the user is offline.
    pub fn set_status(&self, user: u64, status: Status) -> Option<Status> {
        let mut users = self.users();
        let entry = users.get_mut(&user)?;
        Some(std::mem::replace(&mut entry.status, status))
    }

    /// Counts one more socket for a user; true when the user just came online (and was not
    /// merely within the grace of a departure).
    pub fn connect(&self, user: u64) -> bool {
        let mut users = self.users();
        let entry = users.entry(user).or_insert(PresenceEntry {
            sockets: 0,
            leaving: None,
            status: Status::Online,
        });
        entry.sockets += 1;
        let returning = entry.leaving.take().is_some();
        entry.sockets == 1 && !returning
    }

    /// Counts one socket less. When it was the user's last, returns the departure to
    /// `settle` after `PRESENCE_GRACE`.
    pub fn disconnect(&self, user: u64) -> Option<u64> {
        let mut users = self.users();
        let entry = users.get_mut(&user)?;
        entry.sockets = entry.sockets.saturating_sub(1);
        if entry.sockets > 0 {
            return None;
        }
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        entry.leaving = Some(generation);
        Some(generation)
    }

    /// Ends a departure: the status the user had when they are now offline (nobody came back
    /// meanwhile), else None.
    pub fn settle(&self, user: u64, departure: u64) -> Option<Status> {
        let mut users = self.users();
        match users.get(&user) {
            Some(entry) if entry.sockets == 0 && entry.leaving == Some(departure) => {
                users.remove(&user).map(|e| e.status)
            }
            _ => None,
        }
    }
}

/// A user's socket came (for the first time, or back after the grace): `user/online`, unless
/// another cluster node already shows them.
pub fn arrive(chat: &Chat, user: u64) {
    let elsewhere = chat.presence.remote_status(user).is_some();
    if chat.presence.connect(user) {
        if let Some(cluster) = chat.cluster() {
            cluster.presence(&[(user, Some(Status::Online))]);
        }
        if elsewhere {
            return;
        }
        chat.emit(
            "user/online",
            json!({ "userID": user.to_string() }),
            Audience::Everyone,
        );
    }
}

/// A user's socket went: when it was their last and nobody comes back within
/// `PRESENCE_GRACE`, `user/offline`.
pub fn leave(chat: &Arc<Chat>, user: u64) {
    let Some(departure) = chat.presence.disconnect(user) else {
        return;
    };
    let chat = chat.clone();
    tokio::spawn(async move {
        tokio::time::sleep(PRESENCE_GRACE).await;
        let Some(status) = chat.presence.settle(user, departure) else {
            return;
        };
        if let Some(cluster) = chat.cluster() {
            cluster.presence(&[(user, None)]);
        }
        // An invisible user was already offline for everyone else; one still connected to
        // another node is not offline.
        if status != Status::Invisible && chat.presence.remote_status(user).is_none() {
            chat.emit(
                "user/offline",
                json!({ "userID": user.to_string() }),
                Audience::Everyone,
            );
        }
    });
}

/// `{userID, status}` as events and answers show a user's status.
pub fn status_json(chat: &Chat, user: u64) -> serde_json::Value {
    json!({ "userID": user.to_string(), "status": chat.presence.shown(user) })
}

/// A connected user chooses what to show: `user/status` for everyone when they stay visible,
/// `user/offline` when they turn invisible, `user/online` (and their status, if not `online`)
/// when they come back from invisible. Answers what others now see.
pub fn set_status(chat: &Chat, user: u64, status: Status) -> ApiResult<&'static str> {
    let Some(before) = chat.presence.set_status(user, status) else {
        return Err(ApiError::new(
            ErrorCode::No,
            "only a connected user has a status; connect first",
        ));
    };
    if let Some(cluster) = chat.cluster() {
        cluster.presence(&[(user, Some(status))]);
    }
    if before == status {
        return Ok(status.shown());
    }
    let id = json!({ "userID": user.to_string() });
    match (before == Status::Invisible, status == Status::Invisible) {
        (false, true) => chat.emit("user/offline", id, Audience::Everyone),
        (true, false) => {
            chat.emit("user/online", id, Audience::Everyone);
            if status != Status::Online {
                chat.emit("user/status", status_json(chat, user), Audience::Everyone);
            }
        }
        _ => chat.emit("user/status", status_json(chat, user), Audience::Everyone),
    }
    Ok(status.shown())
}
