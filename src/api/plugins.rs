//! Extension endpoints for WASM plugins (manageServer only): list, show, enable, disable and
//! reload; the HTTP side of `chat::plugins`. See README "Plugins" and plugins/README.md.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::{plugins, Chat};
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `GET /api/plugins`
pub async fn list(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    Ok(ok(
        json!({ "plugins": plugins::list(&state, caller(&req))? }),
    ))
}

/// `GET /api/plugins/:name`
pub async fn get(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(ok(
        json!({ "plugin": plugins::get(&state, caller(&req), &path)? }),
    ))
}

/// `POST /api/plugins/:name/enable`
pub async fn enable(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let view = plugins::switch(&state, caller(&req), &path, true).await?;
    Ok(ok(json!({ "plugin": view })))
}

/// `POST /api/plugins/:name/disable`
pub async fn disable(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let view = plugins::switch(&state, caller(&req), &path, false).await?;
    Ok(ok(json!({ "plugin": view })))
}

/// `POST /api/plugins/:name/reload`: reads the plugin's directory again (also loads a plugin
/// added since startup). On failure the loaded version keeps running.
pub async fn reload(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let view = plugins::reload(&state, caller(&req), &path).await?;
    Ok(ok(json!({ "plugin": view })))
}
