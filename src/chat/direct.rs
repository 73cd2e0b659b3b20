//! Direct messages: one user to another, outside every channel.
//!
//! Sending checks the recipient's settings (everyone, users who share an ordinary role with
//! them, or nobody; and their block list), validates the text like a channel message, stores
//! the message durably and emits `dm/new` to the two users' sockets only. Edits and deletes
//! are the author's own (`dm/edit`, `dm/delete`); read marks move per conversation
//! (`dm/read`). The plugins' pre-store hooks see direct messages (with `recipientID` and an
//! empty `channelID`) and may rewrite or refuse them. Listing follows the Resonite filters: `user` (the other party), `unread`,
//! `fromTime` and `maxItems`, newest first, paged with `before`.

use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

use crate::domain::validate_message_text;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::ids::{now_ms, unix_seconds};
use crate::store::{DirectMessageRecord, DmAllow, DmSettings, UserRecord};
use decentd_protocol::chatbox::parse_command;

use super::commands::route;
use super::messages::hooked;
use super::users::find;
use super::{id as path_id, Caller, Chat, Place};

/// Most messages one page holds (`maxItems`), and its default.
pub const MAX_ITEMS: u64 = 100;
/// Unread messages counted per conversation, at most.
pub const UNREAD_CAP: usize = 200;
/// Most users one block list holds.
pub const MAX_BLOCKED: usize = 1000;

/// A direct message as the API and events show it.
#[derive(Debug, Serialize)]
pub struct DirectMessageView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "authorID")]
    author_id: String,
    #[serde(rename = "recipientID")]
    recipient_id: String,
    text: String,
    #[serde(rename = "dateCreated")]
    date_created: f64,
    #[serde(rename = "dateEdited")]
    date_edited: Option<f64>,
}

pub fn view(m: &DirectMessageRecord) -> DirectMessageView {
    DirectMessageView {
        id: m.id.to_string(),
        kind: "direct",
        author_id: m.from.to_string(),
        recipient_id: m.to.to_string(),
        text: m.text.clone(),
        date_created: unix_seconds(m.created_ms),
        date_edited: m.edited_ms.map(unix_seconds),
    }
}

fn emit(chat: &Chat, name: &'static str, m: &DirectMessageRecord, data: serde_json::Value) {
    chat.emit(name, data, Audience::Users(m.from, m.to));
}

/// Whether `sender` may message `recipient` under the recipient's settings.
pub(crate) fn may_message(
    chat: &Chat,
    sender: &UserRecord,
    recipient: &UserRecord,
) -> ApiResult<bool> {
    let settings = chat.store.dm_settings(recipient.id)?;
    if settings.blocked.contains(&sender.id) {
        return Ok(false);
    }
    Ok(match settings.allow {
        DmAllow::Everyone => true,
        DmAllow::Nobody => false,
        DmAllow::SharedRole => sender
            .role_ids
            .iter()
            .any(|r| recipient.role_ids.contains(r)),
    })
}

/// What sending did.
#[derive(Debug)]
pub enum Sent {
    Stored(DirectMessageRecord),
    /// The text was a command handled instead of stored (answers go to the sender only).
    Command(serde_json::Value),
}

/// Sends a direct message to the user `to` names. A message whose first word is a command is
/// routed like one in a channel; its answers are private to the sender.
pub async fn send(chat: &Arc<Chat>, caller: Caller<'_>, to: &str, text: String) -> ApiResult<Sent> {
    let sender = caller.user()?;
    let recipient = find(chat, to)?;
    if recipient.id == sender.id {
        return Err(ApiError::new(
            ErrorCode::No,
            "you cannot send a direct message to yourself",
        ));
    }
    validate_message_text(&text, chat.config.max_message_length)?;
    // A block and "nobody" answer alike: the sender does not learn they are blocked.
    if !may_message(chat, sender, &recipient)? {
        return Err(ApiError::new(
            ErrorCode::NotAllowed,
            format!(
                "{} does not accept direct messages from you",
                recipient.username
            ),
        ));
    }
    if let Some(command) = parse_command(&text) {
        if let Some(answer) = route(chat, sender, Place::Direct(recipient.id), command).await? {
            return Ok(Sent::Command(answer));
        }
    }
    let text = hooked(chat, sender, Place::Direct(recipient.id), None, text).await?;
    let message = DirectMessageRecord {
        id: chat.store.next_id(),
        from: sender.id,
        to: recipient.id,
        text,
        created_ms: now_ms(),
        edited_ms: None,
    };
    chat.store.insert_direct_message(&message)?;
    chat.store.durable().await?;
    super::search::index_direct(chat, &message);
    emit(
        chat,
        "dm/new",
        &message,
        json!({ "message": view(&message) }),
    );
    Ok(Sent::Stored(message))
}

