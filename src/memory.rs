//! The process's memory as the allocator sees it, reported periodically at debug level.
//!
//! RSS alone cannot tell a leak from a cache or from allocator slack. jemalloc's counters can:
//! `allocated` is what the program holds, `active` the pages its allocations occupy, `resident`
//! what the allocator keeps in RAM (including freed pages it has not returned yet), `retained`
//! address space kept for reuse. The soak benchmark prints these next to RSS; an operator sees
//! them with `--log decentd::memory=debug`.

use std::time::Duration;
use tikv_jemalloc_ctl::{epoch, stats};

/// How often `report_periodically` logs.
const PERIOD: Duration = Duration::from_secs(30);

/// The allocator's counters, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Allocator {
    pub allocated: usize,
    pub active: usize,
    pub resident: usize,
    pub retained: usize,
    pub metadata: usize,
}

/// Reads the allocator's counters (they are refreshed by advancing its epoch).
pub fn allocator() -> Option<Allocator> {
    epoch::advance().ok()?;
    Some(Allocator {
        allocated: stats::allocated::read().ok()?,
        active: stats::active::read().ok()?,
        resident: stats::resident::read().ok()?,
        retained: stats::retained::read().ok()?,
        metadata: stats::metadata::read().ok()?,
    })
}

/// Logs the counters every `PERIOD` at debug level (nothing when debug is off for this module).
pub async fn report_periodically() {
    let mut ticker = tokio::time::interval(PERIOD);
    loop {
        ticker.tick().await;
        if !tracing::enabled!(tracing::Level::DEBUG) {
            continue;
        }
        if let Some(a) = allocator() {
            tracing::debug!(
                allocated = a.allocated,
                active = a.active,
                resident = a.resident,
                retained = a.retained,
                metadata = a.metadata,
                "memory"
            );
        }
    }
}
