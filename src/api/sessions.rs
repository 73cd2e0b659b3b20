//! Sessions: login, logout, and listing a user's sessions; the HTTP side of `chat::sessions`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::views::user_view;
use crate::chat::{sessions, Chat};
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `GET /api/sessions`
pub async fn list(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let sessions = sessions::list(&state, caller(&req))?;
    Ok(ok(json!({ "sessions": sessions })))
}

/// `POST /api/sessions`: log in. The device is the `User-Agent`.
pub async fn login(
    state: web::Data<Chat>,
    req: ApiRequest,
    http: HttpRequest,
) -> ApiResult<HttpResponse> {
    let username = req.string("username")?;
    let password = req.string("password")?;
    let device = http
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let id = sessions::login(&state, &username, password, device).await?;
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

/// `DELETE /api/sessions/:id`: log out.
pub async fn logout(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    sessions::logout(&state, caller(&req), &path).await?;
    Ok(ok(json!({})))
}
