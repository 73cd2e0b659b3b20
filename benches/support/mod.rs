//! Shared by the load and fan-out harnesses: start the release binary, read settings and RSS.
//! Each harness uses part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `decentd` on loopback with its own temporary data directory.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `decentd serve` on port 0 with `args`; warnings and errors go to stderr.
pub fn start_server(args: &[&str]) -> Server {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_decentd"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--log-format",
            "json",
            "--log",
            "warn,decentd::startup=info",
        ])
        .args(args)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start decentd");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                } else if v["level"] == "WARN" || v["level"] == "ERROR" {
                    eprintln!("server: {line}");
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("decentd did not start");
    Server {
        child,
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
