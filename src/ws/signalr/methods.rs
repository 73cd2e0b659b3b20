//! The hub methods a client may invoke, each a use case of the core with the caller of the
//! connection's session. Arguments are JSON objects read with the HTTP API's parameter rules
//! (`Params`), so a bad argument gets the error the same HTTP request would; the error text
//! of a completion is `CODE: message`.

use serde_json::{json, Value};
use std::sync::Arc;

use super::protocol::{invocation, user_status};
use crate::chat::caller::Caller;
use crate::chat::channels;
use crate::chat::direct::{self, Sent};
use crate::chat::messages::{self, Posted};
use crate::chat::presence::{self, Status};
use crate::chat::sessions::Session;
use crate::chat::views::message_json;
use crate::chat::{users, Chat};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::params::Params;

/// The methods, for error texts and the README.
pub const METHODS: &str =
    "SendMessage, MarkMessagesRead, BroadcastStatus, RequestStatus and InitializeStatus";

/// What an invocation produced: records to send before its completion, and its result.
#[derive(Debug, Default)]
pub struct Reply {
    pub before: Vec<String>,
    pub result: Option<Value>,
}

impl Reply {
    fn result(value: Value) -> Self {
        Self {
            before: Vec::new(),
            result: Some(value),
        }
    }
}

/// Runs hub method `target`. The error is the completion's error text.
pub async fn invoke(
    chat: &Arc<Chat>,
    session: Option<&Session>,
    target: &str,
    arguments: Vec<Value>,
) -> Result<Reply, String> {
    let caller = Caller::from_session(session);
    let outcome = match target {
        "SendMessage" => send_message(chat, caller, one_object(target, arguments)?).await,
        "MarkMessagesRead" => mark_read(chat, caller, one_object(target, arguments)?).await,
        "BroadcastStatus" => {
            let mut arguments = arity(target, arguments, 1, 2)?;
            broadcast_status(chat, caller, arguments.swap_remove(0))
        }
        "RequestStatus" => {
            let arguments = arity(target, arguments, 0, 2)?;
            request_status(chat, arguments.into_iter().next().unwrap_or(Value::Null))
        }
        "InitializeStatus" => {
            arity(target, arguments, 0, 0)?;
            Ok(initialize_status(chat, caller))
        }
        other => {
            return Err(format!(
                "Unknown hub method '{other}'; this hub offers {METHODS}"
            ))
        }
    };
    outcome.map_err(|e| e.to_string())
}

/// The arguments, when their number is within `min..=max`.
fn arity(
    target: &str,
    arguments: Vec<Value>,
    min: usize,
    max: usize,
) -> Result<Vec<Value>, String> {
    if (min..=max).contains(&arguments.len()) {
        return Ok(arguments);
    }
    let expected = if min == max {
        format!("{min}")
    } else {
        format!("{min} to {max}")
    };
    Err(format!(
        "Invocation provides {} argument(s) but target '{target}' expects {expected}",
        arguments.len()
    ))
}

/// The single object argument of a method, as parameters.
fn one_object(target: &str, arguments: Vec<Value>) -> Result<Params, String> {
    match arity(target, arguments, 1, 1)?.pop() {
        Some(Value::Object(map)) => Ok(Params::from_object(map)),
        _ => Err(ApiError::invalid_type("arguments[0]", "an object").to_string()),
    }
}

/// One of several names a parameter may come under (Decent's and Resonite's); two of them at
/// once is REPEATED_PARAMETERS.
fn either(params: &Params, names: &[&str]) -> ApiResult<Option<String>> {
    let mut found = None;
    for name in names {
        if let Some(value) = params.opt_string(name)? {
            if found.is_some() {
                return Err(ApiError::repeated(name));
            }
            found = Some(value);
        }
    }
    Ok(found)
}

const RECIPIENT: [&str; 3] = ["recipientId", "recipientID", "userID"];
const TEXT: [&str; 2] = ["text", "content"];

/// `SendMessage({channelID, text})` posts in a channel; `SendMessage({recipientId, content})`
/// (or `recipientID`/`userID` and `text`) sends a direct message. The result is what the HTTP
/// API answers: `{messageID, message}`, or a command's answer.
async fn send_message(chat: &Arc<Chat>, caller: Caller<'_>, params: Params) -> ApiResult<Reply> {
    let text = either(&params, &TEXT)?.ok_or_else(|| ApiError::incomplete("text"))?;
    let channel = params.opt_string("channelID")?;
    let recipient = either(&params, &RECIPIENT)?;
    let answer = match (channel, recipient) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::Failed,
                "give either channelID or recipientId, not both",
            ))
        }
        (Some(channel), None) => match messages::post(chat, caller, &channel, text, false).await? {
            Posted::Stored(m) => {
                json!({ "messageID": m.id.to_string(), "message": message_json(&m) })
            }
            Posted::Command(answer) => answer,
        },
        (None, Some(user)) => match direct::send(chat, caller, &user, text).await? {
            Sent::Stored(m) => {
                json!({ "messageID": m.id.to_string(), "message": direct::view(&m) })
            }
            Sent::Command(answer) => answer,
        },
        (None, None) => return Err(ApiError::incomplete("channelID")),
    };
    Ok(Reply::result(answer))
}

