//! Throughput probe for the IO driver (e.g. a `--bench-tunnel` flag):
//! seals and opens `packets` datagrams in place between two cores and
//! reports the work done and the time taken. It is not run as a timed test;
//! the unit test only checks it works.

use std::time::{Duration, Instant};

use crate::tunnel::engine::{TunnelConfig, TunnelCore, SEAL_PREFIX};
use crate::tunnel::error::{OpenError, SealError};
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial};
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::wire::MAX_DATAGRAM_LEN;
use crate::tunnel::INNER_MTU;

/// What one probe measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThroughputSample {
    /// Packets sealed and then opened.
    pub packets: u64,
    /// Inner bytes carried.
    pub inner_bytes: u64,
    /// Wall time for the seal+open loop (setup excluded).
    pub elapsed: Duration,
}

impl ThroughputSample {
    /// Inner payload rate through seal+open on one core, bits per second.
    pub fn bits_per_second(&self) -> f64 {
        self.inner_bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why the probe stopped early (it should not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

fn core_pair(algorithm: Algorithm) -> (TunnelCore, TunnelCore) {
    let policy = RotationPolicy::default();
    let mut sender = TunnelCore::new(TunnelConfig::new(1, &policy, 0));
    let mut receiver = TunnelCore::new(TunnelConfig::new(2, &policy, 0));
    for core in [&mut sender, &mut receiver] {
        // A fixed, public key: this is a benchmark, never real traffic.
        let key = EpochKey {
            epoch: 1,
            algorithm,
            activate_at: 0,
            material: KeyMaterial::from_bytes([0x42; 32]),
        };
        core.install_key(key, 0)
            .expect("fresh ring accepts a first key");
    }
    (sender, receiver)
}

/// Seals and opens `packets` inner packets of `inner_len` bytes (clamped to
/// the MTU) and times the loop.
pub fn measure_seal_open(
    algorithm: Algorithm,
    inner_len: usize,
    packets: u64,
) -> Result<ThroughputSample, BenchError> {
    let inner_len = inner_len.min(INNER_MTU);
    let (mut sender, mut receiver) = core_pair(algorithm);
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let start = Instant::now();
    for i in 0..packets {
        buf[SEAL_PREFIX..SEAL_PREFIX + inner_len].fill(i as u8);
        let len = sender.seal_in_place(7, &mut buf, inner_len)?;
        receiver.open_in_place(&mut buf[..len])?;
    }
    Ok(ThroughputSample {
        packets,
        inner_bytes: packets * inner_len as u64,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_runs_for_both_algorithms() {
        for algorithm in [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
            let sample = measure_seal_open(algorithm, 5000, 50).unwrap();
            assert_eq!(sample.packets, 50);
            assert_eq!(sample.inner_bytes, 50 * INNER_MTU as u64);
            assert!(sample.bits_per_second() > 0.0);
        }
    }
}
