//! Messages and mentions: post, edit, delete, read one, a user's mentions.
//!
//! Mentions `<@userID>` of existing users become `mentionedUserIDs` and entries of the
//! mention index; `user/mentions/add` and `user/mentions/remove` go to a mentioned user only
//! while they may read the message's channel.

use serde_json::{json, Value};
use std::sync::Arc;

use crate::domain::{avatar_url, parse_mentions, validate_message_text};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::ids::now_ms;
use crate::perms::{Permission, Requester};
use crate::store::{Author, MessageRecord, UserRecord};
use decentd_protocol::chatbox::parse_command;

use super::views::message_json;
use super::{channels, commands, id, search, Caller, Chat, Place};

/// Most mentions one page of a user's mentions holds.
pub const MAX_MENTIONS_PAGE: u64 = 50;

/// What posting did.
#[derive(Debug)]
pub enum Posted {
    /// The message was stored.
    Stored(MessageRecord),
    /// The text was a command handled instead of stored: the answer.
    Command(Value),
}

/// The mentioned users of a text that exist.
fn mentioned_users(chat: &Chat, text: &str) -> ApiResult<Vec<u64>> {
    let mut users = Vec::new();
    for id in parse_mentions(text) {
        if chat.store.user(id)?.is_some() {
            users.push(id);
        }
    }
    Ok(users)
}

/// Tells each user (who may read the channel) that a message now mentions them, or no longer
/// does.
fn emit_mentions(chat: &Chat, users: &[u64], message: &MessageRecord, added: bool) {
    for user in users {
        if !chat.can_read(Requester::User(*user), message.channel_id) {
            continue;
        }
        if added {
            chat.emit(
                "user/mentions/add",
                json!({ "message": message_json(message) }),
                Audience::User(*user),
            );
        } else {
            chat.emit(
                "user/mentions/remove",
                json!({ "messageID": message.id.to_string() }),
                Audience::User(*user),
            );
        }
    }
}

/// The message an ID names (NOT_FOUND), if the requester may read its channel (NOT_ALLOWED
/// with `missingPermission: readMessages`).
pub fn visible(chat: &Chat, who: Requester, raw_id: &str) -> ApiResult<MessageRecord> {
    let id = id(raw_id, "message")?;
    let message = chat
        .store
        .message(id)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    // A message of a deleted channel (still being purged) is gone.
    if !chat.perms().has_channel(message.channel_id) {
        return Err(ApiError::not_found("message"));
    }
    chat.require_in(who, Some(message.channel_id), Permission::ReadMessages)?;
    Ok(message)
}

/// Runs the plugins' pre-store hooks, if any: the text to store.
pub async fn hooked(
    chat: &Arc<Chat>,
    author: &UserRecord,
    place: Place,
    editing: Option<u64>,
    text: String,
) -> ApiResult<String> {
    match chat.plugins() {
        Some(plugins) if plugins.has_hooks() => {
            plugins
                .before_store(chat, author, place, editing, text)
                .await
        }
        _ => Ok(text),
    }
}

/// Posts a message. A message whose first word is a command (`\\name`, `^name`) is routed by
/// `commands` and may be handled instead of stored; other messages pass the plugins' pre-store
/// hook first.
pub async fn post(
    chat: &Arc<Chat>,
    caller: Caller<'_>,
    channel: &str,
    text: String,
    system: bool,
) -> ApiResult<Posted> {
    validate_message_text(&text, chat.config.max_message_length)?;
    let user = caller.user()?;
    let who = caller.requester();
    let channel = channels::visible_id(chat, who, channel)?;
    let granted = chat.granted(who, Some(channel));
    if !granted.has(Permission::SendMessages) {
        return Err(ApiError::missing_permission(Permission::SendMessages));
    }
    if system && !granted.has(Permission::SendSystemMessages) {
        return Err(ApiError::missing_permission(Permission::SendSystemMessages));
    }
    if !system {
        if let Some(command) = parse_command(&text) {
            if let Some(answer) =
                commands::route(chat, user, Place::Channel(channel), command).await?
            {
                return Ok(Posted::Command(answer));
            }
        }
    }
    let text = hooked(chat, user, Place::Channel(channel), None, text).await?;
    let message = store(chat, user, channel, text, system, None).await?;
    Ok(Posted::Stored(message))
}

/// A chatbox bot's `say`, as its license owner (the gateway has checked the owner's
/// permissions): through the pre-store hooks, then stored with `via` (`{name, licenseID}`).
/// Bots speak; they do not run commands (the chatbox API's commands are what people type).
pub async fn say_for_bot(
    chat: &Arc<Chat>,
    owner: &UserRecord,
    channel: u64,
    text: String,
    via: Value,
) -> ApiResult<MessageRecord> {
    let text = hooked(chat, owner, Place::Channel(channel), None, text).await?;
    store(chat, owner, channel, text, false, Some(via)).await
}

