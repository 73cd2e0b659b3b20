//! Managing plugins (manageServer): list, show, enable, disable, reload, through the plugin
//! host's port.

use serde_json::Value;
use std::sync::Arc;

use crate::error::{ApiError, ApiResult};
use crate::perms::Permission;

use super::{Caller, Chat, Plugins};

fn authorize<'a>(chat: &'a Chat, caller: Caller<'_>) -> ApiResult<&'a Arc<dyn Plugins>> {
    caller.user()?;
    chat.require(caller.requester(), Permission::ManageServer)?;
    chat.plugins()
        .ok_or_else(|| ApiError::internal("the plugin host is not running"))
}

/// Every plugin with its state, stats, last error and capabilities.
pub fn list(chat: &Chat, caller: Caller<'_>) -> ApiResult<Vec<Value>> {
    Ok(authorize(chat, caller)?.views())
}

/// One plugin.
pub fn get(chat: &Chat, caller: Caller<'_>, name: &str) -> ApiResult<Value> {
    authorize(chat, caller)?
        .view(name)
        .ok_or_else(|| ApiError::not_found("plugin"))
}

/// Enables or disables a plugin: its new view.
pub async fn switch(
    chat: &Arc<Chat>,
    caller: Caller<'_>,
    name: &str,
    enabled: bool,
) -> ApiResult<Value> {
    let view = authorize(chat, caller)?.set_enabled(chat, name, enabled)?;
    chat.store.durable().await?;
    tracing::info!(plugin = name, enabled, "plugin switched by an admin");
    Ok(view)
}

/// Reads a plugin's directory again: its new view. On failure the loaded version keeps
/// running.
pub async fn reload(chat: &Arc<Chat>, caller: Caller<'_>, name: &str) -> ApiResult<Value> {
    let view = authorize(chat, caller)?.reload(chat, name).await?;
    tracing::info!(plugin = name, "plugin reloaded by an admin");
    Ok(view)
}
