//! Domain values that can only be built valid: names, flair, email, and what derives from them.

use md5::{Digest, Md5};

use crate::error::{ApiError, ErrorCode};

/// Longest accepted name. The spec's name rule has no bound; an unbounded username is only a
/// way to make every user list heavier, so we cap it.
pub const MAX_NAME_LEN: usize = 32;
/// Shortest accepted password (spec: SHORT_PASSWORD below 6 characters).
pub const MIN_PASSWORD_LEN: usize = 6;
/// Longest accepted flair (API doc: errors if longer than 50 characters).
pub const MAX_FLAIR_LEN: usize = 50;
/// Longest accepted email address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// Checks the Decent name rule: 1 to 32 characters from `a-z A-Z 0-9 _ -`.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.is_empty() || !valid_chars {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            "names may only contain letters, digits, underscores and dashes",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("names may be at most {MAX_NAME_LEN} characters long"),
        ));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::new(
            ErrorCode::ShortPassword,
            format!("passwords must be at least {MIN_PASSWORD_LEN} characters long"),
        ));
    }
    Ok(())
}

/// A flair: `None` or an empty string removes it.
pub fn parse_flair(flair: Option<String>) -> Result<Option<String>, ApiError> {
    match flair {
        Some(f) if f.chars().count() > MAX_FLAIR_LEN => Err(ApiError::new(
            ErrorCode::InvalidParameterType,
            format!("flair may be at most {MAX_FLAIR_LEN} characters long"),
        )
        .with("parameter", "flair")),
        Some(f) if f.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// An email address: `None` or an empty string removes it. Only a light shape check: the
/// address is never mailed, it only feeds the avatar URL.
pub fn parse_email(email: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(email) = email.map(|e| e.trim().to_owned()) else {
        return Ok(None);
    };
    if email.is_empty() {
        return Ok(None);
    }
    let shaped = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty());
    if !shaped {
        return Err(ApiError::new(
            ErrorCode::InvalidParameterType,
            "email must look like name@example.com (at most 254 characters)",
        )
        .with("parameter", "email"));
    }
    Ok(Some(email))
}

/// The avatar URL of a user: Gravatar's identicon for the MD5 of their (lowercased) email, or of
/// their id when they have none, as the reference server does.
pub fn avatar_url(email: Option<&str>, user_id: u64) -> String {
    let seed = match email {
        Some(e) => e.trim().to_ascii_lowercase(),
        None => user_id.to_string(),
    };
    format!(
        "https://gravatar.com/avatar/{}?d=retro",
        hex::encode(Md5::digest(seed.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule_accepts_letters_digits_underscore_dash() {
        for ok in ["a", "Joe_99", "x-y", &"a".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "émile",
            "dot.name",
            "semi;",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert_eq!(
                validate_name(bad).unwrap_err().code,
                ErrorCode::InvalidName,
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(validate_password("ééééé").is_err());
        assert!(validate_password("éééééé").is_ok());
    }

    #[test]
    fn avatar_follows_email_case_insensitively() {
        assert_eq!(
            avatar_url(Some("Joe@Example.com"), 1),
            avatar_url(Some("joe@example.com"), 2)
        );
        assert_ne!(avatar_url(None, 1), avatar_url(None, 2));
        // MD5("joe@example.com")
        assert!(avatar_url(Some("joe@example.com"), 1).contains("f5b8fb60c6116331da07c65b96a8a1d1"));
    }

    #[test]
    fn flair_and_email_limits() {
        assert!(parse_flair(Some("x".repeat(50))).is_ok());
        assert!(parse_flair(Some("x".repeat(51))).is_err());
        assert_eq!(parse_flair(Some(String::new())).unwrap(), None);
        assert!(parse_email(Some("no-at-sign".into())).is_err());
        assert_eq!(
            parse_email(Some(" a@b ".into())).unwrap().as_deref(),
            Some("a@b")
        );
    }
}
