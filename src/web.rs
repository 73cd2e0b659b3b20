//! The web client, embedded in the binary (`web/` at compile time) and served at `/` and
//! `/app/...`.
//!
//! The files are served as they are in the repository: plain ES modules and CSS, no build
//! step, so `cargo build` needs no Node.js. Each file is gzipped once, at first use, and
//! served with a strong ETag (SHA-256 of its bytes, so a new binary with a changed file gets
//! a new tag), `Cache-Control: no-cache` (revalidated, then 304), and a Content-Security-Policy
//! that allows only the server's own scripts and styles: no inline script, no eval.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// What pages of the client may load: scripts, styles and connections only from this server;
/// images also from elsewhere over http(s) (avatars, linked images); nothing may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' https: http: data: blob:; connect-src 'self' ws: wss:; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// One embedded file: its path under `web/` (and `/app/`), its content type, its bytes.
macro_rules! embed {
    ($path:literal, $content_type:expr) => {
        (
            $path,
            $content_type,
            include_bytes!(concat!("../web/", $path)),
        )
    };
}

/// The client's files: URL path under `/app/`, content type, bytes. A unit test checks that
/// every file under `web/` is listed.
const FILES: &[(&str, &str, &[u8])] = &[
    embed!("index.html", HTML),
    embed!("app.css", CSS),
    embed!("js/main.js", JS),
    embed!("js/admin.js", JS),
    embed!("js/api.js", JS),
    embed!("js/dom.js", JS),
    embed!("js/markdown.js", JS),
    embed!("js/socket.js", JS),
];

/// One file, ready to serve.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    plain: &'static [u8],
    gzip: Vec<u8>,
    etag: String,
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|&(path, content_type, plain)| {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                // Writing to a Vec cannot fail.
                let _ = gz.write_all(plain);
                let gzip = gz.finish().unwrap_or_default();
                let digest = Sha256::digest(plain);
                Asset {
                    path,
                    content_type,
                    plain,
                    gzip,
                    etag: format!("\"{}\"", hex::encode(&digest[..12])),
                }
            })
            .collect()
    })
}

/// The total gzipped size of the client, in bytes (compressing it if not done yet; logged at
/// startup at debug level).
pub fn gzipped_size() -> usize {
    assets().iter().map(|a| a.gzip.len()).sum()
}

fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.trim().split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if matches {
        return response.finish();
    }
    response.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    ));
    if accepts_gzip(req) {
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(asset.gzip.clone())
    } else {
        response.body(asset.plain)
    }
}

/// `GET /app/{path}`: a file of the client; 404 for anything else.
pub async fn file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match assets().iter().find(|a| a.path == path.as_str()) {
        Some(asset) => serve(&req, asset),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found"),
    }
}

/// The client's page, for `GET /` from a browser.
pub async fn index(req: HttpRequest) -> HttpResponse {
    let asset = assets()
        .iter()
        .find(|a| a.path == "index.html")
        .expect("index.html is embedded");
    serve(&req, asset)
}

/// Whether a request to `/` asks for JSON rather than a page: an `Accept` that names
/// `application/json` and not `text/html`.
pub fn wants_json(req: &actix_web::dev::RequestHead) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn every_file_is_embedded_and_compresses() {
        for asset in assets() {
            assert!(!asset.plain.is_empty(), "{}", asset.path);
            assert!(asset.gzip.len() < asset.plain.len(), "{}", asset.path);
        }
    }

    #[test]
    fn every_file_of_the_client_is_embedded() {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        for dir in ["", "js"] {
            for entry in std::fs::read_dir(web.join(dir)).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                if entry.file_type().unwrap().is_file() && name != "jsconfig.json" {
                    on_disk.push(if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    });
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|f| f.0.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn gzip_is_negotiated() {
        let yes = TestRequest::default()
            .insert_header((header::ACCEPT_ENCODING, "br, gzip;q=0.8"))
            .to_http_request();
        let no = TestRequest::default()
            .insert_header((header::ACCEPT_ENCODING, "gzip;q=0, br"))
            .to_http_request();
        assert!(accepts_gzip(&yes));
        assert!(!accepts_gzip(&no));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }
}
