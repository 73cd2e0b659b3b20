//! The one connection limit of every long-lived gateway (`/`, the SignalR hub at `/hub` and the
//! chatbox gateway at `/v2`): `--max-websockets` connections at once, counted together, so
//! that no gateway can be used to get around another's limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Open long-lived connections, shared by the gateways.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// A reserved place for one connection; dropping it frees the place.
#[derive(Debug)]
pub struct Place {
    open: Arc<AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max,
        }
    }

    /// Reserves a place, unless `max` connections are open.
    pub fn reserve(&self) -> Option<Place> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Place {
            open: self.open.clone(),
        })
    }

    /// Connections open (or being opened) in every gateway.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_maximum_and_free_on_drop() {
        let limit = ConnectionLimit::new(2);
        let shared = limit.clone();
        let a = limit.reserve().unwrap();
        let _b = shared.reserve().unwrap();
        assert!(limit.reserve().is_none());
        assert!(shared.reserve().is_none(), "clones count together");
        drop(a);
        assert!(shared.reserve().is_some());
        assert_eq!(limit.open(), 1, "the reservation above was dropped at once");
    }
}
