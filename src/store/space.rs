//! The free-space guard: writes are refused while the data directory's disk is nearly full.
//!
//! sled treats a failed log write (ENOSPC) as fatal for the whole database: the error sticks,
//! later reads and writes fail too, and only reopening clears it. Worse, a write that failed
//! half-way may still reach the disk later, so a client could be told 500 for a message that
//! then exists. The guard keeps sled from ever meeting a full disk: before a request writes,
//! `check` compares the disk's free space with a reserve (`--min-free-space`) and refuses the
//! write with `StoreError::DiskFull` while it is below. Nothing has been written then, reads go
//! on working, and writes resume by themselves once space returns. The free space is asked of
//! the kernel (`statvfs`) at most every `RECHECK`, so the guard costs an atomic load per write.
//! One warning is logged when writes stop and one line when they resume.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// How long a reading of the free space is trusted.
const RECHECK_MS: u64 = 100;

#[derive(Debug)]
pub(super) struct SpaceGuard {
    dir: PathBuf,
    reserve: u64,
    started: Instant,
    /// Milliseconds since `started` of the last reading, plus one (0: never read).
    checked_at: AtomicU64,
    full: AtomicBool,
}

impl SpaceGuard {
    pub(super) fn new(dir: PathBuf, reserve: u64) -> Self {
        Self {
            dir,
            reserve,
            started: Instant::now(),
            checked_at: AtomicU64::new(0),
            full: AtomicBool::new(false),
        }
    }

    /// A guard for the same directory with another reserve.
    pub(super) fn with_reserve(&self, reserve: u64) -> Self {
        Self::new(self.dir.clone(), reserve)
    }

    /// Whether a write may go ahead: false while free space is below the reserve.
    pub(super) fn allows_writes(&self) -> bool {
        if self.reserve == 0 {
            return true;
        }
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.checked_at.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < RECHECK_MS {
            return !self.full.load(Ordering::Relaxed);
        }
        // One caller re-reads; the others use the previous reading meanwhile.
        if self
            .checked_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return !self.full.load(Ordering::Relaxed);
        }
        let free = match free_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                tracing::debug!(error = %e, dir = %self.dir.display(), "cannot read free disk space");
                return !self.full.load(Ordering::Relaxed);
            }
        };
        let full = free < self.reserve;
        let was = self.full.swap(full, Ordering::Relaxed);
        if full && !was {
            tracing::warn!(
                free_bytes = free,
                reserve_bytes = self.reserve,
                dir = %self.dir.display(),
                "the disk is nearly full: refusing writes until space is freed (reads go on)"
            );
        } else if was && !full {
            tracing::info!(
                free_bytes = free,
                "disk space is back: accepting writes again"
            );
        }
        !full
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub(super) fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
