//! The one error type of the HTTP API.
//!
//! Every failure a client can see becomes `{"error": {"code", "message", ...extra}}` with a
//! fitting HTTP status (spec 2.3). Extra fields carry what clients rely on: `missing` for
//! INCOMPLETE_PARAMETERS, `parameter` for REPEATED_PARAMETERS and INVALID_PARAMETER_TYPE,
//! `missingPermission` for NOT_ALLOWED. Internal failures are logged here and reach the
//! client only as FAILED, never with their details.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value};
use std::fmt;

use crate::perms::Permission;
use crate::store::StoreError;

/// The error codes of spec section 2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Failed,
    No,
    NotFound,
    NotYours,
    NotAllowed,
    AlreadyPerformed,
    IncompleteParameters,
    RepeatedParameters,
    InvalidParameterType,
    InvalidSessionId,
    InvalidName,
    NameAlreadyTaken,
    ShortPassword,
    IncorrectPassword,
    /// Extension: a plugin's pre-store hook refused the message (`plugin`, `reason`).
    RejectedByPlugin,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Failed => "FAILED",
            ErrorCode::No => "NO",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NotYours => "NOT_YOURS",
            ErrorCode::NotAllowed => "NOT_ALLOWED",
            ErrorCode::AlreadyPerformed => "ALREADY_PERFORMED",
            ErrorCode::IncompleteParameters => "INCOMPLETE_PARAMETERS",
            ErrorCode::RepeatedParameters => "REPEATED_PARAMETERS",
            ErrorCode::InvalidParameterType => "INVALID_PARAMETER_TYPE",
            ErrorCode::InvalidSessionId => "INVALID_SESSION_ID",
            ErrorCode::InvalidName => "INVALID_NAME",
            ErrorCode::NameAlreadyTaken => "NAME_ALREADY_TAKEN",
            ErrorCode::ShortPassword => "SHORT_PASSWORD",
            ErrorCode::IncorrectPassword => "INCORRECT_PASSWORD",
            ErrorCode::RejectedByPlugin => "REJECTED_BY_PLUGIN",
        }
    }

    fn default_status(self) -> StatusCode {
        match self {
            ErrorCode::Failed => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::No => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::NotYours | ErrorCode::NotAllowed | ErrorCode::RejectedByPlugin => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::AlreadyPerformed | ErrorCode::NameAlreadyTaken => StatusCode::CONFLICT,
            ErrorCode::IncompleteParameters
            | ErrorCode::RepeatedParameters
            | ErrorCode::InvalidParameterType
            | ErrorCode::InvalidName
            | ErrorCode::ShortPassword => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidSessionId | ErrorCode::IncorrectPassword => StatusCode::UNAUTHORIZED,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub status: StatusCode,
    pub extra: Map<String, Value>,
}

/// The result type of every handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: code.default_status(),
            extra: Map::new(),
        }
    }

    /// Adds an extra field under `error`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Overrides the HTTP status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// NOT_ALLOWED naming the permission the requester lacks.
    pub fn missing_permission(permission: Permission) -> Self {
        Self::new(
            ErrorCode::NotAllowed,
            format!("you need the {} permission to do this", permission.key()),
        )
        .with("missingPermission", permission.key())
    }

    /// NOT_ALLOWED because the request needs a logged-in session and has none.
    pub fn login_required() -> Self {
        Self::new(
            ErrorCode::NotAllowed,
            "log in first: this request needs a valid session ID",
        )
    }

    pub fn invalid_session() -> Self {
        Self::new(
            ErrorCode::InvalidSessionId,
            "the session ID is unknown or has expired; log in again",
        )
    }

    pub fn incomplete(parameter: &str) -> Self {
        Self::new(
            ErrorCode::IncompleteParameters,
            format!("missing parameter `{parameter}`"),
        )
        .with("missing", parameter)
    }

    pub fn repeated(parameter: &str) -> Self {
        Self::new(
            ErrorCode::RepeatedParameters,
            format!("parameter `{parameter}` is given more than once"),
        )
        .with("parameter", parameter)
    }

    pub fn invalid_type(parameter: &str, expected: &str) -> Self {
        Self::new(
            ErrorCode::InvalidParameterType,
            format!("parameter `{parameter}` must be {expected}"),
        )
        .with("parameter", parameter)
        .with("expected", expected)
    }

    /// A failure inside the server: logged with its cause, answered as a bare FAILED.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error while handling a request");
        Self::new(
            ErrorCode::Failed,
            "internal server error; the request was not performed",
        )
    }

    fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.as_str().into());
        error.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.extra {
            error.insert(k.clone(), v.clone());
        }
        let mut root = Map::new();
        root.insert("error".into(), Value::Object(error));
        Value::Object(root)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Refused before anything was written; the guard has logged it once.
            StoreError::DiskFull => ApiError::new(ErrorCode::Failed, err.to_string())
                .status(StatusCode::INSUFFICIENT_STORAGE),
            // Nothing was acknowledged; the client may try again once the database is back.
            StoreError::Unavailable(_) => {
                tracing::error!(error = %err, "a request failed: the database is unavailable");
                ApiError::new(
                    ErrorCode::Failed,
                    "the server's database is unavailable; try again shortly",
                )
                .status(StatusCode::SERVICE_UNAVAILABLE)
            }
            err => ApiError::internal(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_code_message_and_extras() {
        let body = ApiError::incomplete("username").body();
        assert_eq!(body["error"]["code"], "INCOMPLETE_PARAMETERS");
        assert_eq!(body["error"]["missing"], "username");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("username"));
    }
}
