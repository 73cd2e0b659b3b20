//! Roles, the role order, and granting roles to users (spec 2.5, API doc "Roles").
//!
//! Every rule the doc states is enforced here, against the in-memory permission index only:
//! a role can be created, changed, deleted, granted or taken only by someone who holds every
//! permission it mentions (true or false) and whose most prioritized role ranks above it; the
//! internal roles `_everyone` and `_user` cannot be changed server-wide; reordering may only
//! move roles below the requester's own top role and may not cost them manageRoles. Writes to
//! storage and to the index happen together, under the index's write lock.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::users::{emit_user_update, find_user};
use super::{ok, path_id};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::params::ApiRequest;
use crate::perms::{
    Granted, Permission, PermissionIndex, PermissionObjectError, PermissionSet, ReadAccess,
    Requester,
};
use crate::state::AppState;
use crate::store::RoleRecord;

pub const EVERYONE_ROLE_ID: &str = "_everyone";
pub const USER_ROLE_ID: &str = "_user";
/// Longest role name (API doc: max length 32).
pub const MAX_ROLE_NAME_LEN: usize = 32;

/// A role named in a URL or parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRef {
    Everyone,
    User,
    Ordinary(u64),
}

pub fn parse_role_ref(raw: &str) -> ApiResult<RoleRef> {
    match raw {
        EVERYONE_ROLE_ID => Ok(RoleRef::Everyone),
        USER_ROLE_ID => Ok(RoleRef::User),
        other => path_id(other, "role").map(RoleRef::Ordinary),
    }
}

fn role_json(id: &str, name: &str, permissions: &PermissionSet) -> Value {
    json!({ "id": id, "name": name, "permissions": permissions.to_json() })
}

pub fn ordinary_json(role: &RoleRecord) -> Value {
    role_json(&role.id.to_string(), &role.name, &role.permissions)
}

/// An internal role with the server-wide permissions the read-access preset gives it.
pub fn internal_json(which: RoleRef, access: ReadAccess) -> Value {
    match which {
        RoleRef::User => role_json(USER_ROLE_ID, "User", &access.user()),
        _ => role_json(EVERYONE_ROLE_ID, "Everyone", &access.everyone()),
    }
}

fn internal_refused() -> ApiError {
    ApiError::new(
        ErrorCode::NotAllowed,
        "internal roles (_everyone, _user) cannot be changed server-wide; override them per channel",
    )
}

fn find_role(state: &AppState, id: u64) -> ApiResult<RoleRecord> {
    state
        .store
        .role(id)?
        .ok_or_else(|| ApiError::not_found("role"))
}

/// Parses a permission object given as parameter `parameter` (for error messages).
pub fn parse_permission_object(
    object: &serde_json::Map<String, Value>,
    parameter: &str,
) -> ApiResult<PermissionSet> {
    PermissionSet::from_json(object).map_err(|e| match e {
        PermissionObjectError::UnknownKey(k) => ApiError::new(
            ErrorCode::InvalidParameterType,
            format!("`{k}` is not a permission"),
        )
        .with("parameter", format!("{parameter}.{k}")),
        PermissionObjectError::NotBoolean(k) => {
            ApiError::invalid_type(&format!("{parameter}.{k}"), "true, false or null")
        }
    })
}

/// Parses a permission object parameter.
fn permissions_param(req: &ApiRequest, key: &str) -> ApiResult<Option<PermissionSet>> {
    req.opt_json_object(key)?
        .map(|object| parse_permission_object(object, key))
        .transpose()
}

fn name_param(req: &ApiRequest, required: bool) -> ApiResult<Option<String>> {
    let name = if required {
        Some(req.string("name")?)
    } else {
        req.opt_string("name")?
    };
    if let Some(n) = &name {
        let len = n.chars().count();
        if len == 0 || len > MAX_ROLE_NAME_LEN {
            return Err(ApiError::new(
                ErrorCode::InvalidName,
                format!("role names must be 1 to {MAX_ROLE_NAME_LEN} characters"),
            ));
        }
    }
    Ok(name)
}

/// NOT_ALLOWED unless the requester holds every permission the set mentions.
fn require_holds(granted: Granted, set: &PermissionSet) -> ApiResult<()> {
    match Permission::ALL
        .into_iter()
        .find(|p| set.mentioned() & p.bit() != 0 && !granted.has(*p))
    {
        Some(missing) => Err(ApiError::missing_permission(missing).with(
            "reason",
            "a role may only mention permissions you hold yourself",
        )),
        None => Ok(()),
    }
}

/// NOT_ALLOWED unless the role ranks below the requester's most prioritized role.
fn require_below(index: &PermissionIndex, who: Requester, role: u64) -> ApiResult<()> {
    let top = match who {
        Requester::User(id) => index.top_rank(id),
        Requester::Guest => None,
    };
    match (top, index.rank(role)) {
        (Some(top), Some(rank)) if rank > top => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::NotAllowed,
            "you can only manage roles ranked below your own most prioritized role",
        )),
    }
}

