//! Shared server state: storage, the permission index, the password hasher, the event bus,
//! presence and configuration. Built once at startup and handed to every handler.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::auth::{AuthError, PasswordHasher};
use crate::config::ServerConfig;
use crate::error::{ApiError, ApiResult};
use crate::events::EventBus;
use crate::ids::now_ms;
use crate::perms::{Granted, Permission, PermissionIndex, ReadAccess, Requester};
use crate::store::{Store, StoreError, UserRecord};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

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

/// Everything a handler needs.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    perms: RwLock<PermissionIndex>,
    pub hasher: PasswordHasher,
    pub bus: EventBus,
    /// Open WebSockets, fed by the dispatcher (`ws::hub`).
    pub hub: crate::ws::hub::Hub,
    pub presence: Presence,
    pub config: ServerConfig,
    /// Lowercased `--admin` names.
    admin_names: HashSet<String>,
    /// The Admin role, when any `--admin` name is configured.
    pub admin_role: Option<u64>,
    /// The first-run setup token: set at startup when no user holds the Admin role and no
    /// `--admin` is configured; registering with it creates the administrator. Used once.
    pub setup_token: std::sync::Mutex<Option<String>>,
    /// WASM plugins.
    pub plugins: crate::plugins::PluginHost,
    /// Chatbox bot connections, rate limits and the announced restart.
    pub chatbox: crate::chatbox::Gateway,
    /// Flips to true when the server starts stopping; long-lived connections watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// Grants the Admin role to a user by name, creating the role if needed. Returns the updated
/// user, or `None` if no user has that name. Used by startup and by `decentd make-admin`.
pub fn grant_admin(store: &Store, username: &str) -> Result<Option<UserRecord>, StoreError> {
    let Some(user) = store.user_by_name(username)? else {
        return Ok(None);
    };
    let role = store.ensure_admin_role()?;
    store.grant_role(user.id, role.id)
}

/// Builds the permission index from storage: every role, the order, every user's roles and
/// every channel's overrides.
pub fn load_permission_index(store: &Store) -> Result<PermissionIndex, StoreError> {
    let mut index = PermissionIndex::new(
        store.roles()?.into_iter().map(|r| (r.id, r.permissions)),
        store.role_order()?,
        store.users()?.into_iter().map(|u| (u.id, u.role_ids)),
    );
    for channel in store.channels()? {
        index.set_channel_overrides(channel.id, channel.overrides);
    }
    Ok(index)
}

/// The read-access preset in force. A data directory's first start stores the flag's choice
/// (`members` by default); data from before the setting existed keeps what it did then
/// (`public`). Afterwards the stored setting rules, and a differing flag is only reported.
fn settle_read_access(store: &Store, wanted: Option<ReadAccess>) -> Result<ReadAccess, StoreError> {
    if let Some(stored) = store.read_access()? {
        if let Some(flag) = wanted.filter(|w| *w != stored) {
            tracing::warn!(
                read_access = %stored,
                ignored = %flag,
                "--read-access only applies at a data directory's first start; change the readAccess setting with PATCH /api/settings"
            );
        }
        return Ok(stored);
    }
    let access = if store.is_unused() {
        wanted.unwrap_or_default()
    } else {
        ReadAccess::Public
    };
    store.set_read_access(access)?;
    tracing::info!(read_access = %access, "read access of the internal roles set");
    Ok(access)
}

/// Finishes removing the contents of channels whose deletion was interrupted.
fn finish_purges(store: &Store) -> Result<(), StoreError> {
    for user in store.pending_user_purges()? {
        store.purge_user(user)?;
        tracing::info!(
            user,
            "finished removing a deleted user's mentions and read state"
        );
    }
    for channel in store.pending_purges()? {
        let stats = store.purge_channel(channel)?;
        tracing::info!(
            channel,
            messages = stats.messages,
            "finished purging a deleted channel"
        );
    }
    Ok(())
}

