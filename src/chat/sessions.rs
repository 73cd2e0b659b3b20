//! Sessions: login, logout, listing a user's sessions, and resolving a session ID.
//!
//! Only the SHA-256 of a session ID is stored, so the server cannot show a session's ID after
//! it was issued. A session list therefore names the caller's own session by its ID and every
//! other session by its non-secret handle (a decimal id); getting and ending a session accept
//! either, a handle only together with a valid session of the same user.

use serde::Serialize;
use std::time::Duration;

use crate::auth::{new_session_id, session_key};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::{now_ms, parse_id, unix_seconds};
use crate::store::{SessionKey, SessionRecord, UserRecord};

use super::{Caller, Chat};

/// A valid session presented with a request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session ID as the client sent it.
    pub id: String,
    pub key: SessionKey,
    pub record: SessionRecord,
    pub user: UserRecord,
}

/// Longest device description kept, in characters.
pub const MAX_DEVICE_CHARS: usize = 200;

/// A session as the API lists it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    id: String,
    #[serde(rename = "dateCreated")]
    date_created: f64,
    /// Whether this is the session the request was made with.
    current: bool,
    /// Extension: the device that logged in (its user agent), or null.
    device: Option<String>,
}

fn session_view(id: String, record: &SessionRecord, current: bool) -> SessionView {
    SessionView {
        id,
        date_created: unix_seconds(record.created_ms),
        current,
        device: record.device.clone(),
    }
}

/// A device description as given (a user agent): without control characters, shortened;
/// None if nothing is left.
pub fn device(given: &str) -> Option<String> {
    let clean: String = given
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_CHARS)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}

/// Looks a session ID up: unknown, expired, or belonging to a deleted user is
/// INVALID_SESSION_ID.
pub fn resolve(state: &Chat, id: String) -> ApiResult<Session> {
    let key = session_key(&id);
    let record = state
        .store
        .session(&key)?
        .filter(|s| s.expires_ms > now_ms())
        .ok_or_else(ApiError::invalid_session)?;
    let user = state
        .store
        .user(record.user_id)?
        .ok_or_else(ApiError::invalid_session)?;
    Ok(Session {
        id,
        key,
        record,
        user,
    })
}

/// The caller's live sessions.
pub fn list(state: &Chat, caller: Caller<'_>) -> ApiResult<Vec<SessionView>> {
    let session = caller.session()?;
    let now = now_ms();
    Ok(state
        .store
        .sessions_of(session.user.id)?
        .into_iter()
        .filter(|(_, s)| s.expires_ms > now)
        .map(|(key, s)| {
            let current = key == session.key;
            let id = if current {
                session.id.clone()
            } else {
                s.handle.to_string()
            };
            session_view(id, &s, current)
        })
        .collect())
}

/// Logs in: the new session ID. `device` is what the client said it is (a user agent).
pub async fn login(
    state: &Chat,
    username: &str,
    password: String,
    device: Option<String>,
) -> ApiResult<String> {
    let user = state.store.user_by_name(username)?;
    // Unknown users are checked against a dummy hash, so both failures cost the same.
    let matches = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("there is no user named {username}"),
        ));
    };
    if !matches {
        return Err(ApiError::new(
            ErrorCode::IncorrectPassword,
            "that password is not correct",
        ));
    }
    let id = new_session_id();
    let now = now_ms();
    let ttl: Duration = state.config.session_ttl;
    let record = SessionRecord {
        handle: state.store.next_id(),
        user_id: user.id,
        created_ms: now,
        expires_ms: now + ttl.as_millis() as u64,
        device: device.as_deref().and_then(self::device),
    };
    state.store.insert_session(&session_key(&id), &record)?;
    state.store.durable().await?;
    tracing::info!(user = %user.username, session = record.handle, "logged in");
    Ok(id)
}

/// Finds the session named: a session ID, or a handle of one of the caller's sessions.
/// Returns its key, record, and the id to show.
fn named(
    state: &Chat,
    caller: Caller<'_>,
    raw: &str,
) -> ApiResult<(SessionKey, SessionRecord, String)> {
    if let (Some(handle), Ok(caller)) = (parse_id(raw), caller.session()) {
        let now = now_ms();
        let found = state
            .store
            .sessions_of(caller.user.id)?
            .into_iter()
            .find(|(_, s)| s.handle == handle && s.expires_ms > now);
        return match found {
            Some((key, record)) => {
                let shown = if key == caller.key {
                    caller.id.clone()
                } else {
                    raw.to_owned()
                };
                Ok((key, record, shown))
            }
            None => Err(ApiError::not_found("session")),
        };
    }
    let session = resolve(state, raw.to_owned())?;
    Ok((session.key, session.record, session.id))
}

/// A session and its user.
pub fn get(state: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<(SessionView, UserRecord)> {
    let (key, record, shown) = named(state, caller, raw)?;
    let user = state
        .store
        .user(record.user_id)?
        .ok_or_else(ApiError::invalid_session)?;
    let current = caller.session().is_ok_and(|s| s.key == key);
    Ok((session_view(shown, &record, current), user))
}

/// Logs a session out.
pub async fn logout(state: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<()> {
    let (key, record, _) = named(state, caller, raw)?;
    if !state.store.delete_session(&key)? {
        return Err(ApiError::invalid_session());
    }
    state.store.durable().await?;
    tracing::info!(session = record.handle, "logged out");
    Ok(())
}
