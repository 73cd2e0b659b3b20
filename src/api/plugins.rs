//! Extension endpoints for WASM plugins (manageServer only): list, show, enable, disable and
//! reload. See README "Plugins" and plugins/README.md.

use actix_web::{web, HttpResponse};
use serde_json::json;
use std::sync::Arc;

use super::ok;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::params::ApiRequest;
use crate::perms::Permission;
use crate::plugins::{Plugin, PluginHost};
use crate::state::AppState;

fn authorize(state: &AppState, req: &ApiRequest) -> ApiResult<()> {
    req.logged_in()?;
    state.require(req.requester(), Permission::ManageServer)
}

fn find(state: &AppState, name: &str) -> ApiResult<Arc<Plugin>> {
    state
        .plugins
        .get(name)
        .ok_or_else(|| ApiError::not_found("plugin"))
}

/// `GET /api/plugins`
pub async fn list(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    authorize(&state, &req)?;
    let plugins: Vec<_> = state.plugins.list().iter().map(|p| p.view()).collect();
    Ok(ok(json!({ "plugins": plugins })))
}

/// `GET /api/plugins/:name`
pub async fn get(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    authorize(&state, &req)?;
    Ok(ok(json!({ "plugin": find(&state, &path)?.view() })))
}

async fn switch(
    state: web::Data<AppState>,
    req: ApiRequest,
    name: &str,
    enabled: bool,
) -> ApiResult<HttpResponse> {
    authorize(&state, &req)?;
    let plugin = find(&state, name)?;
    if plugin.enabled() == enabled {
        let what = if enabled { "enabled" } else { "disabled" };
        return Err(ApiError::new(
            ErrorCode::AlreadyPerformed,
            format!("plugin {name} is already {what}"),
        ));
    }
    let reason = (!enabled).then(|| "disabled by an admin".to_owned());
    state
        .plugins
        .set_enabled(&state, &plugin, enabled, reason)?;
    state.store.durable().await?;
    tracing::info!(plugin = name, enabled, "plugin switched by an admin");
    Ok(ok(json!({ "plugin": plugin.view() })))
}

/// `POST /api/plugins/:name/enable`
pub async fn enable(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    switch(state, req, &path, true).await
}

/// `POST /api/plugins/:name/disable`
pub async fn disable(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    switch(state, req, &path, false).await
}

/// `POST /api/plugins/:name/reload`: reads the plugin's directory again (also loads a plugin
/// added since startup). On failure the loaded version keeps running.
pub async fn reload(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    authorize(&state, &req)?;
    let name = path.into_inner();
    let dir = match state.plugins.get(&name) {
        Some(plugin) => plugin.dir.clone(),
        None => {
            if crate::domain::validate_name(&name).is_err() {
                return Err(ApiError::not_found("plugin"));
            }
            let dir = state.plugins.dir.join(&name);
            if !dir.join("plugin.toml").is_file() {
                return Err(ApiError::not_found("plugin"));
            }
            dir
        }
    };
    let plugin = PluginHost::load(&state.clone().into_inner(), &dir)
        .await
        .map_err(|e| {
            ApiError::new(ErrorCode::Failed, format!("cannot load plugin {name}: {e}"))
                .status(actix_web::http::StatusCode::BAD_REQUEST)
        })?;
    if plugin.manifest.name != name {
        tracing::warn!(dir = %dir.display(), name = plugin.manifest.name, "the plugin's manifest names another plugin");
    }
    tracing::info!(plugin = name, "plugin reloaded by an admin");
    Ok(ok(json!({ "plugin": plugin.view() })))
}
