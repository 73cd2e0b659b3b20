//! The one spawn-a-server test helper: starts the real `decentd` binary on an ephemeral port
//! with its own temporary data directory, and talks to it over real HTTP.
#![allow(dead_code)]

pub mod engines;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running server process.
pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
    /// Every log line the server wrote so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// With `--tls-cert`: the client side of TLS, trusting that certificate; every helper then
    /// speaks https:// and wss://.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TLS client that trusts the PEM certificates given (and nothing else).
pub fn tls_client(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Writes a fresh self-signed certificate for `localhost` and 127.0.0.1 and its key into
/// `dir` as `{name}.crt` and `{name}.key`; returns their paths.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Whether a request failed because its connection was reset before any answer.
fn was_reset(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionReset;
        }
        source = e.source();
    }
    false
}

/// The binary under test.
pub fn decentd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_decentd"))
}

/// Arguments every test server gets: cheap scrypt so tests do not spend their time hashing.
const FAST_ARGS: &[&str] = &["--scrypt-log-n", "4", "--log-format", "json"];

/// Rate limits test servers run without unless a test sets them: tests post as fast as they
/// can from one address.
pub const RATE_LIMITS: &[&str] = &[
    "--rate-limit",
    "--session-rate-limit",
    "--login-rate-limit",
    "--upload-rate-limit",
];

impl TestServer {
    /// A fresh server with a fresh data directory.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// A fresh server with extra `decentd serve` arguments.
    pub async fn spawn_with(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let mut server = Self::spawn_on(&data, args).await;
        server._tmp = Some(tmp);
        server
    }

    /// A server on an existing data directory (for restarts).
    ///
    /// Test servers start with `--read-access public` (guests read, as on the reference
    /// server, which most suites rely on) unless `args` choose a preset.
    pub async fn spawn_on(data: &Path, args: &[&str]) -> Self {
        let public = !args.contains(&"--read-access");
        Self::launch(data, args, public).await
    }

    /// A fresh server with extra arguments and otherwise the binary's own defaults (no
    /// `--read-access public`).
    pub async fn spawn_with_defaults(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut server = Self::launch(&tmp.path().join("data"), args, false).await;
        server._tmp = Some(tmp);
        server
    }

