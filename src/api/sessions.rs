//! Sessions: login, logout, and listing a user's sessions.
//!
//! Only the SHA-256 of a session ID is stored, so the server cannot show a session's ID after
//! it was issued. A session list therefore names the caller's own session by its ID and every
//! other session by its non-secret handle (a decimal id); `GET`/`DELETE /api/sessions/:id`
//! accept either, a handle only together with a valid session of the same user.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

use super::ok;
use super::users::user_view;
use crate::auth::new_session_id;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::{now_ms, parse_id, unix_seconds};
use crate::params::{resolve_session, ApiRequest};
use crate::state::AppState;
use crate::store::{SessionKey, SessionRecord};

#[derive(Serialize)]
struct SessionView {
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

/// Longest device description kept, in characters.
const MAX_DEVICE_CHARS: usize = 200;

/// The device a login came from: its `User-Agent`, without control characters, shortened.
fn device_of(http: &HttpRequest) -> Option<String> {
    let agent = http.headers().get(header::USER_AGENT)?.to_str().ok()?;
    let clean: String = agent
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_CHARS)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}

/// `GET /api/sessions`
pub async fn list(state: web::Data<AppState>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let session = req.logged_in()?;
    let now = now_ms();
    let sessions: Vec<SessionView> = state
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
        .collect();
    Ok(ok(json!({ "sessions": sessions })))
}

/// `POST /api/sessions`: log in.
pub async fn login(
    state: web::Data<AppState>,
    req: ApiRequest,
    http: HttpRequest,
) -> ApiResult<HttpResponse> {
    let username = req.string("username")?;
    let password = req.string("password")?;
    let user = state.store.user_by_name(&username)?;
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
        device: device_of(&http),
    };
    state
        .store
        .insert_session(&crate::auth::session_key(&id), &record)?;
    state.store.durable().await?;
    tracing::info!(user = %user.username, session = record.handle, "logged in");
    Ok(ok(json!({ "sessionID": id })))
}

/// Finds the session named in the URL: a session ID, or a handle of one of the caller's
/// sessions. Returns its key, record, and the id to show.
fn named_session(
    state: &AppState,
    req: &ApiRequest,
    raw: &str,
) -> ApiResult<(SessionKey, SessionRecord, String)> {
    if let (Some(handle), Some(caller)) = (parse_id(raw), req.session()) {
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
    let session = resolve_session(raw.to_owned(), state)?;
    Ok((session.key, session.record, session.id))
}

/// `GET /api/sessions/:id`
pub async fn get(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (key, record, shown) = named_session(&state, &req, &path)?;
    let user = state
        .store
        .user(record.user_id)?
        .ok_or_else(ApiError::invalid_session)?;
    let current = req.session().is_some_and(|s| s.key == key);
    Ok(ok(json!({
        "session": session_view(shown, &record, current),
        "user": user_view(&state, &user, Some(user.id)),
    })))
}

/// `DELETE /api/sessions/:id`: log out.
pub async fn logout(
    state: web::Data<AppState>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (key, record, _) = named_session(&state, &req, &path)?;
    if !state.store.delete_session(&key)? {
        return Err(ApiError::invalid_session());
    }
    state.store.durable().await?;
    tracing::info!(session = record.handle, "logged out");
    Ok(ok(json!({})))
}
