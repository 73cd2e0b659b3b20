//! Visibility benchmark: the cost of telling every connected socket which channels it gained
//! or lost. Starts the release `decentd` (the `members` preset: only logged-in users read),
//! registers `VISIBILITY_USERS` users (default 5,000), connects one logged-in WebSocket at `/`
//! for each (answering pingdata), then changes one channel override on `_user` that hides a
//! channel from all of them, and back. For each change it reports the time from the request to
//! its answer, the time until every socket had its `channel/delete` (or `channel/new`), p50
//! and p99 over the sockets, how many got it, and the server CPU (user + system, from
//! `/proc/PID/stat`) spent from the request until the last socket had it.
//!
//! Run: `cargo bench --bench visibility` (env: VISIBILITY_USERS, VISIBILITY_ROUNDS). Needs
//! `ulimit -n` above twice the socket count (the harness raises its own soft limit). Under
//! `cargo test` it only prints how to run it.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::{env_or, percentile, post_json, start_server};

/// Server CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// What the sockets heard of one change: when each socket got the awaited event.
#[derive(Default)]
struct Heard {
    /// The event name awaited now, and since when.
    awaited: Mutex<Option<(&'static str, Instant)>>,
    /// Arrival times (since the change) of the awaited event, one per socket.
    arrivals: Mutex<Vec<f64>>,
    count: AtomicUsize,
}

async fn socket_task(addr: String, session: String, heard: Arc<Heard>, ready: Arc<AtomicUsize>) {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    let pong = json!({"evt": "pongdata", "data": {"sessionID": session}}).to_string();
    let mut bound = false;
    while let Some(Ok(frame)) = rx.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let evt = v["evt"].as_str().unwrap_or_default();
        if evt == "pingdata" {
            let _ = tx.send(Message::text(pong.clone())).await;
            continue;
        }
        // The first channel/new is the login's: from then on the socket is bound.
        if !bound && evt == "channel/new" {
            bound = true;
            ready.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let awaited = *heard.awaited.lock().unwrap();
        if let Some((name, since)) = awaited {
            if evt == name {
                heard
                    .arrivals
                    .lock()
                    .unwrap()
                    .push(since.elapsed().as_secs_f64() * 1000.0);
                heard.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("visibility benchmark: run it with `cargo bench --bench visibility` (VISIBILITY_USERS=5000)");
        return;
    }
    let users = env_or("VISIBILITY_USERS", 5000) as usize;
    let rounds = env_or("VISIBILITY_ROUNDS", 3).max(1);
    let _ = rlimit::increase_nofile_limit((users * 2 + 1024) as u64);
    let max = (users + 100).to_string();
    let server = start_server(&[
        "--admin",
        "bench",
        "--read-access",
        "members",
        "--scrypt-log-n",
        "1",
        "--max-websockets",
        &max,
    ]);
    let pid = server.child.id();
    let addr = server.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let http = reqwest::Client::new();
        let url = |p: &str| format!("http://{addr}{p}");
        let creds = json!({"username": "bench", "password": "benchmark-password"});
        post_json(&http, url("/api/users"), None, creds.clone()).await;
        let admin = post_json(&http, url("/api/sessions"), None, creds).await["sessionID"]
            .as_str()
            .unwrap()
            .to_owned();
        let channel = post_json(&http, url("/api/channels"), Some(&admin), json!({"name": "general"}))
            .await["channelID"]
            .as_str()
            .unwrap()
            .to_owned();

        let started = Instant::now();
        let sessions: Vec<String> = futures_util::stream::iter(0..users)
            .map(|i| {
                let http = http.clone();
                let (register, login) = (url("/api/users"), url("/api/sessions"));
                async move {
                    let creds = json!({"username": format!("user{i}"), "password": "password1"});
                    post_json(&http, register, None, creds.clone()).await;
                    post_json(&http, login, None, creds).await["sessionID"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        println!("{users} users registered and logged in in {:.1} s", started.elapsed().as_secs_f64());

        let heard = Arc::new(Heard::default());
        let ready = Arc::new(AtomicUsize::new(0));
        for session in sessions {
            tokio::spawn(socket_task(addr.clone(), session, heard.clone(), ready.clone()));
        }
        let waiting = Instant::now();
        while ready.load(Ordering::Relaxed) < users && waiting.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{} of {users} sockets logged in (each told of its channel) in {:.1} s; server RSS {} KiB",
            ready.load(Ordering::Relaxed),
            waiting.elapsed().as_secs_f64(),
            support::status_kib(pid, "VmRSS:")
        );

        let overrides = url(&format!("/api/channels/{channel}/role-permissions"));
        // Hidden from users but not from the Admin role: the administrator shows it again.
        let roles: Value = http.get(url("/api/roles")).send().await.expect("roles").json().await.expect("json");
        let admin_role = roles["roles"][0]["id"].as_str().expect("the Admin role").to_owned();
        let ticks_per_s = 100.0; // USER_HZ on Linux
        for round in 1..=rounds {
            for (what, event, body) in [
                ("hide", "channel/delete", json!({"rolePermissions": {
                    "_user": {"readMessages": false},
                    (admin_role.as_str()): {"readMessages": true}
                }})),
                ("show", "channel/new", json!({"rolePermissions": {"_user": {}}})),
            ] {
                heard.arrivals.lock().unwrap().clear();
                heard.count.store(0, Ordering::Relaxed);
                let cpu_before = cpu_ticks(pid);
                let since = Instant::now();
                *heard.awaited.lock().unwrap() = Some((event, since));
                let answer = http
                    .patch(&overrides)
                    .header("X-Session-ID", &admin)
                    .json(&body)
                    .send()
                    .await
                    .expect("PATCH");
                let status = answer.status();
                assert!(status.is_success(), "{what}: {status} {}", answer.text().await.unwrap_or_default());
                let answered_ms = since.elapsed().as_secs_f64() * 1000.0;
                while heard.count.load(Ordering::Relaxed) < users && since.elapsed() < Duration::from_secs(30) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let cpu_ms = (cpu_ticks(pid) - cpu_before) as f64 * 1000.0 / ticks_per_s;
                let mut arrivals = heard.arrivals.lock().unwrap().clone();
                arrivals.sort_by(f64::total_cmp);
                let (p50, p99, last) = if arrivals.is_empty() {
                    (f64::NAN, f64::NAN, f64::NAN)
                } else {
                    (percentile(&arrivals, 0.5), percentile(&arrivals, 0.99), arrivals[arrivals.len() - 1])
                };
                println!(
                    "round {round} {what}: answer {answered_ms:.1} ms; {event} on {} of {users} sockets, p50 {p50:.1} ms, p99 {p99:.1} ms, last {last:.1} ms; server CPU {cpu_ms:.0} ms",
                    arrivals.len()
                );
                *heard.awaited.lock().unwrap() = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
}
