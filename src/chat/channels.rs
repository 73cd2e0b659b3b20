//! Channels: listing, creation, renames, deletion, read state, history, role overrides and
//! pins (API doc "Channels").
//!
//! A channel the requester may not read (readMessages in that channel) is left out of the
//! channel list; the use cases that name it answer NOT_ALLOWED (spec 2.4), an unknown id
//! NOT_FOUND. Channel names are unique ignoring case, for everyone.

use serde_json::{json, Map, Value};

use crate::domain::validate_name;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::perms::{Change, ChannelOverrides, Permission, PermissionSet, Requester};
use crate::store::{ChannelNameError, ChannelRecord, MessageRecord, PinChange};

use super::roles::{
    parse_permission_object, parse_role_ref, RoleRef, EVERYONE_ROLE_ID, USER_ROLE_ID,
};
use super::views::message_json;
use super::{id as path_id, require_not_above, Caller, Chat};

/// Unread counts stop here (API doc: capped at 200).
pub const UNREAD_CAP: usize = 200;
/// Most messages one history request returns.
pub const MAX_HISTORY: u64 = 50;

/// The id of the channel a URL names, if it exists (NOT_FOUND) and the requester may read it
/// (NOT_ALLOWED with `missingPermission: readMessages`, spec 2.4). Answered from the permission
/// index alone (it knows every channel), so handlers that only need the id read nothing from
/// storage.
pub fn visible_id(state: &Chat, who: Requester, raw_id: &str) -> ApiResult<u64> {
    let id = existing_channel_id(state, raw_id)?;
    state.require_in(who, Some(id), Permission::ReadMessages)?;
    Ok(id)
}

/// The id of the channel a URL names, if it exists; NOT_FOUND otherwise.
fn existing_channel_id(state: &Chat, raw_id: &str) -> ApiResult<u64> {
    let id = path_id(raw_id, "channel")?;
    if !state.perms().has_channel(id) {
        return Err(ApiError::not_found("channel"));
    }
    Ok(id)
}

/// The channel a URL names, if the requester may read it (see `visible_channel_id`).
pub fn visible(state: &Chat, who: Requester, raw_id: &str) -> ApiResult<ChannelRecord> {
    let id = visible_id(state, who, raw_id)?;
    stored_channel(state, id)
}

fn stored_channel(state: &Chat, id: u64) -> ApiResult<ChannelRecord> {
    state
        .store
        .channel(id)?
        .ok_or_else(|| ApiError::not_found("channel"))
}

/// The channel object, with the unread extra data when `viewer` is a logged-in user.
pub fn channel_json(
    state: &Chat,
    channel: &ChannelRecord,
    viewer: Option<u64>,
) -> ApiResult<Value> {
    let mut object = json!({ "id": channel.id.to_string(), "name": channel.name });
    if let Some(user) = viewer {
        let (count, oldest) = state.store.unread(channel.id, user, UNREAD_CAP)?;
        set_unread(&mut object, count, oldest);
    }
    Ok(object)
}

/// The unread extra data of a channel object.
fn set_unread(object: &mut Value, count: usize, oldest: Option<u64>) {
    object["unreadMessageCount"] = json!(count);
    object["oldestUnreadMessageID"] = json!(oldest.map(|id| id.to_string()));
}

fn name_taken(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NameAlreadyTaken,
        format!("a channel named {name} already exists"),
    )
}

fn channel_name_error(name: &str, e: ChannelNameError) -> ApiError {
    match e {
        ChannelNameError::Taken => name_taken(name),
        ChannelNameError::Store(e) => e.into(),
    }
}

/// The channels the caller may read, with unread data for a user.
pub fn list(state: &Chat, caller: Caller<'_>) -> ApiResult<Vec<Value>> {
    let who = caller.requester();
    let mut visible = Vec::new();
    for channel in state.store.channels()? {
        if state.can_read(who, channel.id) {
            visible.push(channel);
        }
    }
    let mut channels: Vec<Value> = visible
        .iter()
        .map(|c| json!({ "id": c.id.to_string(), "name": c.name }))
        .collect();
    // The unread data of every channel in one storage call (one statement on PostgreSQL).
    if let Some(user) = caller.user_id() {
        let ids: Vec<u64> = visible.iter().map(|c| c.id).collect();
        let unread = state.store.unread_many(&ids, user, UNREAD_CAP)?;
        for (object, (count, oldest)) in channels.iter_mut().zip(unread) {
            set_unread(object, count, oldest);
        }
    }
    Ok(channels)
}

