//! Roles, the role order, and granting roles to users (spec 2.5, API doc "Roles").
//!
//! Every rule the doc states is enforced here, against the in-memory permission index only:
//! a role can be created, changed, deleted, granted or taken only by someone who holds every
//! permission it mentions (true or false) and whose most prioritized role ranks above it; the
//! internal roles `_everyone` and `_user` cannot be changed server-wide; reordering may only
//! move roles below the requester's own top role and may not cost them manageRoles. Writes to
//! storage and to the index happen together, under the index's write lock.

use serde_json::{json, Map, Value};

use super::users::{emit_user_update, find as find_user};
use super::{id as path_id, require_below, Caller, Chat};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::perms::{
    Change, Granted, Permission, PermissionIndex, PermissionObjectError, PermissionSet, ReadAccess,
    Requester,
};
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

fn find_role(state: &Chat, id: u64) -> ApiResult<RoleRecord> {
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
pub fn permissions_value(
    object: Option<&Map<String, Value>>,
    key: &str,
) -> ApiResult<Option<PermissionSet>> {
    object
        .map(|object| parse_permission_object(object, key))
        .transpose()
}

/// Checks a role name: 1 to 32 characters (INVALID_NAME).
fn check_name(name: &Option<String>) -> ApiResult<()> {
    if let Some(n) = name {
        let len = n.chars().count();
        if len == 0 || len > MAX_ROLE_NAME_LEN {
            return Err(ApiError::new(
                ErrorCode::InvalidName,
                format!("role names must be 1 to {MAX_ROLE_NAME_LEN} characters"),
            ));
        }
    }
    Ok(())
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

/// `GET /api/roles`: ordinary roles in priority order, then `_user` and `_everyone`.
pub fn list(state: &Chat) -> ApiResult<Vec<Value>> {
    let (order, access) = {
        let index = state.perms();
        (index.order().to_vec(), index.read_access())
    };
    // Every role in one storage call (one statement on PostgreSQL), then in priority order.
    let mut records: std::collections::HashMap<u64, _> = state
        .store
        .roles()?
        .into_iter()
        .map(|role| (role.id, role))
        .collect();
    let mut roles = Vec::with_capacity(order.len() + 2);
    for id in order {
        if let Some(role) = records.remove(&id) {
            roles.push(ordinary_json(&role));
        }
    }
    roles.push(internal_json(RoleRef::User, access));
    roles.push(internal_json(RoleRef::Everyone, access));
    Ok(roles)
}

/// `GET /api/roles/:id`
pub fn get(state: &Chat, id: &str) -> ApiResult<Value> {
    let role = match parse_role_ref(id)? {
        RoleRef::Ordinary(id) => ordinary_json(&find_role(state, id)?),
        internal => internal_json(internal, state.perms().read_access()),
    };
    Ok(role)
}

/// `POST /api/roles`
pub async fn create(
    state: &Chat,
    caller: Caller<'_>,
    name: String,
    permissions: PermissionSet,
) -> ApiResult<u64> {
    check_name(&Some(name.clone()))?;
    let who = caller.requester();
    let role = state.change_perms(|index| {
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
        let change = Change::InsertRole {
            id: role.id,
            permissions,
            position,
        };
        Ok::<_, ApiError>((role, vec![change]))
    })?;
    state.durable_with_perms().await?;
    state.emit(
        "role/new",
        json!({ "role": ordinary_json(&role) }),
        Audience::Everyone,
    );
    Ok(role.id)
}

/// `PATCH /api/roles/:id`
pub async fn update(
    state: &Chat,
    caller: Caller<'_>,
    id: &str,
    name: Option<String>,
    permissions: Option<PermissionSet>,
) -> ApiResult<()> {
    check_name(&name)?;
    let who = caller.requester();
    state.require(who, Permission::ManageRoles)?;
    let RoleRef::Ordinary(id) = parse_role_ref(id)? else {
        return Err(internal_refused());
    };
    let role = state.change_perms(|index| {
        let mut role = find_role(state, id)?;
        require_below(index, who, id)?;
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
        let change = Change::UpdateRole {
            id,
            permissions: role.permissions,
        };
        Ok::<_, ApiError>((role, vec![change]))
    })?;
    state.durable_with_perms().await?;
    state.emit(
        "role/update",
        json!({ "role": ordinary_json(&role) }),
        Audience::Everyone,
    );
    Ok(())
}

/// `DELETE /api/roles/:id`
pub async fn delete(state: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<()> {
    let who = caller.requester();
    state.require(who, Permission::ManageRoles)?;
    let RoleRef::Ordinary(id) = parse_role_ref(id)? else {
        return Err(internal_refused());
    };
    let holders = state.change_perms(|index| {
        let role = find_role(state, id)?;
        require_below(index, who, id)?;
        require_holds(index.resolve(who, None), &role.permissions)?;
        let holders = state.store.delete_role(id)?;
        Ok::<_, ApiError>((holders, vec![Change::RemoveRole(id)]))
    })?;
    state.durable_with_perms().await?;
    state.emit(
        "role/delete",
        json!({ "roleID": id.to_string() }),
        Audience::Everyone,
    );
    for user in &holders {
        emit_user_update(state, user);
    }
    Ok(())
}

/// `GET /api/roles/order`
pub fn order(state: &Chat) -> Vec<u64> {
    state.perms().order().to_vec()
}

/// `PATCH /api/roles/order`
pub async fn set_order(state: &Chat, caller: Caller<'_>, raw: &[String]) -> ApiResult<()> {
    let who = caller.requester();
    state.require(who, Permission::ManageRoles)?;
    state.change_perms(|index| {
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
        trial.apply(Change::SetOrder(new.clone()));
        if !trial.has(who, None, Permission::ManageRoles) {
            return Err(ApiError::new(
                ErrorCode::NotAllowed,
                "that order would take the manageRoles permission away from you",
            )
            .with("missingPermission", Permission::ManageRoles.key()));
        }
        state.store.set_role_order(&new)?;
        Ok::<_, ApiError>(((), vec![Change::SetOrder(new)]))
    })?;
    state.durable_with_perms().await?;
    Ok(())
}

/// Shared checks of granting and taking a role. Returns (user id, role id).
fn check_grant(
    state: &Chat,
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

/// Gives a user a role (`give`) or takes it away.
pub async fn change_user_role(
    state: &Chat,
    caller: Caller<'_>,
    user_raw: &str,
    role_raw: &str,
    give: bool,
) -> ApiResult<()> {
    let who = caller.requester();
    let user = state.change_perms(|index| {
        let (user_id, role_id) = check_grant(state, index, who, user_raw, role_raw)?;
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
            .update_user(user_id, &|u| {
                u.role_ids.retain(|r| *r != role_id);
                if give {
                    u.role_ids.push(role_id);
                }
            })?
            .ok_or_else(|| ApiError::not_found("user"))?;
        let change = Change::SetUserRoles {
            user: user_id,
            roles: user.role_ids.clone(),
        };
        Ok::<_, ApiError>((user, vec![change]))
    })?;
    state.durable_with_perms().await?;
    emit_user_update(state, &user);
    Ok(())
}

/// A user's role IDs.
pub fn user_roles(state: &Chat, user: &str) -> ApiResult<Vec<u64>> {
    Ok(find_user(state, user)?.role_ids)
}

/// A user's server-wide permissions.
pub fn user_permissions(state: &Chat, user: &str) -> ApiResult<Granted> {
    let user = find_user(state, user)?;
    Ok(state.granted(Requester::User(user.id), None))
}

/// A user's permissions with the
/// channel's overrides applied. The channel must be visible to the requester.
pub fn user_channel_permissions(
    state: &Chat,
    caller: Caller<'_>,
    user_raw: &str,
    channel_raw: &str,
) -> ApiResult<Granted> {
    let user = find_user(state, user_raw)?;
    let channel = super::channels::visible_id(state, caller.requester(), channel_raw)?;
    Ok(state.granted(Requester::User(user.id), Some(channel)))
}
