//! Memory soak benchmark: starts the release `decentd` with a fresh data directory, connects
//! `SOAK_SOCKETS` WebSocket clients (default 200, logged in, answering pingdata, reading every
//! event), and for `SOAK_MINUTES` (default 30) posts `SOAK_POSTS` messages/s (default 10) and
//! reads history `SOAK_READS` times/s (default 20). Every minute it prints the server's RSS
//! (from /proc), the allocator's counters from the server's latest `memory` report (every 30 s),
//! the messages stored and the events delivered. The README's performance section
//! states the steady-state figure it reports.
//!
//! Run: `cargo bench --bench soak` (env: SOAK_MINUTES, SOAK_SOCKETS, SOAK_POSTS, SOAK_READS,
//! SOAK_ARGS — extra server arguments, space-separated, e.g. `--cache-mb 8`). The server is
//! stopped with SIGTERM at the end, so `_RJEM_MALLOC_CONF=stats_print:true` in the environment
//! makes it print jemalloc's statistics (allocated, active, resident, retained) on exit. Under
//! `cargo test` it only prints how to run it.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::{env_or, seed, start_server, status_kib};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak benchmark: run it with `cargo bench --bench soak` (SOAK_MINUTES=30)");
        return;
    }
    let minutes = env_or("SOAK_MINUTES", 30).max(1);
    let sockets = env_or("SOAK_SOCKETS", 200) as usize;
    let posts = env_or("SOAK_POSTS", 10).max(1);
    let reads = env_or("SOAK_READS", 20).max(1);
    let extra = std::env::var("SOAK_ARGS").unwrap_or_default();
    let mut args = vec!["--admin", "bench"];
    args.extend(extra.split_whitespace());
    let mut server = start_server(&args);
    let (session, channel) = seed(&server.addr);
    let pid = server.child.id();
    println!(
        "decentd soak: {sockets} sockets, {posts} posts/s, {reads} history reads/s, {minutes} min; \
         server args {args:?}"
    );
    println!(
        "| minute | RSS MiB | allocated MiB | active MiB | allocator resident MiB | threads | messages | deliveries |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |v: &Value, key: &str| v[key].as_f64().unwrap_or(0.0) / 1048576.0;
    let row = |minute: u64, posted: u64, delivered: u64| {
        let memory = server.memory.lock().unwrap().clone().unwrap_or_default();
        println!(
            "| {minute} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {posted} | {delivered} |",
            status_kib(pid, "VmRSS:") as f64 / 1024.0,
            mib(&memory, "allocated"),
            mib(&memory, "active"),
            mib(&memory, "resident"),
            status_kib(pid, "Threads:"),
        );
    };
    row(0, 50, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let delivered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        for _ in 0..sockets {
            let url = format!("ws://{}/", server.addr);
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
            let pong = json!({"evt": "pongdata", "data": {"sessionID": session}}).to_string();
            let delivered = delivered.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(text) = message {
                        if text.contains("\"pingdata\"") {
                            if ws.send(Message::text(pong.clone())).await.is_err() {
                                return;
                            }
                        } else {
                            delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        let http = reqwest::Client::new();
        let base = format!("http://{}", server.addr);
        let start = Instant::now();
        let mut posted = 50u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for second in 1..=minutes * 60 {
            tick.tick().await;
            let mut calls = Vec::new();
            for i in 0..posts {
                let req = http
                    .post(format!("{base}/api/messages"))
                    .header("X-Session-ID", &session)
                    .json(&json!({
                        "channelID": channel,
                        "text": format!("soak message {second}.{i}, of a typical length for a chat line"),
                    }));
                calls.push(tokio::spawn(async move { req.send().await.is_ok() }));
            }
            for _ in 0..reads {
                let req = http
                    .get(format!("{base}/api/channels/{channel}/messages"))
                    .header("X-Session-ID", &session);
                calls.push(tokio::spawn(async move {
                    match req.send().await {
                        Ok(res) => res.json::<Value>().await.is_ok(),
                        Err(_) => false,
                    }
                }));
            }
            for call in calls {
                let _ = call.await;
            }
            posted += posts;
            if second % 60 == 0 {
                row(
                    second / 60,
                    posted,
                    delivered.load(std::sync::atomic::Ordering::Relaxed),
                );
            }
        }
        println!(
            "ran {:.0} s; peak RSS {:.1} MiB",
            start.elapsed().as_secs_f64(),
            status_kib(pid, "VmHWM:") as f64 / 1024.0
        );
    });
    server.stop();
}
