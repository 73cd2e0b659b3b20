//! Carrying out what plugins answer: `say` (a message by the plugin's bot user), `tell` (a
//! private `plugin/tell` event), `delete`. The host checks each action against the plugin's
//! capabilities before it gets here.

use std::sync::Arc;

use super::Plugin;
use crate::chat::Chat;
use decentd_protocol::{to_decent_text, Action};

/// Where an answer's actions apply.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Context {
    pub channel: Option<u64>,
    pub invoker: Option<u64>,
    /// Owner-only command: every answer is private to the invoker.
    pub private: bool,
}

/// Performs actions in the background (they may write to storage).
pub(super) fn perform_soon(
    state: &Arc<Chat>,
    plugin: &Arc<Plugin>,
    actions: Vec<Action>,
    context: Context,
) {
    if actions.is_empty() {
        return;
    }
    let (state, plugin) = (state.clone(), plugin.clone());
    actix_web::rt::spawn(async move { perform(&state, &plugin, actions, context).await });
}

/// Carries out a plugin's actions (already allowed by its capabilities).
pub(super) async fn perform(state: &Chat, plugin: &Plugin, actions: Vec<Action>, context: Context) {
    for action in actions {
        let result = match action {
            Action::Say {
                text, mode, name, ..
            } if context.private => match context.invoker {
                Some(user) => tell(
                    state,
                    plugin,
                    user,
                    &to_decent_text(mode, &text),
                    name.as_deref(),
                    context.channel,
                ),
                None => Ok(()),
            },
            Action::Say {
                text,
                channel,
                mode,
                ..
            } => {
                say(
                    state,
                    plugin,
                    channel.as_deref(),
                    context.channel,
                    &to_decent_text(mode, &text),
                )
                .await
            }
            Action::Tell {
                user,
                text,
                mode,
                name,
            } => match state.user_named(&user).ok().flatten().map(|u| u.id) {
                Some(id) => tell(
                    state,
                    plugin,
                    id,
                    &to_decent_text(mode, &text),
                    name.as_deref(),
                    context.channel,
                ),
                None => Err(format!("no user {user:?}")),
            },
            Action::Delete { message_id } => delete(state, &message_id).await,
            Action::Accept | Action::Reject { .. } | Action::Rewrite { .. } => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(plugin = plugin.name(), error = e, "plugin action failed");
        }
    }
}

/// A private message to one user's sockets: the `plugin/tell` WebSocket event, with the
/// sender `name` the plugin chose (`null`: none).
fn tell(
    state: &Chat,
    plugin: &Plugin,
    user: u64,
    text: &str,
    name: Option<&str>,
    channel: Option<u64>,
) -> Result<(), String> {
    crate::chat::tells::from_plugin(state, plugin.name(), user, text, name, channel);
    Ok(())
}

async fn say(
    state: &Chat,
    plugin: &Plugin,
    channel: Option<&str>,
    default: Option<u64>,
    text: &str,
) -> Result<(), String> {
    let channel = match channel {
        Some(raw) => raw
            .parse::<u64>()
            .map_err(|_| format!("bad channel {raw:?}"))?,
        None => default.ok_or("say without a channel")?,
    };
    crate::domain::validate_message_text(text, state.config.max_message_length)
        .map_err(|e| e.to_string())?;
    let bot = state
        .store
        .user(plugin.bot_user)
        .map_err(|e| e.to_string())?
        .ok_or("the bot user is gone")?;
    crate::chat::messages::store(state, &bot, channel, text.to_owned(), false, None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn delete(state: &Chat, message_id: &str) -> Result<(), String> {
    let id = message_id
        .parse::<u64>()
        .map_err(|_| format!("bad message ID {message_id:?}"))?;
    crate::chat::messages::remove(state, id)
        .await
        .map_err(|e| e.to_string())
}
