//! Backup benchmark: the time and size of backing up a server holding 1,000,000 messages
//! while it takes writes, how long writes wait for the copy, the time of restoring it, and of
//! exporting the restored directory as JSON Lines and importing that.
//!
//! Seeds the messages straight into the storage (through the library, with the server
//! stopped), starts the release binary on it, then runs `decentd backup` while a client posts
//! `BACKUP_POST_RATE` messages/s, recording each post's answer time; then `decentd restore`,
//! `decentd export` (of the stopped restored directory) and `decentd import`.
//!
//! Run: `cargo bench --bench backup` (env: BACKUP_MESSAGES, default 1000000;
//! BACKUP_POST_RATE, default 20). Under `cargo test` it only prints how to run it.

use decentd::store::{Author, MessageRecord};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{env_or, post_json, server_binary, start_server, start_server_in, stop_keeping_data};

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

async fn measure(messages: u64, rate: u64) {
    let args = ["--admin", "root", "--scrypt-log-n", "10"];
    let server = start_server(&args);
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let creds = json!({"username": "root", "password": "benchmark-password"});
    let user = post_json(&http, format!("{base}/api/users"), None, creds.clone()).await;
    let root_id: u64 = user["user"]["id"].as_str().unwrap().parse().unwrap();
    let session = post_json(&http, format!("{base}/api/sessions"), None, creds).await["sessionID"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut channels = Vec::new();
    for i in 0..10 {
        let v = post_json(
            &http,
            format!("{base}/api/channels"),
            Some(&session),
            json!({"name": format!("c{i}")}),
        )
        .await;
        channels.push(v["channelID"].as_str().unwrap().parse::<u64>().unwrap());
    }
    let tmp = stop_keeping_data(server);
    let data = tmp.path().join("data");

    // Seed the messages offline, every tenth with a mention.
    let started = Instant::now();
    {
        let store = decentd::store::open(&data, 256 * 1024 * 1024, 0).expect("open the store");
        let author = Author {
            id: root_id,
            username: "root".into(),
            avatar_url: String::new(),
        };
        for n in 0..messages {
            let mentions = if n % 10 == 0 { vec![root_id] } else { vec![] };
            store
                .insert_message(&MessageRecord {
                    id: store.next_id(),
                    channel_id: channels[(n % 10) as usize],
                    system: false,
                    text: format!("message number {n} about the weather and the plans for tonight"),
                    author: Some(author.clone()),
                    created_ms: decentd::ids::now_ms(),
                    edited_ms: None,
                    pinned: false,
                    mentions,
                })
                .expect("insert");
        }
        store.flush().expect("flush");
    }
    let seeded = started.elapsed();
    let data_size = dir_size(&data);
    let server = start_server_in(tmp, &args);
    let base = format!("http://{}", server.addr);
    let post_url = format!("{base}/api/messages");

    // Posts at a steady rate; the answer times, until `stop`.
    let poster = |until: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        let (http, url, session, channel) =
            (http.clone(), post_url.clone(), session.clone(), channels[0]);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            let mut times = Vec::new();
            while !until.load(std::sync::atomic::Ordering::Relaxed) {
                ticker.tick().await;
                let t = Instant::now();
                post_json(
                    &http,
                    url.clone(),
                    Some(&session),
                    json!({"channelID": channel.to_string(), "text": "during"}),
                )
                .await;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            times
        })
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = poster(stop.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let idle = idle.await.unwrap();

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("backup.tar");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = poster(stop.clone());
    let started = Instant::now();
    let (data_dir, file_path) = (server.data.clone(), file.clone());
    let status = tokio::task::spawn_blocking(move || {
        Command::new(server_binary())
            .arg("backup")
            .arg("--data")
            .arg(&data_dir)
            .arg("--to")
            .arg(&file_path)
            .status()
            .expect("run decentd backup")
    })
    .await
    .unwrap();
    let backup_time = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = during.await.unwrap();
    assert!(status.success(), "decentd backup failed");
    let file_size = std::fs::metadata(&file).unwrap().len();

    let restored = out.path().join("restored");
    let started = Instant::now();
    let status = Command::new(server_binary())
        .arg("restore")
        .arg("--from")
        .arg(&file)
        .arg("--data")
        .arg(&restored)
        .status()
        .expect("run decentd restore");
    assert!(status.success(), "decentd restore failed");
    let restore_time = started.elapsed();
    // The restored (stopped) directory exported as JSON Lines, and imported again.
    let export = out.path().join("export.jsonl");
    let export_time = timed(&[
        "export".as_ref(),
        "--data".as_ref(),
        restored.as_os_str(),
        "--to".as_ref(),
        export.as_os_str(),
    ]);
    let imported = out.path().join("imported");
    let import_time = timed(&[
        "import".as_ref(),
        "--from".as_ref(),
        export.as_os_str(),
        "--data".as_ref(),
        imported.as_os_str(),
    ]);

    println!(
        "| messages | {messages} (seeded in {:.0} s) |",
        seeded.as_secs_f64()
    );
    println!("| data directory | {:.0} MiB |", mib(data_size));
    println!("| backup file | {:.0} MiB |", mib(file_size));
    println!(
        "| backup time, server running | {:.1} s |",
        backup_time.as_secs_f64()
    );
    println!(
        "| posts during the backup, p50 / p99 / max | {:.1} / {:.1} / {:.0} ms ({} posts) |",
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.last().copied().unwrap_or(f64::NAN),
        during.len()
    );
    println!(
        "| posts before, p50 / p99 / max | {:.1} / {:.1} / {:.0} ms |",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        idle.last().copied().unwrap_or(f64::NAN)
    );
    println!("| restore time | {:.1} s |", restore_time.as_secs_f64());
    println!(
        "| restored directory | {:.0} MiB |",
        mib(dir_size(&restored))
    );
    println!(
        "| export of the stopped directory | {:.1} s, {:.0} MiB of JSON Lines |",
        export_time.as_secs_f64(),
        mib(std::fs::metadata(&export).unwrap().len())
    );
    println!(
        "| import into a new directory | {:.1} s |",
        import_time.as_secs_f64()
    );
}

/// Runs a `decentd` command to its successful end; how long it took.
fn timed(args: &[&std::ffi::OsStr]) -> Duration {
    let started = Instant::now();
    let status = Command::new(server_binary())
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run decentd");
    assert!(status.success(), "decentd {args:?} failed");
    started.elapsed()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("backup benchmark: run it with `cargo bench --bench backup`");
        return;
    }
    let messages = env_or("BACKUP_MESSAGES", 1_000_000);
    let rate = env_or("BACKUP_POST_RATE", 20);
    println!("decentd backup benchmark");
    println!("| what | figure |");
    println!("|---|---:|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(measure(messages, rate));
}
