//! The chatbox WebSocket API (`/v2/:licenseKey`) as decentd speaks it: the packets a bot
//! receives ([`ServerPacket`], [`ChatEvent`]), the packets it sends ([`BotRequest`], parsed by
//! [`parse_request`] into a request or a documented error), the error and close reasons of the
//! API's tables, and the license capabilities. User objects are [`ChatUser`]s, the same type
//! the plugins see.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{to_decent_text, ChatUser, Mode};

/// One message per this many milliseconds per license...
pub const RATE_INTERVAL_MS: u64 = 500;
/// ...with up to this many waiting; more are refused with `rate_limited`.
pub const RATE_QUEUE: usize = 5;
/// Longest chatbox `name`, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What a license lets its bot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Receive `players` and chat, join and leave events.
    Read,
    /// Receive `command` events.
    Command,
    /// Send `say` packets.
    Say,
    /// Send `tell` packets.
    Tell,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Read,
        Capability::Command,
        Capability::Say,
        Capability::Tell,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Command => "command",
            Capability::Say => "say",
            Capability::Tell => "tell",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == key)
    }

    /// The capability's bit in a stored set.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The capabilities in a stored set, in the order of [`Capability::ALL`].
    pub fn from_bits(bits: u8) -> Vec<Capability> {
        Self::ALL
            .into_iter()
            .filter(|c| bits & c.bit() != 0)
            .collect()
    }
}

/// The errors of the API's error table (plus `unknown_channel`, a decentd extension for a
/// `say` to a channel that does not exist or the license owner may not use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidJson,
    NotConnected,
    MissingType,
    UnknownType,
    UnknownError,
    MissingCapability,
    MissingText,
    MissingUser,
    UnknownUser,
    RateLimited,
    TextTooLarge,
    NameTooLarge,
    UnknownChannel,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::NotConnected => "not_connected",
            ErrorKind::MissingType => "missing_type",
            ErrorKind::UnknownType => "unknown_type",
            ErrorKind::UnknownError => "unknown_error",
            ErrorKind::MissingCapability => "missing_capability",
            ErrorKind::MissingText => "missing_text",
            ErrorKind::MissingUser => "missing_user",
            ErrorKind::UnknownUser => "unknown_user",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::TextTooLarge => "text_too_large",
            ErrorKind::NameTooLarge => "name_too_large",
            ErrorKind::UnknownChannel => "unknown_channel",
        }
    }

    /// The documented human-readable message.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "You have a syntax error in your JSON.",
            ErrorKind::NotConnected => {
                "Your connection isn't ready yet - please wait for the 'hello' message before sending anything."
            }
            ErrorKind::MissingType => "The 'type' argument is required.",
            ErrorKind::UnknownType => "Unrecognised message type.",
            ErrorKind::UnknownError => "An unknown error occurred.",
            ErrorKind::MissingCapability => "You don't have the required capability to run this.",
            ErrorKind::MissingText => "The 'text' argument is required.",
            ErrorKind::MissingUser => "The 'user' argument is required.",
            ErrorKind::UnknownUser => "That user is not online.",
            ErrorKind::RateLimited => "You are sending too many messages, please slow down.",
            ErrorKind::TextTooLarge => "Your text is too large.",
            ErrorKind::NameTooLarge => "Your name is too large.",
            ErrorKind::UnknownChannel => "That channel does not exist or you may not post in it.",
        }
    }
}

/// Why the server closes a bot's connection (the API's close table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ServerStopping,
    ExternalGuestsNotAllowed,
    UnknownLicenseKey,
    InvalidLicenseKey,
    DisabledLicense,
    ChangedLicenseKey,
    FatalError,
    UnsupportedEndpoint,
}

impl CloseReason {
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::ServerStopping => "server_stopping",
            CloseReason::ExternalGuestsNotAllowed => "external_guests_not_allowed",
            CloseReason::UnknownLicenseKey => "unknown_license_key",
            CloseReason::InvalidLicenseKey => "invalid_license_key",
            CloseReason::DisabledLicense => "disabled_license",
            CloseReason::ChangedLicenseKey => "changed_license_key",
            CloseReason::FatalError => "fatal_error",
            CloseReason::UnsupportedEndpoint => "unsupported_endpoint",
        }
    }

    /// The documented human-readable message.
    pub fn message(self) -> &'static str {
        match self {
            CloseReason::ServerStopping => {
                "Server is restarting, please reconnect in a few minutes"
            }
            CloseReason::ExternalGuestsNotAllowed => "External guests are not allowed",
            CloseReason::UnknownLicenseKey => {
                "Unknown license key. Get one with \\chatbox license register"
            }
            CloseReason::InvalidLicenseKey => {
                "Invalid license key. Get one with \\chatbox license register"
            }
            CloseReason::DisabledLicense => {
                "Your license has been disabled. Please contact a member of staff"
            }
            CloseReason::ChangedLicenseKey => "Your license key was invalidated",
            CloseReason::FatalError => "A fatal error occurred.",
            CloseReason::UnsupportedEndpoint => {
                "Unsupported websocket endpoint. Supported endpoints: /v2/:token"
            }
        }
    }

    /// The WebSocket close code: 4000 (`server_stopping`, as documented) and up, in the
    /// order of the API's table.
    pub fn close_code(self) -> u16 {
        4000 + self as u16
    }
}

