//! The SignalR JSON hub protocol: records ended by the record separator `0x1E`, the handshake,
//! the messages a client sends, and the messages the hub sends, including the invocations
//! that carry bus events. Pure: no sockets, no state.
//!
//! Written against the ASP.NET Core SignalR `HubProtocol` specification. Message types: 1
//! Invocation, 2 StreamItem, 3 Completion, 4 StreamInvocation, 5 CancelInvocation, 6 Ping,
//! 7 Close, 8 Ack and 9 Sequence (the last two only with stateful reconnect, which this hub
//! does not offer).

use actix_web::web::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use crate::events::Event;
use crate::ids::iso8601;
use crate::net::websocket::text_frame;

/// Ends every record, in both directions.
pub const RECORD_SEPARATOR: u8 = 0x1e;
/// The only hub protocol spoken.
pub const PROTOCOL: &str = "json";
/// JSON hub protocol versions accepted: 1, and 2 (what current clients ask for; it adds only
/// the stateful-reconnect messages, which are used only when negotiate offers them).
pub const VERSIONS: [u64; 2] = [1, 2];
/// Most records one WebSocket message may carry.
pub const MAX_RECORDS_PER_MESSAGE: usize = 32;
/// Longest invocation ID accepted (the protocol lets the callee set a limit).
pub const MAX_INVOCATION_ID: usize = 128;

/// The successful handshake response.
pub const HANDSHAKE_OK: &str = "{}\u{1e}";
/// A Ping message.
pub const PING: &str = "{\"type\":6}\u{1e}";

/// Splits what a client sends into records. A record may span WebSocket messages; the part
/// not yet ended is bounded by `max` bytes.
#[derive(Debug)]
pub struct Records {
    partial: Vec<u8>,
    max: usize,
}

impl Records {
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            max,
        }
    }

    /// Adds one WebSocket message's bytes; answers the records it completes. An error (a
    /// record over the size limit, too many records, or a record that is not UTF-8) ends the
    /// connection.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == RECORD_SEPARATOR) {
            let record = if self.partial.is_empty() {
                rest[..end].to_vec()
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(&rest[..end]);
                whole
            };
            if record.len() > self.max {
                return Err(format!("a message is larger than {} bytes", self.max));
            }
            if records.len() == MAX_RECORDS_PER_MESSAGE {
                return Err(format!(
                    "more than {MAX_RECORDS_PER_MESSAGE} messages in one WebSocket message"
                ));
            }
            records.push(String::from_utf8(record).map_err(|_| "a message is not UTF-8")?);
            rest = &rest[end + 1..];
        }
        if self.partial.len() + rest.len() > self.max {
            return Err(format!("a message is larger than {} bytes", self.max));
        }
        self.partial.extend_from_slice(rest);
        Ok(records)
    }
}

/// Checks a handshake request; the error text for the handshake response when it is refused.
pub fn handshake(record: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "the first message must be a handshake request such as \
             {{\"protocol\":\"{PROTOCOL}\",\"version\":1}}"
        )
    };
    let value: Value = serde_json::from_str(record).map_err(|_| expected())?;
    let protocol = value
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or_else(expected)?;
    let version = value
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(expected)?;
    if protocol != PROTOCOL {
        return Err(format!(
            "the protocol '{protocol}' is not supported: this hub speaks '{PROTOCOL}' \
             (versions 1 and 2)"
        ));
    }
    if !VERSIONS.contains(&version) {
        return Err(format!(
            "version {version} of the '{PROTOCOL}' protocol is not supported (1 and 2 are)"
        ));
    }
    Ok(())
}

/// A message from the client.
#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    /// Type 1: call a hub method; without an ID, no completion is sent.
    Invocation {
        id: Option<String>,
        target: String,
        arguments: Vec<Value>,
    },
    /// A streaming invocation (type 4) or an invocation with upload streams: no hub method
    /// streams, so it gets an error completion.
    Streaming { id: Option<String>, target: String },
    /// Type 5: nothing runs long enough to cancel.
    Cancel,
    /// Type 6.
    Ping,
    /// Type 7: the client is closing.
    Close { error: Option<String> },
    /// Types 8 and 9 (stateful reconnect, not offered): ignored.
    Ignored,
}

