//! Time-ordered 64-bit identifiers.
//!
//! An id is `(milliseconds since 2020-01-01 UTC) << 20 | sequence`, so ids sort by creation time
//! and big-endian keys built from them make newest-first and `before`/`after` queries plain
//! key-range scans. Ids travel as decimal strings in JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Start of the id clock: 2020-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: u64 = 1_577_836_800_000;
/// Low bits of an id that hold the per-millisecond sequence (about a million ids per ms).
const SEQUENCE_BITS: u32 = 20;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time in seconds as a float, the date format of the Decent API.
pub fn unix_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Unix milliseconds as an ISO-8601 (RFC 3339) UTC time, the date format of chatbox packets.
pub fn iso8601(ms: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Hands out strictly increasing, time-ordered ids. Cheap to share between threads.
///
/// A generator of a cluster node (`for_node`) keeps the node's number in bits 10..20 of every
/// id and counts in the low 10 bits, so nodes never hand out the same id.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: AtomicU64,
    node: Option<u64>,
}

/// Bits of a cluster node's number in its ids (1,024 nodes).
const NODE_BITS: u32 = 10;
const NODE_SHIFT: u32 = SEQUENCE_BITS - NODE_BITS;

impl IdGenerator {
    /// A generator that never returns an id at or below `floor` (the largest id already stored),
    /// so a clock that stepped back across a restart cannot reissue an id.
    pub fn starting_after(floor: u64) -> Self {
        Self {
            last: AtomicU64::new(floor),
            node: None,
        }
    }

    /// The generator of cluster node `node` (taken modulo 1,024): ids above `floor` whose
    /// bits 10..20 hold the node's number.
    pub fn for_node(node: u64, floor: u64) -> Self {
        // Counted without the node bits: (milliseconds << 10) | sequence.
        let compact = ((floor >> SEQUENCE_BITS) << NODE_SHIFT) | ((1 << NODE_SHIFT) - 1);
        Self {
            last: AtomicU64::new(compact),
            node: Some(node % (1 << NODE_BITS)),
        }
    }

    /// The next id: the current millisecond with a fresh sequence number, or one past the last
    /// id if the clock has not moved on (or moved back).
    pub fn next(&self) -> u64 {
        let Some(node) = self.node else {
            return self.advance(now_ms().saturating_sub(EPOCH_MS) << SEQUENCE_BITS);
        };
        let compact = self.advance(now_ms().saturating_sub(EPOCH_MS) << NODE_SHIFT);
        let low = (1 << NODE_SHIFT) - 1;
        ((compact >> NODE_SHIFT) << SEQUENCE_BITS) | (node << NODE_SHIFT) | (compact & low)
    }

    /// The next counter value: `clock`, or one past the last value if the clock has not moved.
    fn advance(&self, clock: u64) -> u64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = clock.max(last + 1);
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return candidate,
                Err(actual) => last = actual,
            }
        }
    }
}

/// The creation time of an id, in Unix milliseconds.
pub fn id_timestamp_ms(id: u64) -> u64 {
    (id >> SEQUENCE_BITS) + EPOCH_MS
}

/// The smallest id made at or after `ms` (Unix milliseconds).
pub fn first_id_at(ms: u64) -> u64 {
    ms.saturating_sub(EPOCH_MS) << SEQUENCE_BITS
}

/// Parses an id given in a URL or parameter; anything but a plain decimal u64 is `None`.
pub fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An id serialized as its decimal string (the API's id format) without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdStr(pub u64);

impl serde::Serialize for IdStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_never_collide_and_stay_time_ordered() {
        let floor = IdGenerator::default().next() + (5 << SEQUENCE_BITS);
        let a = IdGenerator::for_node(3, floor);
        let b = IdGenerator::for_node(1027, floor);
        let c = IdGenerator::for_node(4, floor);
        let mut seen = std::collections::HashSet::new();
        let mut last = floor;
        for _ in 0..5_000 {
            let id = a.next();
            assert!(id > last, "ids of one node increase");
            assert!(
                id >> SEQUENCE_BITS > floor >> SEQUENCE_BITS,
                "past the floor's millisecond"
            );
            assert_eq!((id >> NODE_SHIFT) & 1023, 3);
            last = id;
            assert!(seen.insert(id));
            assert!(seen.insert(c.next()));
        }
        assert_eq!(
            (b.next() >> NODE_SHIFT) & 1023,
            3,
            "node numbers wrap at 1,024"
        );
        let t = id_timestamp_ms(a.next());
        assert!(t.abs_diff(now_ms()) < 60_000 + 5, "{t}");
    }

    #[test]
    fn iso8601_times_are_utc() {
        assert_eq!(iso8601(1_577_836_800_000), "2020-01-01T00:00:00Z");
        assert_eq!(iso8601(1_577_836_800_250), "2020-01-01T00:00:00.25Z");
    }

    #[test]
    fn ids_increase_strictly_even_within_one_millisecond() {
        let ids = IdGenerator::default();
        let mut prev = 0;
        for _ in 0..100_000 {
            let id = ids.next();
            assert!(id > prev);
            prev = id;
        }
    }

    #[test]
    fn ids_carry_their_creation_time() {
        let before = now_ms();
        let id = IdGenerator::default().next();
        let after = now_ms();
        let at = id_timestamp_ms(id);
        assert!(before <= at && at <= after);
    }

    #[test]
    fn generator_never_goes_below_its_floor() {
        let far_future = u64::MAX / 2;
        let ids = IdGenerator::starting_after(far_future);
        assert_eq!(ids.next(), far_future + 1);
    }

    #[test]
    fn id_parsing_accepts_only_plain_decimals() {
        assert_eq!(parse_id("123"), Some(123));
        for bad in ["", "-1", "1.0", "abc", " 1", "99999999999999999999999"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn big_endian_keys_sort_like_ids() {
        let ids = IdGenerator::default();
        let (a, b) = (ids.next(), ids.next());
        assert!(a.to_be_bytes() < b.to_be_bytes());
    }
}
