//! What an adversary or a bad day does to the server: writes are fsynced before their answer
//! (checked under strace), a full disk refuses writes cleanly and recovers by itself, and HTTP
//! clients that stop sending or stop reading are cut off.

use crate::common;

use common::{assert_error, TestServer};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `strace` attached to a running server, writing the calls that matter to a file.
struct Tracer {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Tracer {
    fn attach(pid: u32, out: &Path) -> Self {
        let mut child = Command::new("strace")
            .args(["-f", "-yy", "-s", "48", "-o"])
            .arg(out)
            .args([
                "-e",
                "trace=read,recvfrom,recvmsg,write,writev,sendto,sendmsg,fsync,fdatasync,sync_file_range",
                "-p",
                &pid.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace is installed (apt-get install strace; .ci/run does it)");
        // strace says "Process N attached" for each thread it has attached to.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("attached") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("strace attached to the server");
        std::thread::sleep(Duration::from_millis(500));
        Self {
            child,
            out: out.to_owned(),
        }
    }

    /// Detaches and returns the trace.
    fn finish(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).unwrap()
    }
}

/// Checks a trace: every answer to a request that is not a GET follows a completed fsync or
/// fdatasync of the database file made after the request was read. Returns the number of
/// write answers checked.
fn check_fsync_before_answers(trace: &str) -> Result<usize, String> {
    // Per thread: a sync of the database file that has started but not returned yet.
    let mut pending: HashMap<&str, bool> = HashMap::new();
    // Per connection: the method of the request being answered, and whether the database
    // file was synced since it was read.
    let mut open: HashMap<String, (String, bool)> = HashMap::new();
    let mut checked = 0;
    let syncs = ["fsync(", "fdatasync("];
    for line in trace.lines() {
        let (pid, call) = line.split_once(' ').unwrap_or(("", line));
        let call = call.trim_start();
        let completed_sync = if syncs.iter().any(|s| call.starts_with(s)) {
            let on_db = call.contains("/db/db>");
            if call.ends_with("<unfinished ...>") {
                pending.insert(pid, on_db);
                false
            } else {
                on_db && call.ends_with("= 0")
            }
        } else if call.starts_with("<... fsync resumed>")
            || call.starts_with("<... fdatasync resumed>")
        {
            pending.remove(pid).unwrap_or(false) && call.ends_with("= 0")
        } else {
            false
        };
        if completed_sync {
            for (_, synced) in open.values_mut() {
                *synced = true;
            }
            continue;
        }
        // A socket call: `name(fd<TCP:[local->peer]>, "data"...`.
        let Some(start) = call.find("<TCP") else {
            continue;
        };
        let Some(end) = call[start..].find(">,") else {
            continue;
        };
        let conn = call[start..start + end].to_owned();
        let data = call[start + end..]
            .trim_start_matches(">, ")
            .trim_start_matches('"');
        let is_read = call.starts_with("read(") || call.starts_with("recv");
        if is_read {
            if let Some(method) = ["POST ", "PATCH ", "PUT ", "DELETE ", "GET "]
                .iter()
                .find(|m| data.starts_with(*m))
            {
                open.insert(conn, (method.trim().to_owned(), false));
            }
        } else if data.starts_with("HTTP/1.1 2") {
            if let Some((method, synced)) = open.remove(&conn) {
                if method != "GET" {
                    if !synced {
                        return Err(format!(
                            "a {method} was answered with no fsync of the database file since \
                             it was read: {line}"
                        ));
                    }
                    checked += 1;
                }
            }
        }
    }
    Ok(checked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_endpoint_answers_after_an_fsync_of_the_database_file() {
    let server = TestServer::spawn_with(&["--admin", "root", "--workers", "1"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let tracer = Tracer::attach(server.pid(), &tmp.path().join("trace"));

    let root = server.register("root", "password1").await;
    let session = server.login("root", "password1").await;
    let channel = server.create_channel(&session, "general").await;
    let message = server.post_message(&session, &channel, "hello @root").await;
    let patched = [
        (
            format!("/api/messages/{message}"),
            json!({"text": "edited"}),
        ),
        ("/api/settings".to_owned(), json!({"name": "Traced"})),
        (
            format!("/api/channels/{channel}"),
            json!({"name": "renamed"}),
        ),
    ];
    for (path, body) in patched {
        let r = server.patch(&path, Some(&session), body).await;
        assert_eq!(r.0, 200, "PATCH {path}: {}", r.1);
    }
    let role = server
        .create_role(&session, json!({"readMessages": true}))
        .await;
    let posts = [
        (
            format!("/api/channels/{channel}/pins"),
            json!({"messageID": message}),
        ),
        (format!("/api/channels/{channel}/mark-read"), json!({})),
        (
            "/api/emotes".to_owned(),
            json!({"shortcode": "wave", "imageURL": "/uploads/x.png"}),
        ),
        (
            format!("/api/users/{}/roles", root["id"].as_str().unwrap()),
            json!({"roleID": role}),
        ),
        ("/api/licenses".to_owned(), json!({})),
    ];
    for (path, body) in posts {
        let r = server.post(&path, Some(&session), body).await;
        assert_eq!(r.0, 200, "POST {path}: {}", r.1);
    }
    for path in [
        format!("/api/channels/{channel}/pins/{message}"),
        format!("/api/messages/{message}"),
        "/api/emotes/wave".to_owned(),
        format!("/api/roles/{role}"),
        format!("/api/channels/{channel}"),
    ] {
        let r = server.delete(&path, Some(&session)).await;
        assert_eq!(r.0, 200, "DELETE {path}: {}", r.1);
    }

    let trace = tracer.finish();
    match check_fsync_before_answers(&trace) {
        Ok(checked) => assert!(
            checked >= 15,
            "only {checked} write answers seen in the trace"
        ),
        Err(problem) => panic!("{problem}"),
    }
}

/// A tmpfs of `mib` MiB mounted at `dir` for the test's life (needs root; CI runs as root).
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, mib: u32) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs failed: this test needs root (CI runs as root)"
        );
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Fills the disk with a file until the kernel says it is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&chunk[..1024]);
        let _ = file.write_all(&chunk[..1]);
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_cleanly_keeps_reads_and_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("disk"), 20);
    let data = disk.dir.join("data");
    let args = [
        "--admin",
        "root",
        "--min-free-space",
        "4",
        "--cache-mb",
        "4",
    ];
    let mut server = TestServer::spawn_on(&data, &args).await;
    server.register("root", "password1").await;
    let session = server.login("root", "password1").await;
    let channel = server.create_channel(&session, "general").await;
    for i in 0..5 {
        server
            .post_message(&session, &channel, &format!("before {i}"))
            .await;
    }