    async fn launch(data: &Path, args: &[&str], public: bool) -> Self {
        let preset: &[&str] = if public {
            &["--read-access", "public"]
        } else {
            &[]
        };
        // A test with a configuration file sets its limits there.
        let unlimited: Vec<&str> = RATE_LIMITS
            .iter()
            .filter(|flag| !args.contains(flag) && !args.contains(&"--config"))
            .flat_map(|flag| [*flag, "0"])
            .collect();
        let tls_cert = args
            .iter()
            .position(|a| *a == "--tls-cert")
            .map(|i| std::fs::read(args[i + 1]).expect("the --tls-cert file"));
        // The suite's second run keeps everything in PostgreSQL: one database per directory.
        let store: Vec<String> = if engines::postgres_suite() && !args.contains(&"--store") {
            vec!["--store".into(), engines::postgres().database_for(data)]
        } else {
            Vec::new()
        };
        let mut child = decentd()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(FAST_ARGS)
            .args(&store)
            .args(&unlimited)
            .args(preset)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start decentd");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("decentd did not start; logs: {:?}", logs.lock().unwrap()))
            .parse()
            .expect("listening address");
        // Idle connections are dropped before the server's 5 s keep-alive would close them, so
        // a request never races the server closing its connection.
        let mut client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(2));
        if let Some(pem) = &tls_cert {
            client = client.use_rustls_tls().add_root_certificate(
                reqwest::Certificate::from_pem(pem).expect("a PEM certificate"),
            );
        }
        Self {
            child,
            addr,
            data: data.to_owned(),
            _tmp: None,
            client: client.build().unwrap(),
            logs,
            tls: tls_cert.map(|pem| tls_client(&pem)),
        }
    }

    /// From now on, every request and WebSocket of this handle goes through a reverse proxy
    /// at `addr` serving HTTPS with a certificate from the authority in `root_pem`.
    pub fn through_proxy(&mut self, addr: SocketAddr, root_pem: &[u8]) {
        self.addr = addr;
        self.client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(root_pem).expect("a PEM root"))
            .build()
            .unwrap();
        self.tls = Some(tls_client(root_pem));
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// The WebSocket URL of `path` (`/`, `/hub?...`, `/v2/...`).
    pub fn ws_url_of(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        self.ws_url_of("/")
    }

    /// Opens a WebSocket (over TLS when the server has it).
    pub async fn websocket(
        &self,
        request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
            .await
            .map(|(ws, _)| ws)
    }

    /// Sends a request; `body` is sent as JSON when given. Returns status and parsed JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(s) = session {
            req = req.header("X-Session-ID", s);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let retry = req.try_clone();
        let res = match req.send().await {
            Ok(res) => res,
            // A pooled keep-alive connection the server reset before taking the request:
            // send once more on a fresh one (a request that was acted on would show up twice
            // in what the test asserts, so this cannot hide a double action).
            Err(e) if was_reset(&e) => {
                let retry = retry.expect("a cloneable request");
                retry
                    .send()
                    .await
                    .expect("request (after a connection reset)")
            }
            Err(e) => panic!("request: {e:?}"),
        };
        let status = res.status();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Sends a raw body string.
    pub async fn raw(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, session: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, session, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        session: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(Method::POST, path, session, Some(body)).await
    }

    pub async fn patch(
        &self,
        path: &str,
        session: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, session, Some(body)).await
    }

    pub async fn delete(&self, path: &str, session: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, session, None).await
    }

    /// Registers a user and returns the user object.
    pub async fn register(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/users",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "register {username}: {body}");
        body["user"].clone()
    }

    /// Logs in and returns the session ID.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/sessions",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {body}");
        body["sessionID"].as_str().unwrap().to_owned()
    }

    /// Registers and logs in; returns (user id, session ID).
    pub async fn user(&self, username: &str) -> (String, String) {
        let user = self.register(username, "password1").await;
        let session = self.login(username, "password1").await;
        (user["id"].as_str().unwrap().to_owned(), session)
    }

    /// Creates a channel (the session needs manageChannels); returns its id.
    pub async fn create_channel(&self, session: &str, name: &str) -> String {
        let r = self
            .post("/api/channels", Some(session), json!({ "name": name }))
            .await;
        assert_eq!(r.0, 200, "create channel {name}: {}", r.1);
        r.1["channelID"].as_str().unwrap().to_owned()
    }

    /// Posts a message; returns its id.
    pub async fn post_message(&self, session: &str, channel: &str, text: &str) -> String {
        let r = self
            .post(
                "/api/messages",
                Some(session),
                json!({ "channelID": channel, "text": text }),
            )
            .await;
        assert_eq!(r.0, 200, "post: {}", r.1);
        r.1["messageID"].as_str().unwrap().to_owned()
    }

    /// Tries to post a message; returns the raw answer (for refusals).
    pub async fn try_post_message(
        &self,
        session: &str,
        channel: &str,
        text: &str,
    ) -> (StatusCode, Value) {
        self.post(
            "/api/messages",
            Some(session),
            json!({ "channelID": channel, "text": text }),
        )
        .await
    }

    /// A channel's latest messages (oldest first), as the session sees them.
    pub async fn history(&self, session: &str, channel: &str) -> Vec<Value> {
        let (status, v) = self
            .get(&format!("/api/channels/{channel}/messages"), Some(session))
            .await;
        assert_eq!(status, 200, "history: {v}");
        v["messages"].as_array().unwrap().clone()
    }

    /// Creates a role named "r" with these permissions (the session needs manageRoles).
    pub async fn create_role(&self, session: &str, permissions: Value) -> String {
        let r = self
            .post(
                "/api/roles",
                Some(session),
                json!({ "name": "r", "permissions": permissions }),
            )
            .await;
        assert_eq!(r.0, 200, "create role: {}", r.1);
        r.1["roleID"].as_str().unwrap().to_owned()
    }

    /// Gives a user a role (the session needs grantRoles).
    pub async fn give_role(&self, session: &str, user: &str, role: &str) {
        let r = self
            .post(
                &format!("/api/users/{user}/roles"),
                Some(session),
                json!({ "roleID": role }),
            )
            .await;
        assert_eq!(r.0, 200, "give role: {}", r.1);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies without any chance to flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (TERM, INT, HUP).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Sends a signal by name (TERM, INT) and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        self.wait_exit()
    }

    /// How many log lines so far contain `needle`.
    pub fn logged(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (up to 30 s) until `count` log lines contain `needle`.
    pub async fn until_logged(&self, needle: &str, count: usize) {
        for _ in 0..600 {
            if self.logged(needle) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {count} log lines with {needle:?}");
    }

    /// Waits (up to 30 s) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("decentd did not exit within 30 s");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts an API error's code and returns the error object.
pub fn assert_error(response: &(StatusCode, Value), code: &str) -> Value {
    let (status, body) = response;
    assert_eq!(body["error"]["code"], code, "status {status}, body {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(!status.is_success(), "an error must not be 2xx: {status}");
    body["error"].clone()
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame of a socket as JSON, within 10 s (other frames are skipped).
async fn next_text_json(ws: &mut WsStream) -> Value {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("valid frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            return serde_json::from_str(&text).expect("server sends JSON");
        }
    }
}

/// Every text frame of a socket that arrives within `wait`, as JSON, in order.
async fn drain_text_json(ws: &mut WsStream, wait: Duration) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            out.push(serde_json::from_str(&text).expect("server sends JSON"));
        }
    }
    out
}

