//! Storage: every sled key space, and the only module that names sled.
//!
//! One tree per kind of record. Keys are big-endian ids (or lowercased names for the name
//! index) so range scans serve pagination; values go through `codec` (a version byte, then
//! postcard). Writes that touch several trees run in one sled transaction. Nothing here is
//! durable until `Store::durable` resolves: handlers call it before they answer.

mod accounts;
mod backup;
mod channels;
mod codec;
mod commit;
mod direct;
mod emotes;
mod export;
mod licenses;
mod plugins;
mod postgres;
mod space;
mod storage;
pub(crate) mod user_index;
mod users;

pub use accounts::{ResetTokenRecord, TwoFactorRecord};
pub use backup::{DumpOutput, TreeCount};
pub use channels::{Author, ChannelNameError, ChannelRecord, MessageRecord, PinChange, PurgeStats};
pub use direct::{conversation_key, Conversation, DirectMessageRecord, DmAllow, DmSettings};
pub use emotes::EmoteRecord;
pub use export::Entity;
pub use licenses::{KeyLookup, LicenseKeyHash, LicenseRecord};
pub use plugins::{PluginKv, PluginRecord};
pub use postgres::PgStore;
pub use storage::{KvSpace, Slot, Storage};
pub use user_index::UserIndex;
pub use users::SessionRecord;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::Tree;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ids::IdGenerator;
use crate::perms::{PermissionSet, ReadAccess};
use commit::GroupCommit;
use space::SpaceGuard;

/// Failures of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data directory {0} is in use by another decentd process; stop that process first"
    )]
    Locked(PathBuf),
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("could not encode a record: {0}")]
    Encode(postcard::Error),
    #[error("could not decode a stored record: {0}")]
    Decode(postcard::Error),
    #[error("a stored record has unknown format version {0}; was this data directory written by a newer decentd?")]
    UnknownFormat(u8),
    #[error("waiting for durable storage failed: {0}")]
    Durability(String),
    #[error("the server's disk is nearly full: writes are refused until space is freed")]
    DiskFull,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Database(String),
    /// A unique key the write needed is taken (a name, for instance).
    #[error("database error: {0}")]
    Duplicate(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    pub username: String,
    /// scrypt PHC string.
    pub password_hash: String,
    pub email: Option<String>,
    pub flair: Option<String>,
    /// Ordinary role ids; internal roles are implicit.
    pub role_ids: Vec<u64>,
    pub created_ms: u64,
}

/// An ordinary (non-internal) role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub id: u64,
    pub name: String,
    pub permissions: PermissionSet,
}

/// Server settings (`GET /api/settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub name: String,
    pub icon_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: "Unnamed Decent chat server".into(),
            icon_url: String::new(),
        }
    }
}

/// The SHA-256 of a session ID: the key of a session.
pub type SessionKey = [u8; 32];

/// Why a user could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("that username is already taken")]
    NameTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

const META_SETTINGS: &[u8] = b"settings";
const META_ROLE_ORDER: &[u8] = b"role_order";
const META_ADMIN_ROLE: &[u8] = b"admin_role";
/// The read-access preset of the internal roles, as its key (`spec`, `members`, `public`).
const META_READ_ACCESS: &[u8] = b"read_access";
/// `meta` keys marking a deleted user whose leftovers are still being removed.
const USER_PURGE_PREFIX: &[u8] = b"userpurge/";

fn user_purge_key(user: u64) -> Vec<u8> {
    let mut key = USER_PURGE_PREFIX.to_vec();
    key.extend_from_slice(&user.to_be_bytes());
    key
}

/// Name of the role `--admin` and `make-admin` grant.
pub const ADMIN_ROLE_NAME: &str = "Admin";