/// How a `success` packet reports a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuccessReason {
    MessageSent,
    MessageQueued,
}

/// An event packet's payload, tagged by `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A user's chat message (or an edit of one, with `edited`).
    #[serde(rename_all = "camelCase")]
    ChatIngame {
        text: String,
        raw_text: String,
        rendered_text: Value,
        user: ChatUser,
        edited: bool,
    },
    /// A message by another bot: a license's `say` (`user` is the license owner) or a plugin.
    #[serde(rename_all = "camelCase")]
    ChatChatbox {
        text: String,
        raw_text: String,
        rendered_text: Value,
        user: ChatUser,
        name: String,
        raw_name: String,
    },
    /// `\command args` (or `^command`, owner-only, sent only to the invoker's own bots).
    #[serde(rename_all = "camelCase")]
    Command {
        user: ChatUser,
        command: String,
        args: Vec<String>,
        owner_only: bool,
    },
    Join {
        user: ChatUser,
    },
    Leave {
        user: ChatUser,
    },
    #[serde(rename_all = "camelCase")]
    ServerRestartScheduled {
        restart_type: String,
        restart_seconds: u64,
        restart_at: String,
    },
    #[serde(rename_all = "camelCase")]
    ServerRestartCancelled {
        restart_type: String,
    },
}

/// An event packet: the event, when it happened, and where (Decent's extra facts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPacket {
    #[serde(flatten)]
    pub event: ChatEvent,
    /// ISO-8601.
    pub time: String,
    /// The Decent channel ID of a chat or command event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The Decent message ID of a chat event.
    #[serde(rename = "messageID", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// A packet from the server to a bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerPacket {
    #[serde(rename_all = "camelCase")]
    Hello {
        guest: bool,
        license_owner: Option<String>,
        license_owner_user: Option<ChatUser>,
        capabilities: Vec<Capability>,
    },
    Players {
        time: String,
        players: Vec<ChatUser>,
    },
    Event(EventPacket),
    Success {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
        reason: SuccessReason,
    },
    Error {
        error: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
    },
    #[serde(rename_all = "camelCase")]
    Closing {
        close_reason: String,
        reason: String,
    },
}

#[derive(Serialize)]
struct Envelope<'a> {
    ok: bool,
    /// Event packets carry `"id": -1` like the API's examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    #[serde(flatten)]
    packet: &'a ServerPacket,
}

impl ServerPacket {
    pub fn error(kind: ErrorKind, id: Option<i64>) -> Self {
        ServerPacket::Error {
            error: kind.code().into(),
            message: kind.message().into(),
            id,
        }
    }

    pub fn closing(reason: CloseReason) -> Self {
        ServerPacket::Closing {
            close_reason: reason.code().into(),
            reason: reason.message().into(),
        }
    }

    /// `ok` is false for errors and closing packets.
    pub fn ok(&self) -> bool {
        !matches!(
            self,
            ServerPacket::Error { .. } | ServerPacket::Closing { .. }
        )
    }

    /// The packet as sent: with `ok` (and `"id": -1` on events).
    pub fn to_json(&self) -> String {
        let envelope = Envelope {
            ok: self.ok(),
            id: matches!(self, ServerPacket::Event(_)).then_some(-1),
            packet: self,
        };
        serde_json::to_string(&envelope).unwrap_or_else(|_| {
            r#"{"ok":false,"type":"error","error":"unknown_error","message":"An unknown error occurred."}"#.into()
        })
    }
}

/// A bot's `say` or `tell`, checked and converted to Decent text.
#[derive(Debug, Clone, PartialEq)]
pub enum BotRequest {
    Say {
        /// Decent text (format and minimessage codes removed).
        text: String,
        /// The chatbox name to show (None: the license owner's username).
        name: Option<String>,
        /// A channel ID or name (None: the configured default channel).
        channel: Option<String>,
        id: Option<i64>,
    },
    Tell {
        /// A username or user ID.
        user: String,
        text: String,
        name: Option<String>,
        id: Option<i64>,
    },
}

impl BotRequest {
    pub fn id(&self) -> Option<i64> {
        match self {
            BotRequest::Say { id, .. } | BotRequest::Tell { id, .. } => *id,
        }
    }

