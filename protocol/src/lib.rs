//! The packet vocabulary of decentd's plugins (and, through the same types, its chatbox bots):
//! what the host sends a plugin on each call ([`PluginInput`]) and the actions a plugin answers
//! with ([`Action`]). Modelled on the chatbox WebSocket API: `say`, `tell` and `command` events
//! with `command`, `args` and `ownerOnly`, plus the moderation actions of the pre-store hook.
//! The chatbox API itself, as external bots speak it, is in [`chatbox`]; both use the same
//! user objects ([`ChatUser`]).
//!
//! JSON field names are camelCase; Decent IDs are strings. The server checks these types
//! against the JSON Schemas in `schemas/`.

pub mod chatbox;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// The hook run before a message is stored.
pub const HOOK_BEFORE_STORE: &str = "message/before-store";

/// Events a plugin may subscribe to (delivered after the fact, in order).
pub const EVENTS: &[&str] = &[
    "message/new",
    "message/edit",
    "message/delete",
    "user/new",
    "user/delete",
    "user/update",
    "user/online",
    "user/offline",
];

/// A user as plugins and bots see them: the chatbox API's user object. Decent users are the
/// chatbox's in-game players (`type` is `"ingame"`); fields Decent has no notion of keep their
/// documented neutral values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChatUser {
    /// Always `"ingame"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The username.
    pub name: String,
    pub display_name: String,
    /// A hyphenated UUID derived reversibly from the Decent user ID (`user_uuid`); `tell`
    /// accepts it back.
    pub uuid: String,
    /// The Decent user ID (an extension field).
    #[serde(rename = "userID", default)]
    pub user_id: String,
    /// `"admin"` for users with manageServer, else `"default"`.
    #[serde(default = "default_group")]
    pub group: String,
    /// Always null: Decent has no pronouns.
    #[serde(default)]
    pub pronouns: Option<String>,
    /// Always null: Decent has no worlds.
    #[serde(default)]
    pub world: Option<String>,
    #[serde(default)]
    pub afk: bool,
    #[serde(default)]
    pub alt: bool,
    /// True for users that plugins post as.
    pub bot: bool,
    #[serde(default)]
    pub supporter: u8,
}

fn default_group() -> String {
    "default".into()
}

impl ChatUser {
    /// The user object of a Decent user.
    pub fn new(id: u64, name: impl Into<String>, bot: bool, admin: bool) -> Self {
        let name = name.into();
        Self {
            kind: "ingame".into(),
            display_name: name.clone(),
            name,
            uuid: user_uuid(id),
            user_id: id.to_string(),
            group: if admin { "admin" } else { "default" }.into(),
            pronouns: None,
            world: None,
            afk: false,
            alt: false,
            bot,
            supporter: 0,
        }
    }
}

/// The UUID chatbox clients see for a Decent user ID: a version-8 (custom) UUID holding the
/// 64-bit ID, `hhhhhhhh-mmmm-8lll-8l00-000000000000` (ID bits 63–32, 31–16, 15–4, 3–0).
pub fn user_uuid(id: u64) -> String {
    format!(
        "{:08x}-{:04x}-8{:03x}-8{:x}00-000000000000",
        id >> 32,
        (id >> 16) & 0xffff,
        (id >> 4) & 0xfff,
        id & 0xf
    )
}

/// The Decent user ID inside a UUID made by `user_uuid`; None for any other text.
pub fn user_id_from_uuid(uuid: &str) -> Option<u64> {
    let b = uuid.as_bytes();
    let shape = b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'8'
        && b[19] == b'8'
        && &uuid[21..23] == "00"
        && &uuid[24..] == "000000000000";
    if !shape {
        return None;
    }
    let hex = format!(
        "{}{}{}{}",
        &uuid[0..8],
        &uuid[9..13],
        &uuid[15..18],
        &uuid[20..21]
    );
    if !hex
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

/// A message about to be stored: a new post, or an edit of `messageID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PendingMessage {
    /// The channel; empty for a direct message.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// Set for a direct message: the user it is sent to.
    #[serde(
        rename = "recipientID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient_id: Option<String>,
    /// Set for an edit of an existing message.
    #[serde(rename = "messageID", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub author: ChatUser,
    pub text: String,
}

/// A chatbox command: a message whose first word is `\name` (or `^name`, owner-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommandEvent {
    /// The command's name, without the `\` or `^`.
    pub command: String,
    /// The space-separated words after it.
    pub args: Vec<String>,
    /// True for `^name`: only users with manageServer may run it, and answers are private.
    pub owner_only: bool,
    pub user: ChatUser,
    /// The channel; empty for a command sent in a direct message.
    #[serde(rename = "channelID")]
    pub channel_id: String,
    /// Set for a command sent in a direct message: the user it was sent to. Answers to such a
    /// command are private to the invoker.
    #[serde(
        rename = "recipientID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient_id: Option<String>,
}

/// What the host sends a plugin on one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PluginInput {
    /// Once per plugin instance, before anything else: the manifest's free-form `[config]`.
    Init { config: Value },
    /// Hook `message/before-store`: answer `accept` (or nothing), `reject` or `rewrite`.
    BeforeStore { message: PendingMessage },
    /// A subscribed event, after the fact: `event` is its name, `data` its Decent payload.
    Event { event: String, data: Value },
    /// A command this plugin owns.
    Command(CommandEvent),
}

