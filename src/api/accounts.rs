//! Account security (extensions): two-factor login under `/api/users/:id/two-factor`, and lost
//! passwords; the HTTP side of `chat::two_factor` and `chat::lost_password`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{caller, ok};
use crate::chat::{lost_password, two_factor, Chat};
use crate::error::ApiResult;
use crate::params::ApiRequest;

/// `GET /api/users/:id/two-factor`: `{ enabled, pending, recoveryCodesLeft }` (one's own).
pub async fn status(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let status = two_factor::status(&state, caller(&req), &path)?;
    Ok(ok(json!({ "twoFactor": status })))
}

/// `POST /api/users/:id/two-factor {password}`: a new secret, `{ secret, uri, qrSVG }`,
/// pending until confirmed.
pub async fn enroll(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let password = req.string("password")?;
    let enrollment = two_factor::enroll(&state, caller(&req), &path, password).await?;
    Ok(ok(json!({ "enrollment": enrollment })))
}

/// `POST /api/users/:id/two-factor/confirm {code}`: turns two-factor login on; answers the
/// ten recovery codes, `{ recoveryCodes }`.
pub async fn confirm(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let code = req.string("code")?;
    let codes = two_factor::confirm(&state, caller(&req), &path, &code).await?;
    Ok(ok(json!({ "recoveryCodes": codes })))
}

/// `POST /api/users/:id/two-factor/recovery-codes {password, code}`: ten new recovery codes.
pub async fn recovery_codes(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let password = req.string("password")?;
    let code = req.string("code")?;
    let codes = two_factor::new_recovery(&state, caller(&req), &path, password, &code).await?;
    Ok(ok(json!({ "recoveryCodes": codes })))
}

/// `POST /api/users/:id/two-factor/disable {password, code}`: turns two-factor login off.
pub async fn disable(
    state: web::Data<Chat>,
    req: ApiRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let password = req.string("password")?;
    let code = req.opt_string("code")?;
    two_factor::disable(&state, caller(&req), &path, password, code.as_deref()).await?;
    Ok(ok(json!({})))
}

/// `POST /api/users/request-lost-password {email}`: mails a reset link to the account with
/// that address, answering `{}` whether there is one or not.
pub async fn request_lost_password(
    state: web::Data<Chat>,
    req: ApiRequest,
) -> ApiResult<HttpResponse> {
    let email = req.string("email")?;
    lost_password::request(&state, email).await?;
    Ok(ok(json!({})))
}

/// `POST /api/users/reset-password {token, password}`: sets a new password from a reset link
/// and ends every session of the user.
pub async fn reset_password(state: web::Data<Chat>, req: ApiRequest) -> ApiResult<HttpResponse> {
    let token = req.string("token")?;
    let password = req.string("password")?;
    lost_password::reset(&state, &token, password).await?;
    Ok(ok(json!({})))
}