    pub fn needs(&self) -> Capability {
        match self {
            BotRequest::Say { .. } => Capability::Say,
            BotRequest::Tell { .. } => Capability::Tell,
        }
    }
}

/// A refused packet: the error and the packet's `id`, if it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: ErrorKind,
    pub id: Option<i64>,
}

/// Parses a bot's packet, checking in the order a client would expect: JSON, `type`, the
/// capability the type needs (`allowed`), then `text`, `user`, `mode` and sizes (`max_text`
/// characters, [`MAX_NAME_CHARS`] for `name`).
pub fn parse_request(
    frame: &str,
    allowed: impl Fn(Capability) -> bool,
    max_text: usize,
) -> Result<BotRequest, Refusal> {
    let refuse = |kind, id| Refusal { kind, id };
    let Ok(Value::Object(packet)) = serde_json::from_str::<Value>(frame) else {
        return Err(refuse(ErrorKind::InvalidJson, None));
    };
    let id = packet.get("id").and_then(Value::as_i64);
    let needs = match packet.get("type") {
        None | Some(Value::Null) => return Err(refuse(ErrorKind::MissingType, id)),
        Some(Value::String(t)) if t == "say" => Capability::Say,
        Some(Value::String(t)) if t == "tell" => Capability::Tell,
        Some(_) => return Err(refuse(ErrorKind::UnknownType, id)),
    };
    if !allowed(needs) {
        return Err(refuse(ErrorKind::MissingCapability, id));
    }
    let string = |key: &str| -> Option<String> {
        match packet.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let mode = mode(&packet);
    let text = string("text")
        .map(|t| to_decent_text(mode, &t))
        .filter(|t| !t.trim().is_empty())
        .ok_or(refuse(ErrorKind::MissingText, id))?;
    let user = match needs {
        Capability::Tell => Some(
            string("user")
                .filter(|u| !u.is_empty())
                .ok_or(refuse(ErrorKind::MissingUser, id))?,
        ),
        _ => None,
    };
    if text.chars().count() > max_text {
        return Err(refuse(ErrorKind::TextTooLarge, id));
    }
    let name = string("name")
        .map(|n| to_decent_text(mode, &n))
        .filter(|n| !n.trim().is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(refuse(ErrorKind::NameTooLarge, id));
    }
    Ok(match user {
        Some(user) => BotRequest::Tell {
            user,
            text,
            name,
            id,
        },
        None => BotRequest::Say {
            text,
            name,
            channel: string("channel").filter(|c| !c.is_empty()),
            id,
        },
    })
}

/// The packet's formatting mode; unknown modes are read as the default, Markdown.
fn mode(packet: &Map<String, Value>) -> Mode {
    packet
        .get("mode")
        .cloned()
        .and_then(|m| serde_json::from_value(m).ok())
        .unwrap_or_default()
}

/// A chat message that is a chatbox command: `\name args...` (public) or `^name args...` /
/// `|name args...` (owner-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandText {
    pub name: String,
    pub args: Vec<String>,
    pub owner_only: bool,
}

