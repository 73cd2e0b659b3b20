//! Users: registration, profiles, deletion and name availability.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::{ok, path_id};
use crate::domain::{avatar_url, parse_email, parse_flair, validate_name, validate_password};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::ids::now_ms;
use crate::params::ApiRequest;
use crate::perms::Permission;
use crate::state::AppState;
use crate::store::{InsertUserError, UserRecord};

/// The user object of the API.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    #[serde(rename = "avatarURL")]
    pub avatar_url: String,
    pub flair: Option<String>,
    pub online: bool,
    /// Extension: true for the users plugins post as.
    pub bot: bool,
    #[serde(rename = "roleIDs")]
    pub role_ids: Vec<String>,
    /// Present only when the viewer is this user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<String>>,
}

/// A user as `viewer` may see them: the email only goes to its owner.
pub fn user_view(state: &AppState, user: &UserRecord, viewer: Option<u64>) -> UserView {
    UserView {
        id: user.id.to_string(),
        username: user.username.clone(),
        avatar_url: avatar_url(user.email.as_deref(), user.id),
        flair: user.flair.clone(),
        online: state.presence.is_online(user.id),
        bot: state.plugins.is_bot(user.id),
        role_ids: user.role_ids.iter().map(u64::to_string).collect(),
        email: (viewer == Some(user.id)).then(|| user.email.clone()),
    }
}

/// Announces a changed user to everyone (without the private email).
pub fn emit_user_update(state: &AppState, user: &UserRecord) {
    state.bus.emit(
        "user/update",
        json!({ "user": user_view(state, user, None) }),
        Audience::Everyone,
    );
}

/// The user named by a URL id, or NOT_FOUND.
pub fn find_user(state: &AppState, raw_id: &str) -> ApiResult<UserRecord> {
    let id = path_id(raw_id, "user")?;
    state
        .store
        .user(id)?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// `GET /api/users`
pub async fn list(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let users: Vec<UserView> = state
        .store
        .users()?
        .iter()
        .map(|u| user_view(&state, u, req.user_id()))
        .collect();
    Ok(ok(json!({ "users": users })))
}

/// `POST /api/users`: register.
pub async fn register(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let username = req.string("username")?;
    let password = req.string("password")?;
    let setup_token = req.opt_string("setupToken")?;
    validate_name(&username)?;
    validate_password(&password)?;
    // Extension: the first-run setup link makes this user the administrator. The token is
    // taken now, so two registrations cannot both use it, and put back if this one fails.
    let setup = match setup_token {
        Some(given) => Some(SetupClaim::take(&state, &given)?),
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
    let mut new_role = None;
    {
        let mut perms = state.perms_mut();
        if setup.is_some() {
            // The Admin role, created (at the top of the order) if this is its first holder.
            let role = state.store.ensure_admin_role()?;
            if perms.role(role.id).is_none() {
                perms.insert_role(role.id, role.permissions, 0);
                new_role = Some(role.clone());
            }
            user.role_ids.push(role.id);
        }
        state.store.insert_user(&user).map_err(|e| match e {
            InsertUserError::NameTaken => taken(),
            InsertUserError::Store(e) => e.into(),
        })?;
        perms.set_user_roles(user.id, user.role_ids.clone());
    }
    state.store.durable().await?;
    if let Some(claim) = setup {
        claim.used();
        tracing::info!(user = %user.username, "administrator created through the setup link");
    }
    if let Some(role) = new_role {
        state.bus.emit(
            "role/new",
            json!({ "role": super::roles::ordinary_json(&role) }),
            Audience::Everyone,
        );
    }
    tracing::info!(user = %user.username, id = user.id, "user registered");
    let view = user_view(&state, &user, None);
    state
        .bus
        .emit("user/new", json!({ "user": view }), Audience::Everyone);
    Ok(ok(json!({ "user": view })))
}

/// A setup token taken for one registration: given back unless `used`.
struct SetupClaim<'a> {
    state: &'a AppState,
    token: Option<String>,
}

impl<'a> SetupClaim<'a> {
    fn take(state: &'a AppState, given: &str) -> ApiResult<Self> {
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

/// `GET /api/users/:id`
pub async fn get(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = find_user(&state, &path)?;
    Ok(ok(
        json!({ "user": user_view(&state, &user, req.user_id()) }),
    ))
}

/// `PATCH /api/users/:id`: password (self only), email and flair (self or manageUsers).
pub async fn patch(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let password = match req.opt_object("password")? {
        Some(p) => Some((p.string("old")?, p.string("new")?)),
        None => None,
    };
    let email = req.nullable_string("email")?.map(parse_email).transpose()?;
    let flair = req.nullable_string("flair")?.map(parse_flair).transpose()?;
    let session = req.logged_in()?;
    let target = find_user(&state, &path)?;
    let is_self = session.user.id == target.id;

    if password.is_some() && !is_self {
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "only the user themselves can change their password",
        ));
    }
    if (email.is_some() || flair.is_some()) && !is_self {
        state.require(req.requester(), Permission::ManageUsers)?;
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
        .update_user(target.id, |u| {
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
    if new_hash.is_some() {
        // A new password ends every other session of the user: whoever knew the old one is out.
        for (key, _) in state.store.sessions_of(updated.id)? {
            if key != session.key {
                state.store.delete_session(&key)?;
            }
        }
    }
    state.store.durable().await?;
    emit_user_update(&state, &updated);
    Ok(ok(json!({})))
}

/// `DELETE /api/users/:id`: needs manageUsers; ends the user's sessions.
pub async fn delete(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.require(req.requester(), Permission::ManageUsers)?;
    let target = find_user(&state, &path)?;
    {
        let mut perms = state.perms_mut();
        state
            .store
            .delete_user(target.id)?
            .ok_or_else(|| ApiError::not_found("user"))?;
        perms.remove_user(target.id);
    }
    state.store.durable().await?;
    tracing::info!(user = %target.username, id = target.id, "user deleted");
    state.bus.emit(
        "user/delete",
        json!({ "userID": target.id.to_string() }),
        Audience::Everyone,
    );
    Ok(ok(json!({})))
}

/// `GET /api/username-available/:username`
pub async fn username_available(
    state: web::Data<AppState>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    validate_name(&path)?;
    let available = state.store.user_by_name(&path)?.is_none();
    Ok(ok(json!({ "available": available })))
}
