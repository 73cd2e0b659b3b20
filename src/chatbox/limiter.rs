//! The chatbox rate limit: one message per interval per license, with a short queue behind it.
//! Pure bookkeeping over instants the caller passes in, so it is tested without a clock.

use std::time::{Duration, Instant};

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it now (`message_sent`).
    Now,
    /// Send it at this instant (`message_queued`); call [`Limiter::dequeued`] when it leaves.
    Queued(Instant),
    /// The queue is full (`rate_limited`).
    Limited,
}

/// One license's rate limit.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    capacity: usize,
    /// When the next message may go out.
    next_free: Option<Instant>,
    /// Messages admitted but not yet sent.
    queued: usize,
}

impl Limiter {
    pub fn new(interval: Duration, capacity: usize) -> Self {
        Self {
            interval,
            capacity,
            next_free: None,
            queued: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        let free_at = self.next_free.unwrap_or(now).max(now);
        if self.queued == 0 && free_at == now {
            self.next_free = Some(now + self.interval);
            return Admit::Now;
        }
        if self.queued >= self.capacity {
            return Admit::Limited;
        }
        self.queued += 1;
        self.next_free = Some(free_at + self.interval);
        Admit::Queued(free_at)
    }

    /// A queued message left the queue (at its instant).
    pub fn dequeued(&mut self) {
        self.queued = self.queued.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: Duration = Duration::from_millis(500);

    #[test]
    fn one_now_then_five_queued_half_a_second_apart_then_limited() {
        let mut limiter = Limiter::new(HALF, 5);
        let t0 = Instant::now();
        assert_eq!(limiter.admit(t0), Admit::Now);
        for i in 1..=5u32 {
            assert_eq!(limiter.admit(t0), Admit::Queued(t0 + HALF * i));
        }
        assert_eq!(limiter.admit(t0), Admit::Limited);
        // The first queued message leaves at t0 + 0.5 s: room for one more, at the end.
        limiter.dequeued();
        assert_eq!(limiter.admit(t0 + HALF), Admit::Queued(t0 + HALF * 6));
    }

    #[test]
    fn an_idle_license_sends_at_once_again() {
        let mut limiter = Limiter::new(HALF, 5);
        let t0 = Instant::now();
        assert_eq!(limiter.admit(t0), Admit::Now);
        assert_eq!(limiter.admit(t0 + HALF), Admit::Now);
        assert_eq!(limiter.admit(t0 + HALF * 3), Admit::Now);
        // Too soon after the last one: queued until its slot even with an empty queue.
        let soon = t0 + HALF * 3 + Duration::from_millis(100);
        assert_eq!(limiter.admit(soon), Admit::Queued(t0 + HALF * 4));
    }
}
