//! The server as a process: admins from the command line and offline, graceful shutdown,
//! crash durability under write load, and the WebSocket endpoint.

use crate::common;

use common::{assert_error, decentd, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn admin_named_on_the_command_line_gets_the_role_on_registering() {
    let server = TestServer::spawn_with(&["--admin", "Chief"]).await;
    let user = server.register("chief", "password1").await;
    assert_eq!(user["roleIDs"].as_array().unwrap().len(), 1);
    let plain = server.register("plain", "password1").await;
    assert_eq!(plain["roleIDs"], json!([]));
}

#[tokio::test]
async fn admin_named_at_startup_is_granted_when_they_already_exist() {
    let mut server = TestServer::spawn().await;
    let (id, _) = server.user("later").await;
    let data = server.data.clone();
    assert!(server.signal_and_wait("TERM").success());
    let server = TestServer::spawn_on(&data, &["--admin", "later"]).await;
    let session = server.login("later", "password1").await;
    let (_, body) = server.get(&format!("/api/users/{id}"), None).await;
    assert_eq!(body["user"]["roleIDs"].as_array().unwrap().len(), 1);
    let r = server
        .patch("/api/settings", Some(&session), json!({"name": "Mine"}))
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
}

#[tokio::test]
async fn make_admin_works_offline_and_refuses_a_running_servers_data_dir() {
    let mut server = TestServer::spawn().await;
    let (_, session) = server.user("promoted").await;
    let data = server.data.clone();

    let out = decentd()
        .arg("make-admin")
        .arg("--data")
        .arg(&data)
        .arg("promoted")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");

    assert!(server.signal_and_wait("TERM").success());
    let out = decentd()
        .arg("make-admin")
        .arg("--data")
        .arg(&data)
        .arg("nobody")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
    let out = decentd()
        .arg("make-admin")
        .arg("--data")
        .arg(&data)
        .arg("promoted")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = TestServer::spawn_on(&data, &[]).await;
    let r = server
        .patch("/api/settings", Some(&session), json!({"name": "Promoted"}))
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_cleanly_and_keep_data() {
    for signal in ["TERM", "INT"] {
        let mut server = TestServer::spawn().await;
        let data = server.data.clone();
        server.register("keeper", "password1").await;
        let status = server.signal_and_wait(signal);
        assert_eq!(status.code(), Some(0), "SIG{signal}");
        let logs = server.logs.lock().unwrap().join("\n");
        assert!(logs.contains("storage flushed"), "{logs}");
        let server = TestServer::spawn_on(&data, &[]).await;
        server.login("keeper", "password1").await;
    }
}

#[tokio::test]
async fn a_graceful_stop_does_not_wait_for_idle_keep_alive_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = TestServer::spawn().await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The connection stays open (keep-alive, 5 s); the stop closes it instead of waiting.
    let started = std::time::Instant::now();
    let status = server.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the stop waited {:?} for an idle connection",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_websocket_at_root_gets_pingdata_and_pongdata_marks_the_user_online() {
    let server = TestServer::spawn_with(&["--ping-interval", "1"]).await;
    let (id, session) = server.user("socky").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(first, json!({"evt": "pingdata"}));
    // Garbage is ignored, the socket stays up.
    ws.send(Message::text("not json")).await.unwrap();
    ws.send(Message::text(
        json!({"evt": "pongdata", "data": {"sessionID": session}}).to_string(),
    ))
    .await
    .unwrap();
    let online = loop {
        let v = next_json(&mut ws).await;
        if v["evt"] == "user/online" {
            break v;
        }
    };
    assert_eq!(online["data"]["userID"], id.as_str());
    let (_, body) = server.get(&format!("/api/users/{id}"), None).await;
    assert_eq!(body["user"]["online"], true);
    // Periodic pings keep coming.
    loop {
        if next_json(&mut ws).await["evt"] == "pingdata" {
            break;
        }
    }
    ws.close(None).await.unwrap();
    for _ in 0..50 {
        if server.get(&format!("/api/users/{id}"), None).await.1["user"]["online"] == false {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("user stayed online after their only socket closed");
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("valid frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).expect("server sends JSON");
        }
    }
}

/// Registers users from many concurrent clients, SIGKILLs the server mid-flight, restarts it
/// on the same data directory, and checks every acknowledged registration survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_registrations_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..4 {
        let mut server = TestServer::spawn_on(&data, &[]).await;
        let client = server.client.clone();
        let url = server.url("/api/users");
        let mut tasks = Vec::new();
        for worker in 0..16 {
            let client = client.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                for n in 0.. {
                    let name = format!("r{round}w{worker}n{n}");
                    let res = client
                        .post(&url)
                        .json(&json!({"username": name, "password": "password1"}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 200 => {
                            if r.json::<Value>().await.is_ok() {
                                ok.push(name);
                            } else {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
        server.kill();
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
        assert!(!acknowledged.is_empty(), "round {round} registered nobody");
        let server = TestServer::spawn_on(&data, &[]).await;
        let (status, body) = server.get("/api/users", None).await;
        assert_eq!(status, 200, "store reopens cleanly");
        let stored: std::collections::HashSet<String> = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|n| !stored.contains(*n))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
        drop(server);
    }
    eprintln!(
        "{} acknowledged registrations all survived 4 SIGKILLs",
        acknowledged.len()
    );
}

#[tokio::test]
async fn invalid_configuration_is_a_clear_startup_error() {
    let out = decentd()
        .args(["serve", "--ping-interval", "90"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ping interval"));
    let out = decentd()
        .args(["serve", "--listen", "256.0.0.1:1", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    let help = decentd().arg("serve").arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--data",
        "--admin",
        "--config",
        "--body-limit",
        "DECENTD_LISTEN",
    ] {
        assert!(help.contains(flag), "help mentions {flag}");
    }
    let _ = assert_error;
}
