//! The API's objects as the core emits them in events and the doors answer with them.

use serde::Serialize;
use serde_json::Value;

use crate::domain::avatar_url;
use crate::ids::{unix_seconds, IdStr};
use crate::store::{MessageRecord, UserRecord};

use super::Chat;

/// The message object of the API, serialized straight from the record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView<'a> {
    id: IdStr,
    #[serde(rename = "channelID")]
    channel_id: IdStr,
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    #[serde(rename = "authorID")]
    author_id: Option<IdStr>,
    author_username: Option<&'a str>,
    #[serde(rename = "authorAvatarURL")]
    author_avatar_url: Option<&'a str>,
    date_created: f64,
    date_edited: Option<f64>,
    pinned: bool,
    #[serde(rename = "mentionedUserIDs")]
    mentioned_user_ids: Vec<IdStr>,
}

impl<'a> From<&'a MessageRecord> for MessageView<'a> {
    fn from(m: &'a MessageRecord) -> Self {
        let author = m.author.as_ref();
        MessageView {
            id: IdStr(m.id),
            channel_id: IdStr(m.channel_id),
            kind: if m.system { "system" } else { "user" },
            text: &m.text,
            author_id: author.map(|a| IdStr(a.id)),
            author_username: author.map(|a| a.username.as_str()),
            author_avatar_url: author.map(|a| a.avatar_url.as_str()),
            date_created: unix_seconds(m.created_ms),
            date_edited: m.edited_ms.map(unix_seconds),
            pinned: m.pinned,
            mentioned_user_ids: m.mentions.iter().map(|id| IdStr(*id)).collect(),
        }
    }
}

/// The message object as a JSON value, for event payloads.
pub fn message_json(m: &MessageRecord) -> Value {
    serde_json::to_value(MessageView::from(m)).unwrap_or(Value::Null)
}

/// The user object of the API.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    #[serde(rename = "avatarURL")]
    pub avatar_url: String,
    pub flair: Option<String>,
    pub online: bool,
    /// Extension: `online`, `away`, `busy` or `offline` (an invisible user shows offline).
    pub status: &'static str,
    /// Extension: true for the users plugins post as.
    pub bot: bool,
    #[serde(rename = "roleIDs")]
    pub role_ids: Vec<String>,
    /// Present only when the viewer is this user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<String>>,
}

/// A user as `viewer` may see them: the email only goes to its owner.
pub fn user_view(chat: &Chat, user: &UserRecord, viewer: Option<u64>) -> UserView {
    UserView {
        id: user.id.to_string(),
        username: user.username.clone(),
        avatar_url: avatar_url(user.email.as_deref(), user.id),
        flair: user.flair.clone(),
        online: chat.presence.is_online(user.id),
        status: chat.presence.shown(user.id),
        bot: chat.is_bot(user.id),
        role_ids: user.role_ids.iter().map(u64::to_string).collect(),
        email: (viewer == Some(user.id)).then(|| user.email.clone()),
    }
}
