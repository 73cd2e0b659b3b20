//! Users: registration, profiles, deletion and name availability.

use serde_json::json;

use crate::domain::{validate_name, validate_password};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::ids::now_ms;
use crate::perms::{Change, Permission};
use crate::store::{InsertUserError, PluginRecord, UserRecord};

use super::views::{user_view, UserView};
use super::{id as path_id, Caller, Chat};

/// Announces a changed user to everyone (without the private email).
pub fn emit_user_update(state: &Chat, user: &UserRecord) {
    state.emit(
        "user/update",
        json!({ "user": user_view(state, user, None) }),
        Audience::Everyone,
    );
}

/// The user an ID names, or NOT_FOUND.
pub fn find(state: &Chat, raw_id: &str) -> ApiResult<UserRecord> {
    let id = path_id(raw_id, "user")?;
    state
        .store
        .user(id)?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// Most users one search answers.
pub const MAX_SEARCH: u64 = 50;

/// Users whose name contains `partial` (ignoring case), as the caller may see them: first
/// those whose name starts with it, in name order, then (for three or more characters) those
/// with it further in, in name order; `skip` passed over, at most `limit` (1..=50, 20 by
/// default). An empty `partial` is INVALID_PARAMETER_TYPE.
pub fn search(
    state: &Chat,
    caller: Caller<'_>,
    partial: &str,
    limit: Option<u64>,
    skip: Option<u64>,
) -> ApiResult<Vec<UserView>> {
    let partial = partial.trim();
    if partial.is_empty() || partial.chars().count() > 32 {
        return Err(ApiError::invalid_type(
            "name",
            "the start of a username, 1 to 32 characters",
        ));
    }
    let limit = limit.unwrap_or(20).clamp(1, MAX_SEARCH) as usize;
    let skip = skip.unwrap_or(0).min(1_000_000) as usize;
    // The prefix matches are read up to the end of the page; how many there were says where
    // the page starts among the matches further in.
    let prefix = state.store.users_by_name_prefix(partial, 0, skip + limit)?;
    let prefix_matches = prefix.len();
    let mut page: Vec<UserRecord> = prefix.into_iter().skip(skip).collect();
    if prefix_matches < skip + limit {
        let further_skip = skip.saturating_sub(prefix_matches);
        let wanted = limit - page.len();
        page.extend(
            state
                .store
                .users_by_name_part(partial, further_skip, wanted)?,
        );
    }
    Ok(page
        .iter()
        .map(|u| user_view(state, u, caller.user_id()))
        .collect())
}

/// A user by username (ignoring case), or NOT_FOUND.
pub fn get_by_name(state: &Chat, caller: Caller<'_>, name: &str) -> ApiResult<UserView> {
    let user = state
        .store
        .user_by_name(name)?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(user_view(state, &user, caller.user_id()))
}

/// Every user, as the caller may see them.
pub fn list(state: &Chat, caller: Caller<'_>) -> ApiResult<Vec<UserView>> {
    Ok(state
        .store
        .users()?
        .iter()
        .map(|u| user_view(state, u, caller.user_id()))
        .collect())
}

/// Registers a user. With the first-run `setup_token`, the user becomes the administrator.
pub async fn register(
    state: &Chat,
    username: String,
    password: String,
    setup_token: Option<String>,
) -> ApiResult<UserView> {
    validate_name(&username)?;
    validate_password(&password)?;
    // Extension: the first-run setup link makes this user the administrator. The token is
    // taken now, so two registrations cannot both use it, and put back if this one fails.
    let setup = match setup_token {
        Some(given) => Some(SetupClaim::take(state, &given)?),
        None => None,
    };
    let taken = || {
        ApiError::new(
            ErrorCode::NameAlreadyTaken,
            format!("the username {username} is already taken"),
        )
    };
    // Cheap early answer; the insert below re-checks inside its transaction.
    if state.store.user_by_name(&username)?.is_some() {
        return Err(taken());
    }
    let password_hash = state
        .hasher
        .hash(password)
        .await
        .map_err(ApiError::internal)?;
    let mut user = UserRecord {
        id: state.store.next_id(),
        username: username.clone(),
        password_hash,
        email: None,
        flair: None,
        role_ids: Vec::new(),
        created_ms: now_ms(),
    };
    if let (true, Some(admin)) = (state.is_admin_name(&username), state.admin_role) {
        user.role_ids.push(admin);
    }
    let new_role = state.change_perms(|perms| {
        let mut changes = Vec::new();
        let mut new_role = None;
        if setup.is_some() {
            // The Admin role, created (at the top of the order) if this is its first holder.
            let role = state.store.ensure_admin_role()?;
            if perms.role(role.id).is_none() {
                changes.push(Change::InsertRole {
                    id: role.id,
                    permissions: role.permissions,
                    position: 0,
                });
                new_role = Some(role.clone());
            }
            user.role_ids.push(role.id);
        }
        state.store.insert_user(&user).map_err(|e| match e {
            InsertUserError::NameTaken => taken(),
            InsertUserError::Store(e) => ApiError::from(e),
        })?;
        changes.push(Change::SetUserRoles {
            user: user.id,
            roles: user.role_ids.clone(),
        });
        Ok::<_, ApiError>((new_role, changes))
    })?;
    state.durable_with_perms().await?;
    if let Some(claim) = setup {
        claim.used();
        tracing::info!(user = %user.username, "administrator created through the setup link");
    }
    if let Some(role) = new_role {
        state.emit(
            "role/new",
            json!({ "role": super::roles::ordinary_json(&role) }),
            Audience::Everyone,
        );
    }
    tracing::info!(user = %user.username, id = user.id, "user registered");
    let view = user_view(state, &user, None);
    state.emit("user/new", json!({ "user": view }), Audience::Everyone);
    Ok(view)
}

/// A setup token taken for one registration: given back unless `used`.
struct SetupClaim<'a> {
    state: &'a Chat,
    token: Option<String>,
}

