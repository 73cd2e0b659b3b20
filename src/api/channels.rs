//! Channels: listing, creation, renames, deletion, read state, history, role overrides and
//! pins (API doc "Channels").
//!
//! A channel the requester may not read (readMessages in that channel) is left out of the
//! channel list; the endpoints that name it answer NOT_ALLOWED (spec 2.4), an unknown id
//! NOT_FOUND. Channel names are unique ignoring case, for everyone.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::messages::{message_json, message_list};
use super::roles::{
    parse_permission_object, parse_role_ref, RoleRef, EVERYONE_ROLE_ID, USER_ROLE_ID,
};
use super::{ok, path_id};
use crate::domain::validate_name;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::params::ApiRequest;
use crate::perms::{ChannelOverrides, Permission, PermissionSet, Requester};
use crate::state::AppState;
use crate::store::{ChannelNameError, ChannelRecord, PinChange};

/// Unread counts stop here (API doc: capped at 200).
pub const UNREAD_CAP: usize = 200;
/// Most messages one history request returns.
pub const MAX_HISTORY: u64 = 50;

/// The id of the channel a URL names, if it exists (NOT_FOUND) and the requester may read it
/// (NOT_ALLOWED with `missingPermission: readMessages`, spec 2.4). Answered from the permission
/// index alone (it knows every channel), so handlers that only need the id read nothing from
/// storage.
pub fn visible_channel_id(state: &AppState, who: Requester, raw_id: &str) -> ApiResult<u64> {
    let id = existing_channel_id(state, raw_id)?;
    state.require_in(who, Some(id), Permission::ReadMessages)?;
    Ok(id)
}

/// The id of the channel a URL names, if it exists; NOT_FOUND otherwise.
fn existing_channel_id(state: &AppState, raw_id: &str) -> ApiResult<u64> {
    let id = path_id(raw_id, "channel")?;
    if !state.perms().has_channel(id) {
        return Err(ApiError::not_found("channel"));
    }
    Ok(id)
}

/// The channel a URL names, if the requester may read it (see `visible_channel_id`).
pub fn visible_channel(state: &AppState, who: Requester, raw_id: &str) -> ApiResult<ChannelRecord> {
    let id = visible_channel_id(state, who, raw_id)?;
    stored_channel(state, id)
}

fn stored_channel(state: &AppState, id: u64) -> ApiResult<ChannelRecord> {
    state
        .store
        .channel(id)?
        .ok_or_else(|| ApiError::not_found("channel"))
}

