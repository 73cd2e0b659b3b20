//! Storage and cluster benchmark: the same load on three setups, on this machine, in one
//! session:
//!
//! 1. the embedded store (sled), one node;
//! 2. PostgreSQL storage, one node (`--store postgres://...`);
//! 3. two nodes on that PostgreSQL, with NATS between them (`--bus nats://...`).
//!
//! PostgreSQL and nats-server are real processes started on free loopback ports in temp
//! directories (`tests/common/engines.rs`, as the tests do; PostgreSQL with its defaults,
//! fsync on). For each setup, wrk (64 connections, split over the nodes) measures:
//!
//! - `POST /api/messages`: acknowledged (durable) posts per second;
//! - `GET /api/channels/:id/messages` (50 messages): history reads per second;
//!
//! and WebSocket clients (`CLUSTER_SOCKETS`, default 200, split over the nodes) measure the
//! fan-out latency: from the start of a POST on the first node until the message reached the
//! last socket, for messages posted at 10 per second (p50, p99).
//!
//! Run: `cargo bench --bench cluster` (env: CLUSTER_SECONDS per wrk run, default 10;
//! CLUSTER_SOCKETS; needs wrk, PostgreSQL and nats-server). Under `cargo test` it only prints
//! how to run it.

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/engines.rs"]
#[allow(dead_code)]
mod engines;
mod support;

use support::{env_or, percentile, post_json, seed, start_server, wrk, Run, Server};

/// Runs wrk against every node at once (connections split between them); the summed rate and
/// the worst p50/p99.
fn wrk_all(script: &std::path::Path, urls: &[String], seconds: u64) -> Run {
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .map(|url| s.spawn(move || wrk(script, url, seconds)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Run {
        rps: runs.iter().map(|r| r.rps).sum(),
        p50_ms: runs.iter().map(|r| r.p50_ms).fold(0.0, f64::max),
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        requests: runs.iter().map(|r| r.requests).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// Fan-out latency: `sockets` logged-in sockets over the nodes, 10 messages a second posted
/// on the first node for `seconds`; (p50, p99) ms to the last socket, and messages lost.
async fn fanout(
    nodes: &[String],
    session: &str,
    channel: &str,
    sockets: usize,
    seconds: u64,
) -> (f64, f64, usize) {
    let arrivals: Arc<std::sync::Mutex<std::collections::HashMap<String, (usize, Instant)>>> =
        Arc::default();
    let mut tasks = Vec::new();
    for i in 0..sockets {
        let url = format!("ws://{}/", nodes[i % nodes.len()]);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        use futures_util::SinkExt;
        let _ = ws.next().await;
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            json!({"evt": "pongdata", "data": {"sessionID": session}}).to_string(),
        ))
        .await
        .unwrap();
        let arrivals = arrivals.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                let Ok(text) = frame.to_text() else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                if v["evt"] == "message/new" {
                    let text = v["data"]["message"]["text"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    let mut seen = arrivals.lock().unwrap();
                    let entry = seen.entry(text).or_insert((0, Instant::now()));
                    entry.0 += 1;
                    entry.1 = Instant::now();
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let mut started = Vec::new();
    let total = seconds * 10;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0..total {
        tick.tick().await;
        let text = format!("fan-out {n}");
        started.push((text.clone(), Instant::now()));
        post_json(
            &http,
            format!("http://{}/api/messages", nodes[0]),
            Some(session),
            json!({"channelID": channel, "text": text}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = arrivals.lock().unwrap();
    let mut latencies = Vec::new();
    let mut lost = 0;
    for (text, at) in &started {
        match seen.get(text) {
            Some((count, last)) if *count == sockets => {
                latencies.push(last.duration_since(*at).as_secs_f64() * 1000.0)
            }
            _ => lost += 1,
        }
    }
    for task in tasks {
        task.abort();
    }
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        return (f64::NAN, f64::NAN, lost);
    }
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        lost,
    )
}

fn measure(name: &str, nodes: &[Server], seconds: u64, sockets: usize) {
    let (session, channel) = seed(&nodes[0].addr);
    let scripts = tempfile::tempdir().unwrap();
    let post = scripts.path().join("post.lua");
    std::fs::write(
        &post,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"X-Session-ID\"] = \"{session}\"\n\
             wrk.body = '{{\"channelID\":\"{channel}\",\"text\":\"a cluster benchmark message of a typical length\"}}'\n"
        ),
    )
    .unwrap();
    let get = scripts.path().join("get.lua");
    std::fs::write(
        &get,
        format!("wrk.headers[\"X-Session-ID\"] = \"{session}\"\n"),
    )
    .unwrap();
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let posts: Vec<String> = addrs
        .iter()
        .map(|a| format!("http://{a}/api/messages"))
        .collect();
    let reads: Vec<String> = addrs
        .iter()
        .map(|a| format!("http://{a}/api/channels/{channel}/messages"))
        .collect();
    let wrote = wrk_all(&post, &posts, seconds);
    let read = wrk_all(&get, &reads, seconds);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (p50, p99, lost) = rt.block_on(fanout(&addrs, &session, &channel, sockets, 10));
    println!(
        "| {name} | {:.0} (p99 {:.1} ms) | {:.0} (p99 {:.1} ms) | {p50:.1} ms / {p99:.1} ms | {lost} | {} |",
        wrote.rps,
        wrote.p99_ms,
        read.rps,
        read.p99_ms,
        wrote.errors + read.errors
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster benchmark: run it with `cargo bench --bench cluster` (needs wrk, PostgreSQL, nats-server)");
        return;
    }
    // wrk's connections are split over the nodes of a setup.
    let seconds = env_or("CLUSTER_SECONDS", 10).max(1);
    let sockets = env_or("CLUSTER_SOCKETS", 200).max(2) as usize;
    println!(
        "decentd storage and cluster benchmark: wrk 64 connections, {seconds} s per scenario; \
         fan-out to {sockets} sockets at 10 messages/s"
    );
    println!(
        "| setup | posts/s | history reads/s (50 messages) | fan-out p50 / p99 | lost | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    {
        let sled = start_server(&["--admin", "bench"]);
        measure("sled, one node", &[sled], seconds, sockets);
    }
    let pg = engines::Postgres::start_durable();
    {
        let url = pg.database();
        let one = start_server(&["--admin", "bench", "--store", &url]);
        measure("PostgreSQL, one node", &[one], seconds, sockets);
    }
    {
        let url = pg.database();
        let nats = engines::Nats::start();
        let uploads = tempfile::tempdir().unwrap();
        let args = [
            "--admin",
            "bench",
            "--store",
            &url,
            "--bus",
            &nats.url(),
            "--uploads",
            uploads.path().to_str().unwrap(),
        ];
        let a = start_server(&args);
        let b = start_server(&args);
        measure("PostgreSQL + NATS, two nodes", &[a, b], seconds, sockets);
    }
}
