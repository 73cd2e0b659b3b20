//! Channels, messages, pins, mentions and read state.
//!
//! Key spaces (all ids big-endian, so prefixes and ranges are plain scans):
//! - `channels`: channel → `ChannelRecord` (name and role overrides)
//! - `messages`: channel ‖ message → `MessageRecord`; history is a range scan
//! - `message_channels`: message → channel, to find a message by id alone
//! - `mentions`: user ‖ message → channel; newest-first mention lists are a reverse prefix scan
//! - `pins`: channel ‖ message → (); the pinned flag also lives in the message record
//! - `read_state`: channel ‖ user → id of the newest message the user has read
//!
//! Deleting a channel removes its record and leaves a purge marker in one transaction; the
//! channel's messages, index entries, pins, mentions and read state are then removed in
//! batches, and a purge interrupted by a crash is finished at the next start.

use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;
use sled::Batch;

use super::{abort, codec, flatten, id_from_key, name_key, Result, Store, StoreError};
use crate::perms::ChannelOverrides;

/// A channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub id: u64,
    pub name: String,
    pub overrides: ChannelOverrides,
}

/// Who wrote a user message, as they were when they wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Author {
    pub id: u64,
    pub username: String,
    pub avatar_url: String,
}

/// A message. System messages have no author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: u64,
    pub channel_id: u64,
    pub system: bool,
    pub text: String,
    pub author: Option<Author>,
    pub created_ms: u64,
    pub edited_ms: Option<u64>,
    pub pinned: bool,
    /// Mentioned user ids, each once, in order of first mention.
    pub mentions: Vec<u64>,
}

/// Why a channel name could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelNameError {
    #[error("that channel name is already taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of pinning or unpinning.
#[derive(Debug, Clone, PartialEq)]
pub enum PinChange {
    /// The message is not in that channel.
    NotFound,
    /// It was already pinned (or already not pinned).
    Unchanged,
    /// Done; the message as it is now.
    Changed(MessageRecord),
}

/// What a channel purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeStats {
    pub messages: usize,
    pub mentions: usize,
    pub pins: usize,
    pub read_states: usize,
}

/// Keys removed per batch while purging a channel.
const PURGE_BATCH: usize = 1024;
/// Meta key prefix of channels deleted but not yet purged.
const PURGE_PREFIX: &[u8] = b"purge/";

pub(super) fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

fn purge_key(channel: u64) -> Vec<u8> {
    let mut key = PURGE_PREFIX.to_vec();
    key.extend_from_slice(&channel.to_be_bytes());
    key
}

fn second_id(key: &[u8]) -> u64 {
    id_from_key(key.get(8..).unwrap_or(&[]))
}

impl Store {
    // ---- channels ----

