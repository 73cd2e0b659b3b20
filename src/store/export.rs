//! The store as typed records and back: the vocabulary of `decentd export` / `import`
//! (JSON Lines, see `crate::export`), independent of sled's key layout and of the value codec.
//!
//! Every key space is either exported, one `Entity` per record, or derived from exported
//! records on import:
//!
//! | key space | exported as | derived on import from |
//! | --- | --- | --- |
//! | `meta` | `server`, `user_purge`, `channel_purge` (the format is the importer's) | |
//! | `users`, `roles`, `channels`, `messages`, `emotes`, `licenses` | the record | |
//! | `usernames` | | `user` |
//! | `sessions` | `session` (key: the SHA-256 of the session ID, hex) | |
//! | `user_sessions` | | `session` |
//! | `message_channels`, `mentions`, `pins` | | `message` (mentions of existing users) |
//! | `read_state` | `read` | |
//! | `license_keys` | `license_key` (revoked licenses keep theirs) | |
//! | `two_factor`, `reset_tokens` | `two_factor`, `reset_token` | |
//! | `plugins`, `plugin_kv` | `plugin`, `plugin_kv` (key and value base64) | |
//! | `dm_messages` | `direct_message` | |
//! | `dm_index` | | `direct_message` |
//! | `dm_conversations`, `dm_read`, `dm_settings` | `conversation`, `direct_read`, `dm_settings` | |
//!
//! An export holds the write gate, so it is one point in time. A key space this code does not
//! know makes the export fail rather than leave it out.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::accounts::{ResetTokenRecord, TwoFactorRecord};
use super::channels::{pair_key, ChannelRecord, MessageRecord};
use super::direct::{conversation_key, DirectMessageRecord, DmSettings};
use super::emotes::EmoteRecord;
use super::licenses::LicenseRecord;
use super::plugins::PluginRecord;
use super::users::SessionRecord;
use super::*;

/// One exported record. Serialized with its `kind` beside its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entity {
    /// Server-wide state: settings, the read-access preset, role order, the Admin role.
    Server {
        /// None: never changed (the defaults apply).
        settings: Option<Settings>,
        read_access: Option<String>,
        role_order: Option<Vec<u64>>,
        admin_role: Option<u64>,
    },
    Role(RoleRecord),
    User(UserRecord),
    /// A deleted user whose leftovers are still to be removed.
    UserPurge {
        user: u64,
    },
    Session {
        key: String,
        session: SessionRecord,
    },
    TwoFactor {
        user: u64,
        record: TwoFactorRecord,
    },
    ResetToken {
        key: String,
        token: ResetTokenRecord,
    },
    Channel(ChannelRecord),
    /// A deleted channel whose messages are still to be removed.
    ChannelPurge {
        channel: u64,
    },
    Message(MessageRecord),
    /// How far a user has read a channel.
    Read {
        channel: u64,
        user: u64,
        up_to: u64,
    },
    Emote(EmoteRecord),
    License(LicenseRecord),
    /// The SHA-256 of a license key (hex) and the license it names.
    LicenseKey {
        key: String,
        license: u64,
    },
    Plugin {
        name: String,
        record: PluginRecord,
    },
    PluginKv {
        plugin: String,
        key: String,
        value: String,
    },
    DirectMessage(DirectMessageRecord),
    /// A user's side of a conversation: its newest message.
    Conversation {
        user: u64,
        other: u64,
        last_message: u64,
    },
    /// How far a user has read a conversation.
    DirectRead {
        user: u64,
        other: u64,
        up_to: u64,
    },
    DmSettings {
        user: u64,
        settings: DmSettings,
    },
}

