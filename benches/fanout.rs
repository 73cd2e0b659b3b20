//! WebSocket fan-out benchmark: starts the release `decentd` on loopback, connects N logged-in
//! sockets (they answer every pingdata), posts messages at a fixed rate over HTTP, and measures
//! for each message the time from the start of its POST to its delivery on the last socket
//! (p50/p99 over messages), the messages lost (deliveries missing on any socket), and the
//! server's RSS per idle socket.
//!
//! Run: `cargo bench --bench fanout` (env: FANOUT_SOCKETS, default "1000,10000";
//! FANOUT_RATE messages/s, default 10; FANOUT_SECONDS, default 20). Under `cargo test` it only
//! prints how to run it. Needs `ulimit -n` above the socket count (client and server each hold
//! one descriptor per socket).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::{env_or, start_server};

/// Users the sockets are spread over (each user's sockets share one session).
const USERS: usize = 100;

/// Per-message delivery bookkeeping shared by every socket.
struct Deliveries {
    start: Instant,
    /// Latest delivery of each message, in µs since `start`.
    latest_us: Vec<AtomicU64>,
    count: Vec<AtomicUsize>,
}

/// The sequence number of a `message/new` frame for a benchmark message (`"text":"seq N"`).
fn seq_of(frame: &str) -> Option<usize> {
    if !frame.starts_with(r#"{"data":{"message""#) && !frame.contains(r#""evt":"message/new""#) {
        return None;
    }
    let at = frame.find(r#""text":"seq "#)? + r#""text":"seq "#.len();
    let digits: String = frame[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn socket_task(url: String, session: String, deliveries: Arc<Deliveries>) {
    let (ws, _) = match tokio_tungstenite::connect_async(&url).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("connect failed: {e}");
            return;
        }
    };
    let (mut tx, mut rx) = ws.split();
    let pong = json!({"evt": "pongdata", "data": {"sessionID": session}}).to_string();
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Text(text) = msg else { continue };
        if text.as_str() == r#"{"evt":"pingdata"}"# {
            if tx.send(Message::text(pong.clone())).await.is_err() {
                return;
            }
        } else if let Some(seq) = seq_of(&text) {
            if let (Some(latest), Some(count)) =
                (deliveries.latest_us.get(seq), deliveries.count.get(seq))
            {
                latest.fetch_max(
                    deliveries.start.elapsed().as_micros() as u64,
                    Ordering::Relaxed,
                );
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn call(http: &reqwest::Client, url: String, session: Option<&str>, body: Value) -> Value {
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

async fn run(sockets: usize, rate: u64, seconds: u64) {
    // Cheap password hashing: the benchmark registers many users; it measures fan-out.
    let max = (sockets + 100).to_string();
    let server = start_server(&[
        "--admin",
        "user0",
        "--scrypt-log-n",
        "10",
        "--max-websockets",
        &max,
    ]);
    let pid = server.child.id();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let mut sessions = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let creds = json!({"username": format!("user{i}"), "password": "benchmark-password"});
        call(&http, format!("{base}/api/users"), None, creds.clone()).await;
        let s = call(&http, format!("{base}/api/sessions"), None, creds).await;
        sessions.push(s["sessionID"].as_str().unwrap().to_owned());
    }
    let channel = call(
        &http,
        format!("{base}/api/channels"),
        Some(&sessions[0]),
        json!({"name": "general"}),
    )
    .await["channelID"]
        .as_str()
        .unwrap()
        .to_owned();

    let messages = (rate * seconds) as usize;
    let deliveries = Arc::new(Deliveries {
        start: Instant::now(),
        latest_us: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        count: (0..messages).map(|_| AtomicUsize::new(0)).collect(),
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = support::status_kib(pid, "VmRSS:");
    let url = format!("ws://{}/", server.addr);
    for chunk in (0..sockets).collect::<Vec<_>>().chunks(200) {
        for i in chunk {
            tokio::spawn(socket_task(
                url.clone(),
                sessions[i % USERS].clone(),
                deliveries.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait until every socket is connected and has ponged (all users online), then idle.
    for _ in 0..600 {
        let users: Value = http
            .get(format!("{base}/api/users"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let online = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["online"] == true)
            .count();
        if online == USERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = support::status_kib(pid, "VmRSS:");

    let mut sent_us = vec![0u64; messages];
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for (seq, sent) in sent_us.iter_mut().enumerate() {
        ticker.tick().await;
        *sent = deliveries.start.elapsed().as_micros() as u64;
        let body = json!({"channelID": channel, "text": format!("seq {seq}")});
        let http = http.clone();
        let url = format!("{base}/api/messages");
        let session = sessions[seq % USERS].clone();
        tokio::spawn(async move { call(&http, url, Some(&session), body).await });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut latencies_ms = Vec::with_capacity(messages);
    let mut lost = 0usize;
    for (seq, sent) in sent_us.iter().enumerate() {
        let count = deliveries.count[seq].load(Ordering::Relaxed);
        lost += sockets.saturating_sub(count);
        if count == sockets {
            let latest = deliveries.latest_us[seq].load(Ordering::Relaxed);
            latencies_ms.push(latest.saturating_sub(*sent) as f64 / 1000.0);
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies_ms
            .get(((latencies_ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let per_socket_kib = (rss_idle.saturating_sub(rss_before)) as f64 / sockets as f64;
    println!(
        "| {sockets} | {rate}/s × {seconds} s | {:.1} ms | {:.1} ms | {lost} of {} | {:.1} KiB | {:.1} MiB |",
        pct(0.5),
        pct(0.99),
        messages * sockets,
        per_socket_kib,
        support::status_kib(pid, "VmRSS:") as f64 / 1024.0
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fan-out benchmark: run it with `cargo bench --bench fanout`");
        return;
    }
    let counts: Vec<usize> = std::env::var("FANOUT_SOCKETS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rate = env_or("FANOUT_RATE", 10).max(1);
    let seconds = env_or("FANOUT_SECONDS", 20).max(1);
    println!("decentd fan-out benchmark: POST start → delivery on the last socket");
    println!("| sockets | messages | p50 | p99 | deliveries lost | RSS per idle socket | server RSS at end |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for n in counts {
        rt.block_on(run(n, rate, seconds));
    }
}
