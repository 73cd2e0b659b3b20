//! HTTP load benchmark: starts the release `decentd` on loopback with a fresh data directory,
//! seeds a user, a channel and 50 messages, and drives it with `wrk` (a real load generator,
//! `apt-get install wrk`) at 64 connections for:
//!
//! - `POST /api/messages` (each acknowledged post is durable: group commit before the answer)
//! - `GET /api/channels/:id/messages` (50 messages per response)
//! - `GET /api/channels` with a session (unread counts included)
//!
//! Each scenario runs `LOAD_RUNS` times (default 3) for `LOAD_SECONDS` (default 10); the run
//! with the median requests/s is reported with its p50/p99 latency. With `LOAD_MILLION=1` it
//! then posts until the server holds 1,000,000 messages and reports peak RSS and on-disk size.
//!
//! Run: `cargo bench --bench load` (env: LOAD_RUNS, LOAD_SECONDS, LOAD_CONNECTIONS,
//! LOAD_THREADS, LOAD_MILLION). Under `cargo test` it only prints how to run it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod support;

use support::{env_or, seed, start_server, status_kib as rss_kib, wrk, Run};

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            total += if meta.is_dir() {
                disk_bytes(&e.path())
            } else {
                meta.blocks() * 512
            };
        }
    }
    total
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("load benchmark: run it with `cargo bench --bench load` (needs wrk)");
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install wrk");
        std::process::exit(1);
    }
    let runs = env_or("LOAD_RUNS", 3).max(1);
    let seconds = env_or("LOAD_SECONDS", 10).max(1);
    let server = start_server(&["--admin", "bench"]);
    let (session, channel) = seed(&server.addr);
    let scripts = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = scripts.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let post = write(
        "post.lua",
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"X-Session-ID\"] = \"{session}\"\n\
             wrk.body = '{{\"channelID\":\"{channel}\",\"text\":\"a load benchmark message of a typical length\"}}'\n"
        ),
    );
    let get = write(
        "get.lua",
        format!("wrk.headers[\"X-Session-ID\"] = \"{session}\"\n"),
    );
    let base = format!("http://{}", server.addr);
    let scenarios = [
        (
            "POST /api/messages",
            post.clone(),
            format!("{base}/api/messages"),
        ),
        (
            "GET /api/channels/:id/messages (50)",
            get.clone(),
            format!("{base}/api/channels/{channel}/messages"),
        ),
        (
            "GET /api/channels (session)",
            get.clone(),
            format!("{base}/api/channels"),
        ),
    ];
    println!(
        "decentd load benchmark: {} connections, {runs} runs of {seconds} s each, median run reported",
        env_or("LOAD_CONNECTIONS", 64)
    );
    println!("| scenario | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    let mut posted = 50u64;
    for (name, script, url) in &scenarios {
        let mut all: Vec<Run> = (0..runs).map(|_| wrk(script, url, seconds)).collect();
        if name.starts_with("POST") {
            posted += all.iter().map(|r| r.requests).sum::<u64>();
        }
        all.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let m = all[all.len() / 2];
        let errors: u64 = all.iter().map(|r| r.errors).sum();
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {errors} |",
            m.rps, m.p50_ms, m.p99_ms
        );
    }
    let pid = server.child.id();
    println!(
        "peak RSS {:.1} MiB, on disk {:.1} MiB after {posted} messages",
        rss_kib(pid, "VmHWM:") as f64 / 1024.0,
        disk_bytes(&server.data) as f64 / 1048576.0
    );
    if env_or("LOAD_MILLION", 0) == 1 {
        let started = Instant::now();
        while posted < 1_000_000 {
            posted += wrk(&post, &scenarios[0].2, 20).requests;
        }
        println!(
            "filled to {posted} messages in {:.0} s; peak RSS {:.1} MiB, RSS now {:.1} MiB, on disk {:.1} MiB",
            started.elapsed().as_secs_f64(),
            rss_kib(pid, "VmHWM:") as f64 / 1024.0,
            rss_kib(pid, "VmRSS:") as f64 / 1024.0,
            disk_bytes(&server.data) as f64 / 1048576.0
        );
        let run = wrk(&get, &scenarios[1].2, seconds);
        println!(
            "history reads with 1M messages stored: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            run.rps, run.p50_ms, run.p99_ms
        );
    }
}