/// Splits a command message; None unless the text starts with `\`, `^` or `|` followed at
/// once by a name of letters, digits, `_` and `-` that starts with a letter or digit (so
/// `^_^` and `\ x` stay ordinary messages).
pub fn parse_command(text: &str) -> Option<CommandText> {
    let owner_only = match text.chars().next()? {
        '\\' => false,
        '^' | '|' => true,
        _ => return None,
    };
    let rest = &text[1..];
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    let valid = rest.starts_with(name)
        && name.starts_with(|c: char| c.is_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    valid.then(|| CommandText {
        name: name.to_owned(),
        args: words.map(str::to_owned).collect(),
        owner_only,
    })
}

/// Text without Markdown emphasis markers (`**`, `__`, `~~`, `||`, backticks): the chatbox
/// `text` next to the original `rawText`.
pub fn plain_text(markdown: &str) -> String {
    let mut out = markdown.to_owned();
    for marker in ["**", "__", "~~", "||", "`"] {
        out = out.replace(marker, "");
    }
    out
}

/// The raw JSON text of a Decent text: one plain component, with the `extra` array v2 clients
/// read (empty: Decent text has no styled parts).
pub fn rendered_text(text: &str) -> Value {
    serde_json::json!({ "text": text, "extra": [] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: Capability) -> bool {
        true
    }

    fn refused(frame: &str) -> ErrorKind {
        parse_request(frame, all, 100).unwrap_err().kind
    }

    #[test]
    fn requests_are_checked_in_the_documented_order() {
        assert_eq!(refused("{nope"), ErrorKind::InvalidJson);
        assert_eq!(refused("[1]"), ErrorKind::InvalidJson);
        assert_eq!(refused(r#"{"text":"x"}"#), ErrorKind::MissingType);
        assert_eq!(refused(r#"{"type":"shout"}"#), ErrorKind::UnknownType);
        assert_eq!(refused(r#"{"type":"say"}"#), ErrorKind::MissingText);
        assert_eq!(
            refused(r#"{"type":"say","text":"  "}"#),
            ErrorKind::MissingText
        );
        assert_eq!(
            refused(r#"{"type":"tell","text":"x"}"#),
            ErrorKind::MissingUser
        );
        let long = format!(r#"{{"type":"say","text":"{}"}}"#, "a".repeat(101));
        assert_eq!(refused(&long), ErrorKind::TextTooLarge);
        let name = format!(r#"{{"type":"say","text":"x","name":"{}"}}"#, "n".repeat(65));
        assert_eq!(refused(&name), ErrorKind::NameTooLarge);
        // The capability is checked before the fields.
        let err =
            parse_request(r#"{"type":"tell","id":7}"#, |c| c != Capability::Tell, 100).unwrap_err();
        assert_eq!(
            err,
            Refusal {
                kind: ErrorKind::MissingCapability,
                id: Some(7)
            }
        );
    }

    #[test]
    fn formatting_modes_are_converted() {
        let req = parse_request(
            r#"{"type":"say","text":"&eHi &lthere","name":"<red>Bot</red>","mode":"format","id":3,"channel":"general"}"#,
            all,
            100,
        )
        .unwrap();
        assert_eq!(
            req,
            BotRequest::Say {
                text: "Hi there".into(),
                name: Some("<red>Bot</red>".into()),
                channel: Some("general".into()),
                id: Some(3)
            }
        );
        let req = parse_request(
            r#"{"type":"tell","user":"ann","text":"<b>x</b>","mode":"minimessage"}"#,
            all,
            100,
        )
        .unwrap();
        assert_eq!(
            req,
            BotRequest::Tell {
                user: "ann".into(),
                text: "x".into(),
                name: None,
                id: None
            }
        );
    }

    #[test]
    fn packets_have_the_documented_shape() {
        let hello = ServerPacket::Hello {
            guest: false,
            license_owner: Some("ann".into()),
            license_owner_user: None,
            capabilities: vec![Capability::Read, Capability::Say],
        };
        let v: Value = serde_json::from_str(&hello.to_json()).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["type"], "hello");
        assert_eq!(v["licenseOwner"], "ann");
        assert_eq!(v["capabilities"], serde_json::json!(["read", "say"]));
        let closing = ServerPacket::closing(CloseReason::ServerStopping);
        let v: Value = serde_json::from_str(&closing.to_json()).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["closeReason"], "server_stopping");
        assert_eq!(CloseReason::ServerStopping.close_code(), 4000);
        let event = ServerPacket::Event(EventPacket {
            event: ChatEvent::Command {
                user: crate::ChatUser::new(1, "ann", false, false),
                command: "roll".into(),
                args: vec!["2d6".into()],
                owner_only: false,
            },
            time: "2026-01-01T00:00:00Z".into(),
            channel: Some("5".into()),
            message_id: None,
        });
        let v: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["event"], "command");
        assert_eq!(v["ownerOnly"], false);
        assert_eq!(v["id"], -1);
        assert_eq!(v["channel"], "5");
        assert_eq!(v["user"]["type"], "ingame");
        let err = ServerPacket::error(ErrorKind::RateLimited, Some(4));
        let v: Value = serde_json::from_str(&err.to_json()).unwrap();
        assert_eq!(
            (v["ok"].clone(), v["error"].clone(), v["id"].clone()),
            (false.into(), "rate_limited".into(), 4.into())
        );
    }

    #[test]
    fn capability_bits_round_trip() {
        let bits = Capability::Read.bit() | Capability::Tell.bit();
        assert_eq!(
            Capability::from_bits(bits),
            vec![Capability::Read, Capability::Tell]
        );
        assert_eq!(Capability::from_key("say"), Some(Capability::Say));
        assert_eq!(Capability::from_key("fly"), None);
    }

    #[test]
    fn commands_are_split_into_name_and_args() {
        let cmd = parse_command("\\roll 2d6  +1").unwrap();
        assert_eq!(
            cmd,
            CommandText {
                name: "roll".into(),
                args: vec!["2d6".into(), "+1".into()],
                owner_only: false
            }
        );
        assert!(parse_command("^cfg set x").unwrap().owner_only);
        assert!(parse_command("|cfg").unwrap().owner_only);
        for text in ["^_^", "\\ roll", "hello \\roll", "\\", "|", "\\r*ll"] {
            assert_eq!(parse_command(text), None, "{text}");
        }
    }

    #[test]
    fn plain_text_drops_markdown_markers() {
        assert_eq!(plain_text("Hello **world** `x`"), "Hello world x");
        assert_eq!(plain_text("snake_case"), "snake_case");
    }
}
