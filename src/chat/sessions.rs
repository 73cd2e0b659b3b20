//! Sessions: login, logout, listing a user's sessions, and resolving a session ID.
//!
//! Only the SHA-256 of a session ID is stored, so the server cannot show a session's ID after
//! it was issued. A session list therefore names the caller's own session by its ID and every
//! other session by its non-secret handle (a decimal id); getting and ending a session accept
//! either, a handle only together with a valid session of the same user.

use serde::Serialize;
use sha2::{Digest, Sha256};

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
/// Longest device identity accepted (`UID`, `secretMachineId`), in characters.
pub const MAX_DEVICE_ID_CHARS: usize = 256;
/// Lifetime of a session logged in with `rememberMe: true`.
pub const REMEMBER_ME_MS: u64 = 30 * 86_400 * 1000;
/// Uses of a session are recorded (and a sliding session extended) at most this often (or a
/// quarter of its lifetime, if shorter), so that reading does not mean a write per request.
pub const TOUCH_INTERVAL_MS: u64 = 60_000;

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
    /// Extension: the client's device identity (a digest of its `UID` or `secretMachineId`).
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
    /// Extension: the last use (recorded once a minute), in seconds.
    #[serde(rename = "lastUsed")]
    last_used: f64,
    /// Extension: when the session ends unless used or extended, in seconds.
    expires: f64,
    /// Extension: whether every use extends the session (`rememberMe: false`).
    sliding: bool,
}

fn session_view(id: String, record: &SessionRecord, current: bool) -> SessionView {
    SessionView {
        id,
        date_created: unix_seconds(record.created_ms),
        current,
        device: record.device.clone(),
        device_id: record.device_id.clone(),
        last_used: unix_seconds(record.last_used_ms),
        expires: unix_seconds(record.expires_ms),
        sliding: record.sliding,
    }
}

/// A client's device identity as stored and shown: the first 16 bytes of its SHA-256, in hex,
/// so that a `secretMachineId` is never shown back. None for an empty one; too long or control
/// characters is INVALID_PARAMETER_TYPE naming `parameter`.
pub fn device_id(given: &str, parameter: &str) -> ApiResult<Option<String>> {
    let given = given.trim();
    if given.chars().count() > MAX_DEVICE_ID_CHARS || given.chars().any(char::is_control) {
        return Err(ApiError::invalid_type(
            parameter,
            "a device identity of at most 256 characters",
        ));
    }
    Ok((!given.is_empty()).then(|| hex::encode(&Sha256::digest(given.as_bytes())[..16])))
}

/// What a login says about itself.
#[derive(Debug, Default)]
pub struct LoginDevice {
    /// `rememberMe`: true lasts 30 days, false a short lifetime extended while in use, absent
    /// the server's default.
    pub remember_me: Option<bool>,
    /// The user agent.
    pub agent: Option<String>,
    /// The device identity, already a digest (`device_id`).
    pub device_id: Option<String>,
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
/// INVALID_SESSION_ID. A use is recorded once a minute, and extends a sliding session.
pub fn resolve(state: &Chat, id: String) -> ApiResult<Session> {
    let key = session_key(&id);
    let now = now_ms();
    let mut record = state
        .store
        .session(&key)?
        .filter(|s| s.expires_ms > now)
        .ok_or_else(ApiError::invalid_session)?;
    let touch_every = TOUCH_INTERVAL_MS.min(record.lifetime_ms / 4);
    if now.saturating_sub(record.last_used_ms) >= touch_every {
        // Best effort and not awaited durable: a lost touch only makes the session look
        // older, and never refuses the request (a full disk refuses writes).
        match state.store.update_session(&key, &|s| touch(s, now)) {
            Ok(Some(updated)) => record = updated,
            Ok(None) => return Err(ApiError::invalid_session()),
            Err(e) => tracing::debug!(error = %e, "could not record a session's use"),
        }
    }
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

/// Records a use: the last use, and for a sliding session a new expiry.
fn touch(session: &mut SessionRecord, now: u64) {
    session.last_used_ms = now;
    if session.sliding {
        session.expires_ms = session.expires_ms.max(now + session.lifetime_ms);
    }
}

/// Logs in: the new session ID. A user with two-factor login enabled also needs `totp`, a
/// current code or a recovery code (`two_factor::check_login`), checked after the password.
pub async fn login(
    state: &Chat,
    username: &str,
    password: String,
    totp: Option<&str>,
    device: LoginDevice,
) -> ApiResult<String> {
    let user = state.store.user_by_name(username)?;
    // Unknown users are checked against a dummy hash, so both failures cost the same.
    let matches = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(ApiError::internal)?;
    let failed = |reason: &'static str| {
        crate::metrics::METRICS
            .logins_failed
            .get_or_create(&crate::metrics::LoginFailure { reason })
            .inc();
    };
    let Some(user) = user else {
        failed("unknown_user");
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("there is no user named {username}"),
        ));
    };
    if !matches {
        failed("incorrect_password");
        return Err(ApiError::new(
            ErrorCode::IncorrectPassword,
            "that password is not correct",
        ));
    }
    if let Err(e) = super::two_factor::check_login(state, &user, totp).await {
        failed(match e.extra.get("totp").and_then(|v| v.as_str()) {
            Some("required") => "totp_required",
            Some("locked") => "totp_locked",
            _ => "totp_incorrect",
        });
        return Err(e);
    }
    let id = new_session_id();
    let now = now_ms();
    let (lifetime_ms, sliding) = match device.remember_me {
        Some(true) => (REMEMBER_ME_MS, false),
        Some(false) => (state.config.short_session_ttl.as_millis() as u64, true),
        None => (state.config.session_ttl.as_millis() as u64, false),
    };
    let record = SessionRecord {
        handle: state.store.next_id(),
        user_id: user.id,
        created_ms: now,
        expires_ms: now + lifetime_ms,
        device: device.agent.as_deref().and_then(self::device),
        device_id: device.device_id,
        last_used_ms: now,
        lifetime_ms,
        sliding,
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

/// Extends a session by its lifetime from now (the caller's own sessions, by ID or handle):
/// its new view.
pub async fn extend(state: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<SessionView> {
    let (key, _, shown) = named(state, caller, raw)?;
    let now = now_ms();
    let record = state
        .store
        .update_session(&key, &|s| {
            s.last_used_ms = now;
            s.expires_ms = s.expires_ms.max(now + s.lifetime_ms);
        })?
        .ok_or_else(ApiError::invalid_session)?;
    state.store.durable().await?;
    let current = caller.session().is_ok_and(|s| s.key == key);
    Ok(session_view(shown, &record, current))
}

/// Removes expired sessions: at startup and every hour.
pub fn purge_expired(state: &Chat) -> ApiResult<usize> {
    let purged = state.store.purge_expired_sessions(now_ms())?;
    if purged > 0 {
        tracing::info!(purged, "removed expired sessions");
    }
    Ok(purged)
}

/// Logs a session out.
pub async fn logout(state: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<()> {
    let (key, record, _) = named(state, caller, raw)?;
    if !state.store.delete_session(&key)? {
        return Err(ApiError::invalid_session());
    }
    state.store.durable().await?;
    state.sessions_ended(&[key]);
    tracing::info!(session = record.handle, "logged out");
    Ok(())
}
