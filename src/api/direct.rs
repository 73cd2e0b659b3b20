//! Direct messages (extension): `/api/users/:id/messages` and friends, and
//! `/api/direct-messages/:id`; the HTTP side of `chat::direct`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::direct::{self, Filter, Sent, SettingsChange};
use crate::chat::Chat;
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `POST /api/users/:id/messages {text}`: sends a direct message to user `:id`.
pub async fn send(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let text = req.string("text")?;
    match direct::send(&state, caller(&req), &path, text).await? {
        Sent::Stored(message) => Ok(ok(json!({
            "messageID": message.id.to_string(),
            "message": direct::view(&message),
        }))),
        Sent::Command(answer) => Ok(ok(answer)),
    }
}

/// `GET /api/users/:id/messages`: with `:id` yourself, your conversations' messages (or the one
/// with `user`); with another user's ID, your conversation with them. Newest first; `unread`,
/// `fromTime` (ISO 8601), `maxItems` (1–100, 100 by default), `before` (a message ID).
pub async fn list(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let filter = Filter {
        user: req.opt_string("user")?,
        unread: req.opt_bool("unread")?.unwrap_or(false),
        from_time: req.opt_string("fromTime")?,
        before: req.opt_string("before")?,
        max_items: req.opt_u64("maxItems")?,
    };
    let messages = direct::list(&state, caller(&req), &path, filter)?;
    let views: Vec<_> = messages.iter().map(direct::view).collect();
    Ok(ok(json!({ "messages": views })))
}

/// `POST /api/users/:id/messages/mark-read {upTo?}`: marks your conversation with user `:id`
/// read, up to a message (default: the newest).
pub async fn mark_read(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let up_to = req.opt_string("upTo")?;
    let mark = direct::mark_read(&state, caller(&req), &path, up_to.as_deref()).await?;
    Ok(ok(json!({ "upTo": mark.to_string() })))
}

/// `GET /api/users/:id/conversations` (yourself): conversations with unread counts.
pub async fn conversations(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let conversations = direct::conversations(&state, caller(&req), &path)?;
    Ok(ok(json!({ "conversations": conversations })))
}

/// `GET /api/users/:id/direct-message-settings` (yourself).
pub async fn settings(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let settings = direct::settings(&state, caller(&req), &path)?;
    Ok(ok(json!({ "settings": settings })))
}

/// `PATCH /api/users/:id/direct-message-settings {allowFrom?, block?, unblock?}` (yourself).
pub async fn set_settings(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let optional_array = |key: &str| -> ApiResult<Vec<String>> {
        if req.has(key) {
            req.string_array(key)
        } else {
            Ok(Vec::new())
        }
    };
    let change = SettingsChange {
        allow_from: req.opt_string("allowFrom")?,
        block: optional_array("block")?,
        unblock: optional_array("unblock")?,
    };
    let settings = direct::set_settings(&state, caller(&req), &path, change).await?;
    Ok(ok(json!({ "settings": settings })))
}

/// `GET /api/direct-messages/:id`: a message you sent or received.
pub async fn get(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = direct::get(&state, caller(&req), &path)?;
    Ok(ok(json!({ "message": direct::view(&message) })))
}

/// `PATCH /api/direct-messages/:id {text}`: edits your own message.
pub async fn edit(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let text = req.string("text")?;
    let message = direct::edit(&state, caller(&req), &path, text).await?;
    Ok(ok(json!({ "message": direct::view(&message) })))
}

/// `DELETE /api/direct-messages/:id`: deletes your own message.
pub async fn delete(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    direct::delete(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}
