//! Instance details (`GET /`, `GET /api`) and server settings.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::ok;
use super::roles::{internal_json, RoleRef};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::params::ApiRequest;
use crate::perms::{Permission, ReadAccess};
use crate::state::AppState;
use crate::store::Settings;

/// The Decent specification version served.
pub const DECENT_VERSION: &str = "1.0.0";
/// Longest accepted server name.
pub const MAX_SERVER_NAME_LEN: usize = 100;
/// Longest accepted icon URL.
pub const MAX_ICON_URL_LEN: usize = 2048;

/// The settings object: the spec's `name` and `iconURL`, and the extension key `readAccess`
/// (the read-access preset of the internal roles).
#[derive(Serialize)]
struct SettingsView<'a> {
    name: &'a str,
    #[serde(rename = "iconURL")]
    icon_url: &'a str,
    #[serde(rename = "readAccess")]
    read_access: &'static str,
}

fn settings_view(s: &Settings, access: ReadAccess) -> SettingsView<'_> {
    SettingsView {
        name: &s.name,
        icon_url: &s.icon_url,
        read_access: access.key(),
    }
}

/// `GET /api`
pub async fn api_info(state: web::Data<AppState>, _req: ApiRequest) -> HttpResponse {
    ok(json!({
        "implementation": "decentd",
        "implementationVersion": env!("CARGO_PKG_VERSION"),
        "decentVersion": DECENT_VERSION,
        "useSecureProtocol": state.config.secure,
    }))
}

/// `GET /`: the web client for browsers; instance details as JSON for clients that ask for
/// `application/json` (spec 2.2: "a web-based client or instance details").
pub async fn index(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    if !crate::web::wants_json(&req) {
        return Ok(crate::web::index(&req));
    }
    let settings = state.store.settings()?;
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
pub async fn get_settings(state: web::Data<AppState>, _req: ApiRequest) -> ApiResult<HttpResponse> {
    let settings = state.store.settings()?;
    let access = state.perms().read_access();
    Ok(ok(json!({ "settings": settings_view(&settings, access) })))
}

/// `PATCH /api/settings`
pub async fn patch_settings(
    state: web::Data<AppState>,
    req: ApiRequest,
) -> ApiResult<HttpResponse> {
    let name = req.opt_string("name")?;
    let icon_url = req.opt_string("iconURL")?;
    let read_access = req
        .opt_string("readAccess")?
        .map(|key| {
            ReadAccess::parse(&key)
                .ok_or_else(|| ApiError::invalid_type("readAccess", "one of spec, members, public"))
        })
        .transpose()?;
    state.require(req.requester(), Permission::ManageServer)?;
    if let Some(name) = &name {
        let len = name.trim().chars().count();
        if len == 0 || len > MAX_SERVER_NAME_LEN {
            return Err(ApiError::new(
                ErrorCode::InvalidName,
                format!("the server name must be 1 to {MAX_SERVER_NAME_LEN} characters"),
            ));
        }
    }
    if icon_url
        .as_ref()
        .is_some_and(|u| u.len() > MAX_ICON_URL_LEN)
    {
        return Err(ApiError::invalid_type(
            "iconURL",
            "a string of at most 2048 characters",
        ));
    }
    // The stored preset and the index change together, under the index's write lock.
    let (settings, access, before) = {
        let mut index = state.perms_mut();
        let before = index.read_access();
        let settings = state.store.update_settings(
            |s| {
                if let Some(name) = &name {
                    s.name = name.trim().to_owned();
                }
                if let Some(url) = &icon_url {
                    s.icon_url = url.clone();
                }
            },
            read_access,
        )?;
        let access = read_access.unwrap_or(before);
        index.set_read_access(access);
        (settings, access, before)
    };
    let access_changed = access != before;
    state.store.durable().await?;
    if access_changed {
        tracing::info!(read_access = %access, "read access of the internal roles changed");
    }
    state.bus.emit(
        "server-settings/update",
        json!({ "settings": settings_view(&settings, access) }),
        Audience::Everyone,
    );
    if access_changed {
        for role in [RoleRef::User, RoleRef::Everyone] {
            state.bus.emit(
                "role/update",
                json!({ "role": internal_json(role, access) }),
                Audience::Everyone,
            );
        }
    }
    Ok(ok(json!({})))
}

/// Longest restart delay `POST /api/restart` accepts, in seconds (a day).
pub const MAX_RESTART_SECONDS: u64 = 86_400;

fn restart_view(restart: Option<&crate::chatbox::Restart>) -> serde_json::Value {
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
pub async fn get_restart(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    req.logged_in()?;
    state.require(req.requester(), Permission::ManageServer)?;
    let restart = state.chatbox.restart.borrow().clone();
    Ok(ok(json!({ "restart": restart_view(restart.as_ref()) })))
}

/// `POST /api/restart {seconds}` (extension, manageServer): a graceful stop in `seconds`,
/// announced to chatbox bots; a service manager restarts the process.
pub async fn schedule_restart(
    state: web::Data<AppState>,
    req: ApiRequest,
) -> ApiResult<HttpResponse> {
    req.logged_in()?;
    state.require(req.requester(), Permission::ManageServer)?;
    let seconds = req
        .opt_u64("seconds")?
        .ok_or_else(|| ApiError::incomplete("seconds"))?;
    if seconds > MAX_RESTART_SECONDS {
        return Err(ApiError::invalid_type(
            "seconds",
            "a number of seconds up to 86400",
        ));
    }
    if state.chatbox.restart.borrow().is_some() {
        return Err(ApiError::new(
            ErrorCode::AlreadyPerformed,
            "a restart is already scheduled; cancel it first",
        ));
    }
    let restart = crate::chatbox::Restart::new("manual", seconds);
    crate::chatbox::schedule_restart(&state, restart.clone());
    Ok(ok(json!({ "restart": restart_view(Some(&restart)) })))
}

/// `DELETE /api/restart` (extension, manageServer): cancels the scheduled stop.
pub async fn cancel_restart(
    state: web::Data<AppState>,
    req: ApiRequest,
) -> ApiResult<HttpResponse> {
    req.logged_in()?;
    state.require(req.requester(), Permission::ManageServer)?;
    if !crate::chatbox::cancel_restart(&state) {
        return Err(ApiError::not_found("scheduled restart"));
    }
    Ok(ok(json!({})))
}