impl<'a> SetupClaim<'a> {
    fn take(state: &'a Chat, given: &str) -> ApiResult<Self> {
        let mut slot = state.setup_token.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_deref() {
            Some(token) if crate::auth::same_secret(token.as_bytes(), given.as_bytes()) => {
                Ok(Self {
                    state,
                    token: slot.take(),
                })
            }
            _ => Err(ApiError::new(
                ErrorCode::NotAllowed,
                "this setup link is not valid (it works once, and a restart makes a new one)",
            )),
        }
    }

    fn used(mut self) {
        self.token = None;
    }
}

impl Drop for SetupClaim<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            *self
                .state
                .setup_token
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(token);
        }
    }
}

/// A user, as the caller may see them.
pub fn get(state: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<UserView> {
    let user = find(state, id)?;
    Ok(user_view(state, &user, caller.user_id()))
}

/// Changes to a user's profile; `Some(None)` removes the email or the flair.
#[derive(Debug, Default)]
pub struct ProfileChange {
    /// (old, new)
    pub password: Option<(String, String)>,
    pub email: Option<Option<String>>,
    pub flair: Option<Option<String>>,
}

/// Changes a user: password (self only), email and flair (self or manageUsers). A new password
/// ends the user's other sessions.
pub async fn patch(
    state: &Chat,
    caller: Caller<'_>,
    id: &str,
    change: ProfileChange,
) -> ApiResult<()> {
    let ProfileChange {
        password,
        email,
        flair,
    } = change;
    let session = caller.session()?;
    let target = find(state, id)?;
    let is_self = session.user.id == target.id;

    if password.is_some() && !is_self {
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "only the user themselves can change their password",
        ));
    }
    if email.is_some() && !is_self {
        // An email is where lost-password links go: whoever sets another user's could take
        // their account.
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "only the user themselves can change their email",
        ));
    }
    if flair.is_some() && !is_self {
        state.require(caller.requester(), Permission::ManageUsers)?;
        state.require_outranks(caller.requester(), target.id)?;
    }
    let new_hash = match password {
        Some((old, new)) => {
            validate_password(&new)?;
            let matches = state
                .hasher
                .verify(old, Some(target.password_hash.clone()))
                .await
                .map_err(ApiError::internal)?;
            if !matches {
                return Err(ApiError::new(
                    ErrorCode::IncorrectPassword,
                    "the old password is not correct",
                ));
            }
            Some(state.hasher.hash(new).await.map_err(ApiError::internal)?)
        }
        None => None,
    };

    let updated = state
        .store
        .update_user(target.id, &|u| {
            if let Some(hash) = &new_hash {
                u.password_hash = hash.clone();
            }
            if let Some(email) = &email {
                u.email = email.clone();
            }
            if let Some(flair) = &flair {
                u.flair = flair.clone();
            }
        })?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let mut ended = Vec::new();
    if new_hash.is_some() {
        // A new password ends every other session of the user: whoever knew the old one is out.
        for (key, _) in state.store.sessions_of(updated.id)? {
            if key != session.key {
                state.store.delete_session(&key)?;
                ended.push(key);
            }
        }
    }
    state.store.durable().await?;
    state.sessions_ended(&ended);
    emit_user_update(state, &updated);
    Ok(())
}