/// Stores a new message by `user` (or a system message) in `channel`, waits until it is
/// durable, and emits `message/new` and mention events. No permission checks and no hooks:
/// callers do them. `via` (a chatbox bot's `{name, licenseID}`) travels in the `message/new`
/// event as `message.chatbox` (not stored: history shows the license owner).
pub async fn store(
    chat: &Chat,
    user: &UserRecord,
    channel: u64,
    text: String,
    system: bool,
    via: Option<Value>,
) -> ApiResult<MessageRecord> {
    let message = MessageRecord {
        id: chat.store.next_id(),
        channel_id: channel,
        system,
        mentions: mentioned_users(chat, &text)?,
        text,
        author: (!system).then(|| Author {
            id: user.id,
            username: user.username.clone(),
            avatar_url: avatar_url(user.email.as_deref(), user.id),
        }),
        created_ms: now_ms(),
        edited_ms: None,
        pinned: false,
    };
    if !chat.store.insert_message(&message)? {
        return Err(ApiError::not_found("channel"));
    }
    chat.store.durable().await?;
    search::index_message(chat, &message);
    let mut view = message_json(&message);
    if let (Some(via), Some(view)) = (via, view.as_object_mut()) {
        view.insert("chatbox".into(), via);
    }
    chat.emit(
        "message/new",
        json!({ "message": view }),
        Audience::Channel(channel),
    );
    emit_mentions(chat, &message.mentions, &message, true);
    Ok(message)
}

/// A message by ID, if the requester may read its channel.
pub fn get(chat: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<MessageRecord> {
    visible(chat, caller.requester(), id)
}

fn not_yours(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotYours,
        format!("you can only {what} your own messages"),
    )
}

/// The author edits a message's text (through the pre-store hooks).
pub async fn edit(chat: &Arc<Chat>, caller: Caller<'_>, id: &str, text: String) -> ApiResult<()> {
    validate_message_text(&text, chat.config.max_message_length)?;
    let user = caller.user()?;
    let message = visible(chat, caller.requester(), id)?;
    if message.author.as_ref().map(|a| a.id) != Some(user.id) {
        return Err(not_yours("edit"));
    }
    let text = hooked(
        chat,
        user,
        Place::Channel(message.channel_id),
        Some(message.id),
        text,
    )
    .await?;
    let mentions = mentioned_users(chat, &text)?;
    let (old, new) = chat
        .store
        .edit_message(message.id, &text, &mentions, now_ms())?
        .ok_or_else(|| ApiError::not_found("message"))?;
    chat.store.durable().await?;
    search::index_message(chat, &new);
    chat.emit(
        "message/edit",
        json!({ "message": message_json(&new) }),
        Audience::Channel(new.channel_id),
    );
    let added: Vec<u64> = new
        .mentions
        .iter()
        .filter(|u| !old.mentions.contains(u))
        .copied()
        .collect();
    let removed: Vec<u64> = old
        .mentions
        .iter()
        .filter(|u| !new.mentions.contains(u))
        .copied()
        .collect();
    emit_mentions(chat, &added, &new, true);
    emit_mentions(chat, &removed, &new, false);
    Ok(())
}

/// Deletes a message: by its author, or with deleteMessages in the channel.
pub async fn delete(chat: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<()> {
    let user = caller.user()?.id;
    let who = caller.requester();
    let message = visible(chat, who, id)?;
    let own = message.author.as_ref().map(|a| a.id) == Some(user);
    if !own
        && !chat
            .perms()
            .has(who, Some(message.channel_id), Permission::DeleteMessages)
    {
        return Err(not_yours("delete").with("missingPermission", Permission::DeleteMessages.key()));
    }
    remove(chat, message.id).await
}

/// Deletes a message, waits until that is durable, and emits the events (pins, delete,
/// mentions). No permission checks: callers do them.
pub async fn remove(chat: &Chat, id: u64) -> ApiResult<()> {
    let deleted = chat
        .store
        .delete_message(id)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    chat.store.durable().await?;
    search::unindex(chat, deleted.id);
    let id = deleted.id.to_string();
    if deleted.pinned {
        chat.emit(
            "channel/pins/remove",
            json!({ "messageID": id }),
            Audience::Channel(deleted.channel_id),
        );
    }
    chat.emit(
        "message/delete",
        json!({ "messageID": id }),
        Audience::Channel(deleted.channel_id),
    );
    emit_mentions(chat, &deleted.mentions, &deleted, false);
    Ok(())
}

/// A user's mentions, newest first, only from channels the requester may read.
pub fn mentions(
    chat: &Chat,
    caller: Caller<'_>,
    user: &str,
    limit: Option<u64>,
    skip: Option<u64>,
) -> ApiResult<Vec<MessageRecord>> {
    let limit = limit
        .unwrap_or(MAX_MENTIONS_PAGE)
        .clamp(1, MAX_MENTIONS_PAGE) as usize;
    let skip = skip.unwrap_or(0) as usize;
    let user = super::users::find(chat, user)?;
    let who = caller.requester();
    let mut found = Vec::with_capacity(limit);
    let mut skipped = 0;
    for entry in chat.store.mentions_of(user.id) {
        let (message_id, channel) = entry?;
        if !chat.can_read(who, channel) {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        if let Some(message) = chat.store.message_in(channel, message_id)? {
            found.push(message);
            if found.len() == limit {
                break;
            }
        }
    }
    Ok(found)
}