/// A direct message the caller took part in, or NOT_FOUND.
fn own_conversation(chat: &Chat, user: u64, raw: &str) -> ApiResult<DirectMessageRecord> {
    let id = path_id(raw, "message")?;
    chat.store
        .direct_message(id)?
        .filter(|m| m.from == user || m.to == user)
        .ok_or_else(|| ApiError::not_found("message"))
}

/// One direct message the caller sent or received.
pub fn get(chat: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<DirectMessageRecord> {
    own_conversation(chat, caller.user()?.id, raw)
}

/// Edits one's own direct message.
pub async fn edit(
    chat: &Arc<Chat>,
    caller: Caller<'_>,
    raw: &str,
    text: String,
) -> ApiResult<DirectMessageRecord> {
    let user = caller.user()?;
    let mut message = own_conversation(chat, user.id, raw)?;
    if message.from != user.id {
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "only the author can edit a message",
        ));
    }
    validate_message_text(&text, chat.config.max_message_length)?;
    message.text = hooked(
        chat,
        user,
        Place::Direct(message.to),
        Some(message.id),
        text,
    )
    .await?;
    message.edited_ms = Some(now_ms());
    if !chat.store.update_direct_message(&message)? {
        return Err(ApiError::not_found("message"));
    }
    chat.store.durable().await?;
    super::search::index_direct(chat, &message);
    emit(
        chat,
        "dm/edit",
        &message,
        json!({ "message": view(&message) }),
    );
    Ok(message)
}

/// Deletes one's own direct message.
pub async fn delete(chat: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<()> {
    let user = caller.user()?;
    let message = own_conversation(chat, user.id, raw)?;
    if message.from != user.id {
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "only the author can delete a message",
        ));
    }
    if !chat.store.delete_direct_message(&message)? {
        return Err(ApiError::not_found("message"));
    }
    chat.store.durable().await?;
    super::search::unindex(chat, message.id);
    emit(
        chat,
        "dm/delete",
        &message,
        json!({
            "messageID": message.id.to_string(),
            "authorID": message.from.to_string(),
            "recipientID": message.to.to_string(),
        }),
    );
    Ok(())
}

/// What a listing asks for.
#[derive(Debug, Default)]
pub struct Filter {
    /// The other party (`user`), by ID.
    pub user: Option<String>,
    /// Only messages from the other party after the read mark.
    pub unread: bool,
    /// Only messages from this time on (ISO 8601).
    pub from_time: Option<String>,
    /// Only messages older than this message (paging).
    pub before: Option<String>,
    pub max_items: Option<u64>,
}

fn parse_time(text: &str) -> ApiResult<u64> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::invalid_type("fromTime", "an ISO 8601 time, e.g. 2026-11-30T12:00:00Z")
        })?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
}

/// The caller's direct messages, newest first. `path` names the caller (all conversations,
/// or the one `user` names) or the other party (that conversation).
pub fn list(
    chat: &Chat,
    caller: Caller<'_>,
    path: &str,
    filter: Filter,
) -> ApiResult<Vec<DirectMessageRecord>> {
    let me = caller.user()?;
    let named = path_id(path, "user")?;
    let mut other = (named != me.id).then_some(named);
    if let Some(user) = &filter.user {
        let user = path_id(user, "user")?;
        if other.is_some_and(|o| o != user) {
            return Ok(Vec::new());
        }
        other = Some(user);
    }
    let limit = filter.max_items.unwrap_or(MAX_ITEMS).clamp(1, MAX_ITEMS) as usize;
    let before = match &filter.before {
        Some(raw) => path_id(raw, "message")?,
        None => u64::MAX,
    };
    let from_ms = filter.from_time.as_deref().map(parse_time).transpose()?;
    let conversations = chat.store.conversations(me.id)?;
    let mut found = Vec::new();
    for conversation in conversations {
        if other.is_some_and(|o| o != conversation.other) {
            continue;
        }
        let after = if filter.unread {
            conversation.read_up_to
        } else {
            0
        };
        // Ids are time-ordered, but a message's own time is what `fromTime` compares.
        for m in chat
            .store
            .direct_messages(me.id, conversation.other, after, before, limit)?
        {
            if from_ms.is_some_and(|from| m.created_ms < from) {
                break;
            }
            if filter.unread && m.from == me.id {
                continue;
            }
            found.push(m);
        }
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.id));
    found.truncate(limit);
    Ok(found)
}

/// One conversation as its list shows it.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "lastMessage")]
    last_message: Option<DirectMessageView>,
    #[serde(rename = "unreadCount")]
    unread_count: usize,
    #[serde(rename = "readUpTo")]
    read_up_to: Option<String>,
}

