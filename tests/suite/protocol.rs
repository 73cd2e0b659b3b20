//! Spec section 2 through real HTTP: routing, errors, the parameter layer, sessions in
//! requests, settings and instance details.

use crate::common;

use common::{assert_error, TestServer};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn api_info_and_index_describe_the_instance() {
    let server = TestServer::spawn().await;
    for path in ["/api", "/api/"] {
        let (status, body) = server.get(path, None).await;
        assert_eq!(status, 200);
        assert_eq!(body["implementation"], "decentd");
        assert!(body["decentVersion"].as_str().unwrap().starts_with("1."));
        assert_eq!(body["useSecureProtocol"], false);
    }
    let res = server
        .client
        .get(server.url("/"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let details: serde_json::Value = res.json().await.unwrap();
    assert_eq!(details["name"], "Unnamed Decent chat server");
    assert_eq!(details["implementation"], "decentd");
}

#[tokio::test]
async fn secure_flag_is_reported() {
    let server = TestServer::spawn_with(&["--secure"]).await;
    assert_eq!(server.get("/api", None).await.1["useSecureProtocol"], true);
}

#[tokio::test]
async fn unknown_routes_are_not_found_json_under_api_and_plain_elsewhere() {
    let server = TestServer::spawn().await;
    let r = server.get("/api/no-such-thing", None).await;
    assert_eq!(r.0, 404);
    assert_error(&r, "NOT_FOUND");
    // A known route with a method it does not support is also NOT_FOUND.
    let r = server.call(Method::PUT, "/api/users", None, None).await;
    assert_eq!(r.0, 404);
    assert_error(&r, "NOT_FOUND");
    let res = server
        .client
        .get(server.url("/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let text = res.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    let res = server.client.post(server.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn session_id_is_read_from_query_body_or_any_case_header() {
    let server = TestServer::spawn().await;
    let (id, session) = server.user("alice").await;
    // Query string.
    let (status, body) = server
        .get(&format!("/api/users/{id}?sessionID={session}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        body["user"].get("email").is_some(),
        "owner sees email: {body}"
    );
    // Header, in odd case.
    let res = server
        .client
        .get(server.url(&format!("/api/users/{id}")))
        .header("x-SESSION-id", &session)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["user"].get("email").is_some());
    // Body.
    let (status, _) = server
        .patch(
            &format!("/api/users/{id}"),
            None,
            json!({"sessionID": session, "flair": "hi"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.get(&format!("/api/users/{id}"), None).await.1["user"]["flair"],
        "hi"
    );
    // Without a session, no email.
    let (_, body) = server.get(&format!("/api/users/{id}"), None).await;
    assert!(body["user"].get("email").is_none(), "{body}");
}

#[tokio::test]
async fn a_session_id_given_twice_is_repeated_parameters_and_changes_nothing() {
    let server = TestServer::spawn().await;
    let (id, session) = server.user("bob").await;
    let path = format!("/api/users/{id}?sessionID={session}");
    let r = server
        .call(
            Method::PATCH,
            &path,
            Some(&session),
            Some(json!({"flair": "x"})),
        )
        .await;
    assert_error(&r, "REPEATED_PARAMETERS");
    let r = server
        .patch(
            &format!("/api/users/{id}"),
            Some(&session),
            json!({"sessionID": session, "flair": "x"}),
        )
        .await;
    assert_error(&r, "REPEATED_PARAMETERS");
    let res = server
        .client
        .get(server.url("/api/sessions"))
        .header("X-Session-ID", &session)
        .header("x-session-id", &session)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "REPEATED_PARAMETERS");
    assert_eq!(
        server.get(&format!("/api/users/{id}"), None).await.1["user"]["flair"],
        json!(null)
    );
}

#[tokio::test]
async fn unknown_sessions_are_invalid_session_id_even_where_no_session_is_needed() {
    let server = TestServer::spawn().await;
    let r = server.get("/api/users", Some("not-a-session")).await;
    assert_error(&r, "INVALID_SESSION_ID");
    let r = server.get("/api/settings?sessionID=nope", None).await;
    assert_error(&r, "INVALID_SESSION_ID");
}

#[tokio::test]
async fn duplicate_keys_in_query_or_body_are_repeated_parameters() {
    let server = TestServer::spawn().await;
    let r = server.get("/api/users?a=1&a=2", None).await;
    assert_eq!(assert_error(&r, "REPEATED_PARAMETERS")["parameter"], "a");
    let r = server
        .raw(
            Method::POST,
            "/api/users",
            r#"{"username":"a1","username":"a2","password":"secret1"}"#,
        )
        .await;
    assert_eq!(
        assert_error(&r, "REPEATED_PARAMETERS")["parameter"],
        "username"
    );
    let r = server
        .raw(
            Method::POST,
            "/api/users?username=a1",
            r#"{"username":"a1","password":"secret1"}"#,
        )
        .await;
    assert_error(&r, "REPEATED_PARAMETERS");
    // None of these registered anyone.
    assert_eq!(server.get("/api/users", None).await.1["users"], json!([]));
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_failed() {
    let server = TestServer::spawn().await;
    for body in ["{username:", "[1,2]", "\"text\"", "{\"a\":1} x"] {
        let r = server.raw(Method::POST, "/api/users", body).await;
        assert_eq!(r.0, 400, "{body}");
        assert_error(&r, "FAILED");
    }
}

#[tokio::test]
async fn missing_and_mistyped_parameters_name_the_parameter() {
    let server = TestServer::spawn().await;
    let r = server
        .post("/api/users", None, json!({"username": "carol"}))
        .await;
    assert_eq!(
        assert_error(&r, "INCOMPLETE_PARAMETERS")["missing"],
        "password"
    );
    let r = server
        .post(
            "/api/users",
            None,
            json!({"username": 5, "password": "secret1"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "INVALID_PARAMETER_TYPE")["parameter"],
        "username"
    );
    let r = server
        .post(
            "/api/sessions",
            None,
            json!({"username": "carol", "password": ["x"]}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "INVALID_PARAMETER_TYPE")["parameter"],
        "password"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_a_clear_error() {
    let server = TestServer::spawn_with(&["--body-limit", "2048"]).await;
    let big = json!({"username": "dave", "password": "x".repeat(4000)});
    let r = server.post("/api/users", None, big).await;
    assert_eq!(r.0, 413);
    let error = assert_error(&r, "FAILED");
    assert_eq!(error["limit"], 2048);
    assert!(error["message"].as_str().unwrap().contains("2048"));
    assert_eq!(
        server.get("/api/username-available/dave", None).await.1["available"],
        true
    );
    // Under the limit works.
    server.register("dave", "secret1").await;
}

#[tokio::test]
async fn settings_are_public_and_changed_only_with_manage_server() {
    let server = TestServer::spawn_with(&["--admin", "boss"]).await;
    let (status, body) = server.get("/api/settings", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["settings"]["name"], "Unnamed Decent chat server");
    assert!(body["settings"]["iconURL"].is_string());

    let r = server
        .patch("/api/settings", None, json!({"name": "Nope"}))
        .await;
    assert_error(&r, "NOT_ALLOWED");
    let (_, member) = server.user("member").await;
    let r = server
        .patch("/api/settings", Some(&member), json!({"name": "Nope"}))
        .await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageServer"
    );

    let (_, boss) = server.user("boss").await;
    let r = server
        .patch("/api/settings", Some(&boss), json!({"name": 3}))
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    let r = server
        .patch("/api/settings", Some(&boss), json!({"name": ""}))
        .await;
    assert_error(&r, "INVALID_NAME");
    let r = server
        .patch(
            "/api/settings",
            Some(&boss),
            json!({"name": "Ours", "iconURL": "https://x/i.png"}),
        )
        .await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    // The icon is an image URL as an emote's is: no script or data URLs, no other host by
    // a `//` or `\\` path; nothing changes on a refusal.
    for bad in [
        "javascript:alert(1)",
        "data:image/png;base64,AA",
        "//evil.example/i.png",
        "/\\evil.example",
    ] {
        let r = server
            .patch("/api/settings", Some(&boss), json!({"iconURL": bad}))
            .await;
        assert_error(&r, "INVALID_PARAMETER_TYPE");
    }
    let (_, body) = server.get("/api/settings", None).await;
    assert_eq!(
        body["settings"],
        json!({"name": "Ours", "iconURL": "https://x/i.png", "readAccess": "public"})
    );
    // JSON answers say they are JSON, and nothing else: no sniffing into a page.
    for path in ["/api/settings", "/api/nothing-here"] {
        let answer = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            answer
                .headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
    }
    let details: serde_json::Value = server
        .client
        .get(server.url("/"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details["name"], "Ours");
}

#[tokio::test]
async fn request_logs_name_method_path_status_latency_and_never_a_session_id() {
    let server = TestServer::spawn().await;
    let (_, session) = server.user("logme").await;
    server.get(&format!("/api/sessions/{session}"), None).await;
    server
        .get(&format!("/api/users?sessionID={session}"), None)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(!logs.contains(&session), "a session ID reached the logs");
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request" && v["path"] == "/api/sessions/{id}")
        .expect("a request line");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["latency_us"].is_u64());
}