/// A WebSocket client of the server, optionally authenticated with a session.
pub struct EventSocket {
    ws: WsStream,
}

impl TestServer {
    /// Connects a WebSocket at `/`; with a session, answers the first pingdata with pongdata
    /// and waits until the server has taken it (its user/online, or a round trip).
    pub async fn events(&self, session: Option<&str>) -> EventSocket {
        use futures_util::SinkExt;
        let ws = self
            .websocket(self.ws_url())
            .await
            .expect("websocket connect");
        let mut socket = EventSocket { ws };
        let first = socket.next_json().await;
        assert_eq!(first["evt"], "pingdata");
        if let Some(s) = session {
            socket
                .ws
                .send(tokio_tungstenite::tungstenite::Message::text(
                    json!({"evt": "pongdata", "data": {"sessionID": s}}).to_string(),
                ))
                .await
                .expect("send pongdata");
        }
        // A cheap round trip through the server so the pong is processed before the caller acts.
        let _ = self.get("/api", None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket
    }
}

impl EventSocket {
    /// The next JSON text frame, within 10 s.
    pub async fn next_json(&mut self) -> Value {
        next_text_json(&mut self.ws).await
    }

    /// The next event named `evt` (others are skipped); returns its `data`.
    pub async fn expect(&mut self, evt: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["evt"] == evt {
                return v["data"].clone();
            }
        }
    }

    /// Waits until the server closes the socket or the connection breaks.
    pub async fn next_ended(&mut self) {
        use futures_util::StreamExt;
        while let Some(Ok(frame)) = self.ws.next().await {
            if frame.is_close() {
                return;
            }
        }
    }

    /// Every event that arrives within `wait`, in order, as (evt, data).
    pub async fn drain(&mut self, wait: Duration) -> Vec<(String, Value)> {
        drain_text_json(&mut self.ws, wait)
            .await
            .into_iter()
            .filter(|v| v["evt"] != "pingdata")
            .map(|v| {
                (
                    v["evt"].as_str().unwrap_or("").to_owned(),
                    v["data"].clone(),
                )
            })
            .collect()
    }
}

