//! Names the commit the binary is built from, for `decentd --version` and the startup log:
//! `DECENTD_COMMIT` from the environment when set (CI, release builds from a source archive),
//! else `git rev-parse` when the sources are a git checkout, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DECENTD_COMMIT");
    // Given by the environment (CI, source archives), the commit is all that matters: a fresh
    // clone of the same commit must not rerun this script and rebuild the crate.
    if let Ok(commit) = std::env::var("DECENTD_COMMIT") {
        println!("cargo:rustc-env=DECENTD_COMMIT={commit}");
        return;
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DECENTD_COMMIT={commit}");
    // A new commit, or a checkout, moves HEAD or the ref it names.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=.git/{}", reference.trim());
        }
    }
}