/// `POST /api/channels`
pub async fn create(state: &Chat, caller: Caller<'_>, name: String) -> ApiResult<u64> {
    validate_name(&name)?;
    let who = caller.requester();
    let granted = state.granted(who, None);
    if !granted.has(Permission::ManageChannels) {
        return Err(ApiError::missing_permission(Permission::ManageChannels));
    }
    let channel = ChannelRecord {
        id: state.store.next_id(),
        name: name.clone(),
        overrides: ChannelOverrides::default(),
    };
    state.change_perms(|_| {
        state
            .store
            .insert_channel(&channel)
            .map_err(|e| channel_name_error(&name, e))?;
        let change = Change::SetChannelOverrides {
            channel: channel.id,
            overrides: ChannelOverrides::default(),
        };
        Ok::<_, ApiError>(((), vec![change]))
    })?;
    state.durable_with_perms().await?;
    tracing::info!(channel = channel.id, name = %channel.name, "channel created");
    state.emit(
        "channel/new",
        json!({ "channel": channel_json(state, &channel, None)? }),
        Audience::Channel(channel.id),
    );
    Ok(channel.id)
}

/// `GET /api/channels/:id`
pub fn get(state: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<Value> {
    let channel = visible(state, caller.requester(), id)?;
    channel_json(state, &channel, caller.user_id())
}

/// `PATCH /api/channels/:id`: rename.
pub async fn rename(state: &Chat, caller: Caller<'_>, id: &str, name: String) -> ApiResult<()> {
    validate_name(&name)?;
    let who = caller.requester();
    let id = visible_id(state, who, id)?;
    let granted = state.granted(who, None);
    if !granted.has(Permission::ManageChannels) {
        return Err(ApiError::missing_permission(Permission::ManageChannels));
    }
    let channel = state
        .store
        .rename_channel(id, &name)
        .map_err(|e| channel_name_error(&name, e))?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    state.store.durable().await?;
    state.emit(
        "channel/update",
        json!({ "channel": channel_json(state, &channel, None)? }),
        Audience::Channel(channel.id),
    );
    Ok(())
}

/// `DELETE /api/channels/:id`: the channel goes at once; its messages, pins, mentions and
/// read state are purged right after (and at the next start, if the server stops first).
pub async fn delete(state: &std::sync::Arc<Chat>, caller: Caller<'_>, id: &str) -> ApiResult<()> {
    let who = caller.requester();
    let channel = visible(state, who, id)?;
    state.require(who, Permission::ManageChannels)?;
    state.change_perms(|_| {
        state
            .store
            .delete_channel(channel.id)?
            .ok_or_else(|| ApiError::not_found("channel"))?;
        Ok::<_, ApiError>(((), vec![Change::RemoveChannel(channel.id)]))
    })?;
    state.durable_with_perms().await?;
    super::search::unindex_channel(state, channel.id);
    tracing::info!(channel = channel.id, name = %channel.name, "channel deleted");
    state.emit(
        "channel/delete",
        json!({ "channelID": channel.id.to_string() }),
        Audience::Everyone,
    );
    let purge_state = state.clone();
    let id = channel.id;
    tokio::task::spawn_blocking(move || match purge_state.store.purge_channel(id) {
        Ok(stats) => tracing::info!(
            channel = id,
            messages = stats.messages,
            mentions = stats.mentions,
            pins = stats.pins,
            read_states = stats.read_states,
            "deleted channel purged"
        ),
        Err(e) => {
            tracing::error!(channel = id, error = %e, "purging a deleted channel failed; it is retried at the next start")
        }
    });
    Ok(())
}

/// `POST /api/channels/:id/mark-read`
pub async fn mark_read(state: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<()> {
    let user = caller.user()?.id;
    let channel = visible(state, caller.requester(), id)?;
    if let Some(latest) = state.store.latest_message_id(channel.id)? {
        state.store.mark_read(channel.id, user, latest)?;
        state.store.durable().await?;
    }
    state.emit(
        "channel/update",
        json!({ "channel": channel_json(state, &channel, Some(user))? }),
        Audience::User(user),
    );
    Ok(())
}

/// `GET /api/channels/:id/messages`: messages (oldest first) strictly between `after` and
/// `before`: the first `limit` after `after` when it is given (paging forward), else the newest
/// before `before`. An anchor that is not a message of this channel is NOT_FOUND. `limit`
/// outside 1..=50 is clamped, as the reference server does.
pub fn history(
    state: &Chat,
    caller: Caller<'_>,
    id: &str,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u64>,
) -> ApiResult<Vec<MessageRecord>> {
    let limit = limit.unwrap_or(MAX_HISTORY).clamp(1, MAX_HISTORY);
    let channel = visible_id(state, caller.requester(), id)?;
    for anchor in [before, after].into_iter().flatten() {
        if state.store.message_in(channel, anchor)?.is_none() {
            return Err(ApiError::not_found("message"));
        }
    }
    Ok(state
        .store
        .messages(channel, before, after, limit as usize)?)
}

/// The key of an internal or ordinary role in a `rolePermissions` map.
fn role_key(role: RoleRef) -> String {
    match role {
        RoleRef::Everyone => EVERYONE_ROLE_ID.to_owned(),
        RoleRef::User => USER_ROLE_ID.to_owned(),
        RoleRef::Ordinary(id) => id.to_string(),
    }
}

fn overrides_json(overrides: &ChannelOverrides) -> Map<String, Value> {
    let mut map = Map::new();
    let mut roles: Vec<_> = overrides.roles.iter().collect();
    roles.sort_by_key(|(id, _)| **id);
    let entries = [
        (RoleRef::Everyone, &overrides.everyone),
        (RoleRef::User, &overrides.user),
    ]
    .into_iter()
    .chain(
        roles
            .into_iter()
            .map(|(id, set)| (RoleRef::Ordinary(*id), set)),
    );
    for (role, set) in entries {
        if set.mentioned() != 0 {
            map.insert(role_key(role), Value::Object(set.to_json()));
        }
    }
    map
}

/// `GET /api/channels/:id/role-permissions`
pub fn role_permissions(state: &Chat, id: &str) -> ApiResult<Map<String, Value>> {
    // Documented as needing no permission: a channel's overrides are public.
    let channel = stored_channel(state, existing_channel_id(state, id)?)?;
    Ok(overrides_json(&channel.overrides))
}

/// Parses one entry of `rolePermissions`: only channel-overridable keys, and only
/// readMessages for `_everyone`.
fn parse_override(role: RoleRef, key: &str, value: &Value) -> ApiResult<PermissionSet> {
    let parameter = format!("rolePermissions.{key}");
    let Value::Object(object) = value else {
        return Err(ApiError::invalid_type(&parameter, "a permission object"));
    };
    let set = parse_permission_object(object, &parameter)?;
    let allowed: u32 = match role {
        RoleRef::Everyone => Permission::ReadMessages.bit(),
        _ => Permission::CHANNEL_OVERRIDABLE
            .iter()
            .map(|p| p.bit())
            .fold(0, |a, b| a | b),
    };
    if let Some(p) = Permission::ALL
        .into_iter()
        .find(|p| set.mentioned() & p.bit() != 0 && allowed & p.bit() == 0)
    {
        let reason = if role == RoleRef::Everyone {
            format!(
                "_everyone can only override readMessages in a channel, not {}",
                p.key()
            )
        } else {
            format!("{} cannot be overridden per channel", p.key())
        };
        return Err(ApiError::new(ErrorCode::NotAllowed, reason)
            .with("parameter", format!("{parameter}.{}", p.key())));
    }
    Ok(set)
}

/// `PATCH /api/channels/:id/role-permissions`: replaces the overrides of each role given;
/// `{}` removes a role's entry. Needs manageChannels in the channel, and, as for roles, the
/// requester must hold in the channel every permission an entry mentions.
pub async fn set_role_permissions(
    state: &Chat,
    caller: Caller<'_>,
    id: &str,
    entries: &Map<String, Value>,
) -> ApiResult<()> {
    let who = caller.requester();
    let channel = visible_id(state, who, id)?;
    let mut parsed = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let role = parse_role_ref(key)?;
        parsed.push((role, parse_override(role, key, value)?));
    }
    state.change_perms(|index| {
        let granted = index.resolve(who, Some(channel));
        if !granted.has(Permission::ManageChannels) {
            return Err(ApiError::missing_permission(Permission::ManageChannels));
        }
        let mut overrides = state
            .store
            .channel(channel)?
            .ok_or_else(|| ApiError::not_found("channel"))?
            .overrides;
        for (role, set) in &parsed {
            if let Some(p) = Permission::ALL
                .into_iter()
                .find(|p| set.mentioned() & p.bit() != 0 && !granted.has(*p))
            {
                return Err(ApiError::missing_permission(p).with(
                    "reason",
                    "an override may only mention permissions you hold in this channel",
                ));
            }
            match role {
                RoleRef::Everyone => overrides.everyone = *set,
                RoleRef::User => overrides.user = *set,
                RoleRef::Ordinary(id) => {
                    if index.role(*id).is_none() {
                        return Err(ApiError::not_found("role").with("role", id.to_string()));
                    }
                    // No moderator locks those ranked above him out of a channel.
                    if overrides.roles.get(id) != Some(set) {
                        require_not_above(index, who, *id)?;
                    }
                    if set.mentioned() == 0 {
                        overrides.roles.remove(id);
                    } else {
                        overrides.roles.insert(*id, *set);
                    }
                }
            }
        }
        state
            .store
            .set_channel_overrides(channel, &overrides)?
            .ok_or_else(|| ApiError::not_found("channel"))?;
        Ok::<_, ApiError>(((), vec![Change::SetChannelOverrides { channel, overrides }]))
    })?;
    state.durable_with_perms().await?;
    Ok(())
}

/// `GET /api/channels/:id/pins`
pub fn pins(state: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<Vec<MessageRecord>> {
    let channel = visible_id(state, caller.requester(), id)?;
    Ok(state.store.pins(channel)?)
}

/// `POST /api/channels/:id/pins`
pub async fn pin(state: &Chat, caller: Caller<'_>, id: &str, raw: &str) -> ApiResult<()> {
    let who = caller.requester();
    let channel = visible_id(state, who, id)?;
    state.require_in(who, Some(channel), Permission::ManagePins)?;
    let not_here =
        || ApiError::not_found("message").with("reason", "no such message in this channel");
    let message_id = crate::ids::parse_id(raw).ok_or_else(not_here)?;
    let message = match state.store.set_pinned(channel, message_id, true)? {
        PinChange::NotFound => return Err(not_here()),
        PinChange::Unchanged => {
            return Err(ApiError::new(
                ErrorCode::AlreadyPerformed,
                "that message is already pinned",
            ))
        }
        PinChange::Changed(m) => m,
    };
    state.store.durable().await?;
    state.emit(
        "channel/pins/add",
        json!({ "message": message_json(&message) }),
        Audience::Channel(channel),
    );
    Ok(())
}

/// `DELETE /api/channels/:channelID/pins/:messageID`
pub async fn unpin(
    state: &Chat,
    caller: Caller<'_>,
    channel_raw: &str,
    message_raw: &str,
) -> ApiResult<()> {
    let who = caller.requester();
    let channel = visible_id(state, who, channel_raw)?;
    state.require_in(who, Some(channel), Permission::ManagePins)?;
    let not_pinned =
        || ApiError::not_found("pin").with("reason", "that message is not pinned in this channel");
    let message_id = crate::ids::parse_id(message_raw).ok_or_else(not_pinned)?;
    match state.store.set_pinned(channel, message_id, false)? {
        PinChange::Changed(_) => {}
        PinChange::NotFound | PinChange::Unchanged => return Err(not_pinned()),
    }
    state.store.durable().await?;
    state.emit(
        "channel/pins/remove",
        json!({ "messageID": message_id.to_string() }),
        Audience::Channel(channel),
    );
    Ok(())
}