/// A server with a plugins directory prepared by `setup`, an admin ("root") and a channel:
/// the setting of the plugin tests.
pub struct PluginWorld {
    pub server: TestServer,
    pub admin: String,
    pub channel: String,
    pub plugins: tempfile::TempDir,
}

impl PluginWorld {
    pub async fn spawn(setup: impl FnOnce(&Path)) -> Self {
        Self::spawn_with(setup, &[]).await
    }

    /// `spawn` with extra `decentd serve` arguments.
    pub async fn spawn_with(setup: impl FnOnce(&Path), args: &[&str]) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        setup(plugins.path());
        let dir = plugins.path().to_str().unwrap().to_owned();
        let mut all = vec!["--plugins", &dir, "--admin", "root"];
        all.extend_from_slice(args);
        let server = TestServer::spawn_with(&all).await;
        server.register("root", "password1").await;
        let admin = server.login("root", "password1").await;
        let channel = server.create_channel(&admin, "general").await;
        Self {
            server,
            admin,
            channel,
            plugins,
        }
    }

    /// Posts `text` in the channel as `session`; the raw answer.
    pub async fn post_as(&self, session: &str, text: &str) -> (StatusCode, Value) {
        self.server
            .try_post_message(session, &self.channel, text)
            .await
    }

    /// Posts `text` in the channel as the admin; the raw answer.
    pub async fn post(&self, text: &str) -> (StatusCode, Value) {
        self.post_as(&self.admin, text).await
    }

    /// The channel's messages, oldest first.
    pub async fn history(&self) -> Vec<Value> {
        self.server.history(&self.admin, &self.channel).await
    }

    /// The texts of the channel's messages, oldest first.
    pub async fn texts(&self) -> Vec<String> {
        self.history()
            .await
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `GET /api/plugins/:name` as the admin.
    pub async fn plugin(&self, name: &str) -> Value {
        let (status, v) = self
            .server
            .get(&format!("/api/plugins/{name}"), Some(&self.admin))
            .await;
        assert_eq!(status, 200, "{v}");
        v["plugin"].clone()
    }

    /// `POST /api/plugins/:name/reload` as the admin, which must succeed.
    pub async fn reload(&self, name: &str) {
        let (status, v) = self
            .server
            .post(
                &format!("/api/plugins/{name}/reload"),
                Some(&self.admin),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
}

/// A chatbox bot connected at `/v2/...`.
pub struct BotSocket {
    ws: WsStream,
}

impl TestServer {
    /// Creates a chatbox license for the session's user; returns the key.
    pub async fn license(&self, session: &str, capabilities: &[&str]) -> String {
        let res = self
            .post(
                "/api/licenses",
                Some(session),
                json!({ "capabilities": capabilities }),
            )
            .await;
        assert_eq!(res.0, StatusCode::OK, "{:?}", res.1);
        res.1["key"].as_str().expect("a key").to_owned()
    }

    /// Connects a bot at `/v2/{path}` (no packet read yet).
    pub async fn bot(&self, path: &str) -> BotSocket {
        let ws = self
            .websocket(self.ws_url_of(&format!("/v2/{path}")))
            .await
            .expect("bot connect");
        BotSocket { ws }
    }

    /// Connects a bot with a license key and reads its `hello` (and `players`, if it has
    /// `read`); returns the bot and the hello packet.
    pub async fn bot_ready(&self, key: &str) -> (BotSocket, Value) {
        let mut bot = self.bot(key).await;
        let hello = bot.next().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        if hello["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "read"))
        {
            let players = bot.next().await;
            assert_eq!(players["type"], "players", "{players}");
        }
        (bot, hello)
    }
}

impl BotSocket {
    /// The next packet, within 10 s.
    pub async fn next(&mut self) -> Value {
        next_text_json(&mut self.ws).await
    }

    /// The next packet of `kind` (`"event"` packets are matched by their `event`), skipping
    /// others.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == kind || (v["type"] == "event" && v["event"] == kind) {
                return v;
            }
        }
    }

    pub async fn send(&mut self, packet: Value) {
        self.send_text(&packet.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(
                text.to_owned(),
            ))
            .await
            .expect("send to the server");
    }

    /// Keeps reading for `wait` (answering the server's pings, as a bot's WebSocket library
    /// does while it listens) and returns the packets that came.
    pub async fn listen(&mut self, wait: Duration) -> Vec<Value> {
        drain_text_json(&mut self.ws, wait).await
    }

    /// Sends a packet and returns the answer (`success` or `error`), skipping event packets.
    pub async fn ask(&mut self, packet: Value) -> Value {
        self.send(packet).await;
        loop {
            let v = self.next().await;
            if v["type"] == "success" || v["type"] == "error" {
                return v;
            }
        }
    }

    /// Reads to the end: the `closing` packet (if any, skipping others) and the close frame's
    /// code.
    pub async fn closed(&mut self) -> (Option<Value>, Option<u16>) {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let mut closing = None;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("the server closes within 10 s");
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("server sends JSON");
                    if v["type"] == "closing" {
                        closing = Some(v);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return (closing, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (closing, None),
            }
        }
    }

    /// Whatever packets arrive within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        drain_text_json(&mut self.ws, wait).await
    }
}

