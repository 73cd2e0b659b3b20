//! Channels (API doc "Channels"): the HTTP side of `chat::channels`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::messages::message_list;
use super::{caller, ok};
use crate::chat::{channels, Chat};
use crate::error::{ApiError, ApiResult};
use crate::params::ApiRequest;

/// `GET /api/channels`
pub async fn list(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let channels = channels::list(&state, caller(&req))?;
    Ok(ok(json!({ "channels": channels })))
}

/// `POST /api/channels`
pub async fn create(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let name = req.string("name")?;
    let id = channels::create(&state, caller(&req), name).await?;
    Ok(ok(json!({ "channelID": id.to_string() })))
}

/// `GET /api/channels/:id`
pub async fn get(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let channel = channels::get(&state, caller(&req), &path)?;
    Ok(ok(json!({ "channel": channel })))
}

/// `PATCH /api/channels/:id`: rename.
pub async fn rename(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = req.string("name")?;
    channels::rename(&state, caller(&req), &path, name).await?;
    Ok(ok(json!({})))
}

/// `DELETE /api/channels/:id`
pub async fn delete(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    channels::delete(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}

/// `POST /api/channels/:id/mark-read`
pub async fn mark_read(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    channels::mark_read(&state, caller(&req), &path).await?;
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

/// `GET /api/channels/:id/messages`
pub async fn messages(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let before = id_param(&req, "before")?;
    let after = id_param(&req, "after")?;
    let limit = req.opt_u64("limit")?;
    let messages = channels::history(&state, caller(&req), &path, before, after, limit)?;
    Ok(message_list("messages", &messages))
}

/// `GET /api/channels/:id/role-permissions`
pub async fn role_permissions(
    state: web::Data<Chat>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let overrides = channels::role_permissions(&state, &path)?;
    Ok(ok(json!({ "rolePermissions": overrides })))
}

/// `PATCH /api/channels/:id/role-permissions`
pub async fn set_role_permissions(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let entries = req
        .opt_json_object("rolePermissions")?
        .ok_or_else(|| ApiError::incomplete("rolePermissions"))?;
    channels::set_role_permissions(&state, caller(&req), &path, entries).await?;
    Ok(ok(json!({})))
}

/// `GET /api/channels/:id/pins`
pub async fn pins(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let pins = channels::pins(&state, caller(&req), &path)?;
    Ok(message_list("pins", &pins))
}

/// `POST /api/channels/:id/pins`
pub async fn pin(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = req.string("messageID")?;
    channels::pin(&state, caller(&req), &path, &message).await?;
    Ok(ok(json!({})))
}

/// `DELETE /api/channels/:channelID/pins/:messageID`
pub async fn unpin(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (channel, message) = path.into_inner();
    channels::unpin(&state, caller(&req), &channel, &message).await?;
    Ok(ok(json!({})))
}
