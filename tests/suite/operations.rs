//! Operating the server: health and readiness probes. (Readiness on a full disk is in
//! `hardening`, with the disk-full test.)

use crate::common;

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

/// A request with extra headers; status, `Retry-After`, body.
async fn request(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, Option<u64>, serde_json::Value) {
    let mut req = server.client.request(method, server.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn requests_over_the_address_limit_get_429_with_retry_after() {
    let server =
        TestServer::spawn_with(&["--rate-limit", "2", "--metrics-listen", "127.0.0.1:0"]).await;
    // A burst of five times the rate goes through, then the bucket is empty.
    let mut refused = None;
    for i in 0..20 {
        let (status, retry, body) = request(&server, reqwest::Method::GET, "/api", &[], None).await;
        if status == 429 {
            refused = Some((i, retry, body));
            break;
        }
        assert_eq!(status, 200);
    }
    let (after, retry, body) = refused.expect("the limit never refused");
    assert!((9..=11).contains(&after), "refused after {after} requests");
    assert_eq!(retry, Some(1));
    assert_eq!(body["error"]["code"], "FAILED");
    assert_eq!(body["error"]["limit"], "address");
    assert_eq!(body["error"]["retryAfter"], 1);
    // Probes are never limited.
    assert_eq!(server.get("/healthz", None).await.0, 200);
    // The bucket refills at the rate.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(server.get("/api", None).await.0, 200);
    let text = server.metrics().await;
    assert!(sample(&text, r#"decentd_rate_limited_total{limit="address"}"#) >= Some(1.0));
}

#[tokio::test]
async fn logins_have_a_stricter_limit_and_proxies_are_believed_only_when_trusted() {
    let wrong = || Some(serde_json::json!({"username": "nobody", "password": "wrong-password"}));
    let post = reqwest::Method::POST;

    // Without trusted proxies, X-Forwarded-For changes nothing: one client.
    let server = TestServer::spawn_with(&["--login-rate-limit", "2"]).await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        let forwarded = [("X-Forwarded-For", client)];
        let (status, _, _) =
            request(&server, post.clone(), "/api/sessions", &forwarded, wrong()).await;
        assert_eq!(status, 404);
    }
    let (status, retry, body) = request(
        &server,
        post.clone(),
        "/api/users",
        &[("X-Forwarded-For", "198.51.100.3")],
        wrong(),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["limit"], "login");
    assert!(retry.unwrap() >= 20, "a login every 30 s: {retry:?}");
    // Other requests are not held back by the login limit.
    assert_eq!(server.get("/api", None).await.0, 200);

    // Behind a trusted proxy, each forwarded client has its own bucket.
    let server =
        TestServer::spawn_with(&["--login-rate-limit", "1", "--trusted-proxies", "127.0.0.1"])
            .await;
    let first = [("X-Forwarded-For", "198.51.100.1")];
    let (status, _, _) = request(&server, post.clone(), "/api/sessions", &first, wrong()).await;
    assert_eq!(status, 404);
    let (status, _, _) = request(&server, post.clone(), "/api/sessions", &first, wrong()).await;
    assert_eq!(status, 429);
    let other = [("X-Forwarded-For", "192.0.2.1, 198.51.100.2")];
    let (status, _, _) = request(&server, post.clone(), "/api/sessions", &other, wrong()).await;
    assert_eq!(status, 404, "another client behind the proxy");
}

#[tokio::test]
async fn one_session_is_limited_on_its_own() {
    let server = TestServer::spawn_with(&["--session-rate-limit", "1"]).await;
    let (_, alice) = server.user("alice").await;
    let (_, bob) = server.user("bob").await;
    let mut refused = false;
    for _ in 0..10 {
        let (status, _, body) = request(
            &server,
            reqwest::Method::GET,
            "/api/sessions",
            &[("X-Session-ID", &alice)],
            None,
        )
        .await;
        if status == 429 {
            assert_eq!(body["error"]["limit"], "session");
            refused = true;
            break;
        }
    }
    assert!(refused, "alice's session was never limited");
    let (status, _) = server.get("/api/sessions", Some(&bob)).await;
    assert_eq!(status, 200, "bob's session has its own bucket");
    assert_eq!(server.get("/api", None).await.0, 200, "and guests too");
}

#[test]
fn the_version_names_the_commit() {
    let out = common::decentd().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("decentd {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|h| h.status.success());
    if let Some(head) = head {
        let head = String::from_utf8(head.stdout).unwrap();
        assert!(
            text.contains(&format!("(commit {})", head.trim())),
            "{text}"
        );
    }
}

#[tokio::test]
async fn sighup_reloads_limits_log_filter_and_plugins_and_keeps_a_bad_configuration_out() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let config = tmp.path().join("decentd.toml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "rate_limit = 0\nsession_rate_limit = 0\nupload_rate_limit = 0\nplugins = {:?}\n{extra}",
                plugins.display().to_string()
            ),
        )
        .unwrap()
    };
    write("login_rate_limit = 0\n");
    let server = TestServer::spawn_with(&["--config", config.to_str().unwrap()]).await;
    let login = || async {
        server
            .post(
                "/api/sessions",
                None,
                serde_json::json!({"username": "nobody", "password": "wrong-password"}),
            )
            .await
            .0
    };
    for _ in 0..3 {
        assert_eq!(login().await, 404);
    }
    // A stricter login limit and a plugin dropped into the plugins directory.
    write("login_rate_limit = 1\nmax_message_length = 50\n");
    let word_filter =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/dist/word-filter");
    let installed = plugins.join("word-filter");
    std::fs::create_dir_all(&installed).unwrap();
    for file in ["plugin.wasm", "plugin.toml"] {
        std::fs::copy(word_filter.join(file), installed.join(file)).unwrap();
    }
    // Loading a plugin compiles its module: seconds in a debug build.
    server.signal("HUP");
    server.until_logged("reloaded: log filter", 1).await;
    assert_eq!(login().await, 404);
    assert_eq!(login().await, 429, "the reloaded login limit applies");
    assert!(server
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("plugin loaded") && l.contains("word-filter")));
    assert!(server
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("take effect when decentd is restarted")));

    // A configuration with an error changes nothing; the server keeps serving.
    write("login_rate_limit = \"many\"\n");
    server.signal("HUP");
    server.until_logged("reloaded: log filter", 2).await;
    assert!(server
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("the running configuration stays")));
    assert_eq!(login().await, 429, "the limit in force stays");
    assert_eq!(server.get("/healthz", None).await.0, 200);
}

