//! A plugin that spins to its deadline on every post must not stall the server's other
//! clients, and its calls must stop on time.
//!
//! The plugin's pre-store hook loops forever under the longest deadline (`hook-ms = 1000`).
//! `SPIN_POSTERS` clients (default 4) post without pause, so every plugin thread the server
//! has is busy spinning. Meanwhile one client asks `GET /api` every 10 ms for `SPIN_SECONDS`
//! (default 20) and records each answer's latency. The same client also runs against the
//! same server with nobody posting (idle). Reported: p50/p99/max of both, their ratio, and
//! how far the hook calls ran past their deadline (the plugin's `deadlineHits` and
//! `maxOverrunUs` from `GET /api/plugins`).
//!
//! Run: `cargo bench --bench spin`. Under `cargo test` it only prints how to run it.

use decentd::plugins::manifest::Manifest;
use decentd::plugins::runtime::{CallError, Runtime};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{env_or, percentile, restart_server, seed, start_server};

const MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "decentd_alloc") (param $len i32) (result i32) (i32.const 4096))
  (func (export "decentd_handle") (param $ptr i32) (param $len i32) (result i64)
    ;; `{"type":"init"...`: byte 9 is 'i'; answer init at once, spin on everything else.
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 9))) (i32.const 105))
      (then (return (i64.const 0))))
    (loop $l (br $l))
    (i64.const 0)))"#;

const MANIFEST: &str = "name = \"spin\"\nversion = \"1.0.0\"\nmodule = \"plugin.wat\"\n\
    hooks = [\"message/before-store\"]\ncapabilities = [\"read-messages\", \"moderate\"]\n\
    [limits]\nhook-ms = 1000\nmax-failures = 1000000\n";

/// GET /api every 10 ms for `seconds`; the sorted latencies in ms.
async fn probe(http: &reqwest::Client, addr: &str, seconds: u64) -> Vec<f64> {
    let url = format!("http://{addr}/api");
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut ms = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let started = Instant::now();
        let res = http.get(&url).send().await.expect("GET /api");
        assert!(res.status().is_success());
        res.bytes().await.expect("body");
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

fn line(name: &str, ms: &[f64]) {
    println!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms.len(),
        percentile(ms, 0.5),
        percentile(ms, 0.99),
        ms[ms.len() - 1]
    );
}

/// In process: `SPIN_CALLS` (default 500) calls of the spinning hook under a 5 ms deadline,
/// and 5 under the longest (1000 ms), each stopped by the epoch; how far past the deadline
/// each was stopped.
fn overruns(dir: &std::path::Path) {
    let calls = env_or("SPIN_CALLS", 500) as usize;
    let (manifest, module_path) = Manifest::load(dir).expect("manifest");
    let runtime = Arc::new(Runtime::new().expect("runtime"));
    let module = runtime.compile(&manifest, &module_path).expect("module");
    let instances = runtime.instances(&manifest, module, None);
    let input = br#"{"type":"before-store"}"#;
    for (deadline_ms, calls) in [(5, calls), (1000, 5)] {
        let deadline = Duration::from_millis(deadline_ms);
        let mut micros = Vec::with_capacity(calls);
        for _ in 0..calls {
            match instances.call(input, deadline) {
                Err(CallError::Deadline { overrun_us }) => micros.push(overrun_us as f64),
                other => panic!("the spinning call should hit its deadline: {other:?}"),
            }
        }
        micros.sort_by(f64::total_cmp);
        println!(
            "deadline overrun in process ({calls} calls of {deadline_ms} ms): p50 {:.0} µs, \
             p99 {:.0} µs, max {:.0} µs (one epoch tick is 1000 µs)",
            percentile(&micros, 0.5),
            percentile(&micros, 0.99),
            micros[micros.len() - 1]
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("spin benchmark: run it with `cargo bench --bench spin`");
        return;
    }
    let seconds = env_or("SPIN_SECONDS", 20);
    let posters = env_or("SPIN_POSTERS", 4) as usize;
    let plugins = tempfile::tempdir().unwrap();
    let dir = plugins.path().join("spin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.wat"), MODULE).unwrap();
    std::fs::write(dir.join("plugin.toml"), MANIFEST).unwrap();
    overruns(&dir);
    // Seed without the plugin (its hook would spin on each seed post), then restart with it.
    let seeding = start_server(&["--admin", "bench"]);
    let (session, channel) = seed(&seeding.addr);
    let server = restart_server(
        seeding,
        &[
            "--admin",
            "bench",
            "--plugins",
            plugins.path().to_str().unwrap(),
        ],
    );
    let addr = server.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        check_session(&http, &addr, &session).await;
        let idle = probe(&http, &addr, seconds).await;

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..posters {
            let (http, addr, session, channel, stop) = (
                reqwest::Client::new(),
                addr.clone(),
                session.clone(),
                channel.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut posted = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let res = http
                        .post(format!("http://{addr}/api/messages"))
                        .header("X-Session-ID", &session)
                        .json(&json!({"channelID": channel, "text": "spin for me"}))
                        .send()
                        .await
                        .expect("post");
                    res.bytes().await.expect("body");
                    posted += 1;
                }
                posted
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = probe(&http, &addr, seconds).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut posts = 0;
        for t in tasks {
            posts += t.await.unwrap();
        }
        let plugins = get_json(&http, &format!("http://{addr}/api/plugins"), &session).await;
        let stats = &plugins["plugins"][0]["stats"];

        println!(
            "GET /api every 10 ms for {seconds} s; {posters} posters, each post spinning its \
             hook to the 1000 ms deadline ({posts} posts)"
        );
        println!("| GET /api | answers | p50 | p99 | max |");
        println!("|---|---:|---:|---:|---:|");
        line("idle", &idle);
        line("hooks spinning", &busy);
        println!(
            "p99 while spinning: {:.2}× idle",
            percentile(&busy, 0.99) / percentile(&idle, 0.99)
        );
        println!(
            "deadline in the server: {} calls stopped, the latest {} µs past its deadline",
            stats["deadlineHits"], stats["maxOverrunUs"]
        );
    });
}

/// A GET with a session, as JSON.
async fn get_json(http: &reqwest::Client, url: &str, session: &str) -> Value {
    http.get(url)
        .header("X-Session-ID", session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The seeding session still works after the restart.
async fn check_session(http: &reqwest::Client, addr: &str, session: &str) {
    let res = get_json(
        http,
        &format!("http://{addr}/api/sessions/{session}"),
        session,
    )
    .await;
    assert!(res.get("error").is_none(), "{res}");
}