/// The embedded database.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    users: Tree,
    usernames: Tree,
    sessions: Tree,
    user_sessions: Tree,
    roles: Tree,
    meta: Tree,
    channels: Tree,
    messages: Tree,
    message_channels: Tree,
    mentions: Tree,
    pins: Tree,
    read_state: Tree,
    emotes: Tree,
    plugins: Tree,
    plugin_kv: Tree,
    licenses: Tree,
    license_keys: Tree,
    two_factor: Tree,
    reset_tokens: Tree,
    dm_messages: Tree,
    dm_index: Tree,
    dm_conversations: Tree,
    dm_read: Tree,
    dm_settings: Tree,
    /// Names and emails in memory, for substring and email lookups.
    user_index: user_index::UserIndex,
    /// Serializes channel creation and renames, which check name uniqueness.
    channel_names: std::sync::Mutex<()>,
    ids: IdGenerator,
    commit: GroupCommit,
    space: Arc<SpaceGuard>,
    /// Writes hold it shared; a backup holds it exclusively while it copies the trees.
    gate: parking_lot::RwLock<()>,
}

fn name_key(name: &str) -> Vec<u8> {
    name.to_ascii_lowercase().into_bytes()
}

fn user_session_key(user_id: u64, handle: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user_id.to_be_bytes());
    key[8..].copy_from_slice(&handle.to_be_bytes());
    key
}

fn id_from_key(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

fn abort<E>(e: E) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(e)
}

fn flatten<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

/// Reads, changes and writes back one record in a transaction, so concurrent changes to the
/// same record are never lost. A record that is absent and stays `None` is not written.
fn update_record<T: Serialize + serde::de::DeserializeOwned>(
    tree: &Tree,
    key: &[u8],
    change: impl Fn(&mut Option<T>),
) -> Result<Option<T>> {
    flatten(tree.transaction(|t| {
        let mut record: Option<T> = match t.get(key)? {
            Some(v) => Some(codec::decode(&v).map_err(abort)?),
            None => None,
        };
        change(&mut record);
        if let Some(r) = &record {
            t.insert(key, codec::encode(r).map_err(abort)?)?;
        }
        Ok(record)
    }))
}

/// Opens the embedded storage in `dir` (sled), refusing writes while less than
/// `min_free_space` bytes are free on its disk.
pub fn open(dir: &Path, cache_bytes: u64, min_free_space: u64) -> Result<Box<dyn Storage>> {
    Ok(Box::new(
        Store::open(dir, cache_bytes)?.with_min_free_space(min_free_space),
    ))
}

/// Connects to PostgreSQL storage at `url` (`--store postgres://...`), migrating its schema.
pub fn open_postgres(url: &str, pool_size: usize) -> Result<Box<dyn Storage>> {
    Ok(Box::new(PgStore::connect(url, pool_size)?))
}

