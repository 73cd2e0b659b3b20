//! Shared by the benchmark harnesses: start the release binary, seed data, drive wrk, read RSS.
//! Each harness uses part of it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `decentd` on loopback with its own temporary data directory.
pub struct Server {
    pub child: Child,
    /// The server's latest `memory` report (allocator counters), when it has made one.
    pub memory: std::sync::Arc<std::sync::Mutex<Option<Value>>>,
    pub addr: String,
    pub data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Stops the server with SIGTERM (a clean exit, so exit-time reports get printed).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `decentd serve` on port 0 with `args`; warnings and errors go to stderr.
pub fn start_server(args: &[&str]) -> Server {
    start_server_in(tempfile::tempdir().expect("temp dir"), args)
}

/// Stops `old` and starts the server again on its data directory with `args`.
pub fn restart_server(old: Server, args: &[&str]) -> Server {
    start_server_in(stop_keeping_data(old), args)
}

/// Stops a server and keeps its temporary directory (the data directory is `data` in it),
/// for offline work before `start_server_in`.
pub fn stop_keeping_data(mut old: Server) -> tempfile::TempDir {
    old.stop();
    std::mem::replace(&mut old._tmp, tempfile::tempdir().expect("temp dir"))
}

/// The server binary: this build's, or `DECENTD_BENCH_BIN` (to measure another build, e.g. the
/// commit before a change, with the same harness in the same session).
pub fn server_binary() -> std::path::PathBuf {
    std::env::var_os("DECENTD_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_decentd").into())
}

/// Starts the server on the data directory in `tmp`.
pub fn start_server_in(tmp: tempfile::TempDir, args: &[&str]) -> Server {
    let data = tmp.path().join("data");
    let mut child = Command::new(server_binary())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--log-format",
            "json",
            "--log",
            "warn,decentd::startup=info,decentd::memory=debug",
        ])
        // Guests read, as on the reference server: the benchmarks' listeners are guests
        // (unless a benchmark chooses a preset).
        .args(if args.contains(&"--read-access") {
            &[][..]
        } else {
            &["--read-access", "public"][..]
        })
        // Load comes from one address: no rate limits unless a benchmark sets them.
        .args(
            [
                "--rate-limit",
                "--session-rate-limit",
                "--login-rate-limit",
                "--upload-rate-limit",
            ]
            .iter()
            .filter(|flag| !args.contains(flag))
            .flat_map(|flag| [*flag, "0"]),
        )
        .args(args)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start decentd");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let memory = std::sync::Arc::new(std::sync::Mutex::new(None));
    let latest = memory.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                } else if v["message"] == "memory" {
                    *latest.lock().unwrap() = Some(v);
                } else if v["level"] == "WARN" || v["level"] == "ERROR" {
                    eprintln!("server: {line}");
                }
            } else {
                // Not a log line: e.g. the allocator's statistics
                // (`_RJEM_MALLOC_CONF=stats_print:true` prints them at exit).
                eprintln!("server: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("decentd did not start");
    Server {
        child,
        memory,
        addr,
        data,
        _tmp: tmp,
    }
}

/// A numeric setting from the environment.
pub fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/PID/status` memory field (`VmRSS:`, `VmHWM:`) in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Registers and logs in the admin, creates a channel and posts 50 messages.
pub fn seed(addr: &str) -> (String, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let url = |p: &str| format!("http://{addr}{p}");
        let call = |method: reqwest::Method, path: &str, session: Option<&str>, body: Value| {
            let mut req = http.request(method, url(path)).json(&body);
            if let Some(s) = session {
                req = req.header("X-Session-ID", s);
            }
            async move {
                let res = req.send().await.expect("request");
                let v: Value = res.json().await.expect("json");
                assert!(v.get("error").is_none(), "{v}");
                v
            }
        };
        let creds = json!({"username": "bench", "password": "benchmark-password"});
        call(reqwest::Method::POST, "/api/users", None, creds.clone()).await;
        let session = call(reqwest::Method::POST, "/api/sessions", None, creds).await["sessionID"]
            .as_str()
            .unwrap()
            .to_owned();
        let channel = call(
            reqwest::Method::POST,
            "/api/channels",
            Some(&session),
            json!({"name": "general"}),
        )
        .await["channelID"]
            .as_str()
            .unwrap()
            .to_owned();
        for i in 0..50 {
            call(
                reqwest::Method::POST,
                "/api/messages",
                Some(&session),
                json!({"channelID": channel, "text": format!("seed message number {i}, of a typical length")}),
            )
            .await;
        }
        (session, channel)
    })
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
}

fn duration_ms(text: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

pub fn parse_wrk(out: &str) -> Run {
    let mut run = Run {
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        requests: 0,
        errors: 0,
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.rps = n.parse().unwrap_or(0.0),
            ["50%", d] => run.p50_ms = duration_ms(d).unwrap_or(0.0),
            ["99%", d] => run.p99_ms = duration_ms(d).unwrap_or(0.0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", ..] => {
                run.errors += words
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    run
}

pub fn wrk(script: &Path, url: &str, seconds: u64) -> Run {
    let connections = env_or("LOAD_CONNECTIONS", 64).to_string();
    let threads = env_or("LOAD_THREADS", 2).to_string();
    let out = Command::new("wrk")
        .args(["-t", &threads, "-c", &connections, "-d"])
        .arg(format!("{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let run = parse_wrk(&text);
    assert!(run.rps > 0.0, "wrk produced no figures:\n{text}");
    run
}

/// The value at fraction `p` (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// POSTs JSON (with a session, if given) and returns the answer, which must not be an error.
pub async fn post_json(
    http: &reqwest::Client,
    url: String,
    session: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http.post(url).json(&body);
    if let Some(s) = session {
        req = req.header("X-Session-ID", s);
    }
    let v: Value = req
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(v.get("error").is_none(), "{v}");
    v
}
