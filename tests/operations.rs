//! Operating the server: health and readiness probes. (Readiness on a full disk is in
//! `hardening`, with the disk-full test.)

mod common;

use common::TestServer;

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
