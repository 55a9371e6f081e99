//! Deterministic helpers for tests: a seeded PRNG (SplitMix64, a public
//! domain algorithm by Sebastiano Vigna) and a key source built on it.

use crate::tunnel::error::KeyGenError;
use crate::tunnel::key::{KeyMaterial, KeySource, KEY_LEN};

/// Small, seeded, non-cryptographic generator: tests must be reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..n` (n > 0); modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            *byte = self.next_u64() as u8;
        }
    }
}

/// Deterministic key source: test keys differ per call but are reproducible.
#[derive(Debug)]
pub struct SeededKeySource(pub Rng);

impl KeySource for SeededKeySource {
    fn generate(&mut self) -> Result<KeyMaterial, KeyGenError> {
        let mut bytes = [0u8; KEY_LEN];
        self.0.fill(&mut bytes);
        Ok(KeyMaterial::from_bytes(bytes))
    }
}