/// Parses one record. An error is a protocol error that ends the connection.
pub fn parse(record: &str) -> Result<ClientMessage, String> {
    let value: Value =
        serde_json::from_str(record).map_err(|e| format!("a message is not valid JSON: {e}"))?;
    let Value::Object(message) = value else {
        return Err("a message must be a JSON object".into());
    };
    let kind = message
        .get("type")
        .and_then(Value::as_u64)
        .ok_or("a message has no numeric \"type\"")?;
    let id = match message.get("invocationId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.len() <= MAX_INVOCATION_ID => Some(id.clone()),
        Some(Value::String(_)) => {
            return Err(format!(
                "an invocation ID is longer than {MAX_INVOCATION_ID} bytes"
            ))
        }
        Some(_) => return Err("\"invocationId\" must be a string".into()),
    };
    let target = || -> Result<String, String> {
        match message.get("target") {
            Some(Value::String(t)) => Ok(t.clone()),
            _ => Err("an invocation has no \"target\" string".into()),
        }
    };
    let arguments = || -> Result<Vec<Value>, String> {
        match message.get("arguments") {
            Some(Value::Array(a)) => Ok(a.clone()),
            None => Ok(Vec::new()),
            Some(_) => Err("\"arguments\" must be an array".into()),
        }
    };
    let streams = message
        .get("streamIds")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    match kind {
        1 if streams => Ok(ClientMessage::Streaming {
            id,
            target: target()?,
        }),
        1 => Ok(ClientMessage::Invocation {
            id,
            target: target()?,
            arguments: arguments()?,
        }),
        4 => Ok(ClientMessage::Streaming {
            id: Some(id.ok_or("a stream invocation has no \"invocationId\"")?),
            target: target()?,
        }),
        5 => Ok(ClientMessage::Cancel),
        6 => Ok(ClientMessage::Ping),
        7 => Ok(ClientMessage::Close {
            error: message
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        8 | 9 => Ok(ClientMessage::Ignored),
        2 | 3 => Err(
            "the hub never invokes client methods that answer, so a StreamItem or \
                      Completion from the client is unexpected"
                .into(),
        ),
        other => Err(format!("unknown message type {other}")),
    }
}

/// One record: `value` as JSON followed by the record separator.
fn record(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string(value).expect("hub messages serialize");
    text.push(RECORD_SEPARATOR as char);
    text
}

/// A refused handshake.
pub fn handshake_error(error: &str) -> String {
    record(&json!({ "error": error }))
}

/// A Close message: with an error when the hub closes because of one; `allow_reconnect` tells
/// clients with automatic reconnects whether to try again.
pub fn close(error: Option<&str>, allow_reconnect: bool) -> String {
    let mut message = json!({ "type": 7 });
    if let Some(error) = error {
        message["error"] = error.into();
        message["allowReconnect"] = allow_reconnect.into();
    }
    record(&message)
}

/// The completion of an invocation: its result (absent for methods without one), or an error.
pub fn completion(id: &str, outcome: Result<Option<Value>, String>) -> String {
    let mut message = json!({ "type": 3, "invocationId": id });
    match outcome {
        Ok(Some(result)) => message["result"] = result,
        Ok(None) => {}
        Err(error) => message["error"] = error.into(),
    }
    record(&message)
}

#[derive(Serialize)]
struct Invocation<'a, A: Serialize> {
    #[serde(rename = "type")]
    kind: u8,
    target: &'a str,
    arguments: A,
}

/// An invocation of a client method, without an ID (the hub expects no answer).
pub fn invocation(target: &str, arguments: impl Serialize) -> String {
    record(&Invocation {
        kind: 1,
        target,
        arguments,
    })
}

/// The frame that carries a bus event to hub clients: `ReceiveEvent(name, data)` for every
/// event, followed, in the same frame, by the Resonite-named invocation where one fits.
pub fn event_frame(event: &Event) -> Bytes {
    let mut text = invocation("ReceiveEvent", (event.name, &event.data));
    if let Some((target, argument)) = resonite(event.name, &event.data) {
        text.push_str(&invocation(target, [argument]));
    }
    text_frame(&text)
}

/// A Resonite `UserStatus` for a Decent status name (`online`, `away`, `busy`, `offline`).
pub fn user_status(user: &str, status: &str) -> Value {
    let online_status = match status {
        "online" => "Online",
        "away" => "Away",
        "busy" => "Busy",
        "invisible" => "Invisible",
        _ => "Offline",
    };
    json!({ "userId": user, "onlineStatus": online_status })
}

/// An ISO 8601 date from an API date (seconds since the epoch, as a float).
fn iso_from_seconds(seconds: &Value) -> Value {
    match seconds.as_f64() {
        Some(s) if s >= 0.0 => Value::String(iso8601((s * 1000.0).round() as u64)),
        _ => Value::Null,
    }
}

/// The Resonite-named invocation for an event, if one fits: `ReceiveMessage` for a new direct
/// message, `MessagesRead` for a read mark, `ReceiveStatusUpdate` for presence.
fn resonite(name: &str, data: &Value) -> Option<(&'static str, Value)> {
    let text = |pointer: &str| data.pointer(pointer).cloned().unwrap_or(Value::Null);
    match name {
        "dm/new" => {
            let m = data.get("message")?;
            let field = |key: &str| m.get(key).cloned().unwrap_or(Value::Null);
            let sent = iso_from_seconds(&field("dateCreated"));
            Some((
                "ReceiveMessage",
                json!({
                    "id": field("id"),
                    "senderId": field("authorID"),
                    "recipientId": field("recipientID"),
                    "messageType": "Text",
                    "content": field("text"),
                    "sendTime": sent,
                    "lastUpdateTime": sent,
                    "readTime": null,
                }),
            ))
        }
        "dm/read" => Some((
            "MessagesRead",
            json!({
                "recipientId": text("/userID"),
                "senderId": text("/otherUserID"),
                "upTo": text("/upTo"),
                "readTime": iso8601(crate::ids::now_ms()),
            }),
        )),
        "user/online" | "user/offline" | "user/status" => {
            let user = data.get("userID")?.as_str()?;
            let status = match name {
                "user/online" => "online",
                "user/offline" => "offline",
                _ => data.get("status")?.as_str()?,
            };
            Some(("ReceiveStatusUpdate", user_status(user, status)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Audience;

    const RS: char = '\u{1e}';

    #[test]
    fn records_split_on_the_separator_and_may_span_messages() {
        let mut records = Records::new(64);
        assert_eq!(
            records.push(b"{\"type\":6}\x1e{\"ty").unwrap(),
            vec!["{\"type\":6}".to_owned()]
        );
        assert_eq!(records.push(b"pe\":").unwrap(), Vec::<String>::new());
        assert_eq!(
            records.push(b"6}\x1e\x1e").unwrap(),
            vec!["{\"type\":6}".to_owned(), String::new()]
        );
    }

    #[test]
    fn records_are_bounded_in_size_and_number() {
        let mut records = Records::new(8);
        assert!(records.push(b"123456789").is_err(), "an unended record");
        let mut records = Records::new(8);
        assert!(records.push(b"12345").is_ok());
        assert!(records.push(b"6789\x1e").is_err(), "a record ended late");
        let mut records = Records::new(8);
        let many = "1\u{1e}".repeat(MAX_RECORDS_PER_MESSAGE + 1);
        assert!(records.push(many.as_bytes()).is_err());
        assert!(Records::new(8).push(b"\xff\x1e").is_err(), "not UTF-8");
    }

    #[test]
    fn handshakes_accept_json_versions_1_and_2_only() {
        assert_eq!(handshake(r#"{"protocol":"json","version":1}"#), Ok(()));
        assert_eq!(handshake(r#"{"protocol":"json","version":2}"#), Ok(()));
        let refused = handshake(r#"{"protocol":"messagepack","version":1}"#).unwrap_err();
        assert!(
            refused.contains("'messagepack' is not supported"),
            "{refused}"
        );
        assert!(handshake(r#"{"protocol":"json","version":3}"#).is_err());
        assert!(handshake(r#"{"type":6}"#).is_err());
        assert!(handshake("not json").is_err());
    }

    #[test]
    fn client_messages_parse_by_type() {
        assert_eq!(
            parse(r#"{"type":1,"invocationId":"7","target":"SendMessage","arguments":[{"a":1}]}"#),
            Ok(ClientMessage::Invocation {
                id: Some("7".into()),
                target: "SendMessage".into(),
                arguments: vec![json!({"a": 1})],
            })
        );
        assert_eq!(
            parse(r#"{"type":1,"target":"X","arguments":[],"headers":{"a":"b"}}"#),
            Ok(ClientMessage::Invocation {
                id: None,
                target: "X".into(),
                arguments: vec![],
            })
        );
        assert_eq!(
            parse(r#"{"type":1,"invocationId":"1","target":"X","arguments":[],"streamIds":["2"]}"#),
            Ok(ClientMessage::Streaming {
                id: Some("1".into()),
                target: "X".into()
            })
        );
        assert_eq!(parse(r#"{"type":6}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse(r#"{"type":7,"error":"bye"}"#),
            Ok(ClientMessage::Close {
                error: Some("bye".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":8,"sequenceId":1}"#),
            Ok(ClientMessage::Ignored)
        );
        for bad in [
            r#"{"type":3,"invocationId":"1"}"#,
            r#"{"type":1,"arguments":[]}"#,
            r#"{"type":1,"target":"X","arguments":{}}"#,
            r#"{"type":1,"invocationId":5,"target":"X"}"#,
            r#"{"type":42}"#,
            r#"[1]"#,
            "{",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"type":1,"invocationId":"{}","target":"X"}}"#,
            "9".repeat(MAX_INVOCATION_ID + 1)
        );
        assert!(parse(&long).is_err());
    }

    #[test]
    fn hub_messages_end_with_the_separator() {
        assert_eq!(handshake_error("no"), format!(r#"{{"error":"no"}}{RS}"#));
        assert_eq!(close(None, false), format!(r#"{{"type":7}}{RS}"#));
        let closing: Value =
            serde_json::from_str(close(Some("bye"), true).trim_end_matches(RS)).unwrap();
        assert_eq!(
            closing,
            json!({"type": 7, "error": "bye", "allowReconnect": true})
        );
        let done: Value =
            serde_json::from_str(completion("4", Ok(None)).trim_end_matches(RS)).unwrap();
        assert_eq!(done, json!({"type": 3, "invocationId": "4"}));
        let failed: Value =
            serde_json::from_str(completion("4", Err("NO: x".into())).trim_end_matches(RS))
                .unwrap();
        assert_eq!(failed["error"], "NO: x");
        assert!(failed.get("result").is_none());
    }

    /// The text of a frame built by `text_frame` (a short unmasked text frame).
    fn frame_text(frame: &Bytes) -> String {
        let offset = match frame[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        String::from_utf8(frame[offset..].to_vec()).unwrap()
    }

    #[test]
    fn events_become_receive_event_and_resonite_invocations() {
        let event = Event::new(
            "message/new",
            json!({"message": {"id": "1"}}),
            Audience::Everyone,
            0,
        );
        let text = frame_text(&event_frame(&event));
        assert_eq!(
            text,
            format!(
                r#"{{"type":1,"target":"ReceiveEvent","arguments":["message/new",{{"message":{{"id":"1"}}}}]}}{RS}"#
            )
        );

        let dm = Event::new(
            "dm/new",
            json!({"message": {"id": "9", "authorID": "1", "recipientID": "2", "text": "hi",
                               "dateCreated": 1.5, "dateEdited": null}}),
            Audience::Users(1, 2),
            0,
        );
        let text = frame_text(&event_frame(&dm));
        let records: Vec<Value> = text
            .split(RS)
            .filter(|r| !r.is_empty())
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["target"], "ReceiveEvent");
        assert_eq!(records[1]["target"], "ReceiveMessage");
        let message = &records[1]["arguments"][0];
        assert_eq!(message["senderId"], "1");
        assert_eq!(message["recipientId"], "2");
        assert_eq!(message["content"], "hi");
        assert_eq!(message["sendTime"], iso8601(1500));

        let away = Event::new(
            "user/status",
            json!({"userID": "5", "status": "away"}),
            Audience::Everyone,
            0,
        );
        let text = frame_text(&event_frame(&away));
        assert!(text.contains(
            r#"{"type":1,"target":"ReceiveStatusUpdate","arguments":[{"onlineStatus":"Away","userId":"5"}]}"#
        ), "{text}");
    }
}
