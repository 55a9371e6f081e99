//! Anti-replay sliding window after RFC 6479 ("IPsec Anti-Replay Algorithm
//! without Bit Shifting"): the window is a ring of 64-bit blocks; sliding
//! forward only zeroes the blocks that enter the window, never shifts bits.
//!
//! A window exists per (sender gateway, epoch). The receiver calls
//! [`ReplayWindow::check`] before decrypting (cheap, no state change) and
//! [`ReplayWindow::commit`] only after the tag verified, so forged datagrams
//! can neither advance the window nor mark counters as seen.

/// Bits per bitmap block.
const BLOCK_BITS: u64 = u64::BITS as u64;
/// Blocks in the ring. A power of two keeps the index a mask. RFC 6479
/// keeps one block more than the window needs, because the block holding
/// the top counter is only partly inside the window.
pub const REPLAY_BLOCKS: usize = 256;
/// Counters tracked below the highest one seen: (256 - 1) * 64 = 16320,
/// twice the 8192 the design asks for, so reordering across many NIC queues
/// and CPUs (each draining a batch) is tolerated. Costs 2 KiB per window.
pub const REPLAY_WINDOW: u64 = (REPLAY_BLOCKS as u64 - 1) * BLOCK_BITS;

const INDEX_MASK: u64 = REPLAY_BLOCKS as u64 - 1;

// Design requirement: at least 8192 packets of reordering tolerance.
const _: () = assert!(REPLAY_WINDOW >= 8192 && REPLAY_BLOCKS.is_power_of_two());

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Older than the window: it can no longer be told apart from a replay.
    TooOld,
    /// Already committed.
    Duplicate,
}

