//! Emotes (API doc "Emotes"): shortcodes are unique, even with allowNonUnique.

use actix_web::{http::header, web, HttpResponse};
use serde_json::{json, Value};

use super::ok;
use crate::domain::{validate_image_url, validate_shortcode};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::params::ApiRequest;
use crate::perms::Permission;
use crate::state::AppState;
use crate::store::EmoteRecord;

fn emote_json(e: &EmoteRecord) -> Value {
    json!({ "shortcode": e.shortcode, "imageURL": e.image_url })
}

/// `GET /api/emotes`, by shortcode.
pub async fn list(state: web::Data<AppState>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    let emotes: Vec<Value> = state.store.emotes()?.iter().map(emote_json).collect();
    Ok(ok(json!({ "emotes": emotes })))
}

/// `POST /api/emotes`
pub async fn create(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let shortcode = req.string("shortcode")?;
    let image_url = req.string("imageURL")?;
    validate_shortcode(&shortcode)?;
    validate_image_url(&image_url)?;
    state.require(req.requester(), Permission::ManageEmotes)?;
    let emote = EmoteRecord {
        shortcode,
        image_url,
    };
    if !state.store.insert_emote(&emote)? {
        return Err(ApiError::new(
            ErrorCode::NameAlreadyTaken,
            format!("the emote :{}: already exists", emote.shortcode),
        ));
    }
    state.store.durable().await?;
    state.bus.emit(
        "emote/new",
        json!({ "emote": emote_json(&emote) }),
        Audience::Everyone,
    );
    Ok(ok(json!({})))
}

/// `GET /api/emotes/:shortcode`: 302 to the image.
pub async fn view(
    state: web::Data<AppState>,
    _req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let emote = state
        .store
        .emote(&path)?
        .ok_or_else(|| ApiError::not_found("emote"))?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, emote.image_url))
        .finish())
}

/// `DELETE /api/emotes/:shortcode`
pub async fn delete(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.require(req.requester(), Permission::ManageEmotes)?;
    let shortcode = path.into_inner();
    if !state.store.delete_emote(&shortcode)? {
        return Err(ApiError::not_found("emote"));
    }
    state.store.durable().await?;
    state.bus.emit(
        "emote/delete",
        json!({ "shortcode": shortcode }),
        Audience::Everyone,
    );
    Ok(ok(json!({})))
}