/// `GET /api/roles`: ordinary roles in priority order, then `_user` and `_everyone`.
pub async fn list(state: web::Data<AppState>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    let (order, access) = {
        let index = state.perms();
        (index.order().to_vec(), index.read_access())
    };
    let mut roles = Vec::with_capacity(order.len() + 2);
    for id in order {
        if let Some(role) = state.store.role(id)? {
            roles.push(ordinary_json(&role));
        }
    }
    roles.push(internal_json(RoleRef::User, access));
    roles.push(internal_json(RoleRef::Everyone, access));
    Ok(ok(json!({ "roles": roles })))
}

/// `GET /api/roles/:id`
pub async fn get(
    state: web::Data<AppState>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let role = match parse_role_ref(&path)? {
        RoleRef::Ordinary(id) => ordinary_json(&find_role(&state, id)?),
        internal => internal_json(internal, state.perms().read_access()),
    };
    Ok(ok(json!({ "role": role })))
}

/// `POST /api/roles`
pub async fn create(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let name = name_param(&req, true)?.unwrap_or_default();
    let permissions = permissions_param(&req, "permissions")?
        .ok_or_else(|| ApiError::incomplete("permissions"))?;
    let who = req.requester();
    let role = {
        let mut index = state.perms_mut();
        let granted = index.resolve(who, None);
        if !granted.has(Permission::ManageRoles) {
            return Err(ApiError::missing_permission(Permission::ManageRoles));
        }
        require_holds(granted, &permissions)?;
        let position = match who {
            Requester::User(id) => index.top_rank(id).map_or(usize::MAX, |t| t + 1),
            Requester::Guest => usize::MAX,
        };
        let role = RoleRecord {
            id: state.store.next_id(),
            name,
            permissions,
        };
        let mut order = index.order().to_vec();
        order.insert(position.min(order.len()), role.id);
        state.store.insert_role(&role, &order)?;
        index.insert_role(role.id, permissions, position);
        role
    };
    state.store.durable().await?;
    state.bus.emit(
        "role/new",
        json!({ "role": ordinary_json(&role) }),
        Audience::Everyone,
    );
    Ok(ok(json!({ "roleID": role.id.to_string() })))
}

/// `PATCH /api/roles/:id`
pub async fn update(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = name_param(&req, false)?;
    let permissions = permissions_param(&req, "permissions")?;
    let who = req.requester();
    state.require(who, Permission::ManageRoles)?;
    let RoleRef::Ordinary(id) = parse_role_ref(&path)? else {
        return Err(internal_refused());
    };
    let role = {
        let mut index = state.perms_mut();
        let mut role = find_role(&state, id)?;
        require_below(&index, who, id)?;
        // Both what the role grants now and what it would grant: renaming or emptying a role
        // is as much managing it as giving it.
        let granted = index.resolve(who, None);
        require_holds(granted, &role.permissions)?;
        if let Some(p) = &permissions {
            require_holds(granted, p)?;
            role.permissions = *p;
        }
        if let Some(n) = name {
            role.name = n;
        }
        state.store.put_role(&role)?;
        index.update_role(id, role.permissions);
        role
    };
    state.store.durable().await?;
    state.bus.emit(
        "role/update",
        json!({ "role": ordinary_json(&role) }),
        Audience::Everyone,
    );
    Ok(ok(json!({})))
}

/// `DELETE /api/roles/:id`
pub async fn delete(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let who = req.requester();
    state.require(who, Permission::ManageRoles)?;
    let RoleRef::Ordinary(id) = parse_role_ref(&path)? else {
        return Err(internal_refused());
    };
    let holders = {
        let mut index = state.perms_mut();
        let role = find_role(&state, id)?;
        require_below(&index, who, id)?;
        require_holds(index.resolve(who, None), &role.permissions)?;
        let holders = state.store.delete_role(id)?;
        index.remove_role(id);
        holders
    };
    state.store.durable().await?;
    state.bus.emit(
        "role/delete",
        json!({ "roleID": id.to_string() }),
        Audience::Everyone,
    );
    for user in &holders {
        emit_user_update(&state, user);
    }
    Ok(ok(json!({})))
}

/// `GET /api/roles/order`
pub async fn get_order(state: web::Data<AppState>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    let ids: Vec<String> = state.perms().order().iter().map(u64::to_string).collect();
    Ok(ok(json!({ "roleIDs": ids })))
}

