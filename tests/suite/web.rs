//! The embedded web client as HTTP serves it: the page for browsers, instance details for JSON
//! clients, compressed files with validators, and a Content-Security-Policy without inline
//! script. What the client does in a browser is tested by `tests/browser/`.

use crate::common;

use common::TestServer;
use reqwest::header;

#[tokio::test]
async fn a_browser_gets_the_client_and_a_json_client_gets_instance_details() {
    let server = TestServer::spawn().await;
    let page = server
        .client
        .get(server.url("/"))
        .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/app/js/main.js"></script>"#));
    assert!(!html.contains("<script>"), "no inline script");

    let details: serde_json::Value = server
        .client
        .get(server.url("/"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details["implementation"], "decentd");
    assert_eq!(details["api"], "/api");
}

#[tokio::test]
async fn files_are_gzipped_and_revalidated_with_etags() {
    let server = TestServer::spawn().await;
    // A client without automatic decompression sees the encoding.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = server.url("/app/js/main.js");
    let gz = raw
        .get(&url)
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), 200);
    assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(gz.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let etag = gz.headers()[header::ETAG].to_str().unwrap().to_owned();
    let zipped = gz.bytes().await.unwrap().len();
    let plain = raw.get(&url).send().await.unwrap();
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    assert!(plain.bytes().await.unwrap().len() > zipped * 2);

    let again = raw
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    let missing = raw.get(server.url("/app/js/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let escape = raw
        .get(server.url("/app/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(escape.status(), 404);
}

/// The setup link in the log, if the server logs one (right after "listening").
async fn setup_token(server: &TestServer) -> Option<String> {
    for _ in 0..20 {
        let logs = server.logs.lock().unwrap().join("\n");
        if let Some(at) = logs.find("/#setup=") {
            let at = at + "/#setup=".len();
            return Some(logs[at..at + 32].to_owned());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn the_first_run_setup_link_creates_the_administrator_once() {
    let server = TestServer::spawn().await;
    let token = setup_token(&server).await.expect("a setup link is logged");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");

    // A wrong token creates nothing.
    let wrong = server
        .post(
            "/api/users",
            None,
            serde_json::json!({"username": "mallory", "password": "password1", "setupToken": "0".repeat(32)}),
        )
        .await;
    common::assert_error(&wrong, "NOT_ALLOWED");
    let (_, available) = server.get("/api/username-available/mallory", None).await;
    assert_eq!(available["available"], true);

    let made = server
        .post(
            "/api/users",
            None,
            serde_json::json!({"username": "owner", "password": "password1", "setupToken": token}),
        )
        .await;
    assert_eq!(made.0, 200, "{}", made.1);
    let session = server.login("owner", "password1").await;
    // The administrator holds the Admin role: they can create a channel.
    let r = server
        .post(
            "/api/channels",
            Some(&session),
            serde_json::json!({"name": "general"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, roles) = server.get("/api/roles", None).await;
    assert_eq!(roles["roles"][0]["name"], "Admin");

    // Used: the link works once.
    let again = server
        .post(
            "/api/users",
            None,
            serde_json::json!({"username": "second", "password": "password1", "setupToken": token}),
        )
        .await;
    common::assert_error(&again, "NOT_ALLOWED");

    // With an administrator (or --admin), no link is logged.
    let configured = TestServer::spawn_with(&["--admin", "root"]).await;
    assert_eq!(setup_token(&configured).await, None);
}
