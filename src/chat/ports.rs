//! The ports through which the core reaches the plugin host, the bot gateway and the client
//! gateways without naming them: each door implements its trait and is attached to `Chat` at
//! startup.

use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

use crate::error::ApiResult;
use crate::store::{SessionKey, UserRecord};
use decentd_protocol::chatbox::{CloseReason, CommandText};

use super::{Chat, Restart};

/// Where a message goes: a channel, or a user (a direct message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Channel(u64),
    /// A direct message to this user.
    Direct(u64),
}

/// What the core asks of the WASM plugin host.
pub trait Plugins: Send + Sync + std::fmt::Debug {
    /// Whether a user is a plugin's bot user.
    fn is_bot(&self, user: u64) -> bool;

    /// Whether any enabled plugin has the pre-store hook (a cheap check for the hot path).
    fn has_hooks(&self) -> bool;

    /// Runs the pre-store hooks over a message about to be stored (`editing` names the message
    /// being edited): the text to store, or the refusal.
    fn before_store<'a>(
        &'a self,
        chat: &'a Arc<Chat>,
        author: &'a UserRecord,
        place: Place,
        editing: Option<u64>,
        text: String,
    ) -> BoxFuture<'a, ApiResult<String>>;

    /// The name of the enabled plugin that owns a command, if any.
    fn command_owner(&self, command: &str) -> Option<String>;

    /// Hands a command to the plugin that owns it.
    fn run_command(
        &self,
        chat: &Arc<Chat>,
        command: CommandText,
        user: &UserRecord,
        place: Place,
    ) -> ApiResult<()>;

    /// Every plugin, as `GET /api/plugins` shows them.
    fn views(&self) -> Vec<Value>;

    /// One plugin's view; None if no plugin has that name.
    fn view(&self, name: &str) -> Option<Value>;

    /// Enables or disables a plugin (remembered across restarts): its new view. NOT_FOUND for
    /// an unknown plugin, ALREADY_PERFORMED when nothing changes.
    fn set_enabled(&self, chat: &Arc<Chat>, name: &str, enabled: bool) -> ApiResult<Value>;

    /// Reads a plugin's directory again (or loads a plugin added since startup): its view.
    fn reload<'a>(&'a self, chat: &'a Arc<Chat>, name: &'a str) -> BoxFuture<'a, ApiResult<Value>>;
}

/// What the core asks of the chatbox bot gateway.
pub trait Bots: Send + Sync + std::fmt::Debug {
    /// Hands a chat command to bots (public commands to every bot with `command` whose owner
    /// may read the channel, owner-only ones to the invoker's bots): how many got it.
    fn command(&self, chat: &Chat, user: &UserRecord, channel: u64, command: &CommandText)
        -> usize;

    /// Open connections of a license.
    fn connections_of(&self, license: u64) -> usize;

    /// Closes every connection of a license.
    fn kick_license(&self, license: u64, reason: CloseReason);

    /// Announces a scheduled stop.
    fn restart_scheduled(&self, restart: &Restart);

    /// Announces that the scheduled stop was cancelled.
    fn restart_cancelled(&self, restart: &Restart);
}

/// What the core asks of the client gateways (`/` and `/hub`) about the sessions their
/// connections are bound to.
pub trait Connections: Send + Sync + std::fmt::Debug {
    /// Unbinds, before it returns, every connection bound to one of these sessions: a `/`
    /// socket becomes a guest's, a hub connection closes. No event for the session's user
    /// reaches them afterwards.
    fn end_sessions(&self, sessions: &[SessionKey]);

    /// The same for every session of a user (deleted, or every session reset).
    fn end_user(&self, user: u64);

    /// The permission index changed (and the change is durable): every connection hears
    /// `channel/new` for each channel it gained and `channel/delete` for each it lost.
    fn permissions_changed(&self);
}