/// The channel object, with the unread extra data when `viewer` is a logged-in user.
pub fn channel_json(
    state: &AppState,
    channel: &ChannelRecord,
    viewer: Option<u64>,
) -> ApiResult<Value> {
    let mut object = json!({ "id": channel.id.to_string(), "name": channel.name });
    if let Some(user) = viewer {
        let (count, oldest) = state.store.unread(channel.id, user, UNREAD_CAP)?;
        object["unreadMessageCount"] = json!(count);
        object["oldestUnreadMessageID"] = json!(oldest.map(|id| id.to_string()));
    }
    Ok(object)
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

/// `GET /api/channels`
pub async fn list(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let who = req.requester();
    let mut visible = Vec::new();
    for channel in state.store.channels()? {
        if state.can_read(who, channel.id) {
            visible.push(channel);
        }
    }
    let channels = visible
        .iter()
        .map(|c| channel_json(&state, c, req.user_id()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(json!({ "channels": channels })))
}

/// `POST /api/channels`
pub async fn create(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let name = req.string("name")?;
    validate_name(&name)?;
    let who = req.requester();
    let granted = state.granted(who, None);
    if !granted.has(Permission::ManageChannels) {
        return Err(ApiError::missing_permission(Permission::ManageChannels));
    }
    let channel = ChannelRecord {
        id: state.store.next_id(),
        name: name.clone(),
        overrides: ChannelOverrides::default(),
    };
    {
        let mut index = state.perms_mut();
        state
            .store
            .insert_channel(&channel)
            .map_err(|e| channel_name_error(&name, e))?;
        index.set_channel_overrides(channel.id, ChannelOverrides::default());
    }
    state.store.durable().await?;
    tracing::info!(channel = channel.id, name = %channel.name, "channel created");
    state.bus.emit(
        "channel/new",
        json!({ "channel": channel_json(&state, &channel, None)? }),
        Audience::Channel(channel.id),
    );
    Ok(ok(json!({ "channelID": channel.id.to_string() })))
}

/// `GET /api/channels/:id`
pub async fn get(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let channel = visible_channel(&state, req.requester(), &path)?;
    Ok(ok(
        json!({ "channel": channel_json(&state, &channel, req.user_id())? }),
    ))
}

/// `PATCH /api/channels/:id`: rename.
pub async fn rename(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = req.string("name")?;
    validate_name(&name)?;
    let who = req.requester();
    let id = visible_channel_id(&state, who, &path)?;
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
    state.bus.emit(
        "channel/update",
        json!({ "channel": channel_json(&state, &channel, None)? }),
        Audience::Channel(channel.id),
    );
    Ok(ok(json!({})))
}

/// `DELETE /api/channels/:id`: the channel goes at once; its messages, pins, mentions and
/// read state are purged right after (and at the next start, if the server stops first).
pub async fn delete(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let who = req.requester();
    let channel = visible_channel(&state, who, &path)?;
    state.require(who, Permission::ManageChannels)?;
    {
        let mut index = state.perms_mut();
        state
            .store
            .delete_channel(channel.id)?
            .ok_or_else(|| ApiError::not_found("channel"))?;
        index.remove_channel(channel.id);
    }
    state.store.durable().await?;
    tracing::info!(channel = channel.id, name = %channel.name, "channel deleted");
    state.bus.emit(
        "channel/delete",
        json!({ "channelID": channel.id.to_string() }),
        Audience::Everyone,
    );
    let purge_state = state.clone();
    let id = channel.id;
    actix_web::rt::task::spawn_blocking(move || match purge_state.store.purge_channel(id) {
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
    Ok(ok(json!({})))
}

/// `POST /api/channels/:id/mark-read`
pub async fn mark_read(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = req.logged_in()?.user.id;
    let channel = visible_channel(&state, req.requester(), &path)?;
    if let Some(latest) = state.store.latest_message_id(channel.id)? {
        state.store.mark_read(channel.id, user, latest)?;
        state.store.durable().await?;
    }
    state.bus.emit(
        "channel/update",
        json!({ "channel": channel_json(&state, &channel, Some(user))? }),
        Audience::User(user),
    );
    Ok(ok(json!({})))
}

/// Parses an optional message id parameter (`before`, `after`).
fn id_param(req: &ApiRequest, key: &str) -> ApiResult<Option<u64>> {
    match req.opt_string(key)? {
        None => Ok(None),
        Some(raw) => crate::ids::parse_id(&raw)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_type(key, "a message ID")),
    }
}

/// `GET /api/channels/:id/messages`: messages (oldest first) strictly between `after` and
/// `before`: the first `limit` after `after` when it is given (paging forward), else the newest
/// before `before`. An anchor that is not a message of this channel is NOT_FOUND. `limit`
/// outside 1..=50 is clamped, as the reference server does.
pub async fn messages(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let before = id_param(&req, "before")?;
    let after = id_param(&req, "after")?;
    let limit = req
        .opt_u64("limit")?
        .unwrap_or(MAX_HISTORY)
        .clamp(1, MAX_HISTORY);
    let channel = visible_channel_id(&state, req.requester(), &path)?;
    for anchor in [before, after].into_iter().flatten() {
        if state.store.message_in(channel, anchor)?.is_none() {
            return Err(ApiError::not_found("message"));
        }
    }
    let messages = state
        .store
        .messages(channel, before, after, limit as usize)?;
    Ok(message_list("messages", &messages))
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
pub async fn get_role_permissions(
    state: web::Data<AppState>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // Documented as needing no permission: a channel's overrides are public.
    let channel = stored_channel(&state, existing_channel_id(&state, &path)?)?;
    Ok(ok(
        json!({ "rolePermissions": overrides_json(&channel.overrides) }),
    ))
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
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let entries = req
        .opt_json_object("rolePermissions")?
        .ok_or_else(|| ApiError::incomplete("rolePermissions"))?
        .clone();
    let who = req.requester();
    let channel = visible_channel_id(&state, who, &path)?;
    let mut parsed = Vec::with_capacity(entries.len());
    for (key, value) in &entries {
        let role = parse_role_ref(key)?;
        parsed.push((role, parse_override(role, key, value)?));
    }
    {
        let mut index = state.perms_mut();
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
        index.set_channel_overrides(channel, overrides);
    }
    state.store.durable().await?;
    Ok(ok(json!({})))
}

/// `GET /api/channels/:id/pins`
pub async fn pins(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let channel = visible_channel_id(&state, req.requester(), &path)?;
    let pins = state.store.pins(channel)?;
    Ok(message_list("pins", &pins))
}

/// `POST /api/channels/:id/pins`
pub async fn pin(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let raw = req.string("messageID")?;
    let who = req.requester();
    let channel = visible_channel_id(&state, who, &path)?;
    state.require_in(who, Some(channel), Permission::ManagePins)?;
    let not_here =
        || ApiError::not_found("message").with("reason", "no such message in this channel");
    let message_id = crate::ids::parse_id(&raw).ok_or_else(not_here)?;
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
    state.bus.emit(
        "channel/pins/add",
        json!({ "message": message_json(&message) }),
        Audience::Channel(channel),
    );
    Ok(ok(json!({})))
}

/// `DELETE /api/channels/:channelID/pins/:messageID`
pub async fn unpin(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (channel_raw, message_raw) = path.into_inner();
    let who = req.requester();
    let channel = visible_channel_id(&state, who, &channel_raw)?;
    state.require_in(who, Some(channel), Permission::ManagePins)?;
    let not_pinned =
        || ApiError::not_found("pin").with("reason", "that message is not pinned in this channel");
    let message_id = crate::ids::parse_id(&message_raw).ok_or_else(not_pinned)?;
    match state.store.set_pinned(channel, message_id, false)? {
        PinChange::Changed(_) => {}
        PinChange::NotFound | PinChange::Unchanged => return Err(not_pinned()),
    }
    state.store.durable().await?;
    state.bus.emit(
        "channel/pins/remove",
        json!({ "messageID": message_id.to_string() }),
        Audience::Channel(channel),
    );
    Ok(ok(json!({})))
}