    let filler = disk.fill();
    // The guard trusts a reading of the free space for 100 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        let r = server
            .try_post_message(&session, &channel, &format!("refused {i}"))
            .await;
        assert_eq!(r.0, 507, "{:?}", r.1);
        assert_error(&r, "FAILED");
    }
    let r = server
        .post("/api/channels", Some(&session), json!({"name": "nope"}))
        .await;
    assert_eq!(r.0, 507, "{:?}", r.1);
    // Reads keep working.
    let (status, channels) = server.get("/api/channels", Some(&session)).await;
    assert_eq!(status, 200, "{channels}");
    assert_eq!(channels["channels"].as_array().unwrap().len(), 1);
    assert_eq!(server.history(&session, &channel).await.len(), 5);
    let warnings = |server: &TestServer| {
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("disk is nearly full"))
            .count()
    };
    assert_eq!(warnings(&server), 1, "one warning, not one per request");
    // Alive, but not ready.
    assert_eq!(server.get("/healthz", None).await.0, 200);
    let (status, ready) = server.get("/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["checks"]["storage"]
        .as_str()
        .unwrap()
        .contains("nearly full"));

    // Space returns: writes resume without a restart.
    std::fs::remove_file(filler).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.post_message(&session, &channel, "after").await;
    assert_eq!(server.get("/readyz", None).await.0, 200);

    // While full again, a stop is clean.
    let filler = disk.fill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = server
        .try_post_message(&session, &channel, "refused again")
        .await;
    assert_eq!(r.0, 507, "{:?}", r.1);
    assert!(
        server.signal_and_wait("TERM").success(),
        "exit 0 on a full disk"
    );
    std::fs::remove_file(filler).unwrap();

    // Nothing refused was stored.
    let server = TestServer::spawn_on(&data, &args).await;
    let session = server.login("root", "password1").await;
    let texts: Vec<String> = server
        .history(&session, &channel)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["before 0", "before 1", "before 2", "before 3", "before 4", "after"]
    );
    let (_, channels) = server.get("/api/channels", Some(&session)).await;
    assert_eq!(channels["channels"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_request_body_that_never_arrives_is_answered_408() {
    let server = TestServer::spawn_with(&["--http-body-timeout", "1"]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_responses_are_dropped() {
    let server = TestServer::spawn_with(&[
        "--admin",
        "root",
        "--http-write-timeout",
        "2",
        "--tcp-send-buffer",
        "8",
    ])
    .await;
    let (_, session) = server.user("root").await;
    let channel = server.create_channel(&session, "big").await;
    let filler = "x".repeat(9_000);
    for i in 0..50 {
        server
            .post_message(&session, &channel, &format!("{i} {filler}"))
            .await;
    }
    // Clients with tiny receive buffers pipeline history requests and never read.
    let request = format!(
        "GET /api/channels/{channel}/messages HTTP/1.1\r\nHost: x\r\nX-Session-ID: {session}\r\n\r\n"
    );
    let mut clients = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut tcp = socket.connect(server.addr).await.unwrap();
        tcp.write_all(request.repeat(8).as_bytes()).await.unwrap();
        clients.push(tcp);
    }
    let (_, history) = server
        .get(&format!("/api/channels/{channel}/messages"), Some(&session))
        .await;
    let response_bytes = history.to_string().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = common::rss_bytes(server.pid());
    // After the write timeout the server has let go: each connection ends after what the
    // kernel had already taken.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, mut tcp) in clients.into_iter().enumerate() {
        let mut sink = vec![0u8; 64 * 1024];
        let mut received = 0;
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "client {i} was never dropped");
        assert!(
            received < response_bytes,
            "client {i} still got {received} bytes: the server kept its responses"
        );
    }
    let after = common::rss_bytes(server.pid());
    eprintln!("RSS with 20 stalled readers: {held} bytes; after the timeout: {after} bytes");
    // The server still answers.
    let (status, _) = server.get("/api", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_crash_right_after_a_user_delete_leaves_none_of_their_records() {
    let mut server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let (victim, session) = server.user("victim").await;
    server.license(&session, &["read"]).await;
    server.license(&session, &["read"]).await;
    let r = server
        .delete(&format!("/api/users/{victim}"), Some(&root))
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    server.kill();
    let store = decentd::store::Store::open(&server.data, 1 << 20).unwrap();
    let id: u64 = victim.parse().unwrap();
    assert!(store.user(id).unwrap().is_none());
    assert!(
        store.licenses_of(id).unwrap().is_empty(),
        "licenses outlived their owner"
    );
}

#[tokio::test]
async fn uploads_a_crash_interrupted_are_removed_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let uploads = data.join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::write(uploads.join(".incoming-0123abcd"), b"half an image").unwrap();
    std::fs::write(uploads.join("kept.png"), b"a finished image").unwrap();
    let _server = TestServer::spawn_on(&data, &[]).await;
    assert!(!uploads.join(".incoming-0123abcd").exists());
    assert!(uploads.join("kept.png").exists());
}

#[tokio::test]
async fn malformed_requests_are_counted_not_logged_one_error_each() {
    let server = TestServer::spawn().await;
    for _ in 0..30 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        assert!(answer.starts_with(b"HTTP/1.1 400"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let errors: Vec<String> = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"ERROR\""))
        .cloned()
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn an_emote_url_with_a_backslash_is_refused() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let r = server
        .post(
            "/api/emotes",
            Some(&root),
            json!({"shortcode": "evil", "imageURL": "/\\evil.example.com"}),
        )
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
}
