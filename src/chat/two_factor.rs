//! Two-factor login with time-based one-time codes (RFC 6238: HMAC-SHA-1, 6 digits, 30 s
//! steps, one step of clock skew either way) and ten single-use recovery codes.
//!
//! A user enrolls with their password and gets a secret (also as an `otpauth://` URI and a QR
//! code); the first correct code confirms it and returns the recovery codes, which are stored
//! only as SHA-256. From then on login needs a code. A code is accepted once (a later login
//! needs the next step's code), and an account takes at most `GUESS_LIMIT` wrong codes in
//! `GUESS_WINDOW_MS`; further codes, right or wrong, are refused until the window has passed.
//! Every refusal is INCORRECT_PASSWORD with a `totp` field: `required`, `incorrect` or
//! `locked` (with `retryAfter`, seconds).

use actix_web::http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use totp_rs::{Builder, Totp};

use crate::auth::random_bytes;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::now_ms;
use crate::store::{TwoFactorRecord, UserRecord};

use super::{Caller, Chat};

/// Wrong codes an account may take within `GUESS_WINDOW_MS`.
pub const GUESS_LIMIT: usize = 5;
/// The window of the guess limit: 15 minutes.
pub const GUESS_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;

/// What a user sees of their two-factor login.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Login asks for a code.
    enabled: bool,
    /// Enrolled, waiting for the first code.
    pending: bool,
    #[serde(rename = "recoveryCodesLeft")]
    recovery_codes_left: usize,
}

/// A new secret, for the user's authenticator app.
#[derive(Debug, Serialize)]
pub struct Enrollment {
    /// The secret in base32, to type in.
    secret: String,
    /// The `otpauth://totp/...` URI, for apps that read links.
    uri: String,
    /// The URI as a QR code, an SVG document.
    #[serde(rename = "qrSVG")]
    qr_svg: String,
}

/// How a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotEnrolled,
    Incorrect,
    Locked { retry_after_ms: u64 },
}

fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotEnrolled => ApiError::new(
            ErrorCode::NotFound,
            "two-factor login is not set up for this account",
        ),
        Refusal::Incorrect => ApiError::new(
            ErrorCode::IncorrectPassword,
            "that two-factor code is not correct",
        )
        .with("totp", "incorrect"),
        Refusal::Locked { retry_after_ms } => {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            ApiError::new(
                ErrorCode::IncorrectPassword,
                format!("too many wrong two-factor codes; try again in {secs} seconds"),
            )
            .with("totp", "locked")
            .with("retryAfter", secs)
            .status(StatusCode::TOO_MANY_REQUESTS)
        }
    }
}

fn totp(secret: &[u8], username: &str, issuer: &str) -> ApiResult<Totp> {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(username)
        .with_issuer(Some(issuer))
        .build()
        .map_err(|e| ApiError::internal(format!("TOTP setup: {e:?}")))
}

/// The issuer an authenticator app shows: the server's name, without the `:` the URI format
/// reserves.
fn issuer(state: &Chat) -> ApiResult<String> {
    let name: String = state
        .store
        .settings()?
        .name
        .chars()
        .filter(|c| *c != ':' && !c.is_control())
        .collect();
    let name = name.trim();
    Ok(if name.is_empty() { "decentd" } else { name }.to_owned())
}

fn hash_code(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

/// A recovery code as typed: lowercase hex, without spaces or dashes.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Ten new recovery codes (`xxxxx-xxxxx`, 40 random bits each) and their hashes.
fn new_recovery_codes() -> (Vec<String>, Vec<[u8; 32]>) {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = hex::encode(random_bytes::<5>());
            let shown = format!("{}-{}", &raw[..5], &raw[5..]);
            (shown, hash_code(&raw))
        })
        .unzip()
}