impl Entity {
    /// The `kind` it is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Entity::Server { .. } => "server",
            Entity::Role(_) => "role",
            Entity::User(_) => "user",
            Entity::UserPurge { .. } => "user_purge",
            Entity::Session { .. } => "session",
            Entity::TwoFactor { .. } => "two_factor",
            Entity::ResetToken { .. } => "reset_token",
            Entity::Channel(_) => "channel",
            Entity::ChannelPurge { .. } => "channel_purge",
            Entity::Message(_) => "message",
            Entity::Read { .. } => "read",
            Entity::Emote(_) => "emote",
            Entity::License(_) => "license",
            Entity::LicenseKey { .. } => "license_key",
            Entity::Plugin { .. } => "plugin",
            Entity::PluginKv { .. } => "plugin_kv",
            Entity::DirectMessage(_) => "direct_message",
            Entity::Conversation { .. } => "conversation",
            Entity::DirectRead { .. } => "direct_read",
            Entity::DmSettings { .. } => "dm_settings",
        }
    }
}

/// The key spaces `export` reads and `import` writes (sled's own default tree holds nothing).
const KNOWN: &[&str] = &[
    "__sled__default",
    "meta",
    "users",
    "usernames",
    "sessions",
    "user_sessions",
    "roles",
    "two_factor",
    "reset_tokens",
    "channels",
    "messages",
    "message_channels",
    "mentions",
    "pins",
    "read_state",
    "emotes",
    "licenses",
    "license_keys",
    "plugins",
    "plugin_kv",
    "dm_messages",
    "dm_index",
    "dm_conversations",
    "dm_read",
    "dm_settings",
];

const USER_PURGE: &[u8] = b"userpurge/";
const CHANNEL_PURGE: &[u8] = b"purge/";

pub(super) fn invalid(what: String) -> StoreError {
    StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

pub(super) fn key32(hex_key: &str) -> Result<[u8; 32]> {
    hex::decode(hex_key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| invalid(format!("{hex_key:?} is not 64 hex digits")))
}

fn pair(key: &[u8]) -> (u64, u64) {
    (id_from_key(key), id_from_key(key.get(8..).unwrap_or(&[])))
}

pub(super) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn unbase64(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| invalid(format!("{text:.20}...: not base64 ({e})")))
}