/// A WebSocket spoken byte by byte over raw TCP, for clients that break the rules on purpose
/// (oversized frame headers, floods of empty fragments) where a client library would refuse.
pub struct RawSocket {
    read: tokio::net::tcp::OwnedReadHalf,
    write: Option<tokio::net::tcp::OwnedWriteHalf>,
    /// Bytes read after the handshake and not yet parsed into frames.
    pending: Vec<u8>,
}

impl TestServer {
    /// Opens `path` with a hand-written upgrade request and reads the 101 answer.
    pub async fn raw_ws(&self, path: &str) -> RawSocket {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            self.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (read, write) = tcp.into_split();
        RawSocket {
            read,
            write: Some(write),
            pending: buf[end..].to_vec(),
        }
    }
}

/// A masked client frame (mask 0x01020304).
pub fn raw_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![first_byte];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl RawSocket {
    /// Writes bytes; false once the server has closed the connection.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        let write = self.write.as_mut().expect("the writing half was taken");
        write.write_all(bytes).await.is_ok()
    }

    /// Writes `bytes` in a task of its own, so that reading goes on while it writes; the task
    /// answers how many bytes went out before the server closed the connection.
    pub fn write_in_background(&mut self, bytes: Vec<u8>) -> tokio::task::JoinHandle<usize> {
        use tokio::io::AsyncWriteExt;
        let mut write = self.write.take().expect("the writing half was taken");
        tokio::spawn(async move {
            let mut sent = 0;
            for chunk in bytes.chunks(64 * 1024) {
                if write.write_all(chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    }

    /// Reads server frames until a close frame (or the end of the stream, within 10 s);
    /// returns the close code, if a close frame came.
    pub async fn close_code(&mut self) -> Option<u16> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Server frames are unmasked: opcode byte, length, payload.
            while self.pending.len() >= 2 {
                let (len, start) = match self.pending[1] & 0x7f {
                    126 if self.pending.len() >= 4 => (
                        u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize,
                        4,
                    ),
                    127 if self.pending.len() >= 10 => (
                        u64::from_be_bytes(self.pending[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if self.pending.len() < start + len {
                    break;
                }
                let frame: Vec<u8> = self.pending.drain(..start + len).collect();
                if frame[0] & 0x0f == 0x8 {
                    return (len >= 2)
                        .then(|| u16::from_be_bytes([frame[start], frame[start + 1]]));
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.read.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&chunk[..n]),
                Ok(_) => return None,
                Err(_) => panic!("no close frame within 10 s"),
            }
        }
    }
}

/// The resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A raw client of the SignalR hub at `/hub`: JSON hub protocol records over a WebSocket.
pub struct HubSocket {
    ws: WsStream,
    /// Records received and not yet read.
    records: std::collections::VecDeque<Value>,
}

/// The record separator of the SignalR JSON hub protocol.
pub const RS: char = '\u{1e}';

impl TestServer {
    /// Opens a WebSocket at `/hub{query}` with extra request headers (no handshake sent);
    /// the HTTP status of a refused upgrade.
    pub async fn hub_socket(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<HubSocket, reqwest::StatusCode> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Error;
        let mut request = self
            .ws_url_of(&format!("/hub{query}"))
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().append(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match self.websocket(request).await {
            Ok(ws) => Ok(HubSocket {
                ws,
                records: Default::default(),
            }),
            Err(Error::Http(response)) => {
                Err(reqwest::StatusCode::from_u16(response.status().as_u16()).unwrap())
            }
            Err(e) => panic!("hub connect: {e}"),
        }
    }

    /// A hub connection with the session as `access_token` (or a guest), past its handshake.
    pub async fn hub(&self, session: Option<&str>) -> HubSocket {
        let query = session.map_or(String::new(), |s| format!("?access_token={s}"));
        let mut hub = self.hub_socket(&query, &[]).await.expect("hub upgrade");
        hub.handshake().await;
        hub
    }
}

impl HubSocket {
    /// Sends text as it is (records must carry their separators).
    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(
                text.to_owned(),
            ))
            .await
            .expect("send to the hub");
    }

    /// Sends bytes as a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::binary(bytes))
            .await
            .expect("send to the hub");
    }

    /// Sends one message as a record.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&format!("{message}{RS}")).await;
    }

    /// Sends the JSON protocol's handshake and expects the empty response.
    pub async fn handshake(&mut self) {
        self.send(json!({"protocol": "json", "version": 1})).await;
        assert_eq!(self.next().await, json!({}), "handshake response");
    }

    /// The next record, within 10 s; None when the hub closed the connection.
    pub async fn try_next(&mut self) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            if let Some(record) = self.records.pop_front() {
                return Some(record);
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s");
            let text = match frame {
                Some(Ok(Message::Text(text))) => text.to_string(),
                Some(Ok(Message::Binary(bytes))) => String::from_utf8(bytes.to_vec()).unwrap(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            };
            assert!(
                text.ends_with(RS),
                "records end with the separator: {text:?}"
            );
            for record in text.split_terminator(RS) {
                self.records
                    .push_back(serde_json::from_str(record).expect("records are JSON"));
            }
        }
    }

    pub async fn next(&mut self) -> Value {
        self.try_next()
            .await
            .expect("the hub closed the connection")
    }

    /// The arguments of the next invocation of `target` (other records are skipped).
    pub async fn expect(&mut self, target: &str) -> Vec<Value> {
        loop {
            let record = self.next().await;
            if record["type"] == 1 && record["target"] == target {
                return record["arguments"].as_array().unwrap().clone();
            }
        }
    }

    /// The data of the next `ReceiveEvent` invocation for event `name`.
    pub async fn expect_event(&mut self, name: &str) -> Value {
        loop {
            let arguments = self.expect("ReceiveEvent").await;
            if arguments[0] == name {
                return arguments[1].clone();
            }
        }
    }

    /// Invokes a hub method and returns its completion (invocations and pings are skipped).
    pub async fn invoke(&mut self, id: &str, target: &str, arguments: Value) -> Value {
        self.invoke_collect(id, target, arguments).await.1
    }

    /// Invokes a hub method; the records that came before its completion, and the completion.
    pub async fn invoke_collect(
        &mut self,
        id: &str,
        target: &str,
        arguments: Value,
    ) -> (Vec<Value>, Value) {
        self.send(json!({"type": 1, "invocationId": id, "target": target, "arguments": arguments}))
            .await;
        let mut before = Vec::new();
        loop {
            let record = self.next().await;
            if record["type"] == 3 {
                assert_eq!(record["invocationId"], id, "{record}");
                return (before, record);
            }
            before.push(record);
        }
    }

    /// Reads until the hub closes; the Close message it sent first, if any.
    pub async fn close_message(&mut self) -> Option<Value> {
        let mut close = None;
        while let Some(record) = self.try_next().await {
            if record["type"] == 7 {
                close = Some(record);
            }
        }
        close
    }
}

impl TestServer {
    /// The address the metrics server (`--metrics-listen 127.0.0.1:0`) logged.
    pub async fn metrics_addr(&self) -> String {
        for _ in 0..100 {
            let found = self.logs.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == "metrics listening")
                    .then(|| v["addr"].as_str().unwrap().to_owned())
            });
            if let Some(addr) = found {
                return addr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the metrics server did not start");
    }

    /// A scrape of `/metrics` (the server runs with `--metrics-listen 127.0.0.1:0`), checked
    /// to be the OpenMetrics text format.
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr().await;
        let response = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let text = response.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        text
    }
}