/// Checks a code (a TOTP code or, once enabled, a recovery code) against a user's record and
/// records the outcome atomically: an accepted code's step (or the used recovery code) or a
/// wrong guess.
fn check_code(state: &Chat, user: &UserRecord, code: &str, issuer: &str) -> ApiResult<()> {
    let now = now_ms();
    let code = normalize(code);
    let outcome: Cell<Result<(), Refusal>> = Cell::new(Err(Refusal::NotEnrolled));
    let totp_error: Cell<bool> = Cell::new(false);
    state.store.update_two_factor(user.id, &|record| {
        let Some(record) = record else {
            outcome.set(Err(Refusal::NotEnrolled));
            return;
        };
        record
            .failures
            .retain(|&t| t + GUESS_WINDOW_MS > now && t <= now);
        if record.failures.len() >= GUESS_LIMIT {
            let oldest = record.failures.iter().copied().min().unwrap_or(now);
            outcome.set(Err(Refusal::Locked {
                retry_after_ms: (oldest + GUESS_WINDOW_MS).saturating_sub(now),
            }));
            return;
        }
        let accepted = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            match totp(&record.secret, &user.username, issuer) {
                Ok(t) => match t.check(&code, now / 1000) {
                    Some(step) if step > record.last_step => {
                        record.last_step = step;
                        true
                    }
                    _ => false,
                },
                Err(_) => {
                    totp_error.set(true);
                    false
                }
            }
        } else if record.enabled && code.len() == 10 {
            let hash = hash_code(&code);
            let before = record.recovery_codes.len();
            record.recovery_codes.retain(|h| *h != hash);
            record.recovery_codes.len() < before
        } else {
            false
        };
        if accepted {
            record.failures.clear();
            outcome.set(Ok(()));
        } else {
            record.failures.push(now);
            outcome.set(Err(Refusal::Incorrect));
        }
    })?;
    if totp_error.get() {
        return Err(ApiError::internal("a stored TOTP secret is not usable"));
    }
    outcome.get().map_err(|refusal| {
        if refusal == Refusal::Incorrect {
            tracing::info!(user = %user.username, "wrong two-factor code");
        }
        refusal_error(refusal)
    })
}

/// The last step of login, after the password matched: a user with two-factor login enabled
/// must also give a correct code.
pub async fn check_login(state: &Chat, user: &UserRecord, code: Option<&str>) -> ApiResult<()> {
    let Some(record) = state.store.two_factor(user.id)? else {
        return Ok(());
    };
    if !record.enabled {
        return Ok(());
    }
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::new(
            ErrorCode::IncorrectPassword,
            "this account needs a two-factor code to log in",
        )
        .with("totp", "required"));
    };
    check_code(state, user, code, &issuer(state)?)?;
    state.store.durable().await?;
    Ok(())
}

/// The caller, when `raw` names them: two-factor settings are one's own.
fn own<'a>(caller: Caller<'a>, raw: &str) -> ApiResult<&'a UserRecord> {
    let session = caller.session()?;
    let id = super::id(raw, "user")?;
    if id != session.user.id {
        return Err(ApiError::new(
            ErrorCode::NotYours,
            "two-factor login can only be managed by the user themselves",
        ));
    }
    Ok(&session.user)
}

async fn require_password(state: &Chat, user: &UserRecord, password: String) -> ApiResult<()> {
    let matches = state
        .hasher
        .verify(password, Some(user.password_hash.clone()))
        .await
        .map_err(ApiError::internal)?;
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::IncorrectPassword,
            "that password is not correct",
        ))
    }
}

/// The caller's two-factor status.
pub fn status(state: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<Status> {
    let user = own(caller, raw)?;
    let record = state.store.two_factor(user.id)?;
    Ok(Status {
        enabled: record.as_ref().is_some_and(|r| r.enabled),
        pending: record.as_ref().is_some_and(|r| !r.enabled),
        recovery_codes_left: record.map_or(0, |r| r.recovery_codes.len()),
    })
}

/// Starts enrolment (or starts it over while pending): a new secret. ALREADY_PERFORMED while
/// two-factor login is enabled.
pub async fn enroll(
    state: &Chat,
    caller: Caller<'_>,
    raw: &str,
    password: String,
) -> ApiResult<Enrollment> {
    let user = own(caller, raw)?;
    require_password(state, user, password).await?;
    let secret = random_bytes::<20>().to_vec();
    let issuer = issuer(state)?;
    let t = totp(&secret, &user.username, &issuer)?;
    let uri = t
        .to_url()
        .map_err(|e| ApiError::internal(format!("otpauth URI: {e:?}")))?;
    let enabled = Cell::new(false);
    state.store.update_two_factor(user.id, &|record| {
        if record.as_ref().is_some_and(|r| r.enabled) {
            enabled.set(true);
            return;
        }
        *record = Some(TwoFactorRecord {
            secret: secret.clone(),
            enabled: false,
            created_ms: now_ms(),
            recovery_codes: Vec::new(),
            last_step: 0,
            failures: Vec::new(),
        });
    })?;
    if enabled.get() {
        return Err(ApiError::new(
            ErrorCode::AlreadyPerformed,
            "two-factor login is already enabled; disable it first",
        ));
    }
    state.store.durable().await?;
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(ApiError::internal)?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Enrollment {
        secret: t.secret().to_base32(),
        uri,
        qr_svg,
    })
}

