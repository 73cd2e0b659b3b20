//! The chat core: every use case of the chat, once, below every door.
//!
//! `Chat` holds what the rules need: storage (`store::Storage`), the permission index, the
//! password hasher, the event bus (`events::Bus`), presence, configuration, and the ports
//! through which the core reaches the plugin host and the bot gateway without naming them
//! (`ports`). The doors (`api`, `ws`, `chatbox`, `plugins`) parse their protocol, call a use
//! case here with a caller and plain values, and render the answer. Each use case validates,
//! authorizes, runs the plugins' hooks, stores, waits until the write is durable, and emits.

pub mod caller;
pub mod channels;
pub mod cluster;
pub mod commands;
pub mod direct;
pub mod emotes;
pub mod health;
pub mod licenses;
pub mod lost_password;
pub mod messages;
pub mod plugins;
pub mod ports;
pub mod presence;
pub mod restart;
pub mod roles;
pub mod search;
pub mod sessions;
pub mod settings;
pub mod tells;
pub mod two_factor;
pub mod users;
pub mod views;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use serde_json::Value;

use crate::auth::{AuthError, PasswordHasher};
use crate::config::ServerConfig;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::{Audience, Bus, Event, LocalBus};
use crate::ids::now_ms;
use crate::perms::{Change, Granted, Permission, PermissionIndex, ReadAccess, Requester};
use crate::store::{Storage, StoreError, UserRecord};

pub use caller::Caller;
pub use ports::{Bots, Connections, Place, Plugins};
pub use presence::{Presence, PRESENCE_GRACE};
pub use restart::Restart;

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
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error("{0}")]
    Cluster(String),
}

/// The chat: its state and, in the submodules, its use cases.
#[derive(Debug)]
pub struct Chat {
    pub store: Box<dyn Storage>,
    perms: RwLock<PermissionIndex>,
    pub hasher: PasswordHasher,
    /// The message search index (None if it could not be opened: search answers FAILED).
    pub search: Option<crate::search::SearchIndex>,
    /// The newest message id the search index had committed when it was opened.
    pub search_committed_through: u64,
    /// Sends lost-password mail, when `--smtp-url` is set.
    pub mailer: Option<crate::mail::Mailer>,
    bus: Box<dyn Bus>,
    pub presence: Presence,
    pub config: ServerConfig,
    /// Lowercased `--admin` names.
    admin_names: HashSet<String>,
    /// The Admin role, when any `--admin` name is configured.
    pub admin_role: Option<u64>,
    /// The first-run setup token: set at startup when no user holds the Admin role and no
    /// `--admin` is configured; registering with it creates the administrator. Used once.
    pub setup_token: std::sync::Mutex<Option<String>>,
    /// The scheduled graceful stop, if any (`restart`).
    pub restart: tokio::sync::watch::Sender<Option<Restart>>,
    /// Flips to true when the server starts stopping; long-lived connections watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The plugin host, once attached.
    plugins: OnceLock<Arc<dyn Plugins>>,
    /// The bot gateway, once attached.
    bots: OnceLock<Arc<dyn Bots>>,
    /// The client gateways' connections, once attached.
    connections: OnceLock<Arc<dyn Connections>>,
    /// The other cluster nodes (`--bus`), once connected.
    cluster: OnceLock<Arc<cluster::Cluster>>,
}

/// The ID a client named (a decimal string), or NOT_FOUND naming what it should have named.
pub fn id(raw: &str, what: &str) -> ApiResult<u64> {
    crate::ids::parse_id(raw).ok_or_else(|| ApiError::not_found(what))
}

/// Grants the Admin role to a user by name, creating the role if needed. Returns the updated
/// user, or `None` if no user has that name. Used by startup and by `decentd make-admin`.
pub fn grant_admin(store: &dyn Storage, username: &str) -> Result<Option<UserRecord>, StoreError> {
    let Some(user) = store.user_by_name(username)? else {
        return Ok(None);
    };
    let role = store.ensure_admin_role()?;
    store.grant_role(user.id, role.id)
}