/// The value of one series (`name{labels}`) in a metrics scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A tiny but complete PNG (1x1, transparent).
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

impl TestServer {
    /// A TCP connection to the server with a tiny receive buffer, for a client that stops
    /// reading (complete a WebSocket handshake over it, then never read).
    pub async fn stalled_connection(&self) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(self.addr).await.unwrap()
    }

    /// Whether the server has closed a socket for falling behind.
    pub fn dropped_a_slow_socket(&self) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("send queue is full") || l.contains("writes stalled"))
    }
}

impl TestServer {
    /// `POST /api/upload-image` with one file part (the declared name and type as given);
    /// the status and the answer (JSON, or its text).
    pub async fn upload(
        &self,
        session: Option<&str>,
        file_name: &str,
        mime: &str,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        use reqwest::multipart::{Form, Part};
        let part = Part::bytes(bytes.to_vec())
            .file_name(file_name.to_owned())
            .mime_str(mime)
            .unwrap();
        let mut req = self
            .client
            .post(self.url("/api/upload-image"))
            .multipart(Form::new().part("image", part));
        if let Some(s) = session {
            req = req.header("X-Session-ID", s);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn example_dist(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/dist")
        .join(name);
    assert!(
        dir.join("plugin.wasm").is_file(),
        "{} is missing: run plugins/build.sh first",
        dir.display()
    );
    dir
}

/// Copies a built example plugin (`plugins/dist/NAME`) into `plugins`, replacing its `[config]` table when given.
pub fn install_example(plugins: &Path, name: &str, config: Option<&str>) {
    let to = plugins.join(name);
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(
        example_dist(name).join("plugin.wasm"),
        to.join("plugin.wasm"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(example_dist(name).join("plugin.toml")).unwrap();
    let mut manifest: toml::Table = manifest.parse().expect("the example's plugin.toml");
    // The examples' behaviour is under test here, not their deadlines (plugin_sandbox tests
    // those): a 5 ms hook or a 100 ms command deadline is missed, and the call given up, when
    // tests of every area share two busy cores. Generous ones here.
    let limits = manifest
        .entry("limits")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .expect("[limits] is a table");
    limits.insert("hook-ms".into(), 250.into());
    limits.insert("event-ms".into(), 2000.into());
    if let Some(config) = config {
        manifest.insert(
            "config".into(),
            config.parse::<toml::Table>().expect("config").into(),
        );
    }
    let manifest = toml::to_string(&manifest).unwrap();
    std::fs::write(to.join("plugin.toml"), manifest).unwrap();
}
