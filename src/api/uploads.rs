//! Image upload (`POST /api/upload-image`) and serving (`GET /uploads/:name`).
//!
//! The image is streamed to a temporary file under `<data>/uploads`, recognised by its leading
//! bytes (gif, jpeg or png; the file name and declared type are ignored), fsynced, and renamed
//! to a server-chosen random name. No client input ever becomes part of a path: served names
//! must match the server's own pattern exactly.

use std::path::{Path, PathBuf};

use actix_multipart::{Field, Multipart};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::ok;
use crate::chat::sessions::{resolve, Session};
use crate::chat::Chat;
use crate::domain::ImageFormat;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::params::ApiRequest;
use crate::perms::{Permission, Requester};

/// Room for multipart framing and small fields on top of the image itself.
const FORM_OVERHEAD: usize = 64 * 1024;
/// Longest accepted `sessionID` form field.
const MAX_SESSION_FIELD: usize = 256;
/// Random bytes in an upload's name (hex-encoded).
const NAME_BYTES: usize = 16;

/// Prefix of an upload still being received; renamed to its final name once complete.
const INCOMING_PREFIX: &str = ".incoming-";

/// Removes uploads a crash interrupted (`.incoming-*`) that are older than `min_age`: run
/// at startup, before any upload of this node can be in progress (cluster nodes sharing the
/// directory pass an age no upload in progress can have). Returns how many were removed.
pub fn remove_interrupted_uploads(
    dir: &Path,
    min_age: std::time::Duration,
) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(INCOMING_PREFIX))
            && entry
                .metadata()?
                .modified()?
                .elapsed()
                .map_or(true, |age| age >= min_age)
        {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::Failed,
        format!("the image is larger than the limit of {limit} bytes"),
    )
    .status(StatusCode::PAYLOAD_TOO_LARGE)
    .with("limit", limit)
}

fn bad_form(e: actix_multipart::MultipartError) -> ApiError {
    if let actix_multipart::MultipartError::Payload(payload) = &e {
        if crate::net::is_body_timeout(payload) {
            return ApiError::new(
                ErrorCode::Failed,
                format!("could not read the request body: {payload}"),
            )
            .status(StatusCode::REQUEST_TIMEOUT);
        }
    }
    ApiError::new(
        ErrorCode::Failed,
        format!("the request must be multipart/form-data with an `image` field: {e}"),
    )
    .status(StatusCode::BAD_REQUEST)
}

