//! Send counters for a gateway whose tunnel runs on several workers.
//!
//! Every datagram's nonce is (sender gateway id, counter), and a nonce must
//! never repeat under a key (docs/protocol.md, "Nonce invariant"). The
//! workers of one gateway share its id, so they must never use the same
//! counter. They draw counters from one [`SendCounter`] in blocks of
//! [`COUNTER_BLOCK`] ([`CounterBlock`]): a block is reserved with one atomic
//! read-modify-write, so blocks are disjoint, and each worker then counts
//! through its block alone.
//!
//! Why blocks from a shared counter rather than a fixed partition of the
//! counter space (worker index in some bits): the receiver keeps one replay
//! window per sender and epoch, shared by its workers, so a sender's
//! counters in flight must stay within [`super::replay::REPLAY_WINDOW`] of
//! each other. With a fixed partition, a busy worker's counters would run
//! ahead of an idle one's and the idle worker's next datagram would be
//! refused as too old. Blocks keep every worker close to the shared
//! counter: a worker whose block fell more than [`STALE_AFTER`] behind it
//! (it was idle while others sealed) drops the rest of the block and
//! reserves a new one.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters reserved at once: one atomic operation per this many seals.
pub const COUNTER_BLOCK: u64 = 64;

/// How far a worker's next counter may trail the shared counter before it
/// takes a fresh block. Together with the reordering on the way (rings,
/// queues) this must stay well inside the receiver's window of 16320
/// counters.
pub const STALE_AFTER: u64 = 1024;

const _: () = assert!(STALE_AFTER + COUNTER_BLOCK < super::replay::REPLAY_WINDOW / 4);

/// The gateway's next unreserved counter, shared by its workers.
#[derive(Debug)]
pub struct SendCounter {
    next: AtomicU64,
}

impl SendCounter {
    /// Starts at `floor` (see [`super::counter_floor_from_unix_ms`]).
    pub fn new(floor: u64) -> Self {
        SendCounter {
            next: AtomicU64::new(floor),
        }
    }

    /// Above every counter any worker has used or may use from the blocks
    /// it holds: a driver may persist it as the next floor.
    pub fn next_unreserved(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Reserves up to `n` counters; `None` once the space is spent.
    /// `u64::MAX` itself is never handed out, so "next" stays
    /// representable and the counter never wraps.
    fn reserve(&self, n: u64) -> Option<(u64, u64)> {
        let start = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |next| {
                (next < u64::MAX).then(|| next.saturating_add(n))
            })
            .ok()?;
        Some((start, start.saturating_add(n)))
    }
}

/// One worker's reserved counters, `next..end`.
#[derive(Debug, Default)]
pub struct CounterBlock {
    next: u64,
    end: u64,
}

impl CounterBlock {
    /// The next counter this worker seals with: strictly above every
    /// counter it used before, and used by no other worker sharing
    /// `shared`. `None` once the counter space is spent.
    pub fn take(&mut self, shared: &SendCounter) -> Option<u64> {
        let stale = shared.next_unreserved().saturating_sub(self.next) > STALE_AFTER;
        if self.next == self.end || stale {
            let (start, end) = shared.reserve(COUNTER_BLOCK)?;
            // Blocks come from a counter that only grows: never backwards.
            debug_assert!(start >= self.end);
            (self.next, self.end) = (start, end);
        }
        let counter = self.next;
        self.next += 1;
        Some(counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashSet, sync::Arc};

    #[test]
    fn one_worker_counts_up_from_the_floor() {
        let shared = SendCounter::new(1000);
        let mut block = CounterBlock::default();
        for want in 1000..1000 + 3 * COUNTER_BLOCK {
            assert_eq!(block.take(&shared), Some(want));
        }
        assert_eq!(shared.next_unreserved(), 1000 + 3 * COUNTER_BLOCK);
    }

    #[test]
    fn the_space_ends_below_u64_max() {
        let shared = SendCounter::new(u64::MAX - 2);
        let mut block = CounterBlock::default();
        assert_eq!(block.take(&shared), Some(u64::MAX - 2));
        assert_eq!(block.take(&shared), Some(u64::MAX - 1));
        assert_eq!(block.take(&shared), None);
        assert_eq!(block.take(&shared), None);
        assert_eq!(shared.next_unreserved(), u64::MAX);
        let mut other = CounterBlock::default();
        assert_eq!(other.take(&shared), None);
    }

    #[test]
    fn an_idle_worker_catches_up_instead_of_trailing() {
        let shared = SendCounter::new(0);
        let (mut idle, mut busy) = (CounterBlock::default(), CounterBlock::default());
        assert_eq!(idle.take(&shared), Some(0));
        for _ in 0..10 * STALE_AFTER {
            busy.take(&shared).unwrap();
        }
        let next = idle.take(&shared).unwrap();
        assert!(next + STALE_AFTER >= shared.next_unreserved(), "{next}");
        // Not stale yet: the block is used to its end.
        let mut fresh = CounterBlock::default();
        let first = fresh.take(&shared).unwrap();
        assert_eq!(fresh.take(&shared), Some(first + 1));
    }

    #[test]
    fn interleaved_workers_never_share_a_counter_and_each_only_climbs() {
        let shared = SendCounter::new(7);
        let mut blocks: Vec<CounterBlock> = (0..5).map(|_| CounterBlock::default()).collect();
        let mut last = [None::<u64>; 5];
        let mut seen = HashSet::new();
        let mut rng = crate::tunnel::testutil::Rng::new(3);
        for _ in 0..50_000 {
            // Uneven load, so some workers go stale.
            let w = match rng.below(10) {
                0..=5 => 0,
                n => n as usize - 5,
            };
            let c = blocks[w].take(&shared).unwrap();
            assert!(seen.insert(c), "counter {c} used twice");
            assert!(last[w].is_none_or(|l| c > l), "worker {w} went back");
            last[w] = Some(c);
            assert!(c < shared.next_unreserved());
        }
    }

    /// The invariant under real concurrency: threads sealing at once never
    /// repeat a counter.
    #[test]
    fn concurrent_workers_never_repeat_a_counter() {
        const WORKERS: usize = 4;
        const EACH: usize = 100_000;
        let shared = Arc::new(SendCounter::new(1 << 40));
        let threads: Vec<_> = (0..WORKERS)
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut block = CounterBlock::default();
                    (0..EACH)
                        .map(|_| block.take(&shared).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            let counters = t.join().unwrap();
            assert!(counters.windows(2).all(|w| w[1] > w[0]));
            for c in counters {
                assert!(all.insert(c), "counter {c} repeated");
            }
        }
        assert_eq!(all.len(), WORKERS * EACH);
    }
}
