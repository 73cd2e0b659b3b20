//! Messages and mentions (API doc "Messages", and `GET /api/users/:id/mentions`).
//!
//! Mentions `<@userID>` of existing users become `mentionedUserIDs` and entries of the
//! mention index; `user/mentions/add` and `user/mentions/remove` go to a mentioned user only
//! while they may read the message's channel.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};

use super::channels::visible_channel_id;
use super::users::find_user;
use super::{ok, path_id};
use crate::domain::{avatar_url, parse_mentions, validate_message_text};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::ids::{now_ms, unix_seconds, IdStr};
use crate::params::ApiRequest;
use crate::perms::{Permission, Requester};
use crate::state::AppState;
use crate::store::{Author, MessageRecord, UserRecord};
use decentd_protocol::chatbox::{parse_command, CommandText};

/// Most mentions one `GET /api/users/:id/mentions` returns.
pub const MAX_MENTIONS_PAGE: u64 = 50;

/// The message object of the API, serialized straight from the record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView<'a> {
    id: IdStr,
    #[serde(rename = "channelID")]
    channel_id: IdStr,
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    #[serde(rename = "authorID")]
    author_id: Option<IdStr>,
    author_username: Option<&'a str>,
    #[serde(rename = "authorAvatarURL")]
    author_avatar_url: Option<&'a str>,
    date_created: f64,
    date_edited: Option<f64>,
    pinned: bool,
    #[serde(rename = "mentionedUserIDs")]
    mentioned_user_ids: Vec<IdStr>,
}

impl<'a> From<&'a MessageRecord> for MessageView<'a> {
    fn from(m: &'a MessageRecord) -> Self {
        let author = m.author.as_ref();
        MessageView {
            id: IdStr(m.id),
            channel_id: IdStr(m.channel_id),
            kind: if m.system { "system" } else { "user" },
            text: &m.text,
            author_id: author.map(|a| IdStr(a.id)),
            author_username: author.map(|a| a.username.as_str()),
            author_avatar_url: author.map(|a| a.avatar_url.as_str()),
            date_created: unix_seconds(m.created_ms),
            date_edited: m.edited_ms.map(unix_seconds),
            pinned: m.pinned,
            mentioned_user_ids: m.mentions.iter().map(|id| IdStr(*id)).collect(),
        }
    }
}

/// The message object as a JSON value, for event payloads.
pub fn message_json(m: &MessageRecord) -> Value {
    serde_json::to_value(MessageView::from(m)).unwrap_or(Value::Null)
}

/// `{ key: [message, ...] }`, serialized without building JSON values.
pub fn message_list(key: &'static str, messages: &[MessageRecord]) -> HttpResponse {
    let views: Vec<MessageView<'_>> = messages.iter().map(MessageView::from).collect();
    let mut body = std::collections::BTreeMap::new();
    body.insert(key, views);
    ok(body)
}

/// The mentioned users of a text that exist.
fn mentioned_users(state: &AppState, text: &str) -> ApiResult<Vec<u64>> {
    let mut users = Vec::new();
    for id in parse_mentions(text) {
        if state.store.user(id)?.is_some() {
            users.push(id);
        }
    }
    Ok(users)
}

/// Tells each user (who may read the channel) that a message now mentions them, or no longer
/// does.
fn emit_mentions(state: &AppState, users: &[u64], message: &MessageRecord, added: bool) {
    for user in users {
        if !state.can_read(Requester::User(*user), message.channel_id) {
            continue;
        }
        if added {
            state.bus.emit(
                "user/mentions/add",
                json!({ "message": message_json(message) }),
                Audience::User(*user),
            );
        } else {
            state.bus.emit(
                "user/mentions/remove",
                json!({ "messageID": message.id.to_string() }),
                Audience::User(*user),
            );
        }
    }
}

/// The message a URL names (NOT_FOUND), if the requester may read its channel (NOT_ALLOWED
/// with `missingPermission: readMessages`).
fn visible_message(state: &AppState, who: Requester, raw_id: &str) -> ApiResult<MessageRecord> {
    let id = path_id(raw_id, "message")?;
    let message = state
        .store
        .message(id)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    // A message of a deleted channel (still being purged) is gone.
    if !state.perms().has_channel(message.channel_id) {
        return Err(ApiError::not_found("message"));
    }
    state.require_in(who, Some(message.channel_id), Permission::ReadMessages)?;
    Ok(message)
}