/// Sliding window over one sender's counters under one key.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest committed counter (0 before any commit; counter 0 is still
    /// accepted once because its bit starts clear).
    top: u64,
    bitmap: [u64; REPLAY_BLOCKS],
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow {
            top: 0,
            bitmap: [0; REPLAY_BLOCKS],
        }
    }

    /// Highest committed counter.
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(counter: u64) -> (usize, u64) {
        let block = ((counter / BLOCK_BITS) & INDEX_MASK) as usize;
        (block, 1u64 << (counter % BLOCK_BITS))
    }

    /// Would `counter` be accepted? Does not change the window.
    pub fn check(&self, counter: u64) -> Result<(), Rejected> {
        if counter > self.top {
            return Ok(());
        }
        if self.top - counter >= REPLAY_WINDOW {
            return Err(Rejected::TooOld);
        }
        let (block, bit) = Self::slot(counter);
        if self.bitmap[block] & bit != 0 {
            return Err(Rejected::Duplicate);
        }
        Ok(())
    }

    /// Marks `counter` as seen, sliding the window if it is the new top.
    /// Re-checks first, so calling it without `check` (or twice) can never
    /// accept a duplicate.
    pub fn commit(&mut self, counter: u64) -> Result<(), Rejected> {
        self.check(counter)?;
        if counter > self.top {
            let old_block = self.top / BLOCK_BITS;
            let new_block = counter / BLOCK_BITS;
            // Blocks entering the window are cleared; a jump of a whole ring
            // or more clears everything once rather than looping per block.
            let entering = (new_block - old_block).min(REPLAY_BLOCKS as u64);
            for step in 1..=entering {
                self.bitmap[((old_block + step) & INDEX_MASK) as usize] = 0;
            }
            self.top = counter;
        }
        let (block, bit) = Self::slot(counter);
        self.bitmap[block] |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::testutil::Rng;
    use std::collections::HashSet;

    fn accept(window: &mut ReplayWindow, counter: u64) -> Result<(), Rejected> {
        window.check(counter)?;
        window.commit(counter)
    }

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new();
        for c in 0..20_000 {
            assert_eq!(accept(&mut w, c), Ok(()), "counter {c}");
        }
        for c in (20_000 - REPLAY_WINDOW)..20_000 {
            assert_eq!(w.check(c), Err(Rejected::Duplicate), "counter {c}");
        }
        assert_eq!(w.check(20_000 - REPLAY_WINDOW - 1), Err(Rejected::TooOld));
    }

    #[test]
    fn counter_zero_accepted_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 0), Ok(()));
        assert_eq!(accept(&mut w, 0), Err(Rejected::Duplicate));
    }

    #[test]
    fn reordered_within_window() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 10_000), Ok(()));
        // Everything within the window below the top is still acceptable,
        // in any order, exactly once.
        for c in (10_000 - 8_192..10_000).rev().step_by(3) {
            assert_eq!(accept(&mut w, c), Ok(()));
            assert_eq!(accept(&mut w, c), Err(Rejected::Duplicate));
        }
        assert_eq!(w.top(), 10_000);
    }

    #[test]
    fn exact_window_edge() {
        let mut w = ReplayWindow::new();
        let top = 1_000_000;
        assert_eq!(accept(&mut w, top), Ok(()));
        assert_eq!(w.check(top - REPLAY_WINDOW + 1), Ok(()));
        assert_eq!(w.check(top - REPLAY_WINDOW), Err(Rejected::TooOld));
    }

    #[test]
    fn too_old_after_jump() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 5), Ok(()));
        assert_eq!(accept(&mut w, 5 + REPLAY_WINDOW), Ok(()));
        assert_eq!(w.check(5), Err(Rejected::TooOld));
        assert_eq!(w.check(6), Ok(()));
    }

    #[test]
    fn huge_jumps_clear_stale_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..500 {
            accept(&mut w, c).unwrap();
        }
        // Jump by exactly one ring: the same block indices come back and
        // must have been cleared.
        let jump = REPLAY_BLOCKS as u64 * BLOCK_BITS;
        for c in jump..jump + 500 {
            assert_eq!(w.check(c), Ok(()), "stale bit for {c}");
        }
        assert_eq!(accept(&mut w, u64::MAX - 1), Ok(()));
        assert_eq!(accept(&mut w, u64::MAX), Ok(()));
        assert_eq!(accept(&mut w, u64::MAX), Err(Rejected::Duplicate));
        assert_eq!(accept(&mut w, u64::MAX - 2), Ok(()));
        assert_eq!(w.check(0), Err(Rejected::TooOld));
        assert_eq!(w.check(jump), Err(Rejected::TooOld));
    }

    #[test]
    fn ring_wraps_many_times() {
        let mut w = ReplayWindow::new();
        let mut c = 0u64;
        // Advance in strides that are not a multiple of the block size so
        // each block is reused at many offsets.
        for _ in 0..10_000 {
            c += 37;
            assert_eq!(accept(&mut w, c), Ok(()));
            assert_eq!(accept(&mut w, c - 1), Ok(()));
            assert_eq!(accept(&mut w, c - 1), Err(Rejected::Duplicate));
        }
        assert!(c > 20 * REPLAY_WINDOW);
    }

    #[test]
    fn commit_without_check_refuses_duplicates() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.commit(42), Ok(()));
        assert_eq!(w.commit(42), Err(Rejected::Duplicate));
        assert_eq!(w.commit(42 + REPLAY_WINDOW + 100), Ok(()));
        assert_eq!(w.commit(42), Err(Rejected::TooOld));
        assert_eq!(w.top(), 42 + REPLAY_WINDOW + 100);
    }

    #[test]
    fn check_does_not_mutate() {
        let mut w = ReplayWindow::new();
        w.commit(100).unwrap();
        for _ in 0..3 {
            assert_eq!(w.check(5_000), Ok(()));
            assert_eq!(w.check(99), Ok(()));
        }
        assert_eq!(w.top(), 100);
    }

    /// The naive model: remember every accepted counter forever.
    struct Oracle {
        seen: HashSet<u64>,
        top: u64,
    }

    impl Oracle {
        fn accept(&mut self, c: u64) -> bool {
            let fresh = c > self.top || (self.top - c < REPLAY_WINDOW && !self.seen.contains(&c));
            if fresh {
                self.seen.insert(c);
                self.top = self.top.max(c);
            }
            fresh
        }
    }

    #[test]
    fn randomized_against_hashset_oracle() {
        for seed in 0..8 {
            let mut rng = Rng::new(seed);
            let mut w = ReplayWindow::new();
            let mut oracle = Oracle {
                seen: HashSet::new(),
                top: 0,
            };
            let mut base = 0u64;
            for step in 0..40_000 {
                let c = match rng.below(10) {
                    0 => base + rng.below(3 * REPLAY_WINDOW),
                    1 => base.saturating_sub(REPLAY_WINDOW + rng.below(64)),
                    2..=4 => base.saturating_sub(rng.below(REPLAY_WINDOW + 64)),
                    _ => base + rng.below(64),
                };
                let expected = oracle.accept(c);
                let got = w.check(c).is_ok() && w.commit(c).is_ok();
                assert_eq!(got, expected, "seed {seed} step {step} counter {c}");
                base = base.max(c);
            }
        }
    }
}