    /// Every channel, oldest first.
    pub fn channels(&self) -> Result<Vec<ChannelRecord>> {
        self.channels
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    pub fn channel(&self, id: u64) -> Result<Option<ChannelRecord>> {
        self.channels
            .get(id.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Whether another channel has this name (ignoring ASCII case).
    fn channel_name_taken(&self, name: &str, except: Option<u64>) -> Result<bool> {
        let wanted = name_key(name);
        for channel in self.channels()? {
            if Some(channel.id) != except && name_key(&channel.name) == wanted {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores a new channel. A channel of the same name (ignoring case) is refused: channel
    /// names are unique whatever the requester's permissions (README, "Where decentd departs
    /// from the spec").
    pub fn insert_channel(&self, channel: &ChannelRecord) -> Result<(), ChannelNameError> {
        let _gate = self.ensure_space()?;
        let _names = self.channel_names.lock().unwrap_or_else(|e| e.into_inner());
        if self.channel_name_taken(&channel.name, None)? {
            return Err(ChannelNameError::Taken);
        }
        self.channels
            .insert(channel.id.to_be_bytes(), codec::encode(channel)?)
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Renames a channel, refusing a name another channel has (ignoring case). Returns the
    /// updated channel, or `None` if there is none.
    pub fn rename_channel(
        &self,
        id: u64,
        name: &str,
    ) -> Result<Option<ChannelRecord>, ChannelNameError> {
        let _gate = self.ensure_space()?;
        let _names = self.channel_names.lock().unwrap_or_else(|e| e.into_inner());
        if self.channel_name_taken(name, Some(id))? {
            return Err(ChannelNameError::Taken);
        }
        Ok(super::update_record(
            &self.channels,
            &id.to_be_bytes(),
            |c: &mut Option<ChannelRecord>| {
                if let Some(c) = c {
                    c.name = name.to_owned();
                }
            },
        )?)
    }

    /// Replaces a channel's role overrides. Returns the updated channel, or `None`.
    pub fn set_channel_overrides(
        &self,
        id: u64,
        overrides: &ChannelOverrides,
    ) -> Result<Option<ChannelRecord>> {
        let _gate = self.ensure_space()?;
        super::update_record(
            &self.channels,
            &id.to_be_bytes(),
            |c: &mut Option<ChannelRecord>| {
                if let Some(c) = c {
                    c.overrides = overrides.clone();
                }
            },
        )
    }

    /// Deletes a channel and marks its contents for purging, atomically. Returns the deleted
    /// channel. Call `purge_channel` afterwards (startup does it for interrupted purges).
    pub fn delete_channel(&self, id: u64) -> Result<Option<ChannelRecord>> {
        let _gate = self.ensure_space()?;
        let key = id.to_be_bytes();
        let marker = purge_key(id);
        flatten(
            (&self.channels, &self.meta).transaction(|(channels, meta)| {
                let Some(value) = channels.remove(&key)? else {
                    return Ok(None);
                };
                meta.insert(marker.as_slice(), &[])?;
                let channel: ChannelRecord = codec::decode(&value).map_err(abort)?;
                Ok(Some(channel))
            }),
        )
    }

    /// Channels deleted but not yet purged.
    pub fn pending_purges(&self) -> Result<Vec<u64>> {
        self.meta
            .scan_prefix(PURGE_PREFIX)
            .keys()
            .map(|k| Ok(id_from_key(&k?[PURGE_PREFIX.len()..])))
            .collect()
    }

    /// Removes everything a deleted channel left: messages, their index entries, mentions,
    /// pins and read state, in batches; then clears the purge marker.
    pub fn purge_channel(&self, id: u64) -> Result<PurgeStats> {
        let mut stats = PurgeStats::default();
        let prefix = id.to_be_bytes();
        loop {
            let mut messages = Batch::default();
            let mut index = Batch::default();
            let mut mentions = Batch::default();
            let mut n = 0;
            for kv in self.messages.scan_prefix(prefix).take(PURGE_BATCH) {
                let (k, v) = kv?;
                let message: MessageRecord = codec::decode(&v)?;
                for user in &message.mentions {
                    mentions.remove(&pair_key(*user, message.id));
                    stats.mentions += 1;
                }
                index.remove(&message.id.to_be_bytes());
                messages.remove(k);
                n += 1;
            }
            if n == 0 {
                break;
            }
            // Index and mentions first: a crash in between leaves messages that the next
            // purge pass finds again, never index entries pointing at nothing.
            self.mentions.apply_batch(mentions)?;
            self.message_channels.apply_batch(index)?;
            self.messages.apply_batch(messages)?;
            stats.messages += n;
        }
        stats.pins = self.remove_prefix(&self.pins, &prefix)?;
        stats.read_states = self.remove_prefix(&self.read_state, &prefix)?;
        self.meta.remove(purge_key(id))?;
        Ok(stats)
    }

    pub(super) fn remove_prefix(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<usize> {
        let mut removed = 0;
        loop {
            let mut batch = Batch::default();
            let mut n = 0;
            for k in tree.scan_prefix(prefix).keys().take(PURGE_BATCH) {
                batch.remove(k?);
                n += 1;
            }
            if n == 0 {
                return Ok(removed);
            }
            tree.apply_batch(batch)?;
            removed += n;
        }
    }

    // ---- messages ----

    /// Stores a new message with its index entry and mentions, and marks the channel read
    /// for the author. Returns false (and stores nothing) if the channel no longer exists.
    ///
    /// sled transactions force a write of the log buffer each (they pin the log around the
    /// batch), which would cap posting at a few thousand per second. A message without
    /// mentions therefore takes the fast path: single-key writes in an order that is safe
    /// at any crash point (see `insert_message_fast`). Messages with mentions use a
    /// transaction.
    pub fn insert_message(&self, message: &MessageRecord) -> Result<bool> {
        let _gate = self.ensure_space()?;
        if message.mentions.is_empty() {
            return self.insert_message_fast(message);
        }
        let value = codec::encode(message)?;
        let key = pair_key(message.channel_id, message.id);
        let channel = message.channel_id.to_be_bytes();
        let id = message.id.to_be_bytes();
        flatten(
            (
                &self.channels,
                &self.messages,
                &self.message_channels,
                &self.mentions,
                &self.read_state,
            )
                .transaction(|(channels, messages, index, mentions, read_state)| {
                    if channels.get(channel)?.is_none() {
                        return Ok(false);
                    }
                    messages.insert(&key, value.as_slice())?;
                    index.insert(&id, &channel)?;
                    for user in &message.mentions {
                        mentions.insert(&pair_key(*user, message.id), &channel)?;
                    }
                    if let Some(author) = &message.author {
                        let read_key = pair_key(message.channel_id, author.id);
                        let last = read_state.get(read_key)?.map_or(0, |v| id_from_key(&v));
                        if message.id > last {
                            read_state.insert(&read_key, &id)?;
                        }
                    }
                    Ok(true)
                }),
        )
    }

    /// The fast path of `insert_message`: the index entry first, then the message (the
    /// commit point), then the author's read state. sled recovers a prefix of its log, so a
    /// crash can leave at most an index entry without its message, for a post that was never
    /// acknowledged; readers treat that as NOT_FOUND and `repair_message_index` removes it at
    /// startup. A channel deleted concurrently is caught by re-checking it after the write:
    /// either the purge (which starts after the channel record is gone) sees the message, or
    /// this check sees the channel gone and takes the message back.
    fn insert_message_fast(&self, message: &MessageRecord) -> Result<bool> {
        let channel = message.channel_id.to_be_bytes();
        if !self.channels.contains_key(channel)? {
            return Ok(false);
        }
        let key = pair_key(message.channel_id, message.id);
        let id = message.id.to_be_bytes();
        self.message_channels.insert(id, &channel)?;
        self.messages.insert(key, codec::encode(message)?)?;
        if !self.channels.contains_key(channel)? {
            self.messages.remove(key)?;
            self.message_channels.remove(id)?;
            return Ok(false);
        }
        if let Some(author) = &message.author {
            self.mark_read(message.channel_id, author.id, message.id)?;
        }
        Ok(true)
    }

    /// Removes index entries of the newest `window` messages whose message was never stored
    /// (a crash between the two writes of the fast path). Returns how many were removed.
    pub fn repair_message_index(&self, window: usize) -> Result<usize> {
        let mut dangling = Vec::new();
        for kv in self.message_channels.iter().rev().take(window) {
            let (k, v) = kv?;
            let id = id_from_key(&k);
            if !self.messages.contains_key(pair_key(id_from_key(&v), id))? {
                dangling.push(k);
            }
        }
        for k in &dangling {
            self.message_channels.remove(k)?;
        }
        Ok(dangling.len())
    }

    /// The channel a message is in.
    pub fn message_channel(&self, id: u64) -> Result<Option<u64>> {
        Ok(self
            .message_channels
            .get(id.to_be_bytes())?
            .map(|v| id_from_key(&v)))
    }

    /// Channel messages with ids after `after`, in id order, at most `limit` (for indexing).
    pub fn messages_after(&self, after: u64, limit: usize) -> Result<Vec<MessageRecord>> {
        let mut out = Vec::new();
        let start = after.saturating_add(1).to_be_bytes();
        for kv in self.message_channels.range(start..).take(limit) {
            let (id, _) = kv?;
            if let Some(m) = self.message(id_from_key(&id))? {
                out.push(m);
            }
        }
        Ok(out)
    }

    pub fn message(&self, id: u64) -> Result<Option<MessageRecord>> {
        let Some(channel) = self.message_channel(id)? else {
            return Ok(None);
        };
        self.message_in(channel, id)
    }

    /// A message, if it is in that channel.
    pub fn message_in(&self, channel: u64, id: u64) -> Result<Option<MessageRecord>> {
        self.messages
            .get(pair_key(channel, id))?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Up to `limit` messages of a channel strictly between `after` and `before`, oldest
    /// first: with `after`, the first ones after it (paging forward, so a client catching up
    /// misses nothing); without, the most recent ones.
    pub fn messages(
        &self,
        channel: u64,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let start = match after {
            Some(a) if a == u64::MAX => return Ok(Vec::new()),
            Some(a) => pair_key(channel, a + 1),
            None => pair_key(channel, 0),
        };
        let end = match before {
            Some(0) => return Ok(Vec::new()),
            Some(b) => pair_key(channel, b - 1),
            None => pair_key(channel, u64::MAX),
        };
        if start > end {
            return Ok(Vec::new());
        }
        let range = self.messages.range(start..=end);
        if after.is_some() {
            return range.take(limit).map(|kv| codec::decode(&kv?.1)).collect();
        }
        let mut out: Vec<MessageRecord> = range
            .rev()
            .take(limit)
            .map(|kv| codec::decode(&kv?.1))
            .collect::<Result<_>>()?;
        out.reverse();
        Ok(out)
    }

    /// Changes a message's text and mentions (and edit time) in one transaction with the
    /// mention index. Returns (before, after), or `None` if the message does not exist.
    pub fn edit_message(
        &self,
        id: u64,
        text: &str,
        new_mentions: &[u64],
        edited_ms: u64,
    ) -> Result<Option<(MessageRecord, MessageRecord)>> {
        let _gate = self.ensure_space()?;
        let Some(channel) = self.message_channel(id)? else {
            return Ok(None);
        };
        let key = pair_key(channel, id);
        let channel_bytes = channel.to_be_bytes();
        flatten(
            (&self.messages, &self.mentions).transaction(|(messages, mentions)| {
                let Some(value) = messages.get(key)? else {
                    return Ok(None);
                };
                let old: MessageRecord = codec::decode(&value).map_err(abort)?;
                let mut new = old.clone();
                new.text = text.to_owned();
                new.mentions = new_mentions.to_vec();
                new.edited_ms = Some(edited_ms);
                for user in old.mentions.iter().filter(|u| !new.mentions.contains(u)) {
                    mentions.remove(&pair_key(*user, id))?;
                }
                for user in new.mentions.iter().filter(|u| !old.mentions.contains(u)) {
                    mentions.insert(&pair_key(*user, id), &channel_bytes)?;
                }
                messages.insert(&key, codec::encode(&new).map_err(abort)?)?;
                Ok(Some((old, new)))
            }),
        )
    }

    /// Deletes a message with its index entry, mentions and pin. Returns the deleted message.
    pub fn delete_message(&self, id: u64) -> Result<Option<MessageRecord>> {
        let _gate = self.ensure_space()?;
        let Some(channel) = self.message_channel(id)? else {
            return Ok(None);
        };
        let key = pair_key(channel, id);
        flatten(
            (
                &self.messages,
                &self.message_channels,
                &self.mentions,
                &self.pins,
            )
                .transaction(|(messages, index, mentions, pins)| {
                    let Some(value) = messages.remove(&key)? else {
                        return Ok(None);
                    };
                    let message: MessageRecord = codec::decode(&value).map_err(abort)?;
                    index.remove(&id.to_be_bytes())?;
                    for user in &message.mentions {
                        mentions.remove(&pair_key(*user, id))?;
                    }
                    pins.remove(&key)?;
                    Ok(Some(message))
                }),
        )
    }

    // ---- pins ----

    /// Pins or unpins a message of a channel.
    pub fn set_pinned(&self, channel: u64, id: u64, pinned: bool) -> Result<PinChange> {
        let _gate = self.ensure_space()?;
        let key = pair_key(channel, id);
        flatten(
            (&self.messages, &self.pins).transaction(|(messages, pins)| {
                let Some(value) = messages.get(key)? else {
                    return Ok(PinChange::NotFound);
                };
                let mut message: MessageRecord = codec::decode(&value).map_err(abort)?;
                if message.pinned == pinned {
                    return Ok(PinChange::Unchanged);
                }
                message.pinned = pinned;
                if pinned {
                    pins.insert(&key, &[])?;
                } else {
                    pins.remove(&key)?;
                }
                messages.insert(&key, codec::encode(&message).map_err(abort)?)?;
                Ok(PinChange::Changed(message))
            }),
        )
    }

    /// The pinned messages of a channel, oldest message first.
    pub fn pins(&self, channel: u64) -> Result<Vec<MessageRecord>> {
        let mut out = Vec::new();
        for k in self.pins.scan_prefix(channel.to_be_bytes()).keys() {
            if let Some(m) = self.message_in(channel, second_id(&k?))? {
                out.push(m);
            }
        }
        Ok(out)
    }

    // ---- mentions ----

    /// A user's mentions as (message, channel), newest first.
    pub fn mentions_of(&self, user: u64) -> impl Iterator<Item = Result<(u64, u64)>> {
        self.mentions
            .scan_prefix(user.to_be_bytes())
            .rev()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((second_id(&k), id_from_key(&v)))
            })
    }

    // ---- read state ----

    /// Marks everything in a channel up to and including message `up_to` as read for a
    /// user. Read state never moves backwards.
    pub fn mark_read(&self, channel: u64, user: u64, up_to: u64) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.read_state
            .fetch_and_update(pair_key(channel, user), |old| {
                let last = old.map_or(0, id_from_key);
                Some(up_to.max(last).to_be_bytes().to_vec())
            })?;
        Ok(())
    }

    /// The newest message id of a channel.
    pub fn latest_message_id(&self, channel: u64) -> Result<Option<u64>> {
        Ok(self
            .messages
            .scan_prefix(channel.to_be_bytes())
            .keys()
            .next_back()
            .transpose()?
            .map(|k| second_id(&k)))
    }

    /// (unread message count capped at `cap`, oldest unread message id) for a user.
    pub fn unread(&self, channel: u64, user: u64, cap: usize) -> Result<(usize, Option<u64>)> {
        let last = self
            .read_state
            .get(pair_key(channel, user))?
            .map_or(0, |v| id_from_key(&v));
        if last == u64::MAX {
            return Ok((0, None));
        }
        let range = pair_key(channel, last + 1)..=pair_key(channel, u64::MAX);
        let mut count = 0;
        let mut oldest = None;
        for k in self.messages.range(range).keys().take(cap) {
            let k = k?;
            if oldest.is_none() {
                oldest = Some(second_id(&k));
            }
            count += 1;
        }
        Ok((count, oldest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, channel: u64, mentions: Vec<u64>) -> MessageRecord {
        MessageRecord {
            id,
            channel_id: channel,
            system: false,
            text: format!("m{id}"),
            author: Some(Author {
                id: 1,
                username: "a".into(),
                avatar_url: String::new(),
            }),
            created_ms: 0,
            edited_ms: None,
            pinned: false,
            mentions,
        }
    }

    fn store_with_channel(dir: &std::path::Path) -> Store {
        let store = Store::open(dir, 1 << 20).unwrap();
        let channel = ChannelRecord {
            id: 10,
            name: "c".into(),
            overrides: ChannelOverrides::default(),
        };
        store.insert_channel(&channel).unwrap();
        store
    }

    #[test]
    fn both_insert_paths_index_the_message_and_mark_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_channel(dir.path());
        assert!(store.insert_message(&message(100, 10, vec![])).unwrap());
        assert!(store.insert_message(&message(101, 10, vec![7])).unwrap());
        assert_eq!(store.message(100).unwrap().unwrap().text, "m100");
        assert_eq!(store.message(101).unwrap().unwrap().mentions, vec![7]);
        assert_eq!(store.unread(10, 1, 200).unwrap(), (0, None));
        assert_eq!(store.unread(10, 2, 200).unwrap(), (2, Some(100)));
        let mentions: Vec<_> = store.mentions_of(7).map(Result::unwrap).collect();
        assert_eq!(mentions, vec![(101, 10)]);
        // A deleted channel takes no more messages on either path.
        store.delete_channel(10).unwrap();
        assert!(!store.insert_message(&message(102, 10, vec![])).unwrap());
        assert!(!store.insert_message(&message(103, 10, vec![7])).unwrap());
        assert!(store.message(102).unwrap().is_none());
        store.purge_channel(10).unwrap();
        assert!(store.key_counts().iter().all(|(name, n)| {
            !matches!(
                *name,
                "messages" | "message_channels" | "mentions" | "read_state"
            ) || *n == 0
        }));
    }

    #[test]
    fn an_index_entry_left_by_a_crash_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_channel(dir.path());
        store.insert_message(&message(100, 10, vec![])).unwrap();
        // What a crash between the fast path's two writes leaves behind.
        store
            .message_channels
            .insert(200u64.to_be_bytes(), &10u64.to_be_bytes())
            .unwrap();
        assert!(store.message(200).unwrap().is_none());
        assert_eq!(store.repair_message_index(16).unwrap(), 1);
        assert!(store.message_channel(200).unwrap().is_none());
        assert!(store.message(100).unwrap().is_some());
    }

    #[test]
    fn history_ranges_are_exclusive_and_take_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_channel(dir.path());
        for id in 1..=10 {
            store.insert_message(&message(id, 10, vec![])).unwrap();
        }
        let ids = |v: Vec<MessageRecord>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(store.messages(10, None, None, 3).unwrap()), [8, 9, 10]);
        assert_eq!(
            ids(store.messages(10, Some(5), Some(2), 50).unwrap()),
            [3, 4]
        );
        assert_eq!(
            ids(store.messages(10, Some(1), None, 50).unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            ids(store.messages(10, Some(0), None, 50).unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            ids(store.messages(10, None, Some(u64::MAX), 50).unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            ids(store.messages(10, Some(3), Some(5), 50).unwrap()),
            Vec::<u64>::new()
        );
    }
}
