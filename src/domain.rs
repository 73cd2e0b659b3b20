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

/// Longest accepted emote shortcode.
pub const MAX_SHORTCODE_LEN: usize = 32;
/// Longest accepted emote image URL.
pub const MAX_URL_LEN: usize = 2048;
/// Most distinct users one message may mention; further mentions stay plain text.
pub const MAX_MENTIONS: usize = 64;

/// Message text: not empty or only whitespace, at most `max_chars` characters.
pub fn validate_message_text(text: &str, max_chars: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameterType,
            "message text must not be empty",
        )
        .with("parameter", "text"));
    }
    if text.chars().count() > max_chars {
        return Err(ApiError::new(
            ErrorCode::InvalidParameterType,
            format!("message text may be at most {max_chars} characters long"),
        )
        .with("parameter", "text")
        .with("limit", max_chars));
    }
    Ok(())
}

/// The user ids a text mentions as `<@id>`, each once, in order of first mention, at most
/// `MAX_MENTIONS`. Whether the users exist is for the caller to check.
pub fn parse_mentions(text: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b'>') {
            if let Some(id) = crate::ids::parse_id(&rest[..digits]) {
                if !ids.contains(&id) {
                    ids.push(id);
                    if ids.len() == MAX_MENTIONS {
                        break;
                    }
                }
            }
            rest = &rest[digits + 1..];
        }
    }
    ids
}

/// An emote shortcode: 1 to 32 characters, no colons, whitespace, control characters or
/// slashes (it is a URL path segment).
pub fn validate_shortcode(shortcode: &str) -> Result<(), ApiError> {
    let bad_char = shortcode
        .chars()
        .any(|c| c == ':' || c == '/' || c == '\\' || c.is_whitespace() || c.is_control());
    let len = shortcode.chars().count();
    // `.` and `..` are path segments of their own: /api/emotes/.. would be another path.
    let dots = shortcode == "." || shortcode == "..";
    if len == 0 || len > MAX_SHORTCODE_LEN || bad_char || dots {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!(
                "shortcodes are 1 to {MAX_SHORTCODE_LEN} characters without colons, spaces or slashes, and not . or .."
            ),
        ));
    }
    Ok(())
}

/// An image URL for an emote: an absolute http(s) URL, or a path on this server (`/...`).
pub fn validate_image_url(raw: &str) -> Result<(), ApiError> {
    validate_image_url_of("imageURL", raw)
}

/// An image URL given as the parameter `name` (an emote's `imageURL`, the server's `iconURL`):
/// an absolute http(s) URL, or a path on this server (`/...`); never `javascript:` or `data:`.
pub fn validate_image_url_of(name: &str, raw: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidParameterType,
            format!(
                "{name} must be an http(s) URL or a path starting with / (at most {MAX_URL_LEN} characters)"
            ),
        )
        .with("parameter", name)
    };
    // Browsers read `\` as `/` in URLs: `/\evil.example.com` would be another host.
    if raw.len() > MAX_URL_LEN
        || raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(invalid());
    }
    if raw.starts_with('/') && !raw.starts_with("//") {
        return Ok(());
    }
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        _ => Err(invalid()),
    }
}

/// An image format the server accepts for upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Gif,
    Jpeg,
    Png,
}

impl ImageFormat {
    /// Recognises an image by its leading bytes (its signature), never by name or declared type.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else {
            None
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Gif => "gif",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    pub fn from_extension(ext: &str) -> Option<ImageFormat> {
        match ext {
            "gif" => Some(ImageFormat::Gif),
            "jpg" => Some(ImageFormat::Jpeg),
            "png" => Some(ImageFormat::Png),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Gif => "image/gif",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
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

    #[test]
    fn mentions_are_parsed_once_each_in_order() {
        assert_eq!(
            parse_mentions("hi <@12> and <@3>, <@12> again"),
            vec![12, 3]
        );
        assert_eq!(parse_mentions("<@> <@x1> <@12 <@@5> <@<@7>"), vec![7]);
        assert_eq!(
            parse_mentions("<@99999999999999999999999>"),
            Vec::<u64>::new()
        );
        let many: String = (1..200).map(|i| format!("<@{i}>")).collect();
        assert_eq!(parse_mentions(&many).len(), MAX_MENTIONS);
    }

    #[test]
    fn message_text_must_be_present_and_bounded() {
        assert!(validate_message_text("hi", 10).is_ok());
        assert!(validate_message_text("  \n", 10).is_err());
        assert!(validate_message_text("ééééé", 5).is_ok());
        assert!(validate_message_text("ééééé!", 5).is_err());
    }

    #[test]
    fn shortcodes_and_image_urls() {
        assert!(validate_shortcode("shipit").is_ok());
        assert!(validate_shortcode("+1").is_ok());
        for bad in ["", "a:b", "a b", "a/b", "..\\x", ".", "..", &"x".repeat(33)] {
            assert!(validate_shortcode(bad).is_err(), "{bad}");
        }
        assert!(validate_image_url("https://example.com/a.png").is_ok());
        assert!(validate_image_url("/uploads/x.png").is_ok());
        for bad in [
            "//evil.com/x",
            "/\\evil.example.com",
            "\\\\evil.example.com/x",
            "https://example.com\\@evil.example.com/",
            "javascript:alert(1)",
            "ftp://x/y",
            "a b",
            "relative.png",
        ] {
            assert!(validate_image_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_are_recognised_by_signature() {
        assert_eq!(ImageFormat::sniff(b"GIF89a..."), Some(ImageFormat::Gif));
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageFormat::Png)
        );
        assert_eq!(ImageFormat::sniff(b"<svg>"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
    }
}