/// Confirms a pending enrolment with a first code: two-factor login is on, and the answer is
/// the ten recovery codes (shown only now).
pub async fn confirm(
    state: &Chat,
    caller: Caller<'_>,
    raw: &str,
    code: &str,
) -> ApiResult<Vec<String>> {
    let user = own(caller, raw)?;
    match state.store.two_factor(user.id)? {
        None => return Err(refusal_error(Refusal::NotEnrolled)),
        Some(r) if r.enabled => {
            return Err(ApiError::new(
                ErrorCode::AlreadyPerformed,
                "two-factor login is already enabled",
            ))
        }
        Some(_) => {}
    }
    check_code(state, user, code, &issuer(state)?)?;
    let (codes, hashes) = new_recovery_codes();
    state.store.update_two_factor(user.id, &|record| {
        if let Some(record) = record {
            record.enabled = true;
            record.recovery_codes = hashes.clone();
        }
    })?;
    state.store.durable().await?;
    tracing::info!(user = %user.username, "two-factor login enabled");
    Ok(codes)
}

/// Replaces the recovery codes (password and a current code): the new ten.
pub async fn new_recovery(
    state: &Chat,
    caller: Caller<'_>,
    raw: &str,
    password: String,
    code: &str,
) -> ApiResult<Vec<String>> {
    let user = own(caller, raw)?;
    require_password(state, user, password).await?;
    if !state.store.two_factor(user.id)?.is_some_and(|r| r.enabled) {
        return Err(refusal_error(Refusal::NotEnrolled));
    }
    check_code(state, user, code, &issuer(state)?)?;
    let (codes, hashes) = new_recovery_codes();
    state.store.update_two_factor(user.id, &|record| {
        if let Some(record) = record {
            record.recovery_codes = hashes.clone();
        }
    })?;
    state.store.durable().await?;
    Ok(codes)
}

/// Turns two-factor login off (password and a code, or a recovery code). A pending enrolment
/// is dropped with the password alone.
pub async fn disable(
    state: &Chat,
    caller: Caller<'_>,
    raw: &str,
    password: String,
    code: Option<&str>,
) -> ApiResult<()> {
    let user = own(caller, raw)?;
    require_password(state, user, password).await?;
    let Some(record) = state.store.two_factor(user.id)? else {
        return Err(refusal_error(Refusal::NotEnrolled));
    };
    if record.enabled {
        let Some(code) = code else {
            return Err(ApiError::incomplete("code"));
        };
        check_code(state, user, code, &issuer(state)?)?;
    }
    state
        .store
        .update_two_factor(user.id, &|record| *record = None)?;
    state.store.durable().await?;
    tracing::info!(user = %user.username, "two-factor login disabled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_distinct_and_match_their_hashes_as_typed() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let typed = codes[3].to_uppercase().replace('-', " - ");
        assert_eq!(hash_code(&normalize(&typed)), hashes[3]);
    }

    #[test]
    fn codes_follow_rfc_6238_with_one_step_of_skew() {
        // RFC 6238 appendix B, SHA-1: at 59 s the 8-digit code is 94287082, so 6 digits 287082.
        let t = totp(b"12345678901234567890", "alice", "decentd").unwrap();
        assert_eq!(t.check("287082", 59), Some(1));
        assert_eq!(t.check("287082", 59 + 30), Some(1));
        assert_eq!(t.check("287082", 59 + 60), None);
        assert!(t
            .to_url()
            .unwrap()
            .starts_with("otpauth://totp/decentd:alice?"));
    }
}
