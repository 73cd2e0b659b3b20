//! Extension endpoints for chatbox licenses (README "Chatbox bots"); the HTTP side of
//! `chat::licenses`:
//!
//! - `POST /api/licenses` `{capabilities?, label?}`: a new license for the caller; the key is
//!   in this answer only.
//! - `GET /api/licenses` (the caller's; `?userID=` another user's and `?all=true` everyone's,
//!   with manageServer).
//! - `DELETE /api/licenses/:id` (the owner or manageServer): revoked, its bots are closed with
//!   `changed_license_key`.
//! - `POST /api/licenses/:id/disable` and `/enable` (manageServer): a disabled license is
//!   refused with `disabled_license`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{caller, ok};
use crate::chat::licenses::{self, view, Owners};
use crate::chat::Chat;
use crate::error::{ApiError, ApiResult};
use crate::params::ApiRequest;

/// `POST /api/licenses`
pub async fn create(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let caller = caller(&req);
    caller.user()?;
    let capabilities = if req.has("capabilities") {
        Some(req.string_array("capabilities")?)
    } else {
        None
    };
    let label = req.opt_string("label")?.unwrap_or_default();
    let (license, key) =
        licenses::create_by(&state, caller, capabilities.as_deref(), label).await?;
    Ok(ok(json!({ "license": view(&state, &license), "key": key })))
}

/// `GET /api/licenses`
pub async fn list(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let caller = caller(&req);
    caller.user()?;
    let all = match req.opt_string("all")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_type("all", "\"true\" or \"false\"")),
    };
    let user = req.opt_string("userID")?;
    let owners = match (&user, all) {
        (_, true) => Owners::All,
        (Some(raw), false) => Owners::User(raw),
        (None, false) => Owners::Mine,
    };
    let records = licenses::list(&state, caller, owners)?;
    let licenses: Vec<Value> = records.iter().map(|l| view(&state, l)).collect();
    Ok(ok(json!({ "licenses": licenses })))
}

/// `DELETE /api/licenses/:id`
pub async fn revoke(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    licenses::revoke_by(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}

/// `POST /api/licenses/:id/disable`
pub async fn disable(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let license = licenses::switch(&state, caller(&req), &path, true).await?;
    Ok(ok(json!({ "license": view(&state, &license) })))
}

/// `POST /api/licenses/:id/enable`
pub async fn enable(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let license = licenses::switch(&state, caller(&req), &path, false).await?;
    Ok(ok(json!({ "license": view(&state, &license) })))
}
