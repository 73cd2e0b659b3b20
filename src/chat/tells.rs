//! Private answers: a bot's `tell` and a plugin's `tell` reach one user's sockets only, and
//! are not stored.

use serde_json::json;

use crate::events::Audience;
use crate::store::UserRecord;

use super::Chat;

/// A chatbox bot tells an online user something as its license owner: false if the user is
/// not online.
pub fn from_bot(chat: &Chat, owner: &UserRecord, user: u64, name: &str, text: &str) -> bool {
    if !chat.presence.is_online(user) {
        return false;
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
    true
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