impl AppState {
    /// Opens storage, loads the permission index and applies `--admin`.
    pub fn open(config: ServerConfig) -> Result<Self, StartupError> {
        let store = Store::open(&config.data, config.cache_bytes)?
            .with_min_free_space(config.min_free_space);
        finish_purges(&store)?;
        let repaired = store.repair_message_index(4096)?;
        if repaired > 0 {
            tracing::info!(
                repaired,
                "removed index entries of messages lost in a crash"
            );
        }
        let purged = store.purge_expired_sessions(now_ms())?;
        if purged > 0 {
            tracing::info!(purged, "removed expired sessions");
        }
        let mut admin_role = None;
        if !config.admins.is_empty() {
            admin_role = Some(store.ensure_admin_role()?.id);
            for name in &config.admins {
                match grant_admin(&store, name)? {
                    Some(user) => tracing::info!(user = %user.username, "admin role granted"),
                    None => tracing::info!(
                        user = %name,
                        "admin user does not exist yet; the role is granted when they register"
                    ),
                }
            }
        }
        let mut setup_token = None;
        if config.admins.is_empty() && !store.has_admin()? {
            setup_token = Some(hex::encode(crate::auth::random_bytes::<16>()));
        }
        let access = settle_read_access(&store, config.read_access)?;
        store.flush()?;
        let mut index = load_permission_index(&store)?;
        index.set_read_access(access);
        let hasher = PasswordHasher::new(config.scrypt, config.hash_concurrency)?;
        let plugins =
            crate::plugins::PluginHost::new(config.plugins.clone(), &store.plugin_records()?);
        Ok(Self {
            store,
            perms: RwLock::new(index),
            hasher,
            bus: EventBus::new(4096),
            hub: crate::ws::hub::Hub::new(config.workers),
            presence: Presence::default(),
            admin_names: config
                .admins
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            admin_role,
            setup_token: std::sync::Mutex::new(setup_token),
            plugins,
            chatbox: crate::chatbox::Gateway::default(),
            shutdown: tokio::sync::watch::Sender::new(false),
            config,
        })
    }

    /// Read access to the permission index.
    pub fn perms(&self) -> RwLockReadGuard<'_, PermissionIndex> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters more than stopping every request, so recover the guard.
        self.perms.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write access to the permission index; hold it across the storage write it mirrors.
    pub fn perms_mut(&self) -> RwLockWriteGuard<'_, PermissionIndex> {
        self.perms.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every permission of a requester, server-wide or in a channel.
    pub fn granted(&self, who: Requester, channel: Option<u64>) -> Granted {
        self.perms().resolve(who, channel)
    }

    /// Whether a channel exists and the requester may read it: what makes a channel, its
    /// messages and its events visible.
    pub fn can_read(&self, who: Requester, channel: u64) -> bool {
        let index = self.perms();
        index.has_channel(channel) && index.has(who, Some(channel), Permission::ReadMessages)
    }

    /// NOT_ALLOWED unless the requester holds the permission server-wide.
    pub fn require(&self, who: Requester, permission: Permission) -> ApiResult<()> {
        self.require_in(who, None, permission)
    }

    /// NOT_ALLOWED unless the requester holds the permission, server-wide or in a channel.
    pub fn require_in(
        &self,
        who: Requester,
        channel: Option<u64>,
        permission: Permission,
    ) -> ApiResult<()> {
        if self.perms().has(who, channel, permission) {
            Ok(())
        } else {
            Err(ApiError::missing_permission(permission))
        }
    }

    /// A user as plugins and chatbox bots see them.
    pub fn chat_user(&self, user: &UserRecord) -> decentd_protocol::ChatUser {
        self.chat_user_named(user.id, &user.username)
    }

    /// `chat_user` from a user's ID and username (as a message carries them).
    pub fn chat_user_named(&self, id: u64, username: &str) -> decentd_protocol::ChatUser {
        let admin = self
            .perms()
            .has(Requester::User(id), None, Permission::ManageServer);
        decentd_protocol::ChatUser::new(id, username, self.plugins.is_bot(id), admin)
    }

    /// The user a plugin or bot names: by the UUID of its user object, its ID, or its name.
    pub fn user_named(&self, who: &str) -> Result<Option<UserRecord>, StoreError> {
        match decentd_protocol::user_id_from_uuid(who) {
            Some(id) => self.store.user(id),
            None => self.store.user_by_id_or_name(who),
        }
    }

    /// Whether a username was named with `--admin`.
    pub fn is_admin_name(&self, username: &str) -> bool {
        self.admin_names.contains(&username.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::ChannelOverrides;
    use crate::store::ChannelRecord;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        (dir, store)
    }

    #[test]
    fn a_first_start_takes_the_flag_or_members() {
        let (_dir, store) = store();
        assert_eq!(
            settle_read_access(&store, None).unwrap(),
            ReadAccess::Members
        );
        let (_dir, store) = self::store();
        let chosen = settle_read_access(&store, Some(ReadAccess::Spec)).unwrap();
        assert_eq!(chosen, ReadAccess::Spec);
        assert_eq!(store.read_access().unwrap(), Some(ReadAccess::Spec));
    }

    #[test]
    fn data_from_before_the_setting_stays_public_and_the_stored_choice_rules() {
        let (_dir, store) = store();
        let channel = ChannelRecord {
            id: 10,
            name: "general".into(),
            overrides: ChannelOverrides::default(),
        };
        store.insert_channel(&channel).unwrap();
        // No preset stored, but a community exists: it keeps what it had (public).
        let kept = settle_read_access(&store, Some(ReadAccess::Spec)).unwrap();
        assert_eq!(kept, ReadAccess::Public);
        // Once stored, a differing flag changes nothing.
        let again = settle_read_access(&store, Some(ReadAccess::Members)).unwrap();
        assert_eq!(again, ReadAccess::Public);
    }
}
