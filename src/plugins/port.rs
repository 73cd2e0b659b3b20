//! The plugin host as the core sees it (`chat::Plugins`).

use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

use super::PluginHost;
use crate::chat::{Chat, Place, Plugins};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::UserRecord;
use decentd_protocol::chatbox::CommandText;

impl Plugins for PluginHost {
    fn is_bot(&self, user: u64) -> bool {
        PluginHost::is_bot(self, user)
    }

    fn has_hooks(&self) -> bool {
        PluginHost::has_hooks(self)
    }

    fn before_store<'a>(
        &'a self,
        chat: &'a Arc<Chat>,
        author: &'a UserRecord,
        place: Place,
        editing: Option<u64>,
        text: String,
    ) -> BoxFuture<'a, ApiResult<String>> {
        Box::pin(PluginHost::before_store(
            self, chat, author, place, editing, text,
        ))
    }

    fn command_owner(&self, command: &str) -> Option<String> {
        PluginHost::command_owner(self, command).map(|p| p.manifest.name.clone())
    }

    fn run_command(
        &self,
        chat: &Arc<Chat>,
        command: CommandText,
        user: &UserRecord,
        place: Place,
    ) -> ApiResult<()> {
        let plugin = PluginHost::command_owner(self, &command.name)
            .ok_or_else(|| ApiError::not_found("command"))?;
        PluginHost::run_command(self, chat, plugin, command, user, place)
    }

    fn views(&self) -> Vec<Value> {
        self.list().iter().map(|p| p.view()).collect()
    }

    fn view(&self, name: &str) -> Option<Value> {
        self.get(name).map(|p| p.view())
    }

    fn set_enabled(&self, chat: &Arc<Chat>, name: &str, enabled: bool) -> ApiResult<Value> {
        let plugin = self
            .get(name)
            .ok_or_else(|| ApiError::not_found("plugin"))?;
        if plugin.enabled() == enabled {
            let what = if enabled { "enabled" } else { "disabled" };
            return Err(ApiError::new(
                ErrorCode::AlreadyPerformed,
                format!("plugin {name} is already {what}"),
            ));
        }
        let reason = (!enabled).then(|| "disabled by an admin".to_owned());
        PluginHost::set_enabled(self, chat, &plugin, enabled, reason)?;
        Ok(plugin.view())
    }

    fn reload<'a>(&'a self, chat: &'a Arc<Chat>, name: &'a str) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            let dir = match self.get(name) {
                Some(plugin) => plugin.dir.clone(),
                None => {
                    if crate::domain::validate_name(name).is_err() {
                        return Err(ApiError::not_found("plugin"));
                    }
                    let dir = self.dir.join(name);
                    if !dir.join("plugin.toml").is_file() {
                        return Err(ApiError::not_found("plugin"));
                    }
                    dir
                }
            };
            let host = self.this();
            let plugin = host.load(chat, &dir).await.map_err(|e| {
                ApiError::new(ErrorCode::Failed, format!("cannot load plugin {name}: {e}"))
                    .status(actix_web::http::StatusCode::BAD_REQUEST)
            })?;
            if plugin.manifest.name != name {
                tracing::warn!(dir = %dir.display(), name = plugin.manifest.name, "the plugin's manifest names another plugin");
            }
            Ok(plugin.view())
        })
    }
}
