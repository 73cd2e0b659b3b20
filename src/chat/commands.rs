//! Chat commands, routed once for every door: `\chatbox ...` is the server's own (answered
//! privately: in the answer and as a `plugin/tell` event); a command a plugin owns goes to
//! that plugin; other commands go to chatbox bots — owner-only ones (`^name`, `|name`) only
//! to the invoker's bots and are not stored, public ones are also stored as an ordinary
//! message.

use serde_json::{json, Value};
use std::sync::Arc;

use crate::error::ApiResult;
use crate::events::Audience;
use crate::store::UserRecord;
use decentd_protocol::chatbox::CommandText;

use super::{licenses, Chat, Place};

/// Routes a command: the answer if it is handled instead of stored.
pub async fn route(
    chat: &Arc<Chat>,
    user: &UserRecord,
    place: Place,
    command: CommandText,
) -> ApiResult<Option<Value>> {
    let channel_id = match place {
        Place::Channel(channel) => channel.to_string(),
        Place::Direct(_) => String::new(),
    };
    if command.name.eq_ignore_ascii_case("chatbox") && !command.owner_only {
        let reply = licenses::chat_command(chat, user, &command.args).await?;
        chat.emit(
            "plugin/tell",
            json!({ "plugin": "chatbox", "text": reply, "channelID": channel_id }),
            Audience::User(user.id),
        );
        return Ok(Some(json!({ "command": "chatbox", "reply": reply })));
    }
    if let Some(plugins) = chat.plugins() {
        if let Some(plugin) = plugins.command_owner(&command.name) {
            let name = command.name.clone();
            plugins.run_command(chat, command, user, place)?;
            return Ok(Some(json!({ "command": name, "plugin": plugin })));
        }
    }
    // Chatbox bots hear commands in channels their owners may read; a direct message is in
    // none.
    let bots = match place {
        Place::Channel(channel) => chat
            .bots()
            .map_or(0, |bots| bots.command(chat, user, channel, &command)),
        Place::Direct(_) => 0,
    };
    Ok(command
        .owner_only
        .then(|| json!({ "command": command.name, "bots": bots })))
}
