//! Which users are online, with a grace period for sockets that come back at once.

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::events::Audience;

use super::Chat;

/// How long a user whose last socket went away still counts as online. A user who comes back
/// within it (a reload, a flaky network, a client toggling its session) causes no
/// `user/offline` and `user/online` pair for every socket of the server.
pub const PRESENCE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Which users are online: the number of live, ponging sockets per user.
#[derive(Debug, Default)]
pub struct Presence {
    users: Mutex<HashMap<u64, PresenceEntry>>,
    /// Tells apart successive departures of one user.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct PresenceEntry {
    sockets: usize,
    /// The user's last socket left: the departure's generation, settled after the grace.
    leaving: Option<u64>,
}

impl Presence {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PresenceEntry>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_online(&self, user: u64) -> bool {
        self.users().contains_key(&user)
    }

    /// Every online user.
    pub fn online(&self) -> Vec<u64> {
        self.users().keys().copied().collect()
    }

    /// Counts one more socket for a user; true when the user just came online (and was not
    /// merely within the grace of a departure).
    pub fn connect(&self, user: u64) -> bool {
        let mut users = self.users();
        let entry = users.entry(user).or_insert(PresenceEntry {
            sockets: 0,
            leaving: None,
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

    /// Ends a departure: true when the user is now offline (nobody came back meanwhile).
    pub fn settle(&self, user: u64, departure: u64) -> bool {
        let mut users = self.users();
        match users.get(&user) {
            Some(entry) if entry.sockets == 0 && entry.leaving == Some(departure) => {
                users.remove(&user);
                true
            }
            _ => false,
        }
    }
}

/// A user's socket came (for the first time, or back after the grace): `user/online`.
pub fn arrive(chat: &Chat, user: u64) {
    if chat.presence.connect(user) {
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
        if chat.presence.settle(user, departure) {
            chat.emit(
                "user/offline",
                json!({ "userID": user.to_string() }),
                Audience::Everyone,
            );
        }
    });
}
