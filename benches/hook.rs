//! Cost of the pre-store hook with the word-filter plugin (`plugins/dist/word-filter`, built
//! by `plugins/build.sh`):
//!
//! 1. in process: one hook call as the server makes it (serialize the input, call the plugin
//!    under its deadline, parse the answer), p50/p99 over `HOOK_CALLS` calls (default 200,000);
//! 2. end to end: `POST /api/messages` driven by wrk (64 connections) against a server without
//!    plugins and one with the word filter, `LOAD_RUNS` (3) × `LOAD_SECONDS` (10) each, median
//!    run reported, and the ratio of the two throughputs.
//!
//! Run: `cargo bench --bench hook` (needs wrk). Under `cargo test` it only prints how to run it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use decentd::plugins::manifest::Manifest;
use decentd::plugins::runtime::Runtime;
use decentd_protocol::{ChatUser, PendingMessage, PluginInput};

mod support;

use support::{env_or, percentile, seed, start_server, wrk, Run};

fn word_filter() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/dist/word-filter");
    if !dir.join("plugin.wasm").is_file() {
        eprintln!("{} is missing: run plugins/build.sh first", dir.display());
        std::process::exit(1);
    }
    dir
}

fn in_process(dir: &Path) {
    let calls = env_or("HOOK_CALLS", 200_000) as usize;
    let (manifest, module_path) = Manifest::load(dir).expect("manifest");
    let runtime = Arc::new(Runtime::new().expect("runtime"));
    let module = runtime.compile(&manifest, &module_path).expect("module");
    let instances = runtime.instances(&manifest, module, None);
    let deadline = manifest.limits.hook_deadline();
    let texts = [
        "a load benchmark message of a typical length",
        "well darn, this one gets masked by the filter",
    ];
    let mut micros = Vec::with_capacity(calls);
    // A call the machine descheduled past its deadline is counted, not fatal: on shared cores
    // a ~10 µs call can miss a 5 ms deadline when another tenant takes the CPU.
    let mut deadline_hits = 0;
    for i in 0..calls + 1000 {
        let started = Instant::now();
        let input = PluginInput::BeforeStore {
            message: PendingMessage {
                channel_id: "228066362263601152".into(),
                recipient_id: None,
                message_id: None,
                author: ChatUser::new(228_066_362_281_426_944, "bench", false, false),
                text: texts[i % 2].into(),
            },
        };
        let bytes = serde_json::to_vec(&input).unwrap();
        let output = match instances.call(&bytes, deadline) {
            Ok(output) => output,
            Err(decentd::plugins::runtime::CallError::Deadline { .. }) => {
                deadline_hits += 1;
                continue;
            }
            Err(e) => panic!("hook call: {e:?}"),
        };
        let elapsed = started.elapsed();
        assert_eq!(
            output.actions.len(),
            i % 2,
            "the filter rewrites every other text"
        );
        if i >= 1000 {
            micros.push(elapsed.as_secs_f64() * 1e6);
        }
    }
    micros.sort_by(f64::total_cmp);
    println!(
        "hook call in process ({calls} calls, half rewritten): p50 {:.1} µs, p99 {:.1} µs, {deadline_hits} past the deadline",
        percentile(&micros, 0.5),
        percentile(&micros, 0.99)
    );
}

fn posts(args: &[&str]) -> Run {
    let runs = env_or("LOAD_RUNS", 3).max(1);
    let seconds = env_or("LOAD_SECONDS", 10).max(1);
    let server = start_server(args);
    let (session, channel) = seed(&server.addr);
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"X-Session-ID\"] = \"{session}\"\n\
             wrk.body = '{{\"channelID\":\"{channel}\",\"text\":\"a load benchmark message of a typical length\"}}'\n"
        ),
    )
    .unwrap();
    let url = format!("http://{}/api/messages", server.addr);
    let mut all: Vec<Run> = (0..runs).map(|_| wrk(&script, &url, seconds)).collect();
    all.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    all[all.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "hook benchmark: run it with `cargo bench --bench hook` (needs wrk, plugins/build.sh)"
        );
        return;
    }
    let dir = word_filter();
    in_process(&dir);
    let plugins = tempfile::tempdir().unwrap();
    let installed = plugins.path().join("word-filter");
    std::fs::create_dir_all(&installed).unwrap();
    for file in ["plugin.wasm", "plugin.toml"] {
        std::fs::copy(dir.join(file), installed.join(file)).unwrap();
    }
    let plugins_arg = plugins.path().to_str().unwrap().to_owned();
    let without = posts(&["--admin", "bench"]);
    std::thread::sleep(Duration::from_secs(1));
    let with = posts(&["--admin", "bench", "--plugins", &plugins_arg]);
    println!("| POST /api/messages | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (name, run) in [("without plugins", without), ("with word-filter", with)] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            run.rps, run.p50_ms, run.p99_ms, run.errors
        );
    }
    println!(
        "throughput with the hook: {:.0}% of without; p50 {:+.0} µs, p99 {:+.0} µs",
        with.rps / without.rps * 100.0,
        (with.p50_ms - without.p50_ms) * 1000.0,
        (with.p99_ms - without.p99_ms) * 1000.0
    );
}