/// `MarkMessagesRead({channelID})` marks a channel read; `MarkMessagesRead({senderId, upTo?})`
/// (or `userID`, or Resonite's `ids`, of which the newest counts) marks a direct conversation
/// read, answering `{upTo}`.
async fn mark_read(chat: &Arc<Chat>, caller: Caller<'_>, params: Params) -> ApiResult<Reply> {
    let channel = params.opt_string("channelID")?;
    let other = either(&params, &["senderId", "userID"])?;
    match (channel, other) {
        (Some(channel), None) => {
            channels::mark_read(chat, caller, &channel).await?;
            Ok(Reply::default())
        }
        (None, Some(other)) => {
            let ids = if params.has("ids") {
                params.string_array("ids")?
            } else {
                Vec::new()
            };
            let up_to = match (params.opt_string("upTo")?, ids.is_empty()) {
                (Some(_), false) => return Err(ApiError::repeated("upTo")),
                (Some(up_to), true) => Some(up_to),
                (None, false) => Some(newest(&ids)?),
                (None, true) => None,
            };
            let mark = direct::mark_read(chat, caller, &other, up_to.as_deref()).await?;
            Ok(Reply::result(json!({ "upTo": mark.to_string() })))
        }
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorCode::Failed,
            "give either channelID or senderId, not both",
        )),
        (None, None) => Err(ApiError::incomplete("senderId")),
    }
}

/// The newest of several message IDs.
fn newest(ids: &[String]) -> ApiResult<String> {
    let mut best: Option<(u64, &String)> = None;
    for raw in ids {
        let id = crate::ids::parse_id(raw)
            .ok_or_else(|| ApiError::invalid_type("ids", "message IDs"))?;
        if best.is_none_or(|(b, _)| id > b) {
            best = Some((id, raw));
        }
    }
    Ok(best.map(|(_, raw)| raw.clone()).unwrap_or_default())
}

/// `BroadcastStatus(status)`: `"online"`, `"away"`, `"busy"` or `"invisible"`, or Resonite's
/// `{onlineStatus: "Away"}`; a second argument (Resonite's broadcast key) is ignored.
fn broadcast_status(chat: &Chat, caller: Caller<'_>, status: Value) -> ApiResult<Reply> {
    let user = caller.user()?;
    let name = match &status {
        Value::String(name) => Some(name.as_str()),
        Value::Object(map) => map.get("onlineStatus").and_then(Value::as_str),
        _ => None,
    };
    let expected = "\"online\", \"away\", \"busy\" or \"invisible\" (or {onlineStatus})";
    let status = name
        .and_then(Status::parse)
        .ok_or_else(|| ApiError::invalid_type("status", expected))?;
    let shown = presence::set_status(chat, user.id, status)?;
    Ok(Reply::result(json!({
        "userID": user.id.to_string(),
        "status": status.name(),
        "shownAs": shown,
    })))
}

/// `RequestStatus(userID)`: that user's status (`{userID, status}`), also sent as a
/// `ReceiveStatusUpdate`; `RequestStatus()` or `RequestStatus(null)`: everyone online.
fn request_status(chat: &Chat, user: Value) -> ApiResult<Reply> {
    match user {
        Value::Null => Ok(Reply::result(Value::Array(online(chat)))),
        Value::String(raw) => {
            let user = users::find(chat, &raw)?;
            let status = presence::status_json(chat, user.id);
            let id = user.id.to_string();
            Ok(Reply {
                before: vec![invocation(
                    "ReceiveStatusUpdate",
                    [user_status(&id, chat.presence.shown(user.id))],
                )],
                result: Some(status),
            })
        }
        _ => Err(ApiError::invalid_type("userID", "a user ID")),
    }
}

/// `InitializeStatus()`: `{status, online}`: the caller's own status (null for a guest) and
/// everyone others see online.
fn initialize_status(chat: &Chat, caller: Caller<'_>) -> Reply {
    let own = caller.user_id().map(|id| {
        json!({
            "userID": id.to_string(),
            "status": chat.presence.status(id).map_or(presence::OFFLINE, Status::name),
        })
    });
    Reply::result(json!({ "status": own, "online": online(chat) }))
}

/// `{userID, status}` of everyone others see online.
fn online(chat: &Chat) -> Vec<Value> {
    let mut online = chat.presence.online_statuses();
    online.sort_unstable_by_key(|(id, _)| *id);
    online
        .into_iter()
        .map(|(id, status)| json!({ "userID": id.to_string(), "status": status.shown() }))
        .collect()
}
