//! Flood benchmark: does one address flooding the server hurt everyone else?
//!
//! Starts the release `decentd` with the default rate limits, then measures a well-behaved
//! client (from 127.0.0.1, `FLOOD_RATE` requests/s of `GET /api/channels` with its session, for
//! `FLOOD_SECONDS`): first with the server idle, then while a flooder at another address
//! (127.0.0.2: loopback holds the whole 127/8) sends as many requests as `FLOOD_CONNECTIONS`
//! concurrent connections can, and finally the same flood against a server without rate limits
//! for comparison. Reports the client's p50/p99 and the flooder's answers.
//!
//! Run: `cargo bench --bench flood` (env: FLOOD_RATE, default 10, under the per-address limit; FLOOD_SECONDS, default 30;
//! FLOOD_CONNECTIONS, default 64). Under `cargo test` it only prints how to run it.

use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{env_or, post_json, start_server};

const DEFAULT_LIMITS: [&str; 8] = [
    "--rate-limit",
    "20",
    "--session-rate-limit",
    "20",
    "--login-rate-limit",
    "10",
    "--upload-rate-limit",
    "30",
];

/// Latencies (ms) of the well-behaved client's requests, sorted.
async fn client(base: &str, session: &str, rate: u64, seconds: u64) -> Vec<f64> {
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut latencies = Vec::new();
    for _ in 0..rate * seconds {
        ticker.tick().await;
        let started = Instant::now();
        let res = http
            .get(format!("{base}/api/channels"))
            .header("X-Session-ID", session)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "the well-behaved client was refused");
        let _ = res.bytes().await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Floods from 127.0.0.2 until `stop`; returns (answered 200, answered 429). The flooder runs
/// on a thread of its own at the lowest CPU priority (nice 19): on this 2-core machine it
/// stands for an attacker on another machine, so it takes only the CPU the server leaves, and
/// its tasks never delay the measured client's.
fn flood(
    base: String,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
            eprintln!("cannot lower the flooder's priority: {e}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(flood_on(base, connections, stop))
    })
}

async fn flood_on(base: String, connections: usize, stop: Arc<AtomicBool>) -> (u64, u64) {
    {
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .pool_max_idle_per_host(connections)
            .build()
            .unwrap();
        let (ok, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
                let (ok, limited) = (ok.clone(), limited.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match http.get(format!("{base}/api/channels")).send().await {
                            Ok(res) => {
                                let counter = if res.status() == 429 { &limited } else { &ok };
                                counter.fetch_add(1, Ordering::Relaxed);
                                let _ = res.bytes().await;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed))
    }
}

async fn measure(limits: bool, rate: u64, seconds: u64, connections: usize) {
    let mut args = vec!["--admin", "alice"];
    if limits {
        args.extend(DEFAULT_LIMITS);
    }
    let server = start_server(&args);
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let creds = json!({"username": "alice", "password": "benchmark-password"});
    post_json(&http, format!("{base}/api/users"), None, creds.clone()).await;
    let session = post_json(&http, format!("{base}/api/sessions"), None, creds).await["sessionID"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..20 {
        post_json(
            &http,
            format!("{base}/api/channels"),
            Some(&session),
            json!({"name": format!("c{i}")}),
        )
        .await;
    }
    let label = if limits {
        "default limits"
    } else {
        "no limits"
    };
    if limits {
        let idle = client(&base, &session, rate, seconds).await;
        println!(
            "| idle | {label} | {:.2} ms | {:.2} ms | | |",
            percentile(&idle, 0.5),
            percentile(&idle, 0.99)
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(base.clone(), connections, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = client(&base, &session, rate, seconds).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, limited) = tokio::task::spawn_blocking(move || flooder.join().unwrap())
        .await
        .unwrap();
    let total = seconds + 1;
    println!(
        "| flood from another address | {label} | {:.2} ms | {:.2} ms | {:.0}/s | {:.0}/s |",
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        ok as f64 / total as f64,
        limited as f64 / total as f64,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("flood benchmark: run it with `cargo bench --bench flood`");
        return;
    }
    let rate = env_or("FLOOD_RATE", 10);
    let seconds = env_or("FLOOD_SECONDS", 30);
    let connections = env_or("FLOOD_CONNECTIONS", 64) as usize;
    println!(
        "decentd flood benchmark: a client at {rate} req/s (GET /api/channels), {connections} flooding connections"
    );
    println!(
        "| phase | server | client p50 | client p99 | flood answered 200 | flood answered 429 |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(measure(true, rate, seconds, connections));
    rt.block_on(measure(false, rate, seconds, connections));
}