/// The caller's conversations, newest first, with unread counts (up to 200 each).
pub fn conversations(
    chat: &Chat,
    caller: Caller<'_>,
    path: &str,
) -> ApiResult<Vec<ConversationView>> {
    let me = own(caller, path)?;
    let mut views = Vec::new();
    for c in chat.store.conversations(me.id)? {
        let newest = chat.store.direct_messages(me.id, c.other, 0, u64::MAX, 1)?;
        let unread = chat
            .store
            .direct_messages(me.id, c.other, c.read_up_to, u64::MAX, UNREAD_CAP)?
            .iter()
            .filter(|m| m.from == c.other)
            .count();
        views.push(ConversationView {
            user_id: c.other.to_string(),
            last_message: newest.first().map(view),
            unread_count: unread,
            read_up_to: (c.read_up_to > 0).then(|| c.read_up_to.to_string()),
        });
    }
    Ok(views)
}

/// Marks the conversation with the user `other` names read, up to a message (default: the
/// newest). Emits `dm/read` to both users.
pub async fn mark_read(
    chat: &Chat,
    caller: Caller<'_>,
    other: &str,
    up_to: Option<&str>,
) -> ApiResult<u64> {
    let me = caller.user()?;
    let other = path_id(other, "user")?;
    let up_to = match up_to {
        Some(raw) => {
            let m = own_conversation(chat, me.id, raw)?;
            if m.other(me.id) != other {
                return Err(ApiError::not_found("message"));
            }
            m.id
        }
        // No message between the two: there is no conversation to mark (and no `dm/read` to
        // tell anyone about a user the caller never spoke with).
        None => chat
            .store
            .direct_messages(me.id, other, 0, u64::MAX, 1)?
            .first()
            .map(|m| m.id)
            .ok_or_else(|| ApiError::not_found("conversation"))?,
    };
    let mark = chat.store.mark_direct_read(me.id, other, up_to)?;
    chat.store.durable().await?;
    chat.emit(
        "dm/read",
        json!({
            "userID": me.id.to_string(),
            "otherUserID": other.to_string(),
            "upTo": mark.to_string(),
        }),
        Audience::Users(me.id, other),
    );
    Ok(mark)
}

/// The caller, when `raw` names them.
fn own<'a>(caller: Caller<'a>, raw: &str) -> ApiResult<&'a UserRecord> {
    let me = caller.user()?;
    if path_id(raw, "user")? != me.id {
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "direct-message settings and conversations are one's own",
        ));
    }
    Ok(me)
}

/// Direct-message settings as the API shows them.
#[derive(Debug, Serialize)]
pub struct SettingsView {
    #[serde(rename = "allowFrom")]
    allow_from: &'static str,
    blocked: Vec<String>,
}

fn settings_view(s: &DmSettings) -> SettingsView {
    SettingsView {
        allow_from: match s.allow {
            DmAllow::Everyone => "everyone",
            DmAllow::SharedRole => "shared-role",
            DmAllow::Nobody => "nobody",
        },
        blocked: s.blocked.iter().map(u64::to_string).collect(),
    }
}

pub fn settings(chat: &Chat, caller: Caller<'_>, path: &str) -> ApiResult<SettingsView> {
    let me = own(caller, path)?;
    Ok(settings_view(&chat.store.dm_settings(me.id)?))
}

/// A change of direct-message settings: who may write, and users to block or unblock.
#[derive(Debug, Default)]
pub struct SettingsChange {
    pub allow_from: Option<String>,
    pub block: Vec<String>,
    pub unblock: Vec<String>,
}

pub async fn set_settings(
    chat: &Chat,
    caller: Caller<'_>,
    path: &str,
    change: SettingsChange,
) -> ApiResult<SettingsView> {
    let me = own(caller, path)?;
    let mut settings = chat.store.dm_settings(me.id)?;
    if let Some(allow) = &change.allow_from {
        settings.allow = match allow.as_str() {
            "everyone" => DmAllow::Everyone,
            "shared-role" => DmAllow::SharedRole,
            "nobody" => DmAllow::Nobody,
            _ => {
                return Err(ApiError::invalid_type(
                    "allowFrom",
                    "everyone, shared-role or nobody",
                ))
            }
        };
    }
    for raw in &change.block {
        let user = find(chat, raw)?;
        if !settings.blocked.contains(&user.id) {
            settings.blocked.push(user.id);
        }
    }
    for raw in &change.unblock {
        let id = path_id(raw, "user")?;
        settings.blocked.retain(|b| *b != id);
    }
    if settings.blocked.len() > MAX_BLOCKED {
        return Err(ApiError::invalid_type(
            "block",
            "at most 1000 blocked users",
        ));
    }
    chat.store.set_dm_settings(me.id, &settings)?;
    chat.store.durable().await?;
    Ok(settings_view(&settings))
}