/// Deletes a user (manageUsers), with their sessions and licenses.
pub async fn delete(state: &Chat, caller: Caller<'_>, id: &str) -> ApiResult<()> {
    state.require(caller.requester(), Permission::ManageUsers)?;
    let target = find(state, id)?;
    state.require_outranks(caller.requester(), target.id)?;
    state.change_perms(|_| {
        state
            .store
            .delete_user(target.id)?
            .ok_or_else(|| ApiError::not_found("user"))?;
        Ok::<_, ApiError>(((), vec![Change::RemoveUser(target.id)]))
    })?;
    state.durable_with_perms().await?;
    state.user_sessions_ended(target.id);
    tracing::info!(user = %target.username, id = target.id, "user deleted");
    state.emit(
        "user/delete",
        json!({ "userID": target.id.to_string() }),
        Audience::Everyone,
    );
    Ok(())
}

/// Whether a username is free.
pub fn username_available(state: &Chat, name: &str) -> ApiResult<bool> {
    validate_name(name)?;
    Ok(state.store.user_by_name(name)?.is_none())
}

/// Makes sure a plugin's bot user exists: an ordinary user record named after the plugin (a
/// password hash that is not a PHC string, so no login matches) and the plugin's record.
/// `known` learns a new bot user's ID before `user/new` announces it.
pub async fn ensure_plugin_user(
    state: &Chat,
    name: &str,
    known: impl FnOnce(u64),
) -> Result<PluginRecord, String> {
    let store_error = |e: crate::store::StoreError| format!("storage: {e}");
    if let Some(record) = state.store.plugin_record(name).map_err(store_error)? {
        if state
            .store
            .user(record.bot_user)
            .map_err(store_error)?
            .is_some()
        {
            return Ok(record);
        }
    }
    let user = UserRecord {
        id: state.store.next_id(),
        username: name.to_owned(),
        // Not a PHC string: no password ever matches, so nobody can log in as a bot.
        password_hash: "!bot".into(),
        email: None,
        flair: Some("bot".into()),
        role_ids: Vec::new(),
        created_ms: now_ms(),
    };
    match state.store.insert_user(&user) {
        Ok(()) => {}
        Err(InsertUserError::NameTaken) => {
            return Err(format!(
                "the username {name:?} belongs to a user; a plugin's name is its bot user's \
                 username, so rename the plugin or that user"
            ))
        }
        Err(InsertUserError::Store(e)) => return Err(store_error(e)),
    }
    let record = PluginRecord {
        bot_user: user.id,
        enabled: true,
        disabled_reason: None,
    };
    state
        .store
        .set_plugin_record(name, &record)
        .map_err(store_error)?;
    state.store.durable().await.map_err(store_error)?;
    known(user.id);
    state.emit(
        "user/new",
        json!({ "user": user_view(state, &user, None) }),
        Audience::Everyone,
    );
    tracing::info!(
        plugin = name,
        user = user.id,
        "created the plugin's bot user"
    );
    Ok(record)
}