impl Store {
    /// Opens (or creates) the database in `dir`, with a page cache of `cache_bytes`.
    ///
    /// A directory locked by another open waits up to two seconds before the open is refused:
    /// sled's background writers release the lock a moment after the last handle of a closed
    /// database is dropped, and a restarted service may start while the old process still exits.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            let opened = sled::Config::new()
                .path(dir.join("db"))
                .cache_capacity(cache_bytes)
                .open();
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked(dir.to_path_buf()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(other) => return Err(StoreError::Sled(other)),
            }
        };
        let tree = |name: &str| db.open_tree(name);
        let users = tree("users")?;
        let roles = tree("roles")?;
        let channels = tree("channels")?;
        let message_channels = tree("message_channels")?;
        let licenses = tree("licenses")?;
        let mut floor = 0;
        for t in [&users, &roles, &channels, &message_channels, &licenses] {
            if let Some((k, _)) = t.last()? {
                floor = floor.max(id_from_key(&k));
            }
        }
        let mut all = Vec::new();
        for value in users.iter().values() {
            all.push(codec::decode::<UserRecord>(&value?)?);
        }
        let user_index = user_index::UserIndex::build(
            all.iter()
                .map(|u| (u.id, u.username.as_str(), u.email.as_deref())),
        );
        drop(all);
        Ok(Self {
            two_factor: tree("two_factor")?,
            dm_messages: tree("dm_messages")?,
            dm_index: tree("dm_index")?,
            dm_conversations: tree("dm_conversations")?,
            dm_read: tree("dm_read")?,
            dm_settings: tree("dm_settings")?,
            reset_tokens: tree("reset_tokens")?,
            user_index,
            usernames: tree("usernames")?,
            sessions: tree("sessions")?,
            user_sessions: tree("user_sessions")?,
            meta: tree("meta")?,
            messages: tree("messages")?,
            mentions: tree("mentions")?,
            pins: tree("pins")?,
            read_state: tree("read_state")?,
            emotes: tree("emotes")?,
            plugins: tree("plugins")?,
            plugin_kv: tree("plugin_kv")?,
            license_keys: tree("license_keys")?,
            licenses,
            channel_names: std::sync::Mutex::new(()),
            users,
            roles,
            channels,
            message_channels,
            ids: IdGenerator::starting_after(floor),
            commit: GroupCommit::start(db.clone(), &dir.join("db").join("db"))?,
            space: Arc::new(SpaceGuard::new(dir.to_path_buf(), 0)),
            gate: parking_lot::RwLock::new(()),
            db,
        })
    }

    /// Refuses writes (`StoreError::DiskFull`) while the disk holding the data directory has
    /// less than `bytes` free (see `space`).
    pub fn with_min_free_space(mut self, bytes: u64) -> Self {
        self.space = Arc::new(self.space.with_reserve(bytes));
        self
    }

    /// Ok while writes may go ahead; `DiskFull` while the disk is nearly full. Every write
    /// method checks it before writing anything; callers that write files of their own
    /// (uploads) check it too.
    pub fn check_space(&self) -> Result<()> {
        if self.space.allows_writes() {
            Ok(())
        } else {
            Err(StoreError::DiskFull)
        }
    }

    /// Checks the free space and enters the write gate: every write holds the returned guard
    /// while it changes the trees, so that a backup (which closes the gate) sees no write half
    /// done. Recursive: a write that calls another write does not wait on a closing gate.
    pub fn ensure_space(&self) -> Result<parking_lot::RwLockReadGuard<'_, ()>> {
        self.check_space()?;
        Ok(self.gate.read_recursive())
    }

    /// A fresh time-ordered id.
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// Resolves once every write made before the call is on disk (group commit).
    pub async fn durable(&self) -> Result<()> {
        self.commit.wait().await.map_err(StoreError::Durability)
    }

    /// The number of keys in each key space, by name. For diagnostics and storage tests.
    pub fn key_counts(&self) -> Vec<(&'static str, usize)> {
        [
            ("users", &self.users),
            ("usernames", &self.usernames),
            ("sessions", &self.sessions),
            ("user_sessions", &self.user_sessions),
            ("roles", &self.roles),
            ("meta", &self.meta),
            ("channels", &self.channels),
            ("messages", &self.messages),
            ("message_channels", &self.message_channels),
            ("mentions", &self.mentions),
            ("pins", &self.pins),
            ("read_state", &self.read_state),
            ("emotes", &self.emotes),
            ("plugins", &self.plugins),
            ("plugin_kv", &self.plugin_kv),
            ("licenses", &self.licenses),
            ("license_keys", &self.license_keys),
            ("two_factor", &self.two_factor),
            ("reset_tokens", &self.reset_tokens),
            ("dm_messages", &self.dm_messages),
            ("dm_index", &self.dm_index),
            ("dm_conversations", &self.dm_conversations),
            ("dm_read", &self.dm_read),
            ("dm_settings", &self.dm_settings),
        ]
        .into_iter()
        .map(|(name, tree)| (name, tree.len()))
        .collect()
    }

    /// Flushes everything to disk, blocking. For shutdown and offline commands.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    // ---- settings ----

    pub fn settings(&self) -> Result<Settings> {
        match self.meta.get(META_SETTINGS)? {
            Some(v) => codec::decode(&v),
            None => Ok(Settings::default()),
        }
    }

    /// Changes the settings, and the read-access preset if `access` is given, in one
    /// transaction; returns the new settings.
    pub fn update_settings(
        &self,
        change: impl Fn(&mut Settings),
        access: Option<ReadAccess>,
    ) -> Result<Settings> {
        let _gate = self.ensure_space()?;
        flatten(self.meta.transaction(|meta| {
            let mut settings: Settings = match meta.get(META_SETTINGS)? {
                Some(v) => codec::decode(&v).map_err(abort)?,
                None => Settings::default(),
            };
            change(&mut settings);
            meta.insert(META_SETTINGS, codec::encode(&settings).map_err(abort)?)?;
            if let Some(access) = access {
                meta.insert(META_READ_ACCESS, access.key().as_bytes())?;
            }
            Ok(settings)
        }))
    }

    /// The stored read-access preset; `None` for data from before the setting existed (and
    /// for a data directory that has never started).
    pub fn read_access(&self) -> Result<Option<ReadAccess>> {
        Ok(self
            .meta
            .get(META_READ_ACCESS)?
            .and_then(|v| std::str::from_utf8(&v).ok().and_then(ReadAccess::parse)))
    }

    pub fn set_read_access(&self, access: ReadAccess) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.meta
            .insert(META_READ_ACCESS, access.key().as_bytes())?;
        Ok(())
    }

    /// Whether the database holds no user and no channel yet: a community that has not
    /// started, whose first-start settings may still be chosen.
    pub fn is_unused(&self) -> bool {
        self.users.is_empty() && self.channels.is_empty()
    }

    // ---- roles ----

    /// Every ordinary role.
    pub fn roles(&self) -> Result<Vec<RoleRecord>> {
        self.roles
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Ordinary role ids, most prioritized first.
    pub fn role_order(&self) -> Result<Vec<u64>> {
        match self.meta.get(META_ROLE_ORDER)? {
            Some(v) => codec::decode(&v),
            None => Ok(Vec::new()),
        }
    }

    /// Whether any user holds the Admin role.
    pub fn has_admin(&self) -> Result<bool> {
        let Some(id) = self.meta.get(META_ADMIN_ROLE)? else {
            return Ok(false);
        };
        let Ok(bytes) = <[u8; 8]>::try_from(id.as_ref()) else {
            return Ok(false);
        };
        let role = u64::from_be_bytes(bytes);
        Ok(self.users()?.iter().any(|u| u.role_ids.contains(&role)))
    }

    /// The Admin role (every permission), created at the top of the role order if missing.
    pub fn ensure_admin_role(&self) -> Result<RoleRecord> {
        if let Some(id) = self.meta.get(META_ADMIN_ROLE)? {
            if let Some(role) = self.roles.get(&id)? {
                return codec::decode(&role);
            }
        }
        let role = RoleRecord {
            id: self.next_id(),
            name: ADMIN_ROLE_NAME.into(),
            permissions: PermissionSet::ALL_GRANTED,
        };
        let mut order = self.role_order()?;
        order.retain(|id| *id != role.id);
        order.insert(0, role.id);
        let role_value = codec::encode(&role)?;
        let order_value = codec::encode(&order)?;
        let id = role.id.to_be_bytes();
        flatten((&self.roles, &self.meta).transaction(|(roles, meta)| {
            roles.insert(&id, role_value.as_slice())?;
            meta.insert(META_ROLE_ORDER, order_value.as_slice())?;
            meta.insert(META_ADMIN_ROLE, &id)?;
            Ok(())
        }))?;
        Ok(role)
    }

    pub fn role(&self, id: u64) -> Result<Option<RoleRecord>> {
        self.roles
            .get(id.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Stores a new role and the new role order together.
    pub fn insert_role(&self, role: &RoleRecord, order: &[u64]) -> Result<()> {
        let _gate = self.ensure_space()?;
        let role_value = codec::encode(role)?;
        let order_value = codec::encode(&order)?;
        let id = role.id.to_be_bytes();
        flatten((&self.roles, &self.meta).transaction(|(roles, meta)| {
            roles.insert(&id, role_value.as_slice())?;
            meta.insert(META_ROLE_ORDER, order_value.as_slice())?;
            Ok(())
        }))
    }

    /// Replaces a stored role.
    pub fn put_role(&self, role: &RoleRecord) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.roles
            .insert(role.id.to_be_bytes(), codec::encode(role)?)?;
        Ok(())
    }

    pub fn set_role_order(&self, order: &[u64]) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.meta.insert(META_ROLE_ORDER, codec::encode(&order)?)?;
        Ok(())
    }

    /// Deletes a role: from the roles, the order, every user holding it and every channel
    /// overriding it, in one transaction. Returns the users that held it (updated).
    pub fn delete_role(&self, id: u64) -> Result<Vec<UserRecord>> {
        let _gate = self.ensure_space()?;
        let mut order = self.role_order()?;
        order.retain(|r| *r != id);
        let order_value = codec::encode(&order)?;
        let holder_ids: Vec<u64> = self
            .users()?
            .into_iter()
            .filter(|u| u.role_ids.contains(&id))
            .map(|u| u.id)
            .collect();
        let channel_ids: Vec<u64> = self
            .channels()?
            .into_iter()
            .filter(|c| c.overrides.roles.contains_key(&id))
            .map(|c| c.id)
            .collect();
        let key = id.to_be_bytes();
        // Holders and channels are re-read inside the transaction so concurrent changes to
        // them are kept.
        let holders = flatten(
            (&self.roles, &self.meta, &self.users, &self.channels).transaction(
                |(roles, meta, users, channels)| {
                    roles.remove(&key)?;
                    meta.insert(META_ROLE_ORDER, order_value.as_slice())?;
                    let mut holders = Vec::new();
                    for user_id in &holder_ids {
                        let Some(value) = users.get(user_id.to_be_bytes())? else {
                            continue;
                        };
                        let mut user: UserRecord = codec::decode(&value).map_err(abort)?;
                        user.role_ids.retain(|r| *r != id);
                        users
                            .insert(&user_id.to_be_bytes(), codec::encode(&user).map_err(abort)?)?;
                        holders.push(user);
                    }
                    for channel_id in &channel_ids {
                        let Some(value) = channels.get(channel_id.to_be_bytes())? else {
                            continue;
                        };
                        let mut channel: ChannelRecord = codec::decode(&value).map_err(abort)?;
                        channel.overrides.roles.remove(&id);
                        channels.insert(
                            &channel_id.to_be_bytes(),
                            codec::encode(&channel).map_err(abort)?,
                        )?;
                    }
                    Ok(holders)
                },
            ),
        )?;
        Ok(holders)
    }

    /// Adds a role to a user's role set. Returns the updated user, or `None` if the user does
    /// not exist. Adding a role the user already holds changes nothing.
    pub fn grant_role(&self, user_id: u64, role_id: u64) -> Result<Option<UserRecord>> {
        let _gate = self.ensure_space()?;
        self.update_user(user_id, |user| {
            if !user.role_ids.contains(&role_id) {
                user.role_ids.push(role_id);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::users::decode_session;
    use super::*;

    fn user(id: u64, name: &str) -> UserRecord {
        UserRecord {
            id,
            username: name.into(),
            password_hash: "x".into(),
            email: None,
            flair: None,
            role_ids: vec![],
            created_ms: 0,
        }
    }

    #[test]
    fn names_are_unique_ignoring_case_and_freed_on_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        store.insert_user(&user(1, "Alice")).unwrap();
        assert!(matches!(
            store.insert_user(&user(2, "alice")),
            Err(InsertUserError::NameTaken)
        ));
        assert!(store.user(2).unwrap().is_none());
        assert_eq!(store.user_by_name("ALICE").unwrap().unwrap().id, 1);
        store.delete_user(1).unwrap();
        store.insert_user(&user(2, "alice")).unwrap();
    }

    #[test]
    fn deleting_a_user_deletes_their_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        store.insert_user(&user(1, "a")).unwrap();
        let session = SessionRecord {
            handle: 5,
            user_id: 1,
            created_ms: 0,
            expires_ms: u64::MAX,
            device: Some("test".into()),
            device_id: None,
            last_used_ms: 0,
            lifetime_ms: 1,
            sliding: false,
        };
        store.insert_session(&[7; 32], &session).unwrap();
        assert_eq!(store.sessions_of(1).unwrap().len(), 1);
        store.delete_user(1).unwrap();
        assert!(store.session(&[7; 32]).unwrap().is_none());
        assert!(store.sessions_of(1).unwrap().is_empty());
    }

    #[test]
    fn sessions_stored_before_devices_still_decode() {
        #[derive(Serialize)]
        struct Old {
            handle: u64,
            user_id: u64,
            created_ms: u64,
            expires_ms: u64,
        }
        let old = codec::encode(&Old {
            handle: 5,
            user_id: 1,
            created_ms: 2,
            expires_ms: 3,
        })
        .unwrap();
        let session = decode_session(&old).unwrap();
        assert_eq!(
            (session.handle, session.expires_ms, session.device),
            (5, 3, None)
        );
        // Written with a device, before device identities and lifetimes.
        #[derive(Serialize)]
        struct V2 {
            handle: u64,
            user_id: u64,
            created_ms: u64,
            expires_ms: u64,
            device: Option<String>,
        }
        let v2 = codec::encode(&V2 {
            handle: 6,
            user_id: 1,
            created_ms: 1_000,
            expires_ms: 5_000,
            device: Some("Firefox".into()),
        })
        .unwrap();
        let session = decode_session(&v2).unwrap();
        assert_eq!(session.device.as_deref(), Some("Firefox"));
        assert_eq!(
            (session.last_used_ms, session.lifetime_ms, session.sliding),
            (1_000, 4_000, false),
            "an old session was last used when created and keeps its fixed expiry"
        );
        let new = SessionRecord {
            device_id: Some("ab".into()),
            sliding: true,
            ..session
        };
        assert_eq!(decode_session(&codec::encode(&new).unwrap()).unwrap(), new);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path(), 1 << 20).unwrap();
        assert!(matches!(
            Store::open(dir.path(), 1 << 20),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn a_deleted_users_licenses_go_at_once_and_leftovers_survive_no_crash() {
        let dir = tempfile::tempdir().unwrap();
        let license = LicenseRecord {
            id: 9,
            owner: 1,
            capabilities: 1,
            label: String::new(),
            created_ms: 0,
            disabled: false,
            from_chat: false,
        };
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            store.insert_user(&user(1, "gone")).unwrap();
            store.insert_license(&[3; 32], &license).unwrap();
            store.channels.insert(20u64.to_be_bytes(), &[]).unwrap();
            store.mark_read(20, 1, 5).unwrap();
            let mut mention = 1u64.to_be_bytes().to_vec();
            mention.extend_from_slice(&77u64.to_be_bytes());
            store.mentions.insert(mention, &[]).unwrap();
            // A crash right after the transaction: the leftovers are still there.
            store.delete_user_record(1).unwrap();
            store.flush().unwrap();
            assert!(
                store.license(9).unwrap().is_none(),
                "the license went with the user"
            );
            assert_eq!(store.license_by_key(&[3; 32]).unwrap(), KeyLookup::Revoked);
        }
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.pending_user_purges().unwrap(), vec![1]);
        assert_eq!(store.mentions.len(), 1);
        for user in store.pending_user_purges().unwrap() {
            store.purge_user(user).unwrap();
        }
        assert!(store.pending_user_purges().unwrap().is_empty());
        assert_eq!(store.mentions.len(), 0);
        assert_eq!(store.read_state.len(), 0);
    }
}
