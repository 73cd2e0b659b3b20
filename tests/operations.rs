//! Operating the server: health and readiness probes. (Readiness on a full disk is in
//! `hardening`, with the disk-full test.)

mod common;

use common::{sample, TestServer};

#[tokio::test]
async fn health_and_readiness_answer_without_a_session() {
    let server = TestServer::spawn().await;
    let (status, v) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ok");
    let (status, v) = server.get("/readyz", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ready");
    assert_eq!(v["checks"]["storage"], "ok");
    assert_eq!(v["checks"]["accepting"], "ok");
    // Probes are not logged at info level (they come every second).
    let probes = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("/readyz"))
        .count();
    assert_eq!(probes, 0);
}

#[tokio::test]
async fn metrics_are_served_on_their_own_address() {
    let server =
        TestServer::spawn_with(&["--admin", "root", "--metrics-listen", "127.0.0.1:0"]).await;
    let (_, root) = server.user("root").await;
    let channel = server.create_channel(&root, "general").await;
    let _slash = server.events(Some(&root)).await;
    let _hub = server.hub(Some(&root)).await;
    server.post_message(&root, &channel, "counted").await;
    let (status, _) = server
        .post(
            "/api/sessions",
            None,
            serde_json::json!({"username": "root", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(status, 401);

    let text = server.metrics().await;
    let has =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        has(r#"decentd_http_requests_total{method="POST",route="/api/messages",status="200"}"#),
        1.0
    );
    assert!(
        has(r#"decentd_http_request_duration_seconds_count{method="POST",route="/api/messages"}"#)
            >= 1.0
    );
    assert_eq!(has(r#"decentd_connections{gateway="websocket"}"#), 1.0);
    assert_eq!(has(r#"decentd_connections{gateway="hub"}"#), 1.0);
    assert!(has("decentd_events_emitted_total") >= 3.0);
    assert!(has(r#"decentd_events_delivered_total{gateway="websocket"}"#) >= 1.0);
    assert!(has(r#"decentd_events_delivered_total{gateway="hub"}"#) >= 1.0);
    assert_eq!(
        has(r#"decentd_logins_failed_total{reason="incorrect_password"}"#),
        1.0
    );
    assert!(has("decentd_commit_batch_size_count") >= 1.0);
    assert!(has("decentd_commit_flush_duration_seconds_count") >= 1.0);
    assert!(has("decentd_storage_bytes") > 0.0);

    // Not on the public listener.
    let (status, _) = server.get("/metrics", None).await;
    assert_eq!(status, 404);
}
