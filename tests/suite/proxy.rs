//! "Run it on a VPS", step by step on this machine: decentd started with the shipped
//! `deploy/decentd.toml`, behind Caddy with the README's site block and behind nginx with the
//! README's location block (local certificates instead of public ones), used through the proxy
//! by the API, `/`, `/hub` and `/v2` clients. Each proxy's test is skipped (with a note) where
//! it is not installed; `.ci/run` installs both.

use crate::common;

use common::TestServer;
use serde_json::Value;
use std::net::SocketAddr;
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

/// A running proxy: its process, its HTTPS port, and the certificate (or authority) to trust.
struct Proxy {
    child: Child,
    port: u16,
    root: Vec<u8>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed(program: &str, version_flag: &str) -> bool {
    let found = Command::new(program)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("{program} is not installed: its reverse-proxy walkthrough was not run");
    }
    found
}

/// Waits until the proxy accepts connections and `root` (its certificate) can be read.
async fn started(mut child: Child, port: u16, root: &Path, log: &Path) -> Proxy {
    for _ in 0..200 {
        let listening = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        if listening {
            if let Ok(root) = std::fs::read(root) {
                return Proxy { child, port, root };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "the proxy did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Caddy in front of `upstream`, serving https://127.0.0.1:<port> with its internal CA.
async fn caddy(dir: &Path, upstream: SocketAddr) -> Proxy {
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
    let log = dir.join("caddy.log");
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start caddy");
    let root = dir.join("data/caddy/pki/authorities/local/root.crt");
    started(child, port, &root, &log).await
}

/// The README's nginx `location` block, as printed there.
fn readme_location_block() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = readme
        .split_once("With nginx instead:")
        .expect("the README's nginx block")
        .1;
    let block = after.split("```").nth(1).expect("a fenced block");
    block.trim().to_owned()
}

/// nginx in front of `upstream` with the README's location block inside an HTTPS server.
async fn nginx(dir: &Path, upstream: SocketAddr) -> Proxy {
    let port = free_port();
    let (cert, key) = common::self_signed(dir, "nginx");
    let location = readme_location_block().replace("127.0.0.1:3000", &upstream.to_string());
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    \
             map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n    \
             server {{\n        listen 127.0.0.1:{port} ssl;\n        \
             ssl_certificate {};\n        ssl_certificate_key {};\n        {location}\n    }}\n}}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let log = dir.join("error.log");
    let child = Command::new("nginx")
        .args(["-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    started(child, port, &cert, &log).await
}

/// decentd with the shipped configuration file (its own port and metrics address).
async fn shipped_server() -> TestServer {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/decentd.toml");
    TestServer::spawn_with_defaults(&[
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .await
}

/// Everything a community does, through the proxy.
async fn walk_through(mut server: TestServer, proxy: &Proxy) {
    let proxy_addr: SocketAddr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    server.through_proxy(proxy_addr, &proxy.root);
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
    server
        .post_message(&alice, &channel, "through the proxy")
        .await;
    assert_eq!(
        events.expect("message/new").await["message"]["text"],
        "through the proxy"
    );
    assert_eq!(
        hub.expect_event("message/new").await["message"]["text"],
        "through the proxy"
    );
    assert_eq!(bot.expect("chat_ingame").await["text"], "through the proxy");

    // Client addresses: a client at 127.0.0.2 (not a trusted proxy) forging X-Forwarded-For
    // is logged as 127.0.0.2, the address the trusted proxy reports.
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&proxy.root).unwrap())
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let forged = client
        .get(server.url("/api/settings"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    // The log reader may not have read the line yet.
    let mut line = Value::Null;
    for _ in 0..100 {
        let lines = server.logs.lock().unwrap().clone();
        if let Some(found) = lines
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["path"] == "/api/settings")
        {
            line = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(line["client"], "127.0.0.2", "{line}");
}

#[tokio::test]
async fn behind_caddy_with_the_shipped_configuration() {
    if !installed("caddy", "version") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = shipped_server().await;
    let proxy = caddy(tmp.path(), server.addr).await;
    walk_through(server, &proxy).await;
}

#[tokio::test]
async fn behind_nginx_with_the_readme_location_block() {
    if !installed("nginx", "-v") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = shipped_server().await;
    let proxy = nginx(tmp.path(), server.addr).await;
    walk_through(server, &proxy).await;
}
