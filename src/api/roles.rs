//! Roles, the role order, and granting roles to users (spec 2.5, API doc "Roles"): the HTTP
//! side of `chat::roles`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::roles::{self, permissions_value};
use crate::chat::Chat;
use crate::error::{ApiError, ApiResult};
use crate::params::ApiRequest;

fn ids(ids: &[u64]) -> Vec<String> {
    ids.iter().map(u64::to_string).collect()
}

/// `GET /api/roles`: ordinary roles in priority order, then `_user` and `_everyone`.
pub async fn list(state: web::Data<Chat>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    Ok(ok(json!({ "roles": roles::list(&state)? })))
}

/// `GET /api/roles/:id`
pub async fn get(
    state: web::Data<Chat>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(ok(json!({ "role": roles::get(&state, &path)? })))
}

/// `POST /api/roles`
pub async fn create(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let name = req.string("name")?;
    let permissions = permissions_value(req.opt_json_object("permissions")?, "permissions")?
        .ok_or_else(|| ApiError::incomplete("permissions"))?;
    let id = roles::create(&state, caller(&req), name, permissions).await?;
    Ok(ok(json!({ "roleID": id.to_string() })))
}

/// `PATCH /api/roles/:id`
pub async fn update(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = req.opt_string("name")?;
    let permissions = permissions_value(req.opt_json_object("permissions")?, "permissions")?;
    roles::update(&state, caller(&req), &path, name, permissions).await?;
    Ok(ok(json!({})))
}

/// `DELETE /api/roles/:id`
pub async fn delete(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    roles::delete(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}

/// `GET /api/roles/order`
pub async fn order(state: web::Data<Chat>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    Ok(ok(json!({ "roleIDs": ids(&roles::order(&state)) })))
}

/// `PATCH /api/roles/order`
pub async fn set_order(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let raw = req.string_array("roleIDs")?;
    roles::set_order(&state, caller(&req), &raw).await?;
    Ok(ok(json!({})))
}

/// `POST /api/users/:userID/roles`
pub async fn give(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let role = req.string("roleID")?;
    roles::change_user_role(&state, caller(&req), &path, &role, true).await?;
    Ok(ok(json!({})))
}

/// `DELETE /api/users/:userID/roles/:roleID`
pub async fn take(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (user, role) = path.into_inner();
    roles::change_user_role(&state, caller(&req), &user, &role, false).await?;
    Ok(ok(json!({})))
}

/// `GET /api/users/:id/roles`
pub async fn user_roles(
    state: web::Data<Chat>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(ok(
        json!({ "roleIDs": ids(&roles::user_roles(&state, &path)?) }),
    ))
}

/// `GET /api/users/:id/permissions`
pub async fn user_permissions(
    state: web::Data<Chat>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let granted = roles::user_permissions(&state, &path)?;
    Ok(ok(json!({ "permissions": granted.to_json() })))
}

/// `GET /api/users/:userID/channel-permissions/:channelID`
pub async fn user_channel_permissions(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (user, channel) = path.into_inner();
    let granted = roles::user_channel_permissions(&state, caller(&req), &user, &channel)?;
    Ok(ok(json!({ "permissions": granted.to_json() })))
}
