//! Private answers: a bot's `tell` and a plugin's `tell` reach one user's sockets only, and
//! are not stored.

use serde_json::json;

use crate::error::ApiError;
use crate::events::Audience;
use crate::store::UserRecord;

use super::Chat;

/// Why a chatbox bot's `tell` reached nobody.
#[derive(Debug)]
pub enum TellRefused {
    /// The user is not online (or does not exist).
    Offline,
    /// The user does not accept direct messages from the bot's owner (blocked, or "nobody"):
    /// the rules of direct messages hold on every door.
    NotAccepted,
    /// Storage failed while checking.
    Failed(String),
}

/// A chatbox bot tells an online user something as its license owner, if the user accepts
/// direct messages from the owner.
pub fn from_bot(
    chat: &Chat,
    owner: &UserRecord,
    user: u64,
    name: &str,
    text: &str,
) -> Result<(), TellRefused> {
    if !chat.presence.is_online(user) {
        return Err(TellRefused::Offline);
    }
    let failed = |e: ApiError| TellRefused::Failed(e.message);
    let recipient = chat
        .store
        .user(user)
        .map_err(|e| failed(e.into()))?
        .ok_or(TellRefused::Offline)?;
    if !super::direct::may_message(chat, owner, &recipient).map_err(failed)? {
        return Err(TellRefused::NotAccepted);
    }
    chat.emit(
        "chatbox/tell",
        json!({
            "name": name,
            "text": text,
            "ownerID": owner.id.to_string(),
            "ownerUsername": owner.username,
        }),
        Audience::User(user),
    );
    Ok(())
}

/// A plugin tells a user something (in the context of a channel, if any), under an optional
/// display name.
pub fn from_plugin(
    chat: &Chat,
    plugin: &str,
    user: u64,
    text: &str,
    name: Option<&str>,
    channel: Option<u64>,
) {
    chat.emit(
        "plugin/tell",
        json!({
            "plugin": plugin,
            "name": name,
            "text": text,
            "channelID": channel.map(|c| c.to_string()),
        }),
        Audience::User(user),
    );
}