/// How a `say` or `tell` text is formatted (the chatbox modes); Decent stores Markdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Markdown,
    /// `&`-codes (`&e`, `&l`, ...), removed.
    Format,
    /// HTML-like tags (`<yellow>...</yellow>`), removed.
    Minimessage,
}

/// What a plugin asks the host to do. Each kind needs a capability in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    /// Let the message through unchanged (the same as answering nothing). Pre-store hook only.
    Accept,
    /// Refuse the message; the client gets REJECTED_BY_PLUGIN with this reason. Needs `moderate`.
    Reject { reason: String },
    /// Store this text instead. Pre-store hook only. Needs `moderate`.
    Rewrite { text: String },
    /// Post a message as the plugin's bot user: into `channel` (an ID), else the channel the
    /// command or message came from. Needs `say`.
    Say {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        mode: Mode,
    },
    /// A private message to one user's sockets (a `plugin/tell` WebSocket event): `user` is a
    /// user ID or username. Needs `tell`.
    Tell {
        user: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        mode: Mode,
    },
    /// Delete a stored message. Needs `moderate`.
    Delete {
        #[serde(rename = "messageID")]
        message_id: String,
    },
}

/// A plugin's answer to one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct PluginOutput {
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// Decent text for a `say`/`tell` text in `mode`: formatting codes and tags are removed (Decent
/// has no colours); Markdown passes through.
pub fn to_decent_text(mode: Mode, text: &str) -> String {
    match mode {
        Mode::Markdown => text.to_owned(),
        Mode::Format => {
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '&' {
                    if let Some(code) = chars.peek() {
                        if code.is_ascii_hexdigit() || "klmnorKLMNOR".contains(*code) {
                            chars.next();
                            continue;
                        }
                    }
                }
                out.push(c);
            }
            out
        }
        Mode::Minimessage => {
            let mut out = String::with_capacity(text.len());
            let mut rest = text;
            while let Some(open) = rest.find('<') {
                out.push_str(&rest[..open]);
                match rest[open..].find('>') {
                    Some(close) if !rest[open + 1..open + close].contains('<') => {
                        rest = &rest[open + close + 1..];
                    }
                    _ => {
                        out.push('<');
                        rest = &rest[open + 1..];
                    }
                }
            }
            out.push_str(rest);
            out
        }
    }
}

/// The JSON Schemas of the plugin packets, by file name (`schemas/` holds them).
#[cfg(feature = "schema")]
pub fn schemas() -> Vec<(&'static str, Value)> {
    let to_value = |schema: schemars::Schema| schema.to_value();
    vec![
        (
            "plugin-input.schema.json",
            to_value(schemars::schema_for!(PluginInput)),
        ),
        (
            "plugin-output.schema.json",
            to_value(schemars::schema_for!(PluginOutput)),
        ),
    ]
}

#[cfg(test)]
mod tests {

    #[test]
    fn user_uuids_are_hyphenated_and_give_the_id_back() {
        for id in [
            0u64,
            1,
            0x1234_5678_9abc_def0,
            u64::MAX,
            228_727_481_442_500_608,
        ] {
            let uuid = user_uuid(id);
            assert_eq!(uuid.len(), 36);
            assert_eq!(&uuid[14..15], "8", "version 8: {uuid}");
            assert_eq!(user_id_from_uuid(&uuid), Some(id), "{uuid}");
        }
        assert_eq!(user_uuid(1), "00000000-0000-8000-8100-000000000000");
        for other in [
            "1",
            "ann",
            "00000000-0000-4000-8100-000000000000",
            "",
            "x".repeat(36).as_str(),
        ] {
            assert_eq!(user_id_from_uuid(other), None, "{other}");
        }
    }

    use super::*;

    #[test]
    fn actions_use_the_documented_json() {
        let a: Action = serde_json::from_str(r#"{"type":"say","text":"hi"}"#).unwrap();
        assert_eq!(
            a,
            Action::Say {
                text: "hi".into(),
                channel: None,
                name: None,
                mode: Mode::Markdown
            }
        );
        let input = PluginInput::Command(CommandEvent {
            command: "roll".into(),
            args: vec!["2d6".into()],
            owner_only: false,
            user: ChatUser::new(1, "ann", false, false),
            channel_id: "2".into(),
            recipient_id: None,
        });
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(json["type"], "command");
        assert_eq!(json["ownerOnly"], false);
        assert_eq!(json["channelID"], "2");
        assert!(json.get("recipientID").is_none());
    }

    #[test]
    fn formatting_modes_become_plain_text() {
        assert_eq!(
            to_decent_text(Mode::Format, "&eHello &lworld&r & co"),
            "Hello world & co"
        );
        assert_eq!(
            to_decent_text(Mode::Minimessage, "<yellow>Hi</yellow> a < b"),
            "Hi a < b"
        );
        assert_eq!(to_decent_text(Mode::Markdown, "**x**"), "**x**");
    }
}