/// `POST /api/messages`. A message whose first word is a plugin's command (`\\name`,
/// `^name`) goes to that plugin instead of being stored; other messages pass the plugins'
/// pre-store hook first.
pub async fn post(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let channel_raw = req.string("channelID")?;
    let text = req.string("text")?;
    let system = match req.opt_string("type")?.as_deref() {
        None | Some("user") => false,
        Some("system") => true,
        Some(_) => return Err(ApiError::invalid_type("type", "\"user\" or \"system\"")),
    };
    validate_message_text(&text, state.config.max_message_length)?;
    let session = req.logged_in()?;
    let who = req.requester();
    let channel = visible_channel_id(&state, who, &channel_raw)?;
    let granted = state.granted(who, Some(channel));
    if !granted.has(Permission::SendMessages) {
        return Err(ApiError::missing_permission(Permission::SendMessages));
    }
    if system && !granted.has(Permission::SendSystemMessages) {
        return Err(ApiError::missing_permission(Permission::SendSystemMessages));
    }
    let user = &session.user;
    if !system {
        if let Some(command) = parse_command(&text) {
            if let Some(answer) = run_command(&state, user, channel, command).await? {
                return Ok(ok(answer));
            }
        }
    }
    let text = if state.plugins.has_hooks() {
        let state = state.clone().into_inner();
        state
            .plugins
            .before_store(&state, user, channel, None, text)
            .await?
    } else {
        text
    };
    let message = store_message(&state, user, channel, text, system).await?;
    Ok(ok(json!({ "messageID": message.id.to_string() })))
}

/// A chat command (`\\name`, `^name`, `|name`): the answer if it is handled instead of stored.
///
/// `\\chatbox ...` is the server's own (answered privately: in the response and as a
/// `plugin/tell` event). A command a plugin owns goes to the plugin. Other commands go to
/// chatbox bots: owner-only ones only to the invoker's bots and are not stored; public ones
/// are also stored as an ordinary message.
async fn run_command(
    state: &web::Data<AppState>,
    user: &UserRecord,
    channel: u64,
    command: CommandText,
) -> ApiResult<Option<Value>> {
    if command.name.eq_ignore_ascii_case("chatbox") && !command.owner_only {
        let reply = crate::chatbox::licenses::chat_command(state, user, &command.args).await?;
        state.bus.emit(
            "plugin/tell",
            json!({ "plugin": "chatbox", "text": reply, "channelID": channel.to_string() }),
            Audience::User(user.id),
        );
        return Ok(Some(json!({ "command": "chatbox", "reply": reply })));
    }
    if let Some(owner) = state.plugins.command_owner(&command.name) {
        let plugin = owner.manifest.name.clone();
        let name = command.name.clone();
        state
            .plugins
            .run_command(state, owner, command, user, channel)?;
        return Ok(Some(json!({ "command": name, "plugin": plugin })));
    }
    let bots = crate::chatbox::command(state, user, channel, &command);
    Ok(command
        .owner_only
        .then(|| json!({ "command": command.name, "bots": bots })))
}

/// Stores a new message by `user` (or a system message) in `channel`, waits until it is
/// durable, and emits `message/new` and mention events. No permission checks: callers do them.
pub async fn store_message(
    state: &AppState,
    user: &UserRecord,
    channel: u64,
    text: String,
    system: bool,
) -> ApiResult<MessageRecord> {
    store(state, user, channel, text, system, None).await
}

/// `store_message` for a chatbox bot's `say`: `via` (`{name, licenseID}`) travels in the
/// `message/new` event as `message.chatbox` (not stored: history shows the license owner).
pub async fn store_message_via(
    state: &AppState,
    user: &UserRecord,
    channel: u64,
    text: String,
    via: Option<Value>,
) -> ApiResult<MessageRecord> {
    store(state, user, channel, text, false, via).await
}

