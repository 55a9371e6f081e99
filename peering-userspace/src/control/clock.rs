//! Time source. The model never reads the clock: callers read a `Clock` and
//! pass the time in through [`crate::control::account::Call`]. `SystemClock` is
//! the production edge; `FakeClock` drives tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const MINUTE: u64 = 60;
pub const HOUR: u64 = 60 * MINUTE;
pub const DAY: u64 = 24 * HOUR;

/// A source of wall-clock time in unix seconds.
pub trait Clock {
    fn now(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        // A clock before 1970 is a broken host; treat it as the epoch rather
        // than panicking in a server.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Wall-clock time in Unix milliseconds, the unit of tunnel key times (a
/// clock before 1970 reads as the epoch, as in [`SystemClock`]).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A manually driven clock for tests. Atomic so it can be shared across
/// threads in store tests.
#[derive(Debug, Default)]
pub struct FakeClock(AtomicU64);

impl FakeClock {
    pub fn new(start: u64) -> Self {
        FakeClock(AtomicU64::new(start))
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new(100);
        assert_eq!(c.now(), 100);
        c.advance(DAY);
        assert_eq!(c.now(), 100 + 86_400);
        c.set(5);
        assert_eq!(c.now(), 5);
        assert!(SystemClock.now() > 1_600_000_000);
    }
}