#[test]
fn the_deployment_files_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    // The example configuration parses, with what the README's VPS steps rely on.
    let config = decentd::config::ServeArgs {
        config: Some(root.join("decentd.toml")),
        ..Default::default()
    }
    .resolve()
    .expect("deploy/decentd.toml is a valid configuration");
    assert!(config.secure);
    assert_eq!(config.listen, "127.0.0.1:3000");
    assert_eq!(config.trusted_proxies.len(), 2);
    assert_eq!(config.metrics_listen.as_deref(), Some("127.0.0.1:9100"));

    // systemd accepts the units and the drop-in (with ExecStart pointing at this build's
    // binary).
    let Ok(analyze) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not installed; the units were not verified");
        return;
    };
    assert!(analyze.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_decentd");
    let mut units = Vec::new();
    for unit in [
        "decentd.service",
        "decentd-backup.service",
        "decentd-backup.timer",
    ] {
        let text = std::fs::read_to_string(root.join(unit))
            .unwrap()
            .replace("/usr/local/bin/decentd", binary);
        let path = tmp.path().join(unit);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    // The HTTPS drop-in, where systemd looks for it next to the unit.
    let drop_ins = tmp.path().join("decentd.service.d");
    std::fs::create_dir(&drop_ins).unwrap();
    std::fs::copy(root.join("tls.conf"), drop_ins.join("tls.conf")).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let complaints =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}