async fn store(
    state: &AppState,
    user: &UserRecord,
    channel: u64,
    text: String,
    system: bool,
    via: Option<Value>,
) -> ApiResult<MessageRecord> {
    let message = MessageRecord {
        id: state.store.next_id(),
        channel_id: channel,
        system,
        mentions: mentioned_users(state, &text)?,
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
    if !state.store.insert_message(&message)? {
        return Err(ApiError::not_found("channel"));
    }
    state.store.durable().await?;
    let mut view = message_json(&message);
    if let (Some(via), Some(view)) = (via, view.as_object_mut()) {
        view.insert("chatbox".into(), via);
    }
    state.bus.emit(
        "message/new",
        json!({ "message": view }),
        Audience::Channel(channel),
    );
    emit_mentions(state, &message.mentions, &message, true);
    Ok(message)
}

/// `GET /api/messages/:id`
pub async fn get(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = visible_message(&state, req.requester(), &path)?;
    Ok(ok(json!({ "message": MessageView::from(&message) })))
}

fn not_yours(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotYours,
        format!("you can only {what} your own messages"),
    )
}

/// `PATCH /api/messages/:id`: the author edits the text.
pub async fn edit(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let text = req.string("text")?;
    validate_message_text(&text, state.config.max_message_length)?;
    let session = req.logged_in()?;
    let user = session.user.id;
    let message = visible_message(&state, req.requester(), &path)?;
    if message.author.as_ref().map(|a| a.id) != Some(user) {
        return Err(not_yours("edit"));
    }
    let text = if state.plugins.has_hooks() {
        let state = state.clone().into_inner();
        let (channel, id) = (message.channel_id, Some(message.id));
        state
            .plugins
            .before_store(&state, &session.user, channel, id, text)
            .await?
    } else {
        text
    };
    let mentions = mentioned_users(&state, &text)?;
    let (old, new) = state
        .store
        .edit_message(message.id, &text, &mentions, now_ms())?
        .ok_or_else(|| ApiError::not_found("message"))?;
    state.store.durable().await?;
    state.bus.emit(
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
    emit_mentions(&state, &added, &new, true);
    emit_mentions(&state, &removed, &new, false);
    Ok(ok(json!({})))
}

/// `DELETE /api/messages/:id`: by the author, or with deleteMessages in the channel.
pub async fn delete(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = req.logged_in()?.user.id;
    let who = req.requester();
    let message = visible_message(&state, who, &path)?;
    let own = message.author.as_ref().map(|a| a.id) == Some(user);
    if !own
        && !state
            .perms()
            .has(who, Some(message.channel_id), Permission::DeleteMessages)
    {
        return Err(not_yours("delete").with("missingPermission", Permission::DeleteMessages.key()));
    }
    delete_message(&state, message.id).await?;
    Ok(ok(json!({})))
}

/// Deletes a message, waits until that is durable, and emits the events (pins, delete,
/// mentions). No permission checks: callers do them.
pub async fn delete_message(state: &AppState, id: u64) -> ApiResult<()> {
    let deleted = state
        .store
        .delete_message(id)?
        .ok_or_else(|| ApiError::not_found("message"))?;
    state.store.durable().await?;
    let id = deleted.id.to_string();
    if deleted.pinned {
        state.bus.emit(
            "channel/pins/remove",
            json!({ "messageID": id }),
            Audience::Channel(deleted.channel_id),
        );
    }
    state.bus.emit(
        "message/delete",
        json!({ "messageID": id }),
        Audience::Channel(deleted.channel_id),
    );
    emit_mentions(state, &deleted.mentions, &deleted, false);
    Ok(())
}

/// `GET /api/users/:id/mentions`: newest first, only from channels the requester may read.
pub async fn user_mentions(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let limit = req
        .opt_u64("limit")?
        .unwrap_or(MAX_MENTIONS_PAGE)
        .clamp(1, MAX_MENTIONS_PAGE) as usize;
    let skip = req.opt_u64("skip")?.unwrap_or(0) as usize;
    let user = find_user(&state, &path)?;
    let who = req.requester();
    let mut found = Vec::with_capacity(limit);
    let mut skipped = 0;
    for entry in state.store.mentions_of(user.id) {
        let (message_id, channel) = entry?;
        if !state.can_read(who, channel) {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        if let Some(message) = state.store.message_in(channel, message_id)? {
            found.push(message);
            if found.len() == limit {
                break;
            }
        }
    }
    Ok(message_list("mentions", &found))
}
