//! Emotes (API doc "Emotes"): the HTTP side of `chat::emotes`.

use actix_web::{http::header, web, HttpResponse};
use serde_json::{json, Value};

use super::{caller, ok};
use crate::chat::emotes::{self, emote_json};
use crate::chat::Chat;
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `GET /api/emotes`, by shortcode.
pub async fn list(state: web::Data<Chat>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    let emotes: Vec<Value> = emotes::list(&state)?.iter().map(emote_json).collect();
    Ok(ok(json!({ "emotes": emotes })))
}

/// `POST /api/emotes`
pub async fn create(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let shortcode = req.string("shortcode")?;
    let image_url = req.string("imageURL")?;
    emotes::create(&state, caller(&req), shortcode, image_url).await?;
    Ok(ok(json!({})))
}

/// `GET /api/emotes/:shortcode`: 302 to the image.
pub async fn view(
    state: web::Data<Chat>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let emote = emotes::get(&state, &path)?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, emote.image_url))
        .finish())
}

/// `DELETE /api/emotes/:shortcode`
pub async fn delete(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    emotes::delete(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}
