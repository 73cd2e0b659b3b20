//! Emotes (API doc "Emotes"): shortcodes are unique, even with allowNonUnique.

use serde_json::{json, Value};

use crate::domain::{validate_image_url, validate_shortcode};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::perms::Permission;
use crate::store::EmoteRecord;

use super::{Caller, Chat};

/// The emote object.
pub fn emote_json(e: &EmoteRecord) -> Value {
    json!({ "shortcode": e.shortcode, "imageURL": e.image_url })
}

/// Every emote, by shortcode.
pub fn list(state: &Chat) -> ApiResult<Vec<EmoteRecord>> {
    Ok(state.store.emotes()?)
}

/// One emote (NOT_FOUND).
pub fn get(state: &Chat, shortcode: &str) -> ApiResult<EmoteRecord> {
    state
        .store
        .emote(shortcode)?
        .ok_or_else(|| ApiError::not_found("emote"))
}

/// Adds an emote (manageEmotes).
pub async fn create(
    state: &Chat,
    caller: Caller<'_>,
    shortcode: String,
    image_url: String,
) -> ApiResult<()> {
    validate_shortcode(&shortcode)?;
    validate_image_url(&image_url)?;
    state.require(caller.requester(), Permission::ManageEmotes)?;
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
    state.emit(
        "emote/new",
        json!({ "emote": emote_json(&emote) }),
        Audience::Everyone,
    );
    Ok(())
}

/// Deletes an emote (manageEmotes).
pub async fn delete(state: &Chat, caller: Caller<'_>, shortcode: &str) -> ApiResult<()> {
    state.require(caller.requester(), Permission::ManageEmotes)?;
    if !state.store.delete_emote(shortcode)? {
        return Err(ApiError::not_found("emote"));
    }
    state.store.durable().await?;
    state.emit(
        "emote/delete",
        json!({ "shortcode": shortcode }),
        Audience::Everyone,
    );
    Ok(())
}
