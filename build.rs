//! Names the commit the binary is built from, for `decentd --version` and the startup log:
//! `git rev-parse` when the sources are a git checkout, else `DECENTD_COMMIT` from the
//! environment (release builds from a source archive), else "unknown".

use std::process::Command;

fn main() {
    let commit = std::env::var("DECENTD_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|c| !c.is_empty())
    });
    let commit = commit.unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DECENTD_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=DECENTD_COMMIT");
    // A new commit, or a checkout, moves HEAD or the ref it names.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=.git/{}", reference.trim());
        }
    }
}
