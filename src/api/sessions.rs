//! Sessions: login, logout, and listing a user's sessions; the HTTP side of `chat::sessions`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::sessions::{self, device_id, LoginDevice};
use crate::chat::views::user_view;
use crate::chat::Chat;
use crate::error::ApiResult;
use crate::params::{header_or_param, ApiRequest};

/// `GET /api/sessions`
pub async fn list(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let sessions = sessions::list(&state, caller(&req))?;
    Ok(ok(json!({ "sessions": sessions })))
}

/// `POST /api/sessions`: log in. Extensions: `rememberMe` (true: 30 days; false: a short
/// lifetime extended while in use), and the device: its `User-Agent`, and its identity from the
/// `UID` header or the `secretMachineId` field (not both); and for an account with two-factor
/// login, the code in the `TOTP` header or the `totp` field (not both).
pub async fn login(
    state: web::Data<Chat>,
    req: ApiRequest,
    http: HttpRequest,
) -> ApiResult<HttpResponse> {
    let username = req.string("username")?;
    let password = req.string("password")?;
    let remember_me = req.opt_bool("rememberMe")?;
    let device_id = match header_or_param(&http, &req, "uid", "secretMachineId")? {
        Some((given, "uid")) => device_id(&given, "UID")?,
        Some((given, name)) => device_id(&given, name)?,
        None => None,
    };
    let totp = header_or_param(&http, &req, "totp", "totp")?.map(|(code, _)| code);
    let agent = http
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let device = LoginDevice {
        remember_me,
        agent,
        device_id,
    };
    let id = sessions::login(&state, &username, password, totp.as_deref(), device).await?;
    Ok(ok(json!({ "sessionID": id })))
}

/// `GET /api/sessions/:id`
pub async fn get(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (session, user) = sessions::get(&state, caller(&req), &path)?;
    Ok(ok(json!({
        "session": session,
        "user": user_view(&state, &user, Some(user.id)),
    })))
}

/// `PATCH /api/sessions/:id` (extension): extends the session by its lifetime from now.
pub async fn extend(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let session = sessions::extend(&state, caller(&req), &path).await?;
    Ok(ok(json!({ "session": session })))
}

/// `DELETE /api/sessions/:id`: log out.
pub async fn logout(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    sessions::logout(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}