/// Builds the permission index from storage: every role, the order, every user's roles and
/// every channel's overrides.
pub fn load_permission_index(store: &dyn Storage) -> Result<PermissionIndex, StoreError> {
    let mut index = PermissionIndex::new(
        store.roles()?.into_iter().map(|r| (r.id, r.permissions)),
        store.role_order()?,
        store.users()?.into_iter().map(|u| (u.id, u.role_ids)),
    );
    for channel in store.channels()? {
        index.apply(Change::SetChannelOverrides {
            channel: channel.id,
            overrides: channel.overrides,
        });
    }
    Ok(index)
}

/// The read-access preset in force. A data directory's first start stores the flag's choice
/// (`members` by default); data from before the setting existed keeps what it did then
/// (`public`). Afterwards the stored setting rules, and a differing flag is only reported.
fn settle_read_access(
    store: &dyn Storage,
    wanted: Option<ReadAccess>,
) -> Result<ReadAccess, StoreError> {
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
fn finish_purges(store: &dyn Storage) -> Result<(), StoreError> {
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

impl Chat {
    /// Opens storage, loads the permission index and applies `--admin`.
    pub fn open(config: ServerConfig) -> Result<Self, StartupError> {
        let store = crate::store::open(&config.data, config.cache_bytes, config.min_free_space)?;
        Self::with_store(config, store)
    }

    /// `open` over a given storage.
    pub fn with_store(config: ServerConfig, store: Box<dyn Storage>) -> Result<Self, StartupError> {
        finish_purges(&*store)?;
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
                match grant_admin(&*store, name)? {
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
        let access = settle_read_access(&*store, config.read_access)?;
        store.flush()?;
        let mut index = load_permission_index(&*store)?;
        index.apply(Change::SetReadAccess(access));
        let hasher = PasswordHasher::new(config.scrypt, config.hash_concurrency)?;
        let mailer = match &config.smtp_url {
            Some(url) => Some(crate::mail::Mailer::new(url, &config.mail_from)?),
            None => None,
        };
        let (search, search_committed_through) = match crate::search::SearchIndex::open(
            &config.data.join("search"),
        ) {
            Ok((index, through)) => (Some(index), through),
            Err(e) => {
                tracing::error!(error = %e, "the search index could not be opened; search is off until `decentd reindex`");
                (None, 0)
            }
        };
        Ok(Self {
            store,
            search,
            search_committed_through,
            mailer,
            perms: RwLock::new(index),
            hasher,
            bus: Box::new(LocalBus::new(4096)),
            presence: Presence::default(),
            admin_names: config
                .admins
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            admin_role,
            setup_token: std::sync::Mutex::new(setup_token),
            restart: tokio::sync::watch::Sender::new(None),
            shutdown: tokio::sync::watch::Sender::new(false),
            plugins: OnceLock::new(),
            bots: OnceLock::new(),
            connections: OnceLock::new(),
            cluster: OnceLock::new(),
            config,
        })
    }

    /// Attaches the plugin host (once, at startup).
    pub fn attach_plugins(&self, plugins: Arc<dyn Plugins>) {
        let _ = self.plugins.set(plugins);
    }

    /// Attaches the bot gateway (once, at startup).
    pub fn attach_bots(&self, bots: Arc<dyn Bots>) {
        let _ = self.bots.set(bots);
    }

    /// Attaches the client gateways (once, at startup).
    pub fn attach_connections(&self, connections: Arc<dyn Connections>) {
        let _ = self.connections.set(connections);
    }

    /// These sessions ended (logout, a new password): the connections bound to them are
    /// unbound before this returns, so before the answer to the request that ended them.
    pub fn sessions_ended(&self, sessions: &[crate::store::SessionKey]) {
        if let Some(connections) = self.connections.get() {
            connections.end_sessions(sessions);
        }
    }

    /// Waits until the writes so far are durable, then brings what every connection may see
    /// up to date with the permission index. Use cases that changed the index (`change_perms`)
    /// call this instead of `store.durable()`, so their connections hear of it before the
    /// answer.
    pub async fn durable_with_perms(&self) -> Result<(), StoreError> {
        self.store.durable().await?;
        self.permissions_changed();
        Ok(())
    }

    /// The permission index changed (a durable local change, or one from another node).
    pub fn permissions_changed(&self) {
        if let Some(connections) = self.connections.get() {
            connections.permissions_changed();
        }
    }

    /// Every session of a user ended (the user was deleted, or reset their password).
    pub fn user_sessions_ended(&self, user: u64) {
        if let Some(connections) = self.connections.get() {
            connections.end_user(user);
        }
    }

    /// The plugin host, if attached.
    pub fn plugins(&self) -> Option<&Arc<dyn Plugins>> {
        self.plugins.get()
    }

    /// The bot gateway, if attached.
    pub fn bots(&self) -> Option<&Arc<dyn Bots>> {
        self.bots.get()
    }

    /// Read access to the permission index.
    pub fn perms(&self) -> RwLockReadGuard<'_, PermissionIndex> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters more than stopping every request, so recover the guard.
        self.perms.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the permission index together with the storage write it mirrors: `write` runs
    /// under the index's write lock and returns its result and the index changes to apply
    /// (none when it failed). Local use cases and, later, changes received from other nodes
    /// go through here or `apply_changes`.
    pub fn change_perms<T, E>(
        &self,
        write: impl FnOnce(&PermissionIndex) -> Result<(T, Vec<Change>), E>,
    ) -> Result<T, E> {
        let mut index = self.perms.write().unwrap_or_else(|e| e.into_inner());
        let (value, changes) = write(&index)?;
        if let Some(cluster) = self.cluster.get() {
            if !changes.is_empty() {
                // Numbered while the index is still locked, so this node's changes leave in
                // number order.
                match self.store.next_change_number() {
                    Ok(Some(number)) => cluster.changed(number, changes.clone()),
                    Ok(None) => {}
                    // The other nodes catch up at their next check against storage.
                    Err(e) => tracing::error!(error = %e, "could not number a permission change"),
                }
            }
        }
        for change in changes {
            index.apply(change);
        }
        Ok(value)
    }

    /// Applies index changes that storage already holds.
    pub fn apply_changes(&self, changes: impl IntoIterator<Item = Change>) {
        let mut index = self.perms.write().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            index.apply(change);
        }
    }

    /// Replaces the permission index with one loaded from storage (a cluster node that may
    /// have missed changes).
    pub fn reload_perms(&self) -> Result<(), StoreError> {
        let mut fresh = load_permission_index(&*self.store)?;
        let mut index = self.perms.write().unwrap_or_else(|e| e.into_inner());
        let access = self.store.read_access()?.unwrap_or(index.read_access());
        fresh.apply(Change::SetReadAccess(access));
        *index = fresh;
        Ok(())
    }

    /// Joins the cluster (once, at startup).
    pub fn attach_cluster(&self, cluster: Arc<cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster link, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<cluster::Cluster>> {
        self.cluster.get()
    }

    /// Announces an event, stamped with the permission changes it follows, here and (in
    /// cluster mode) on every other node.
    pub fn emit(&self, name: &'static str, data: Value, audience: Audience) {
        let seq = match self.cluster.get() {
            Some(cluster) => cluster.highest_applied(),
            None => self.perms().seq(),
        };
        crate::metrics::METRICS.events_emitted.inc();
        let event = Event::new(name, data, audience, seq);
        if let Some(cluster) = self.cluster.get() {
            cluster.emitted(&event);
        }
        self.bus.publish(event);
    }

    /// Delivers an event another cluster node emitted to this node's subscribers.
    pub fn deliver(&self, event: Event) {
        self.bus.publish(event);
    }

    /// Every event emitted from now on.
    pub fn subscribe(&self) -> crate::events::Subscription {
        self.bus.subscribe()
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

    /// NOT_ALLOWED unless every role `target` holds ranks below the requester's most
    /// prioritized role: nobody changes, deletes or logs out the account of someone ranked at
    /// or above them (the rule roles follow, `require_below`).
    pub fn require_outranks(&self, who: Requester, target: u64) -> ApiResult<()> {
        if who == Requester::User(target) {
            return Ok(());
        }
        let index = self.perms();
        let Some(theirs) = index.top_rank(target) else {
            return Ok(());
        };
        match top_rank(&index, who) {
            Some(mine) if mine < theirs => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::NotAllowed,
                "you can only manage users whose roles all rank below your own most prioritized role",
            )),
        }
    }

    /// Whether a user is a plugin's bot user.
    pub fn is_bot(&self, user: u64) -> bool {
        self.plugins().is_some_and(|p| p.is_bot(user))
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
        decentd_protocol::ChatUser::new(id, username, self.is_bot(id), admin)
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

/// The rank of the requester's most prioritized role (a guest has none).
fn top_rank(index: &PermissionIndex, who: Requester) -> Option<usize> {
    match who {
        Requester::User(id) => index.top_rank(id),
        Requester::Guest => None,
    }
}

/// NOT_ALLOWED unless the role ranks below the requester's most prioritized role: who manages a
/// role (edits, deletes, gives, takes or moves it) must rank above it.
pub(crate) fn require_below(index: &PermissionIndex, who: Requester, role: u64) -> ApiResult<()> {
    match (top_rank(index, who), index.rank(role)) {
        (Some(top), Some(rank)) if rank > top => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::NotAllowed,
            "you can only manage roles ranked below your own most prioritized role",
        )),
    }
}

/// NOT_ALLOWED when the role ranks above the requester's most prioritized role: channel
/// overrides may be set on one's own role and below, so an administrator can keep a channel to
/// the Admin role, but no moderator can lock out those ranked above him.
pub(crate) fn require_not_above(
    index: &PermissionIndex,
    who: Requester,
    role: u64,
) -> ApiResult<()> {
    match (top_rank(index, who), index.rank(role)) {
        (Some(top), Some(rank)) if rank >= top => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::NotAllowed,
            "you can only set channel overrides on your own most prioritized role and those below it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::ChannelOverrides;
    use crate::store::{ChannelRecord, Store};

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

    fn chat() -> (tempfile::TempDir, Chat) {
        let dir = tempfile::tempdir().unwrap();
        let args = crate::config::ServeArgs {
            data: Some(dir.path().join("data")),
            ..Default::default()
        };
        let config = args.resolve().unwrap();
        (dir, Chat::open(config).unwrap())
    }

    #[tokio::test]
    async fn events_carry_the_permission_changes_they_follow() {
        let (_dir, chat) = chat();
        let mut events = chat.subscribe();
        let before = chat.perms().seq();
        chat.emit("a", serde_json::json!({}), Audience::Everyone);
        // A refused write changes neither storage nor the index.
        let refused: Result<(), ApiError> = chat.change_perms(|_| Err(ApiError::not_found("x")));
        assert!(refused.is_err());
        assert_eq!(chat.perms().seq(), before);
        chat.change_perms(|_| {
            Ok::<_, ApiError>(((), vec![Change::SetReadAccess(ReadAccess::Spec)]))
        })
        .unwrap();
        // What a change received from another node would do.
        chat.apply_changes([Change::RemoveChannel(77)]);
        chat.emit("b", serde_json::json!({}), Audience::User(1));
        let first = events.recv().await.unwrap();
        let second = events.recv().await.unwrap();
        assert_eq!(first.perm_seq, before);
        assert_eq!(second.perm_seq, before + 2);
        assert_eq!(second.audience, Audience::User(1));
        assert_eq!(chat.perms().read_access(), ReadAccess::Spec);
    }
}
