//! "Run it on a VPS", step by step on this machine: decentd started with the shipped
//! `deploy/decentd.toml`, behind Caddy with the README's site block (a local certificate
//! authority instead of a public one), used through the proxy by the API, `/`, `/hub` and `/v2`
//! clients. Skipped (with a note) where Caddy is not installed; `.ci/run` installs it.

mod common;

use common::TestServer;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Caddy in front of `upstream`, serving https://127.0.0.1:<port> with its internal CA.
struct Caddy {
    child: Child,
    port: u16,
    root: Vec<u8>,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn caddy(dir: &Path, upstream: std::net::SocketAddr) -> Option<Caddy> {
    if Command::new("caddy").arg("version").output().is_err() {
        eprintln!("caddy is not installed: the reverse-proxy walkthrough was not run");
        return None;
    }
    let port = free_port();
    let http_port = free_port();
    // The README's site block, for this machine: an IP instead of a domain, and the local CA.
    let caddyfile = dir.join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n    admin off\n    skip_install_trust\n    http_port {http_port}\n}}\n\n\
             https://127.0.0.1:{port} {{\n    tls internal\n    reverse_proxy {upstream}\n}}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("caddy.log")).unwrap())
        .spawn()
        .expect("start caddy");
    let root_path = dir.join("data/caddy/pki/authorities/local/root.crt");
    for _ in 0..200 {
        let listening = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        if listening {
            if let Ok(root) = std::fs::read(&root_path) {
                return Some(Caddy { child, port, root });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "caddy did not start: {}",
        std::fs::read_to_string(dir.join("caddy.log")).unwrap_or_default()
    );
}

#[tokio::test]
async fn behind_caddy_with_the_shipped_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/decentd.toml");
    // The shipped file, with the test's own port and metrics address.
    let mut server = TestServer::spawn_with_defaults(&[
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .await;
    let Some(proxy) = caddy(tmp.path(), server.addr).await else {
        return;
    };
    let direct = server.addr;
    server.through_proxy(
        format!("127.0.0.1:{}", proxy.port).parse().unwrap(),
        &proxy.root,
    );
    assert!(server.url("/").starts_with("https://"));

    // The API through the proxy: secure, and the administrator from `admins` can set up.
    let (status, api) = server.get("/api", None).await;
    assert_eq!(status, 200);
    assert_eq!(api["useSecureProtocol"], true);
    let (_, alice) = server.user("alice").await;
    let channel = server.create_channel(&alice, "general").await;

    // WebSocket upgrades pass through: `/`, `/hub` and `/v2`.
    let mut events = server.events(Some(&alice)).await;
    let mut hub = server.hub(Some(&alice)).await;
    let key = server.license(&alice, &["read"]).await;
    let (mut bot, _) = server.bot_ready(&key).await;
    server.post_message(&alice, &channel, "through caddy").await;
    assert_eq!(
        events.expect("message/new").await["message"]["text"],
        "through caddy"
    );
    assert_eq!(
        hub.expect_event("message/new").await["message"]["text"],
        "through caddy"
    );
    assert_eq!(bot.expect("chat_ingame").await["text"], "through caddy");

    // Client addresses: the proxy's X-Forwarded-For is believed (the shipped file trusts
    // loopback), and a client cannot forge its own through the proxy.
    let forged = server
        .client
        .get(server.url("/api/settings"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let line = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["path"] == "/api/settings")
        .expect("the request's log line");
    assert_eq!(line["client"], "127.0.0.1", "{line}");
    assert!(direct.port() != proxy.port);
}
