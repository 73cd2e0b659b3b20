//! Search (extension): `GET /api/search`; the HTTP side of `chat::search`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::search::{self, Request};
use crate::chat::Chat;
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `GET /api/search?q=...`: messages the requester may read that contain every word of `q`
/// (each as the start of a word), with `channelID`, `authorID`, `after`/`before` (ISO 8601),
/// `sort` (`newest`, the default, or `relevance`), `limit` (1–50, 20 by default) and `skip`.
pub async fn search(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let request = Request {
        q: req.string("q")?,
        channel: req.opt_string("channelID")?,
        author: req.opt_string("authorID")?,
        after: req.opt_string("after")?,
        before: req.opt_string("before")?,
        sort: req.opt_string("sort")?,
        limit: req.opt_u64("limit")?,
        skip: req.opt_u64("skip")?,
    };
    let messages = search::search(&state, caller(&req), request)?;
    Ok(ok(json!({ "messages": messages })))
}