/// A temporary file removed on drop unless it was kept.
struct TempUpload {
    path: PathBuf,
    kept: bool,
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn random_hex() -> ApiResult<String> {
    let mut bytes = [0u8; NAME_BYTES];
    getrandom::getrandom(&mut bytes).map_err(ApiError::internal)?;
    Ok(hex::encode(bytes))
}

/// Streams the image field to a temporary file; returns it and its recognised format.
async fn receive_image(
    field: &mut Field,
    dir: &Path,
    limit: usize,
) -> ApiResult<(TempUpload, ImageFormat)> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(ApiError::internal)?;
    let temp = TempUpload {
        path: dir.join(format!("{INCOMING_PREFIX}{}", random_hex()?)),
        kept: false,
    };
    let mut file = tokio::fs::File::create(&temp.path)
        .await
        .map_err(ApiError::internal)?;
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let mut size = 0usize;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(bad_form)?;
        size += chunk.len();
        if size > limit {
            return Err(too_large(limit));
        }
        if head.len() < 16 {
            let take = (16 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    let format = ImageFormat::sniff(&head).ok_or_else(|| {
        ApiError::new(ErrorCode::No, "only gif, jpeg and png images are accepted")
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    })?;
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok((temp, format))
}

async fn read_small_field(field: &mut Field, max: usize) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        bytes.extend_from_slice(&chunk.map_err(bad_form)?);
        if bytes.len() > max {
            return Err(ApiError::invalid_type("sessionID", "a session ID"));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::invalid_type("sessionID", "a session ID"))
}

fn require_upload_permission(state: &Chat, session: Option<&Session>) -> ApiResult<()> {
    let session = session.ok_or_else(ApiError::login_required)?;
    state.require(Requester::User(session.user.id), Permission::UploadImages)
}

/// `POST /api/upload-image`: multipart form with an `image` field. The session may come from
/// the query, the `X-Session-ID` header, or a `sessionID` field placed before the image.
pub async fn upload(
    state: web::Data<Chat>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let limit = state.config.upload_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit + FORM_OVERHEAD) {
        return Err(too_large(limit));
    }
    let headers = crate::params::session_headers(req.headers())?;
    let from_url = ApiRequest::parse(req.query_string(), b"", &headers, &state)?;
    let mut session = from_url.session().cloned();
    if session.is_some() {
        // Refuse before reading the image when the answer is already known.
        require_upload_permission(&state, session.as_ref())?;
    }
    // A full disk refuses before a byte of the image is written.
    state.store.ensure_space()?;
    let dir = state.config.uploads.clone();
    let mut form = Multipart::new(req.headers(), payload);
    let mut image = None;
    let mut total = 0usize;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(bad_form)?;
        match field.name() {
            Some("image") if image.is_none() => {
                require_upload_permission(&state, session.as_ref())?;
                image = Some(receive_image(&mut field, &dir, limit).await?);
            }
            Some("image") => return Err(ApiError::repeated("image")),
            Some("sessionID") => {
                if session.is_some() || image.is_some() {
                    return Err(ApiError::repeated("sessionID"));
                }
                let id = read_small_field(&mut field, MAX_SESSION_FIELD).await?;
                session = Some(resolve(&state, id)?);
            }
            _ => {
                // Other fields are read and ignored, within the same bound.
                while let Some(chunk) = field.next().await {
                    total += chunk.map_err(bad_form)?.len();
                    if total > FORM_OVERHEAD {
                        return Err(too_large(limit));
                    }
                }
            }
        }
    }
    let (mut temp, format) = image.ok_or_else(|| ApiError::incomplete("image"))?;
    let name = format!("{}.{}", random_hex()?, format.extension());
    let final_path = dir.join(&name);
    tokio::fs::rename(&temp.path, &final_path)
        .await
        .map_err(ApiError::internal)?;
    temp.kept = true;
    // The rename is durable once the directory is synced.
    let dir_for_sync = dir.clone();
    web::block(move || std::fs::File::open(dir_for_sync).and_then(|d| d.sync_all()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    tracing::info!(
        user = session.as_ref().map(|s| s.user.id),
        file = %name,
        "image uploaded"
    );
    Ok(ok(json!({ "path": format!("/uploads/{name}") })))
}

/// The format of a served upload name, if the name is one the server could have chosen.
fn served_format(name: &str) -> Option<ImageFormat> {
    let (stem, ext) = name.split_once('.')?;
    let ours = stem.len() == NAME_BYTES * 2
        && stem
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ours {
        return None;
    }
    ImageFormat::from_extension(ext)
}

/// `GET /uploads/:name`
pub async fn serve(state: web::Data<Chat>, path: web::Path<String>) -> HttpResponse {
    let not_found = || {
        HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("404 Not Found\n")
    };
    let Some(format) = served_format(&path) else {
        return not_found();
    };
    match tokio::fs::read(state.config.uploads.join(path.as_str())).await {
        Ok(bytes) => HttpResponse::Ok()
            .content_type(format.content_type())
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'"))
            .body(bytes),
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_chosen_names_are_served() {
        let good = format!("{}.png", "ab".repeat(16));
        assert_eq!(served_format(&good), Some(ImageFormat::Png));
        for bad in [
            "../db.png".to_owned(),
            format!("{}.PNG", "ab".repeat(16)),
            format!("{}.png", "AB".repeat(16)),
            format!("{}.svg", "ab".repeat(16)),
            format!("{}.png.png", "ab".repeat(16)),
            format!(".incoming-{}", "ab".repeat(16)),
            "x.png".to_owned(),
        ] {
            assert_eq!(served_format(&bad), None, "{bad}");
        }
    }
}
