//! Messages and mentions (API doc "Messages", and `GET /api/users/:id/mentions`).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::messages::{self, Posted};
use crate::chat::views::MessageView;
use crate::chat::Chat;
use crate::error::{ApiError, ApiResult};
use crate::params::ApiRequest;
use crate::store::MessageRecord;

/// `{ key: [message, ...] }`, serialized without building JSON values.
pub fn message_list(key: &'static str, messages: &[MessageRecord]) -> HttpResponse {
    let views: Vec<MessageView<'_>> = messages.iter().map(MessageView::from).collect();
    let mut body = std::collections::BTreeMap::new();
    body.insert(key, views);
    ok(body)
}

/// `POST /api/messages`
pub async fn post(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let channel = req.string("channelID")?;
    let text = req.string("text")?;
    let system = match req.opt_string("type")?.as_deref() {
        None | Some("user") => false,
        Some("system") => true,
        Some(_) => return Err(ApiError::invalid_type("type", "\"user\" or \"system\"")),
    };
    match messages::post(&state, caller(&req), &channel, text, system).await? {
        Posted::Stored(message) => Ok(ok(json!({ "messageID": message.id.to_string() }))),
        Posted::Command(answer) => Ok(ok(answer)),
    }
}

/// `GET /api/messages/:id`
pub async fn get(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = messages::get(&state, caller(&req), &path)?;
    Ok(ok(json!({ "message": MessageView::from(&message) })))
}

/// `PATCH /api/messages/:id`: the author edits the text.
pub async fn edit(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let text = req.string("text")?;
    messages::edit(&state, caller(&req), &path, text).await?;
    Ok(ok(json!({})))
}

/// `DELETE /api/messages/:id`: by the author, or with deleteMessages in the channel.
pub async fn delete(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    messages::delete(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}

/// `GET /api/users/:id/mentions`: newest first, only from channels the requester may read.
pub async fn user_mentions(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let limit = req.opt_u64("limit")?;
    let skip = req.opt_u64("skip")?;
    let found = messages::mentions(&state, caller(&req), &path, limit, skip)?;
    Ok(message_list("mentions", &found))
}
