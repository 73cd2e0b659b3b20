//! Instance details (`GET /` as JSON, `GET /api`), server settings and the scheduled restart.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::restart::{self, Restart, MAX_RESTART_SECONDS};
use crate::chat::{settings, Chat};
use crate::error::{ApiError, ApiResult};
use crate::params::ApiRequest;
use crate::perms::ReadAccess;

/// The Decent specification version served.
pub const DECENT_VERSION: &str = "1.0.0";

/// `GET /api`
pub async fn api_info(state: web::Data<Chat>, _req: ApiRequest) -> HttpResponse {
    ok(json!({
        "implementation": "decentd",
        "implementationVersion": env!("CARGO_PKG_VERSION"),
        "decentVersion": DECENT_VERSION,
        "useSecureProtocol": state.config.secure,
    }))
}

/// `GET /` for clients that ask for `application/json`: the instance details (spec 2.2: "a
/// web-based client or instance details"; browsers get the web client).
pub async fn instance(state: web::Data<Chat>) -> ApiResult<HttpResponse> {
    let settings = settings::get(&state)?;
    Ok(ok(json!({
        "name": settings.name,
        "iconURL": settings.icon_url,
        "implementation": "decentd",
        "implementationVersion": env!("CARGO_PKG_VERSION"),
        "decentVersion": DECENT_VERSION,
        "useSecureProtocol": state.config.secure,
        "api": "/api",
        "websocket": "/",
    })))
}

/// `GET /api/settings`
pub async fn get_settings(state: web::Data<Chat>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    Ok(ok(json!({ "settings": settings::get(&state)? })))
}

/// `PATCH /api/settings`
pub async fn patch_settings(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let name = req.opt_string("name")?;
    let icon_url = req.opt_string("iconURL")?;
    let read_access = req
        .opt_string("readAccess")?
        .map(|key| {
            ReadAccess::parse(&key)
                .ok_or_else(|| ApiError::invalid_type("readAccess", "one of spec, members, public"))
        })
        .transpose()?;
    settings::patch(&state, caller(&req), name, icon_url, read_access).await?;
    Ok(ok(json!({})))
}

fn restart_view(restart: Option<&Restart>) -> serde_json::Value {
    match restart {
        Some(r) => json!({
            "restartType": r.kind,
            "restartSeconds": r.seconds,
            "restartAt": crate::ids::iso8601(r.at_ms),
            "time": crate::ids::iso8601(r.scheduled_ms),
        }),
        None => serde_json::Value::Null,
    }
}

/// `GET /api/restart` (extension, manageServer): the scheduled stop, or null.
pub async fn get_restart(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    req.logged_in()?;
    let restart = restart::get(&state, caller(&req))?;
    Ok(ok(json!({ "restart": restart_view(restart.as_ref()) })))
}

/// `POST /api/restart {seconds}` (extension, manageServer): a graceful stop in `seconds`,
/// announced to chatbox bots; a service manager restarts the process.
pub async fn schedule_restart(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    req.logged_in()?;
    let seconds = req
        .opt_u64("seconds")?
        .ok_or_else(|| ApiError::incomplete("seconds"))?;
    if seconds > MAX_RESTART_SECONDS {
        return Err(ApiError::invalid_type(
            "seconds",
            "a number of seconds up to 86400",
        ));
    }
    let restart = restart::schedule_by(&state, caller(&req), seconds)?;
    Ok(ok(json!({ "restart": restart_view(Some(&restart)) })))
}

/// `DELETE /api/restart` (extension, manageServer): cancels the scheduled stop.
pub async fn cancel_restart(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    req.logged_in()?;
    restart::cancel_by(&state, caller(&req))?;
    Ok(ok(json!({})))
}
