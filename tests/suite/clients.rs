//! What third-party clients need to work unchanged: CORS from any origin (or the configured
//! ones) with browser-style preflights, and trailing slashes naming the same routes.

use crate::common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A browser's preflight for a cross-origin request.
async fn preflight(
    server: &TestServer,
    path: &str,
    origin: &str,
    method: &str,
) -> reqwest::Response {
    server
        .client
        .request(Method::OPTIONS, server.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "content-type,x-session-id,authorization",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn any_origin_may_call_the_api_with_a_preflight() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let origin = "https://client.example";
    let res = preflight(&server, "/api/sessions", origin, "POST").await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), origin);
    let methods = header(&res, "access-control-allow-methods").to_ascii_uppercase();
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = header(&res, "access-control-allow-headers").to_ascii_lowercase();
    for h in ["x-session-id", "content-type", "authorization"] {
        assert!(headers.contains(h), "{headers}");
    }

    // SignalR's browser client negotiates with its own headers and with credentials.
    let res = server
        .client
        .request(Method::OPTIONS, server.url("/hub/negotiate"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,x-requested-with,x-signalr-user-agent",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), origin);
    assert_eq!(header(&res, "access-control-allow-credentials"), "true");

    // The actual requests carry the header too: API, uploads and the instance details.
    let (_, session) = server.user("root").await;
    for path in [
        "/api/channels",
        "/api",
        "/",
        "/uploads/0123456789abcdef0123456789abcdef.png",
    ] {
        let res = server
            .client
            .get(server.url(path))
            .header("Origin", origin)
            .header("Accept", "application/json")
            .header("X-Session-ID", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&res, "access-control-allow-origin"),
            origin,
            "{path}"
        );
    }
    let res = server
        .client
        .post(server.url("/api/channels"))
        .header("Origin", origin)
        .header("X-Session-ID", &session)
        .json(&json!({"name": "cross"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), origin);
}

#[tokio::test]
async fn cors_origins_narrows_the_api_but_not_websockets() {
    let server = TestServer::spawn_with(&["--cors-origins", "https://ours.example"]).await;
    let ours = preflight(&server, "/api/sessions", "https://ours.example", "POST").await;
    assert_eq!(
        header(&ours, "access-control-allow-origin"),
        "https://ours.example"
    );
    let theirs = server
        .client
        .get(server.url("/api"))
        .header("Origin", "https://theirs.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&theirs, "access-control-allow-origin"), "");
    // A WebSocket from another origin still connects and gets pingdata.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://theirs.example".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("pingdata"), "{first:?}");
}

#[tokio::test]
async fn a_bad_cors_origin_is_a_clear_startup_error() {
    let out = common::decentd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cors-origins",
            "https://x.example/path",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not an origin"), "{stderr}");
}

#[tokio::test]
async fn a_trailing_slash_names_the_same_route() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (id, session) = server.user("root").await;
    let channel = server.create_channel(&session, "general").await;
    for path in [
        "/api/channels".to_owned(),
        "/api/users".to_owned(),
        "/api/roles".to_owned(),
        "/api/emotes".to_owned(),
        "/api/settings".to_owned(),
        "/api".to_owned(),
        format!("/api/users/{id}"),
        format!("/api/channels/{channel}/messages"),
    ] {
        let plain = server.get(&path, Some(&session)).await;
        let slashed = server.get(&format!("{path}/"), Some(&session)).await;
        assert_eq!(plain.0, StatusCode::OK, "{path}: {:?}", plain.1);
        assert_eq!(slashed, plain, "{path}/");
    }
    // Writes too.
    let r = server
        .post("/api/channels/", Some(&session), json!({"name": "slashed"}))
        .await;
    assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
}