impl Store {
    /// Every record, as entities in an order `import` can take them in (what a record's
    /// derived entries need comes before it), at one point in time.
    pub fn export(&self, emit: &mut dyn FnMut(Entity) -> std::io::Result<()>) -> Result<()> {
        let _closed = self.gate.write();
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if !KNOWN.contains(&name.as_str()) {
                return Err(invalid(format!(
                    "the key space {name:?} is unknown to this decentd: it cannot export it"
                )));
            }
        }
        let admin_role = self.meta.get(META_ADMIN_ROLE)?.map(|v| id_from_key(&v));
        emit(Entity::Server {
            settings: match self.meta.get(META_SETTINGS)? {
                Some(v) => Some(codec::decode(&v)?),
                None => None,
            },
            read_access: self
                .meta
                .get(META_READ_ACCESS)?
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            role_order: match self.meta.get(META_ROLE_ORDER)? {
                Some(v) => Some(codec::decode(&v)?),
                None => None,
            },
            admin_role,
        })?;
        for value in self.roles.iter().values() {
            emit(Entity::Role(codec::decode(&value?)?))?;
        }
        for value in self.users.iter().values() {
            emit(Entity::User(codec::decode(&value?)?))?;
        }
        for key in self.meta.scan_prefix(USER_PURGE).keys() {
            let user = id_from_key(&key?[USER_PURGE.len()..]);
            emit(Entity::UserPurge { user })?;
        }
        for kv in self.sessions.iter() {
            let (key, value) = kv?;
            emit(Entity::Session {
                key: hex::encode(&key),
                session: users::decode_session(&value)?,
            })?;
        }
        for kv in self.two_factor.iter() {
            let (key, value) = kv?;
            emit(Entity::TwoFactor {
                user: id_from_key(&key),
                record: codec::decode(&value)?,
            })?;
        }
        for kv in self.reset_tokens.iter() {
            let (key, value) = kv?;
            emit(Entity::ResetToken {
                key: hex::encode(&key),
                token: codec::decode(&value)?,
            })?;
        }
        for value in self.channels.iter().values() {
            emit(Entity::Channel(codec::decode(&value?)?))?;
        }
        for key in self.meta.scan_prefix(CHANNEL_PURGE).keys() {
            let channel = id_from_key(&key?[CHANNEL_PURGE.len()..]);
            emit(Entity::ChannelPurge { channel })?;
        }
        for value in self.messages.iter().values() {
            emit(Entity::Message(codec::decode(&value?)?))?;
        }
        for kv in self.read_state.iter() {
            let (key, value) = kv?;
            let (channel, user) = pair(&key);
            emit(Entity::Read {
                channel,
                user,
                up_to: id_from_key(&value),
            })?;
        }
        for value in self.emotes.iter().values() {
            emit(Entity::Emote(codec::decode(&value?)?))?;
        }
        for value in self.licenses.iter().values() {
            emit(Entity::License(codec::decode(&value?)?))?;
        }
        for kv in self.license_keys.iter() {
            let (key, value) = kv?;
            emit(Entity::LicenseKey {
                key: hex::encode(&key),
                license: id_from_key(&value),
            })?;
        }
        for kv in self.plugins.iter() {
            let (key, value) = kv?;
            emit(Entity::Plugin {
                name: String::from_utf8_lossy(&key).into_owned(),
                record: codec::decode(&value)?,
            })?;
        }
        for kv in self.plugin_kv.iter() {
            let (key, value) = kv?;
            // `plugin name ‖ 0 ‖ key` (names hold no 0 byte).
            let split = key.iter().position(|b| *b == 0).unwrap_or(key.len());
            emit(Entity::PluginKv {
                plugin: String::from_utf8_lossy(&key[..split]).into_owned(),
                key: base64(key.get(split + 1..).unwrap_or(&[])),
                value: base64(&value),
            })?;
        }
        for value in self.dm_messages.iter().values() {
            emit(Entity::DirectMessage(codec::decode(&value?)?))?;
        }
        for kv in self.dm_conversations.iter() {
            let (key, value) = kv?;
            let (user, other) = pair(&key);
            emit(Entity::Conversation {
                user,
                other,
                last_message: id_from_key(&value),
            })?;
        }
        for kv in self.dm_read.iter() {
            let (key, value) = kv?;
            let (user, other) = pair(&key);
            emit(Entity::DirectRead {
                user,
                other,
                up_to: id_from_key(&value),
            })?;
        }
        for kv in self.dm_settings.iter() {
            let (key, value) = kv?;
            emit(Entity::DmSettings {
                user: id_from_key(&key),
                settings: codec::decode(&value)?,
            })?;
        }
        Ok(())
    }

    /// Writes one exported record into this store (new, and filled only by `import`), with
    /// the index entries derived from it. `flush` when every record is in.
    pub fn import(&self, entity: &Entity) -> Result<()> {
        match entity {
            Entity::Server {
                settings,
                read_access,
                role_order,
                admin_role,
            } => {
                if let Some(settings) = settings {
                    self.meta.insert(META_SETTINGS, codec::encode(settings)?)?;
                }
                if let Some(access) = read_access {
                    self.meta.insert(META_READ_ACCESS, access.as_bytes())?;
                }
                if let Some(order) = role_order {
                    self.meta.insert(META_ROLE_ORDER, codec::encode(order)?)?;
                }
                if let Some(id) = admin_role {
                    self.meta.insert(META_ADMIN_ROLE, &id.to_be_bytes())?;
                }
            }
            Entity::Role(role) => {
                self.roles
                    .insert(role.id.to_be_bytes(), codec::encode(role)?)?;
            }
            Entity::User(user) => {
                let name = name_key(&user.username);
                if self.usernames.get(&name)?.is_some() {
                    return Err(invalid(format!(
                        "the username {:?} appears twice",
                        user.username
                    )));
                }
                self.usernames.insert(name, &user.id.to_be_bytes())?;
                self.users
                    .insert(user.id.to_be_bytes(), codec::encode(user)?)?;
                self.user_index
                    .insert(user.id, &user.username, user.email.as_deref());
            }
            Entity::UserPurge { user } => {
                self.meta.insert(user_purge_key(*user), &[])?;
            }
            Entity::Session { key, session } => {
                let key = key32(key)?;
                self.sessions.insert(key, codec::encode(session)?)?;
                self.user_sessions.insert(
                    user_session_key(session.user_id, session.handle),
                    key.as_slice(),
                )?;
            }
            Entity::TwoFactor { user, record } => {
                self.two_factor
                    .insert(user.to_be_bytes(), codec::encode(record)?)?;
            }
            Entity::ResetToken { key, token } => {
                self.reset_tokens
                    .insert(key32(key)?, codec::encode(token)?)?;
            }
            Entity::Channel(channel) => {
                self.channels
                    .insert(channel.id.to_be_bytes(), codec::encode(channel)?)?;
            }
            Entity::ChannelPurge { channel } => {
                let mut key = CHANNEL_PURGE.to_vec();
                key.extend_from_slice(&channel.to_be_bytes());
                self.meta.insert(key, &[])?;
            }
            Entity::Message(message) => {
                let key = pair_key(message.channel_id, message.id);
                let channel = message.channel_id.to_be_bytes();
                self.messages.insert(key, codec::encode(message)?)?;
                self.message_channels
                    .insert(message.id.to_be_bytes(), &channel)?;
                for user in &message.mentions {
                    // A deleted user's mentions went with them.
                    if self.users.contains_key(user.to_be_bytes())? {
                        self.mentions
                            .insert(pair_key(*user, message.id), &channel)?;
                    }
                }
                if message.pinned {
                    self.pins.insert(key, &[])?;
                }
            }
            Entity::Read {
                channel,
                user,
                up_to,
            } => {
                self.read_state
                    .insert(pair_key(*channel, *user), &up_to.to_be_bytes())?;
            }
            Entity::Emote(emote) => {
                self.emotes
                    .insert(emote.shortcode.as_bytes(), codec::encode(emote)?)?;
            }
            Entity::License(license) => {
                self.licenses
                    .insert(license.id.to_be_bytes(), codec::encode(license)?)?;
            }
            Entity::LicenseKey { key, license } => {
                self.license_keys
                    .insert(key32(key)?, &license.to_be_bytes())?;
            }
            Entity::Plugin { name, record } => {
                self.plugins
                    .insert(name.as_bytes(), codec::encode(record)?)?;
            }
            Entity::PluginKv { plugin, key, value } => {
                if plugin.as_bytes().contains(&0) {
                    return Err(invalid(format!("plugin name {plugin:?} holds a 0 byte")));
                }
                let mut full = plugin.as_bytes().to_vec();
                full.push(0);
                full.extend_from_slice(&unbase64(key)?);
                self.plugin_kv.insert(full, unbase64(value)?)?;
            }
            Entity::DirectMessage(message) => {
                let conversation = conversation_key(message.from, message.to);
                let mut key = conversation.to_vec();
                key.extend_from_slice(&message.id.to_be_bytes());
                self.dm_messages.insert(key, codec::encode(message)?)?;
                self.dm_index
                    .insert(message.id.to_be_bytes(), &conversation)?;
            }
            Entity::Conversation {
                user,
                other,
                last_message,
            } => {
                self.dm_conversations
                    .insert(pair_key(*user, *other), &last_message.to_be_bytes())?;
            }
            Entity::DirectRead { user, other, up_to } => {
                self.dm_read
                    .insert(pair_key(*user, *other), &up_to.to_be_bytes())?;
            }
            Entity::DmSettings { user, settings } => {
                self.dm_settings
                    .insert(user.to_be_bytes(), codec::encode(settings)?)?;
            }
        }
        Ok(())
    }
}
