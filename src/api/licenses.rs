//! Extension endpoints for chatbox licenses (README "Chatbox bots"):
//!
//! - `POST /api/licenses` `{capabilities?, label?}`: a new license for the caller; the key is
//!   in this answer only.
//! - `GET /api/licenses` (the caller's; `?userID=` another user's, with manageServer).
//! - `DELETE /api/licenses/:id` (the owner or manageServer): revoked, its bots are closed with
//!   `changed_license_key`.
//! - `POST /api/licenses/:id/disable` and `/enable` (manageServer): a disabled license is
//!   refused with `disabled_license`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{ok, path_id};
use crate::chatbox::licenses;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::unix_seconds;
use crate::params::ApiRequest;
use crate::perms::Permission;
use crate::state::AppState;
use crate::store::LicenseRecord;
use decentd_protocol::chatbox::{Capability, CloseReason};

/// Longest license label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

fn view(state: &AppState, license: &LicenseRecord) -> Value {
    json!({
        "id": license.id.to_string(),
        "ownerID": license.owner.to_string(),
        "label": license.label,
        "capabilities": Capability::from_bits(license.capabilities),
        "dateCreated": unix_seconds(license.created_ms),
        "disabled": license.disabled,
        "connections": state.chatbox.connections_of(license.id),
    })
}

/// `POST /api/licenses`
pub async fn create(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let session = req.logged_in()?;
    let user = &session.user;
    let capabilities = if req.has("capabilities") {
        licenses::requested(&state, user.id, &req.string_array("capabilities")?)?
    } else {
        licenses::allowed(&state, user.id)
    };
    let label = req.opt_string("label")?.unwrap_or_default();
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(ApiError::invalid_type(
            "label",
            "a string of at most 64 characters without control characters",
        ));
    }
    let (license, key) = licenses::create(&state, user, capabilities, label, false).await?;
    Ok(ok(json!({ "license": view(&state, &license), "key": key })))
}

/// `GET /api/licenses`: the caller's licenses; with `userID`, that user's, and with
/// `all=true`, everyone's (both need manageServer for other users).
pub async fn list(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let session = req.logged_in()?;
    let all = match req.opt_string("all")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_type("all", "\"true\" or \"false\"")),
    };
    let records = if all {
        state.require(req.requester(), Permission::ManageServer)?;
        state.store.all_licenses()?
    } else {
        let owner = match req.opt_string("userID")? {
            Some(raw) if raw != session.user.id.to_string() => {
                state.require(req.requester(), Permission::ManageServer)?;
                path_id(&raw, "user")?
            }
            _ => session.user.id,
        };
        state.store.licenses_of(owner)?
    };
    let licenses: Vec<Value> = records.iter().map(|l| view(&state, l)).collect();
    Ok(ok(json!({ "licenses": licenses })))
}

/// The license a URL names, if the caller owns it or has manageServer; NOT_FOUND otherwise.
fn find(
    state: &AppState,
    req: &ApiRequest,
    raw: &str,
    staff_only: bool,
) -> ApiResult<LicenseRecord> {
    let session = req.logged_in()?;
    let license = state
        .store
        .license(path_id(raw, "license")?)?
        .ok_or_else(|| ApiError::not_found("license"))?;
    let staff = state
        .granted(req.requester(), None)
        .has(Permission::ManageServer);
    if staff {
        return Ok(license);
    }
    if license.owner != session.user.id {
        return Err(ApiError::not_found("license"));
    }
    if staff_only {
        return Err(ApiError::missing_permission(Permission::ManageServer));
    }
    Ok(license)
}

/// `DELETE /api/licenses/:id`
pub async fn revoke(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let license = find(&state, &req, &path, false)?;
    licenses::revoke(&state, license.id)?;
    state.store.durable().await?;
    Ok(ok(json!({})))
}

async fn switch(
    state: web::Data<AppState>,
    req: ApiRequest,
    raw: &str,
    disabled: bool,
) -> ApiResult<HttpResponse> {
    let license = find(&state, &req, raw, true)?;
    if license.disabled == disabled {
        let what = if disabled { "disabled" } else { "enabled" };
        return Err(ApiError::new(
            ErrorCode::AlreadyPerformed,
            format!("the license is already {what}"),
        ));
    }
    let license = state
        .store
        .update_license(license.id, |l| l.disabled = disabled)?
        .ok_or_else(|| ApiError::not_found("license"))?;
    state.store.durable().await?;
    if disabled {
        state
            .chatbox
            .kick_license(license.id, CloseReason::DisabledLicense);
    }
    tracing::info!(license = license.id, disabled, "chatbox license switched");
    Ok(ok(json!({ "license": view(&state, &license) })))
}

/// `POST /api/licenses/:id/disable`
pub async fn disable(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    switch(state, req, &path, true).await
}

/// `POST /api/licenses/:id/enable`
pub async fn enable(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    switch(state, req, &path, false).await
}
