//! Direct messages between two users: the `dm_messages` tree (conversation ‖ message id), the
//! `dm_index` tree (message id → conversation), each user's conversations with their newest
//! message (`dm_conversations`), read marks (`dm_read`) and who may message whom
//! (`dm_settings`). A conversation's key is the two user ids, smaller first.

use super::*;

/// A direct message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectMessageRecord {
    pub id: u64,
    pub from: u64,
    pub to: u64,
    pub text: String,
    pub created_ms: u64,
    pub edited_ms: Option<u64>,
}

impl DirectMessageRecord {
    /// The other party, seen from `user`.
    pub fn other(&self, user: u64) -> u64 {
        if self.from == user {
            self.to
        } else {
            self.from
        }
    }
}

/// Who may send a user direct messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DmAllow {
    #[default]
    Everyone,
    /// Users who hold at least one ordinary role the recipient holds.
    SharedRole,
    Nobody,
}

/// A user's direct-message settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DmSettings {
    pub allow: DmAllow,
    /// Users whose messages are refused.
    pub blocked: Vec<u64>,
}

/// One of a user's conversations: the other party, its newest message id, and the user's
/// read mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation {
    pub other: u64,
    pub last_message: u64,
    pub read_up_to: u64,
}

/// The key of the conversation between two users.
pub fn conversation_key(a: u64, b: u64) -> [u8; 16] {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&low.to_be_bytes());
    key[8..].copy_from_slice(&high.to_be_bytes());
    key
}

fn message_key(conversation: &[u8; 16], id: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(conversation);
    key[16..].copy_from_slice(&id.to_be_bytes());
    key
}

impl Store {
    /// Stores a direct message and moves both users' conversation to it, in one transaction.
    pub fn insert_direct_message(&self, message: &DirectMessageRecord) -> Result<()> {
        let _gate = self.ensure_space()?;
        let value = codec::encode(message)?;
        let conversation = conversation_key(message.from, message.to);
        let key = message_key(&conversation, message.id);
        let id = message.id.to_be_bytes();
        let sender_side = conversation_key_for(message.from, message.to);
        let recipient_side = conversation_key_for(message.to, message.from);
        flatten(
            (
                &self.dm_messages,
                &self.dm_index,
                &self.dm_conversations,
                &self.dm_read,
            )
                .transaction(|(messages, index, conversations, read)| {
                    messages.insert(&key, value.as_slice())?;
                    index.insert(&id, &conversation)?;
                    conversations.insert(&sender_side, &id)?;
                    conversations.insert(&recipient_side, &id)?;
                    // One's own message is read.
                    read.insert(&sender_side, &id)?;
                    Ok(())
                }),
        )
    }

    pub fn direct_message(&self, id: u64) -> Result<Option<DirectMessageRecord>> {
        let Some(conversation) = self.dm_index.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let Ok(conversation) = <[u8; 16]>::try_from(conversation.as_ref()) else {
            return Ok(None);
        };
        self.dm_messages
            .get(message_key(&conversation, id))?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Direct messages with ids after `after`, in id order, at most `limit` (for indexing).
    pub fn direct_messages_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DirectMessageRecord>> {
        let mut out = Vec::new();
        let start = after.saturating_add(1).to_be_bytes();
        for kv in self.dm_index.range(start..).take(limit) {
            let (id, _) = kv?;
            if let Some(m) = self.direct_message(id_from_key(&id))? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Replaces a stored direct message (an edit); false if it is gone.
    pub fn update_direct_message(&self, message: &DirectMessageRecord) -> Result<bool> {
        let _gate = self.ensure_space()?;
        let key = message_key(&conversation_key(message.from, message.to), message.id);
        let value = codec::encode(message)?;
        flatten(self.dm_messages.transaction(|t| {
            if t.get(key)?.is_none() {
                return Ok(false);
            }
            t.insert(&key, value.as_slice())?;
            Ok(true)
        }))
    }

    /// Deletes a direct message; false if it was not there.
    pub fn delete_direct_message(&self, message: &DirectMessageRecord) -> Result<bool> {
        let _gate = self.ensure_space()?;
        let key = message_key(&conversation_key(message.from, message.to), message.id);
        let id = message.id.to_be_bytes();
        flatten(
            (&self.dm_messages, &self.dm_index).transaction(|(messages, index)| {
                let existed = messages.remove(&key)?.is_some();
                index.remove(&id)?;
                Ok(existed)
            }),
        )
    }

    /// Messages of the conversation between `a` and `b`, newest first, with ids in
    /// `(after, before)`, at most `limit`.
    pub fn direct_messages(
        &self,
        a: u64,
        b: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<DirectMessageRecord>> {
        let conversation = conversation_key(a, b);
        let low = message_key(&conversation, after.saturating_add(1));
        let high = message_key(&conversation, before);
        self.dm_messages
            .range(low..high)
            .rev()
            .take(limit)
            .map(|kv| codec::decode(&kv?.1))
            .collect()
    }

    /// A user's conversations, newest message first.
    pub fn conversations(&self, user: u64) -> Result<Vec<Conversation>> {
        let mut found = Vec::new();
        for kv in self.dm_conversations.scan_prefix(user.to_be_bytes()) {
            let (k, v) = kv?;
            let other = id_from_key(&k[8..]);
            let read_up_to = self.dm_read.get(&k)?.map_or(0, |v| id_from_key(&v));
            found.push(Conversation {
                other,
                last_message: id_from_key(&v),
                read_up_to,
            });
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.last_message));
        Ok(found)
    }

    /// Marks `user`'s side of the conversation with `other` read up to `up_to` (never back).
    /// Returns the mark now in place.
    pub fn mark_direct_read(&self, user: u64, other: u64, up_to: u64) -> Result<u64> {
        let _gate = self.ensure_space()?;
        let key = conversation_key_for(user, other);
        flatten(self.dm_read.transaction(|t| {
            let current = t.get(key)?.map_or(0, |v| id_from_key(&v));
            let mark = current.max(up_to);
            t.insert(&key, &mark.to_be_bytes())?;
            Ok(mark)
        }))
    }

    pub fn dm_settings(&self, user: u64) -> Result<DmSettings> {
        Ok(self
            .dm_settings
            .get(user.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn set_dm_settings(&self, user: u64, settings: &DmSettings) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.dm_settings
            .insert(user.to_be_bytes(), codec::encode(settings)?)?;
        Ok(())
    }
}

/// `user ‖ other`: one side of a conversation (conversation lists and read marks).
fn conversation_key_for(user: u64, other: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user.to_be_bytes());
    key[8..].copy_from_slice(&other.to_be_bytes());
    key
}
