//! The storage interface: what the chat core asks of storage, in domain terms. `Store` (sled)
//! is its one implementation today; a second backend implements the same trait. Every method
//! that changes data is atomic; `durable` resolves once everything written before it is on disk.

use futures_util::future::BoxFuture;
use std::sync::Arc;

use super::*;
use crate::perms::{ChannelOverrides, ReadAccess};

/// One plugin's private key-value space.
pub trait KvSpace: Send + Sync + std::fmt::Debug {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// Keys stored, for the per-plugin quota.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A chatbox message's place under a shared rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send it now.
    Now,
    /// Send it at this time (Unix milliseconds).
    At(u64),
    /// Too many are waiting.
    Full,
}

/// Everything the core stores and reads.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Ok while writes may go ahead; `DiskFull` while the disk is nearly full. Every write
    /// method checks it before writing anything; callers that write files of their own
    /// (uploads) check it too.
    fn ensure_space(&self) -> Result<()>;
    /// A fresh time-ordered id.
    fn next_id(&self) -> u64;
    /// Resolves once every write made before the call is on disk (group commit).
    fn durable(&self) -> BoxFuture<'_, Result<()>>;
    /// Whether a write would succeed now: the free-space guard allows writes and a durable
    /// flush succeeds (readiness).
    fn writable(&self) -> BoxFuture<'_, Result<()>>;
    /// The storage's size on disk in bytes.
    fn size_on_disk(&self) -> Result<u64>;
    /// Writes every record at one point in time (writes wait meanwhile), each key space to
    /// the output `open` gives for its name; the key spaces and their record counts (see
    /// `store::backup`).
    fn dump(
        &self,
        open: &(dyn Fn(&str) -> std::io::Result<super::DumpOutput> + Sync),
    ) -> Result<Vec<super::TreeCount>>;
    /// The data directory's format version (None: never recorded).
    fn data_format(&self) -> Result<Option<u32>>;
    /// Records the data directory's format version, durably.
    fn set_data_format(&self, format: u32) -> Result<()>;
    /// Whether the store holds nothing yet.
    fn is_empty(&self) -> bool;
    /// Loads one key space of a dump into this (new) store; the records loaded. Call `flush`
    /// when every key space is in.
    fn load_tree(&self, name: &str, input: &mut dyn std::io::Read) -> Result<u64>;
    /// Every record as typed entities, at one point in time (see `store::export`).
    fn export(&self, emit: &mut dyn FnMut(super::Entity) -> std::io::Result<()>) -> Result<()>;
    /// Writes one exported record into this (new) store, with what derives from it. Call
    /// `flush` when every record is in.
    fn import(&self, entity: &super::Entity) -> Result<()>;
    /// The number of keys in each key space, by name. For diagnostics and storage tests.
    fn key_counts(&self) -> Vec<(&'static str, usize)>;
    /// Flushes everything to disk, blocking. For shutdown and offline commands.
    fn flush(&self) -> Result<()>;
    fn settings(&self) -> Result<Settings>;
    /// Changes the settings, and the read-access preset if `access` is given, in one
    /// transaction; returns the new settings.
    fn update_settings(
        &self,
        change: &dyn Fn(&mut Settings),
        access: Option<ReadAccess>,
    ) -> Result<Settings>;
    /// The stored read-access preset; `None` for data from before the setting existed (and
    /// for a data directory that has never started).
    fn read_access(&self) -> Result<Option<ReadAccess>>;
    fn set_read_access(&self, access: ReadAccess) -> Result<()>;
    /// Whether the database holds no user and no channel yet: a community that has not
    /// started, whose first-start settings may still be chosen.
    fn is_unused(&self) -> bool;
    /// Every ordinary role.
    fn roles(&self) -> Result<Vec<RoleRecord>>;
    /// Ordinary role ids, most prioritized first.
    fn role_order(&self) -> Result<Vec<u64>>;
    /// Whether any user holds the Admin role.
    fn has_admin(&self) -> Result<bool>;
    /// The Admin role (every permission), created at the top of the role order if missing.
    fn ensure_admin_role(&self) -> Result<RoleRecord>;
    fn role(&self, id: u64) -> Result<Option<RoleRecord>>;
    /// Stores a new role and the new role order together.
    fn insert_role(&self, role: &RoleRecord, order: &[u64]) -> Result<()>;
    /// Replaces a stored role.
    fn put_role(&self, role: &RoleRecord) -> Result<()>;
    fn set_role_order(&self, order: &[u64]) -> Result<()>;
    /// Deletes a role: from the roles, the order, every user holding it and every channel
    /// overriding it, in one transaction. Returns the users that held it (updated).
    fn delete_role(&self, id: u64) -> Result<Vec<UserRecord>>;
    /// Adds a role to a user's role set. Returns the updated user, or `None` if the user does
    /// not exist. Adding a role the user already holds changes nothing.
    fn grant_role(&self, user_id: u64, role_id: u64) -> Result<Option<UserRecord>>;
    /// Inserts a new user, claiming its name (names are unique ignoring ASCII case).
    fn insert_user(&self, user: &UserRecord) -> Result<(), InsertUserError>;
    fn user(&self, id: u64) -> Result<Option<UserRecord>>;
    fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;
    /// Users whose name starts with `prefix` (ignoring ASCII case), in name order: `skip`
    /// passed over, at most `limit` returned, reading only the matching names.
    fn users_by_name_prefix(
        &self,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>>;
    /// Users whose name contains `part` (three or more characters, ignoring ASCII case) but
    /// does not start with it, in name order: `skip` passed over, at most `limit`, without
    /// reading every user.
    fn users_by_name_part(&self, part: &str, skip: usize, limit: usize) -> Result<Vec<UserRecord>>;
    /// Users whose email address is `email` (ignoring case), without reading every user.
    fn users_by_email(&self, email: &str) -> Result<Vec<UserRecord>>;
    /// A user's two-factor login record.
    fn two_factor(&self, user: u64) -> Result<Option<TwoFactorRecord>>;
    /// Changes a user's two-factor record atomically; `None` afterwards removes it.
    fn update_two_factor(
        &self,
        user: u64,
        change: &dyn Fn(&mut Option<TwoFactorRecord>),
    ) -> Result<Option<TwoFactorRecord>>;
    /// Stores a lost-password token under the SHA-256 of the token.
    fn insert_reset_token(&self, key: &[u8; 32], token: &ResetTokenRecord) -> Result<()>;
    fn reset_token(&self, key: &[u8; 32]) -> Result<Option<ResetTokenRecord>>;
    /// Every stored reset token of a user.
    fn reset_tokens_of(&self, user_id: u64) -> Result<Vec<ResetTokenRecord>>;
    /// Sets a password from a lost-password token, atomically: the token must be valid at
    /// `now_ms`; it, every other token of the user and every session of theirs are removed.
    /// `None` if the token was not valid.
    fn reset_password(
        &self,
        token_key: &[u8; 32],
        password_hash: &str,
        now_ms: u64,
    ) -> Result<Option<UserRecord>>;
    /// Deletes every lost-password token that expired before `now_ms`. Returns how many.
    fn purge_expired_reset_tokens(&self, now_ms: u64) -> Result<usize>;
    /// Stores a direct message and moves both users' conversation to it, atomically.
    fn insert_direct_message(&self, message: &DirectMessageRecord) -> Result<()>;
    fn direct_message(&self, id: u64) -> Result<Option<DirectMessageRecord>>;
    /// Replaces a stored direct message (an edit); false if it is gone.
    fn update_direct_message(&self, message: &DirectMessageRecord) -> Result<bool>;
    /// Deletes a direct message; false if it was not there.
    fn delete_direct_message(&self, message: &DirectMessageRecord) -> Result<bool>;
    /// The conversation of `a` and `b`, newest first, ids in `(after, before)`, at most `limit`.
    fn direct_messages(
        &self,
        a: u64,
        b: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<DirectMessageRecord>>;
    /// A user's conversations, newest message first.
    fn conversations(&self, user: u64) -> Result<Vec<Conversation>>;
    /// Moves a user's read mark in a conversation forward: the mark now in place.
    fn mark_direct_read(&self, user: u64, other: u64, up_to: u64) -> Result<u64>;
    fn dm_settings(&self, user: u64) -> Result<DmSettings>;
    fn set_dm_settings(&self, user: u64, settings: &DmSettings) -> Result<()>;
    /// The user an ID or a username names (an ID first), as plugins and bots address users.
    fn user_by_id_or_name(&self, user: &str) -> Result<Option<UserRecord>>;
    /// Every user, oldest first.
    fn users(&self) -> Result<Vec<UserRecord>>;
    /// Changes a stored user atomically (the username must not change). Returns the updated
    /// user, or `None` if there is no such user.
    fn update_user(&self, id: u64, change: &dyn Fn(&mut UserRecord)) -> Result<Option<UserRecord>>;
    /// Deletes a user, their name and every session of theirs. Returns the deleted user.
    /// Deletes a user: record, name, sessions and chatbox licenses in one transaction, with a
    /// marker under which the rest (mention index, read state) is removed next; startup
    /// finishes what a crash interrupted (`pending_user_purges`). The messages stay.
    fn delete_user(&self, id: u64) -> Result<Option<UserRecord>>;
    /// Users whose deletion was interrupted before their leftovers were removed.
    fn pending_user_purges(&self) -> Result<Vec<u64>>;
    /// Removes a deleted user's mention index and read state, then the purge marker.
    fn purge_user(&self, id: u64) -> Result<()>;
    fn insert_session(&self, key: &SessionKey, session: &SessionRecord) -> Result<()>;
    /// Changes a stored session (its last use and expiry); None if it is gone.
    fn update_session(
        &self,
        key: &SessionKey,
        change: &dyn Fn(&mut SessionRecord),
    ) -> Result<Option<SessionRecord>>;
    fn session(&self, key: &SessionKey) -> Result<Option<SessionRecord>>;
    /// Every session of a user with its key, oldest first.
    fn sessions_of(&self, user_id: u64) -> Result<Vec<(SessionKey, SessionRecord)>>;
    /// Deletes one session. Returns whether it existed.
    fn delete_session(&self, key: &SessionKey) -> Result<bool>;
    /// Deletes every session that expired before `now_ms`. Returns how many.
    fn purge_expired_sessions(&self, now_ms: u64) -> Result<usize>;
    /// Every channel, oldest first.
    fn channels(&self) -> Result<Vec<ChannelRecord>>;
    fn channel(&self, id: u64) -> Result<Option<ChannelRecord>>;
    /// Stores a new channel. A channel of the same name (ignoring case) is refused: channel
    /// names are unique whatever the requester's permissions (README, "Where decentd departs
    /// from the spec").
    fn insert_channel(&self, channel: &ChannelRecord) -> Result<(), ChannelNameError>;
    /// Renames a channel, refusing a name another channel has (ignoring case). Returns the
    /// updated channel, or `None` if there is none.
    fn rename_channel(
        &self,
        id: u64,
        name: &str,
    ) -> Result<Option<ChannelRecord>, ChannelNameError>;
    /// Replaces a channel's role overrides. Returns the updated channel, or `None`.
    fn set_channel_overrides(
        &self,
        id: u64,
        overrides: &ChannelOverrides,
    ) -> Result<Option<ChannelRecord>>;
    /// Deletes a channel and marks its contents for purging, atomically. Returns the deleted
    /// channel. Call `purge_channel` afterwards (startup does it for interrupted purges).
    fn delete_channel(&self, id: u64) -> Result<Option<ChannelRecord>>;
    /// Channels deleted but not yet purged.
    fn pending_purges(&self) -> Result<Vec<u64>>;
    /// Removes everything a deleted channel left: messages, their index entries, mentions,
    /// pins and read state, in batches; then clears the purge marker.
    fn purge_channel(&self, id: u64) -> Result<PurgeStats>;
    /// Stores a new message with its index entry and mentions, and marks the channel read
    /// for the author. Returns false (and stores nothing) if the channel no longer exists.
    ///
    /// sled transactions force a write of the log buffer each (they pin the log around the
    /// batch), which would cap posting at a few thousand per second. A message without
    /// mentions therefore takes the fast path: single-key writes in an order that is safe
    /// at any crash point (see `insert_message_fast`). Messages with mentions use a
    /// transaction.
    fn insert_message(&self, message: &MessageRecord) -> Result<bool>;
    /// Removes index entries of the newest `window` messages whose message was never stored
    /// (a crash between the two writes of the fast path). Returns how many were removed.
    fn repair_message_index(&self, window: usize) -> Result<usize>;
    /// The channel a message is in.
    fn message_channel(&self, id: u64) -> Result<Option<u64>>;
    fn message(&self, id: u64) -> Result<Option<MessageRecord>>;
    /// Channel messages with ids after `after`, in id order, at most `limit`.
    fn messages_after(&self, after: u64, limit: usize) -> Result<Vec<MessageRecord>>;
    /// Direct messages with ids after `after`, in id order, at most `limit`.
    fn direct_messages_after(&self, after: u64, limit: usize) -> Result<Vec<DirectMessageRecord>>;
    /// A message, if it is in that channel.
    fn message_in(&self, channel: u64, id: u64) -> Result<Option<MessageRecord>>;
    /// Up to `limit` messages of a channel strictly between `after` and `before`, oldest
    /// first: with `after`, the first ones after it (paging forward, so a client catching up
    /// misses nothing); without, the most recent ones.
    fn messages(
        &self,
        channel: u64,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>>;
    /// Changes a message's text and mentions (and edit time) in one transaction with the
    /// mention index. Returns (before, after), or `None` if the message does not exist.
    fn edit_message(
        &self,
        id: u64,
        text: &str,
        new_mentions: &[u64],
        edited_ms: u64,
    ) -> Result<Option<(MessageRecord, MessageRecord)>>;
    /// Deletes a message with its index entry, mentions and pin. Returns the deleted message.
    fn delete_message(&self, id: u64) -> Result<Option<MessageRecord>>;
    /// Pins or unpins a message of a channel.
    fn set_pinned(&self, channel: u64, id: u64, pinned: bool) -> Result<PinChange>;
    /// The pinned messages of a channel, oldest message first.
    fn pins(&self, channel: u64) -> Result<Vec<MessageRecord>>;
    /// A user's mentions as (message, channel), newest first.
    fn mentions_of(&self, user: u64) -> Box<dyn Iterator<Item = Result<(u64, u64)>> + '_>;
    /// Marks everything in a channel up to and including message `up_to` as read for a
    /// user. Read state never moves backwards.
    fn mark_read(&self, channel: u64, user: u64, up_to: u64) -> Result<()>;
    /// The newest message id of a channel.
    fn latest_message_id(&self, channel: u64) -> Result<Option<u64>>;
    /// (unread message count capped at `cap`, oldest unread message id) for a user.
    fn unread(&self, channel: u64, user: u64, cap: usize) -> Result<(usize, Option<u64>)>;
    /// `unread` of each channel, in the order given: one round trip where storage is remote.
    fn unread_many(
        &self,
        channels: &[u64],
        user: u64,
        cap: usize,
    ) -> Result<Vec<(usize, Option<u64>)>> {
        channels
            .iter()
            .map(|&channel| self.unread(channel, user, cap))
            .collect()
    }
    /// Every emote, by shortcode.
    fn emotes(&self) -> Result<Vec<EmoteRecord>>;
    fn emote(&self, shortcode: &str) -> Result<Option<EmoteRecord>>;
    /// Stores a new emote. Returns false (storing nothing) if the shortcode is taken.
    fn insert_emote(&self, emote: &EmoteRecord) -> Result<bool>;
    /// Deletes an emote. Returns whether it existed.
    fn delete_emote(&self, shortcode: &str) -> Result<bool>;
    fn insert_license(&self, key: &LicenseKeyHash, license: &LicenseRecord) -> Result<()>;
    fn license(&self, id: u64) -> Result<Option<LicenseRecord>>;
    fn license_by_key(&self, key: &LicenseKeyHash) -> Result<KeyLookup>;
    /// Every license of a user, oldest first.
    fn licenses_of(&self, owner: u64) -> Result<Vec<LicenseRecord>>;
    /// Every license, oldest first.
    fn all_licenses(&self) -> Result<Vec<LicenseRecord>>;
    /// Changes a license record; None if it does not exist.
    fn update_license(
        &self,
        id: u64,
        change: &dyn Fn(&mut LicenseRecord),
    ) -> Result<Option<LicenseRecord>>;
    /// Revokes a license: its key then names a revoked license. Returns the removed record.
    fn revoke_license(&self, id: u64) -> Result<Option<LicenseRecord>>;
    fn plugin_record(&self, name: &str) -> Result<Option<PluginRecord>>;
    fn set_plugin_record(&self, name: &str, record: &PluginRecord) -> Result<()>;
    /// Every plugin's record, by name.
    fn plugin_records(&self) -> Result<Vec<(String, PluginRecord)>>;
    /// The private key-value space of one plugin.
    fn plugin_kv(&self, name: &str) -> Arc<dyn KvSpace>;
    /// The next cluster-wide number of a permission change (cluster mode; a single node has
    /// no use for it). `Ok(None)`: this storage is not shared.
    fn next_change_number(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Cluster mode: takes a slot for one chatbox message of `license` under the rate limit
    /// shared by every node (one message per `interval_ms`, at most `queue` waiting).
    /// `Ok(None)`: this storage is not shared; the node limits on its own.
    fn chatbox_slot(
        &self,
        _license: u64,
        _now_ms: u64,
        _interval_ms: u64,
        _queue: u64,
    ) -> Result<Option<Slot>> {
        Ok(None)
    }
    /// The last permission change number handed out (`Ok(None)`: not shared storage).
    fn last_change_number(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

impl Storage for Store {
    fn ensure_space(&self) -> Result<()> {
        Store::check_space(self)
    }
    fn next_id(&self) -> u64 {
        Store::next_id(self)
    }
    fn durable(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Store::durable(self))
    }
    fn data_format(&self) -> Result<Option<u32>> {
        Store::data_format(self)
    }
    fn set_data_format(&self, format: u32) -> Result<()> {
        Store::set_data_format(self, format)
    }
    fn is_empty(&self) -> bool {
        Store::is_empty(self)
    }
    fn dump(
        &self,
        open: &(dyn Fn(&str) -> std::io::Result<super::DumpOutput> + Sync),
    ) -> Result<Vec<super::TreeCount>> {
        Store::dump(self, open)
    }
    fn load_tree(&self, name: &str, input: &mut dyn std::io::Read) -> Result<u64> {
        Store::load_tree(self, name, input)
    }
    fn export(&self, emit: &mut dyn FnMut(super::Entity) -> std::io::Result<()>) -> Result<()> {
        Store::export(self, emit)
    }
    fn import(&self, entity: &super::Entity) -> Result<()> {
        Store::import(self, entity)
    }
    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
    fn writable(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.check_space()?;
            Store::durable(self).await
        })
    }
    fn key_counts(&self) -> Vec<(&'static str, usize)> {
        Store::key_counts(self)
    }
    fn flush(&self) -> Result<()> {
        Store::flush(self)
    }
    fn settings(&self) -> Result<Settings> {
        Store::settings(self)
    }
    fn update_settings(
        &self,
        change: &dyn Fn(&mut Settings),
        access: Option<ReadAccess>,
    ) -> Result<Settings> {
        Store::update_settings(self, change, access)
    }
    fn read_access(&self) -> Result<Option<ReadAccess>> {
        Store::read_access(self)
    }
    fn set_read_access(&self, access: ReadAccess) -> Result<()> {
        Store::set_read_access(self, access)
    }
    fn is_unused(&self) -> bool {
        Store::is_unused(self)
    }
    fn roles(&self) -> Result<Vec<RoleRecord>> {
        Store::roles(self)
    }
    fn role_order(&self) -> Result<Vec<u64>> {
        Store::role_order(self)
    }
    fn has_admin(&self) -> Result<bool> {
        Store::has_admin(self)
    }
    fn ensure_admin_role(&self) -> Result<RoleRecord> {
        Store::ensure_admin_role(self)
    }
    fn role(&self, id: u64) -> Result<Option<RoleRecord>> {
        Store::role(self, id)
    }
    fn insert_role(&self, role: &RoleRecord, order: &[u64]) -> Result<()> {
        Store::insert_role(self, role, order)
    }
    fn put_role(&self, role: &RoleRecord) -> Result<()> {
        Store::put_role(self, role)
    }
    fn set_role_order(&self, order: &[u64]) -> Result<()> {
        Store::set_role_order(self, order)
    }
    fn delete_role(&self, id: u64) -> Result<Vec<UserRecord>> {
        Store::delete_role(self, id)
    }
    fn grant_role(&self, user_id: u64, role_id: u64) -> Result<Option<UserRecord>> {
        Store::grant_role(self, user_id, role_id)
    }
    fn insert_user(&self, user: &UserRecord) -> Result<(), InsertUserError> {
        Store::insert_user(self, user)
    }
    fn user(&self, id: u64) -> Result<Option<UserRecord>> {
        Store::user(self, id)
    }
    fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        Store::user_by_name(self, name)
    }
    fn users_by_name_prefix(
        &self,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        Store::users_by_name_prefix(self, prefix, skip, limit)
    }
    fn users_by_name_part(&self, part: &str, skip: usize, limit: usize) -> Result<Vec<UserRecord>> {
        Store::users_by_name_part(self, part, skip, limit)
    }
    fn users_by_email(&self, email: &str) -> Result<Vec<UserRecord>> {
        Store::users_by_email(self, email)
    }
    fn two_factor(&self, user: u64) -> Result<Option<TwoFactorRecord>> {
        Store::two_factor(self, user)
    }
    fn update_two_factor(
        &self,
        user: u64,
        change: &dyn Fn(&mut Option<TwoFactorRecord>),
    ) -> Result<Option<TwoFactorRecord>> {
        Store::update_two_factor(self, user, change)
    }
    fn insert_reset_token(&self, key: &[u8; 32], token: &ResetTokenRecord) -> Result<()> {
        Store::insert_reset_token(self, key, token)
    }
    fn reset_token(&self, key: &[u8; 32]) -> Result<Option<ResetTokenRecord>> {
        Store::reset_token(self, key)
    }
    fn reset_tokens_of(&self, user_id: u64) -> Result<Vec<ResetTokenRecord>> {
        Store::reset_tokens_of(self, user_id)
    }
    fn reset_password(
        &self,
        token_key: &[u8; 32],
        password_hash: &str,
        now_ms: u64,
    ) -> Result<Option<UserRecord>> {
        Store::reset_password(self, token_key, password_hash, now_ms)
    }
    fn purge_expired_reset_tokens(&self, now_ms: u64) -> Result<usize> {
        Store::purge_expired_reset_tokens(self, now_ms)
    }
    fn insert_direct_message(&self, message: &DirectMessageRecord) -> Result<()> {
        Store::insert_direct_message(self, message)
    }
    fn direct_message(&self, id: u64) -> Result<Option<DirectMessageRecord>> {
        Store::direct_message(self, id)
    }
    fn update_direct_message(&self, message: &DirectMessageRecord) -> Result<bool> {
        Store::update_direct_message(self, message)
    }
    fn delete_direct_message(&self, message: &DirectMessageRecord) -> Result<bool> {
        Store::delete_direct_message(self, message)
    }
    fn direct_messages(
        &self,
        a: u64,
        b: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<DirectMessageRecord>> {
        Store::direct_messages(self, a, b, after, before, limit)
    }
    fn conversations(&self, user: u64) -> Result<Vec<Conversation>> {
        Store::conversations(self, user)
    }
    fn mark_direct_read(&self, user: u64, other: u64, up_to: u64) -> Result<u64> {
        Store::mark_direct_read(self, user, other, up_to)
    }
    fn dm_settings(&self, user: u64) -> Result<DmSettings> {
        Store::dm_settings(self, user)
    }
    fn set_dm_settings(&self, user: u64, settings: &DmSettings) -> Result<()> {
        Store::set_dm_settings(self, user, settings)
    }
    fn user_by_id_or_name(&self, user: &str) -> Result<Option<UserRecord>> {
        Store::user_by_id_or_name(self, user)
    }
    fn users(&self) -> Result<Vec<UserRecord>> {
        Store::users(self)
    }
    fn update_user(&self, id: u64, change: &dyn Fn(&mut UserRecord)) -> Result<Option<UserRecord>> {
        Store::update_user(self, id, change)
    }
    fn delete_user(&self, id: u64) -> Result<Option<UserRecord>> {
        Store::delete_user(self, id)
    }
    fn pending_user_purges(&self) -> Result<Vec<u64>> {
        Store::pending_user_purges(self)
    }
    fn purge_user(&self, id: u64) -> Result<()> {
        Store::purge_user(self, id)
    }
    fn insert_session(&self, key: &SessionKey, session: &SessionRecord) -> Result<()> {
        Store::insert_session(self, key, session)
    }
    fn update_session(
        &self,
        key: &SessionKey,
        change: &dyn Fn(&mut SessionRecord),
    ) -> Result<Option<SessionRecord>> {
        Store::update_session(self, key, change)
    }
    fn session(&self, key: &SessionKey) -> Result<Option<SessionRecord>> {
        Store::session(self, key)
    }
    fn sessions_of(&self, user_id: u64) -> Result<Vec<(SessionKey, SessionRecord)>> {
        Store::sessions_of(self, user_id)
    }
    fn delete_session(&self, key: &SessionKey) -> Result<bool> {
        Store::delete_session(self, key)
    }
    fn purge_expired_sessions(&self, now_ms: u64) -> Result<usize> {
        Store::purge_expired_sessions(self, now_ms)
    }
    fn channels(&self) -> Result<Vec<ChannelRecord>> {
        Store::channels(self)
    }
    fn channel(&self, id: u64) -> Result<Option<ChannelRecord>> {
        Store::channel(self, id)
    }
    fn insert_channel(&self, channel: &ChannelRecord) -> Result<(), ChannelNameError> {
        Store::insert_channel(self, channel)
    }
    fn rename_channel(
        &self,
        id: u64,
        name: &str,
    ) -> Result<Option<ChannelRecord>, ChannelNameError> {
        Store::rename_channel(self, id, name)
    }
    fn set_channel_overrides(
        &self,
        id: u64,
        overrides: &ChannelOverrides,
    ) -> Result<Option<ChannelRecord>> {
        Store::set_channel_overrides(self, id, overrides)
    }
    fn delete_channel(&self, id: u64) -> Result<Option<ChannelRecord>> {
        Store::delete_channel(self, id)
    }
    fn pending_purges(&self) -> Result<Vec<u64>> {
        Store::pending_purges(self)
    }
    fn purge_channel(&self, id: u64) -> Result<PurgeStats> {
        Store::purge_channel(self, id)
    }
    fn insert_message(&self, message: &MessageRecord) -> Result<bool> {
        Store::insert_message(self, message)
    }
    fn repair_message_index(&self, window: usize) -> Result<usize> {
        Store::repair_message_index(self, window)
    }
    fn message_channel(&self, id: u64) -> Result<Option<u64>> {
        Store::message_channel(self, id)
    }
    fn messages_after(&self, after: u64, limit: usize) -> Result<Vec<MessageRecord>> {
        Store::messages_after(self, after, limit)
    }
    fn direct_messages_after(&self, after: u64, limit: usize) -> Result<Vec<DirectMessageRecord>> {
        Store::direct_messages_after(self, after, limit)
    }
    fn message(&self, id: u64) -> Result<Option<MessageRecord>> {
        Store::message(self, id)
    }
    fn message_in(&self, channel: u64, id: u64) -> Result<Option<MessageRecord>> {
        Store::message_in(self, channel, id)
    }
    fn messages(
        &self,
        channel: u64,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        Store::messages(self, channel, before, after, limit)
    }
    fn edit_message(
        &self,
        id: u64,
        text: &str,
        new_mentions: &[u64],
        edited_ms: u64,
    ) -> Result<Option<(MessageRecord, MessageRecord)>> {
        Store::edit_message(self, id, text, new_mentions, edited_ms)
    }
    fn delete_message(&self, id: u64) -> Result<Option<MessageRecord>> {
        Store::delete_message(self, id)
    }
    fn set_pinned(&self, channel: u64, id: u64, pinned: bool) -> Result<PinChange> {
        Store::set_pinned(self, channel, id, pinned)
    }
    fn pins(&self, channel: u64) -> Result<Vec<MessageRecord>> {
        Store::pins(self, channel)
    }
    fn mentions_of(&self, user: u64) -> Box<dyn Iterator<Item = Result<(u64, u64)>> + '_> {
        Box::new(Store::mentions_of(self, user))
    }
    fn mark_read(&self, channel: u64, user: u64, up_to: u64) -> Result<()> {
        Store::mark_read(self, channel, user, up_to)
    }
    fn latest_message_id(&self, channel: u64) -> Result<Option<u64>> {
        Store::latest_message_id(self, channel)
    }
    fn unread(&self, channel: u64, user: u64, cap: usize) -> Result<(usize, Option<u64>)> {
        Store::unread(self, channel, user, cap)
    }
    fn emotes(&self) -> Result<Vec<EmoteRecord>> {
        Store::emotes(self)
    }
    fn emote(&self, shortcode: &str) -> Result<Option<EmoteRecord>> {
        Store::emote(self, shortcode)
    }
    fn insert_emote(&self, emote: &EmoteRecord) -> Result<bool> {
        Store::insert_emote(self, emote)
    }
    fn delete_emote(&self, shortcode: &str) -> Result<bool> {
        Store::delete_emote(self, shortcode)
    }
    fn insert_license(&self, key: &LicenseKeyHash, license: &LicenseRecord) -> Result<()> {
        Store::insert_license(self, key, license)
    }
    fn license(&self, id: u64) -> Result<Option<LicenseRecord>> {
        Store::license(self, id)
    }
    fn license_by_key(&self, key: &LicenseKeyHash) -> Result<KeyLookup> {
        Store::license_by_key(self, key)
    }
    fn licenses_of(&self, owner: u64) -> Result<Vec<LicenseRecord>> {
        Store::licenses_of(self, owner)
    }
    fn all_licenses(&self) -> Result<Vec<LicenseRecord>> {
        Store::all_licenses(self)
    }
    fn update_license(
        &self,
        id: u64,
        change: &dyn Fn(&mut LicenseRecord),
    ) -> Result<Option<LicenseRecord>> {
        Store::update_license(self, id, change)
    }
    fn revoke_license(&self, id: u64) -> Result<Option<LicenseRecord>> {
        Store::revoke_license(self, id)
    }
    fn plugin_record(&self, name: &str) -> Result<Option<PluginRecord>> {
        Store::plugin_record(self, name)
    }
    fn set_plugin_record(&self, name: &str, record: &PluginRecord) -> Result<()> {
        Store::set_plugin_record(self, name, record)
    }
    fn plugin_records(&self) -> Result<Vec<(String, PluginRecord)>> {
        Store::plugin_records(self)
    }
    fn plugin_kv(&self, name: &str) -> Arc<dyn KvSpace> {
        Arc::new(Store::plugin_kv(self, name))
    }
}
