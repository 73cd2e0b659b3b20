//! Users: registration, profiles, deletion and name availability; the HTTP side of
//! `chat::users`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::users::{self, ProfileChange};
use crate::chat::Chat;
use crate::domain::{parse_email, parse_flair};
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `GET /api/users`; extension: `?name=PARTIAL` (with `limit`, `skip`) finds users whose
/// name starts with it, ignoring case, in name order.
pub async fn list(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let users = match req.opt_string("name")? {
        Some(partial) => {
            let limit = req.opt_u64("limit")?;
            let skip = req.opt_u64("skip")?;
            users::search(&state, caller(&req), &partial, limit, skip)?
        }
        None => users::list(&state, caller(&req))?,
    };
    Ok(ok(json!({ "users": users })))
}

/// `POST /api/users`: register (with `setupToken`, the first-run administrator).
pub async fn register(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let username = req.string("username")?;
    let password = req.string("password")?;
    let setup_token = req.opt_string("setupToken")?;
    let view = users::register(&state, username, password, setup_token).await?;
    Ok(ok(json!({ "user": view })))
}

/// `GET /api/users/:id`; extension: `?byUsername=true` names the user by username.
pub async fn get(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = if req.opt_bool("byUsername")? == Some(true) {
        users::get_by_name(&state, caller(&req), &path)?
    } else {
        users::get(&state, caller(&req), &path)?
    };
    Ok(ok(json!({ "user": user })))
}

/// `PATCH /api/users/:id`: password (self only), email and flair (self or manageUsers).
pub async fn patch(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let password = match req.opt_object("password")? {
        Some(p) => Some((p.string("old")?, p.string("new")?)),
        None => None,
    };
    let email = req.nullable_string("email")?.map(parse_email).transpose()?;
    let flair = req.nullable_string("flair")?.map(parse_flair).transpose()?;
    let change = ProfileChange {
        password,
        email,
        flair,
    };
    users::patch(&state, caller(&req), &path, change).await?;
    Ok(ok(json!({})))
}

/// `DELETE /api/users/:id`: needs manageUsers; ends the user's sessions.
pub async fn delete(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    users::delete(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}

/// `GET /api/username-available/:username`
pub async fn username_available(
    state: web::Data<Chat>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let available = users::username_available(&state, &path)?;
    Ok(ok(json!({ "available": available })))
}