/// `PATCH /api/roles/order`
pub async fn set_order(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let raw = req.string_array("roleIDs")?;
    let who = req.requester();
    state.require(who, Permission::ManageRoles)?;
    {
        let mut index = state.perms_mut();
        let current = index.order().to_vec();
        let not_a_permutation = || {
            ApiError::new(
                ErrorCode::InvalidParameterType,
                "roleIDs must list every non-internal role exactly once",
            )
            .with("parameter", "roleIDs")
        };
        let new: Vec<u64> = raw
            .iter()
            .map(|r| crate::ids::parse_id(r).ok_or_else(not_a_permutation))
            .collect::<ApiResult<_>>()?;
        let mut sorted_new = new.clone();
        sorted_new.sort_unstable();
        let mut sorted_current = current.clone();
        sorted_current.sort_unstable();
        if sorted_new != sorted_current {
            return Err(not_a_permutation());
        }
        let fixed = match who {
            Requester::User(id) => index.top_rank(id).map_or(0, |t| t + 1),
            Requester::Guest => 0,
        };
        if new[..fixed] != current[..fixed] {
            return Err(ApiError::new(
                ErrorCode::NotAllowed,
                "you can only reorder roles ranked below your own most prioritized role",
            ));
        }
        // Moving a role is managing it: every role whose position changes may mention only
        // permissions the requester holds.
        let granted = index.resolve(who, None);
        for (i, role) in new.iter().enumerate() {
            if current[i] != *role {
                if let Some(record) = state.store.role(*role)? {
                    require_holds(granted, &record.permissions)?;
                }
            }
        }
        let mut trial = index.clone();
        trial.set_order(new.clone());
        if !trial.has(who, None, Permission::ManageRoles) {
            return Err(ApiError::new(
                ErrorCode::NotAllowed,
                "that order would take the manageRoles permission away from you",
            )
            .with("missingPermission", Permission::ManageRoles.key()));
        }
        state.store.set_role_order(&new)?;
        *index = trial;
    }
    state.store.durable().await?;
    Ok(ok(json!({})))
}

/// Shared checks of granting and taking a role. Returns (user id, role id).
fn check_grant(
    state: &AppState,
    index: &PermissionIndex,
    who: Requester,
    user_raw: &str,
    role_raw: &str,
) -> ApiResult<(u64, u64)> {
    let granted = index.resolve(who, None);
    if !granted.has(Permission::GrantRoles) {
        return Err(ApiError::missing_permission(Permission::GrantRoles));
    }
    let RoleRef::Ordinary(role_id) = parse_role_ref(role_raw)? else {
        return Err(ApiError::new(
            ErrorCode::NotAllowed,
            "internal roles are applied automatically and cannot be granted or taken",
        ));
    };
    let role = index
        .role(role_id)
        .ok_or_else(|| ApiError::not_found("role"))?;
    let user_id = find_user(state, user_raw)?.id;
    require_below(index, who, role_id)?;
    require_holds(granted, &role)?;
    Ok((user_id, role_id))
}

async fn change_user_role(
    state: &AppState,
    req: &ApiRequest,
    user_raw: &str,
    role_raw: &str,
    give: bool,
) -> ApiResult<HttpResponse> {
    let who = req.requester();
    let user = {
        let mut index = state.perms_mut();
        let (user_id, role_id) = check_grant(state, &index, who, user_raw, role_raw)?;
        let holds = index
            .user_role_ids(user_id)
            .is_some_and(|r| r.contains(&role_id));
        if holds == give {
            return Err(ApiError::new(
                ErrorCode::AlreadyPerformed,
                if give {
                    "the user already has that role"
                } else {
                    "the user does not have that role"
                },
            ));
        }
        let user = state
            .store
            .update_user(user_id, |u| {
                u.role_ids.retain(|r| *r != role_id);
                if give {
                    u.role_ids.push(role_id);
                }
            })?
            .ok_or_else(|| ApiError::not_found("user"))?;
        index.set_user_roles(user_id, user.role_ids.clone());
        user
    };
    state.store.durable().await?;
    emit_user_update(state, &user);
    Ok(ok(json!({})))
}

/// `POST /api/users/:userID/roles`
pub async fn give(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let role = req.string("roleID")?;
    change_user_role(&state, &req, &path, &role, true).await
}

/// `DELETE /api/users/:userID/roles/:roleID`
pub async fn take(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (user, role) = path.into_inner();
    change_user_role(&state, &req, &user, &role, false).await
}

/// `GET /api/users/:id/roles`
pub async fn user_roles(
    state: web::Data<AppState>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = find_user(&state, &path)?;
    let ids: Vec<String> = user.role_ids.iter().map(u64::to_string).collect();
    Ok(ok(json!({ "roleIDs": ids })))
}

/// `GET /api/users/:id/permissions`
pub async fn user_permissions(
    state: web::Data<AppState>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = find_user(&state, &path)?;
    let granted = state.granted(Requester::User(user.id), None);
    Ok(ok(json!({ "permissions": granted.to_json() })))
}

/// `GET /api/users/:userID/channel-permissions/:channelID`: the user's permissions with the
/// channel's overrides applied. The channel must be visible to the requester.
pub async fn user_channel_permissions(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (user_raw, channel_raw) = path.into_inner();
    let user = find_user(&state, &user_raw)?;
    let channel = super::channels::visible_channel_id(&state, req.requester(), &channel_raw)?;
    let granted = state.granted(Requester::User(user.id), Some(channel));
    Ok(ok(json!({ "permissions": granted.to_json() })))
}
