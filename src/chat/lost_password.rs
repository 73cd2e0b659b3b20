//! Lost passwords: one-time links that set a new password.
//!
//! A link carries a token of 256 random bits; only its SHA-256 is stored, with the user and
//! an expiry an hour out. Using it sets the password and, in the same transaction, removes the
//! token, every other token of the user and every session of theirs. Links come by mail
//! (`POST /api/users/request-lost-password`, when `--smtp-url` is set), or from the operator
//! (`decentd reset-password`). A request answers the same whether or not the address belongs
//! to anyone, and the mail is sent after the answer, so neither the answer nor its timing tells.
//! Two-factor login stays on: a reset password alone does not log anyone in.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::random_bytes;
use crate::domain::{parse_email, validate_password};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::now_ms;
use crate::store::{ResetTokenRecord, Storage, StoreError, UserRecord};

use super::Chat;

/// How long a reset link works: an hour.
pub const TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
/// A user gets at most this many mailed links per `TOKEN_TTL_MS`; more requests are answered
/// the same but send nothing.
pub const MAX_OPEN_TOKENS: usize = 3;

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Creates a reset token for a user: the token (shown once, never stored).
pub fn issue_token(store: &dyn Storage, user: &UserRecord) -> Result<String, StoreError> {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let now = now_ms();
    store.insert_reset_token(
        &token_key(&token),
        &ResetTokenRecord {
            user_id: user.id,
            created_ms: now,
            expires_ms: now + TOKEN_TTL_MS,
        },
    )?;
    Ok(token)
}

/// The link that opens the web client's new-password form.
pub fn link(public_url: &str, token: &str) -> String {
    format!("{public_url}/#reset={token}")
}

/// Mails a reset link to each user with this address (normally one). Answers the same whether
/// or not anyone has it; NO when this server sends no mail.
pub async fn request(state: &Chat, email: String) -> ApiResult<()> {
    let Some(mailer) = state.mailer.clone() else {
        return Err(ApiError::new(
            ErrorCode::No,
            "this server does not send mail; ask its operator to reset your password",
        ));
    };
    let Some(email) = parse_email(Some(email))? else {
        return Err(ApiError::invalid_type("email", "an email address"));
    };
    let now = now_ms();
    let mut links = Vec::new();
    for user in state.store.users_by_email(&email)? {
        let open = state
            .store
            .reset_tokens_of(user.id)?
            .iter()
            .filter(|t| t.expires_ms > now)
            .count();
        if open >= MAX_OPEN_TOKENS {
            tracing::info!(user = %user.username, "lost-password link not sent: too many open");
            continue;
        }
        // To the address the user stored, never to the one asked with (which may only compare
        // equal to it).
        let Some(address) = user.email.clone() else {
            continue;
        };
        let token = issue_token(&*state.store, &user)?;
        links.push((
            user.username,
            address,
            link(&state.config.public_url, &token),
        ));
    }
    state.store.durable().await?;
    let server = state.store.settings()?.name;
    tokio::spawn(async move {
        for (username, address, link) in links {
            let body = format!(
                "Someone asked to reset the password of {username} on {server}.\n\n\
                 To choose a new password, open this link within an hour:\n\n{link}\n\n\
                 If it was not you, ignore this mail: your password stays as it is.\n"
            );
            match mailer
                .send(&address, &format!("Reset your password on {server}"), body)
                .await
            {
                Ok(()) => tracing::info!(user = %username, "lost-password link mailed"),
                Err(e) => tracing::warn!(user = %username, error = %e, "lost-password mail failed"),
            }
        }
    });
    Ok(())
}

/// Sets a new password with a reset token, ending every session of the user.
pub async fn reset(state: &Chat, token: &str, password: String) -> ApiResult<()> {
    validate_password(&password)?;
    let key = token_key(token);
    let invalid = || {
        ApiError::new(
            ErrorCode::NotFound,
            "that reset link is not valid: it was used, replaced or is older than an hour",
        )
    };
    // Checked before the costly hash, and again atomically when the password is set.
    let now = now_ms();
    if state
        .store
        .reset_token(&key)?
        .is_none_or(|t| t.expires_ms <= now)
    {
        return Err(invalid());
    }
    let hash = state
        .hasher
        .hash(password)
        .await
        .map_err(ApiError::internal)?;
    let user = state
        .store
        .reset_password(&key, &hash, now_ms())?
        .ok_or_else(invalid)?;
    state.store.durable().await?;
    state.user_sessions_ended(user.id);
    tracing::info!(user = %user.username, "password reset; every session ended");
    Ok(())
}

/// Removes expired reset tokens: at startup and every hour.
pub fn purge_expired(state: &Chat) -> ApiResult<usize> {
    Ok(state.store.purge_expired_reset_tokens(now_ms())?)
}
