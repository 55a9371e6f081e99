//! A gateway running several workers: the nonce invariant holds across
//! them, and a replay is refused whichever worker it lands on.

use std::collections::HashSet;

use crate::tunnel::engine::{TunnelConfig, TunnelCore, TunnelShared};
use crate::tunnel::error::OpenError;
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial};
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::wire::{Packet, TunnelHeader, MAX_DATAGRAM_LEN};

const A: u32 = 0x0a;
const B: u32 = 0x0b;
const OVERLAP: u64 = 100;

fn key(epoch: u32, activate_at: u64) -> EpochKey {
    EpochKey {
        epoch,
        algorithm: Algorithm::Aes256Gcm,
        activate_at,
        material: KeyMaterial::from_bytes([epoch as u8 ^ 0x3c; 32]),
    }
}

fn config(id: u32) -> TunnelConfig {
    let policy = RotationPolicy::new(1000, 100, OVERLAP).unwrap();
    TunnelConfig::new(id, &policy, 1 << 40)
}

/// `n` workers of gateway `id`, keyed with epoch 1.
fn workers(id: u32, n: usize) -> Vec<TunnelCore> {
    let shared = TunnelShared::new(config(id).counter_floor);
    (0..n)
        .map(|_| {
            let mut core = TunnelCore::worker(config(id), shared.clone());
            core.install_key(key(1, 0), 0).unwrap();
            core
        })
        .collect()
}

fn seal(core: &mut TunnelCore, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    let len = core.seal(7, inner, &mut out).unwrap();
    out.truncate(len);
    out
}

fn open(core: &mut TunnelCore, datagram: &[u8]) -> Result<(), OpenError> {
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    core.open(datagram, &mut out).map(|_| ())
}

fn header(datagram: &[u8]) -> TunnelHeader {
    TunnelHeader::parse(&Packet::new_checked(datagram).unwrap()).unwrap()
}

/// Four workers seal at once on four threads; no (sender, counter) pair,
/// i.e. no nonce, repeats; a two-worker receiver opens every datagram
/// once, on either worker, and refuses each a second time on the other.
#[test]
fn workers_sealing_concurrently_never_repeat_a_nonce() {
    const EACH: usize = 20_000;
    let threads: Vec<_> = workers(A, 4)
        .into_iter()
        .enumerate()
        .map(|(w, mut core)| {
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| seal(&mut core, format!("w{w} p{i}").as_bytes()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Vec<u8>> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let nonces: HashSet<[u8; 12]> = all.iter().map(|d| header(d).nonce()).collect();
    assert_eq!(nonces.len(), 4 * EACH, "a nonce repeated");

    // In counter order (the reordering the window tolerates is tested in
    // replay.rs), spread over the receiver's two workers.
    all.sort_by_key(|d| header(d).counter);
    let mut rx = workers(B, 2);
    for (i, d) in all.iter().enumerate() {
        assert_eq!(open(&mut rx[i % 2], d), Ok(()), "datagram {i}");
    }
    let recent = &all[all.len() - 8000..];
    for (i, d) in recent.iter().enumerate() {
        assert_eq!(open(&mut rx[(i + 1) % 2], d), Err(OpenError::Replay));
    }
}

/// The outer headers choose the receive queue, and they are not
/// authenticated: a datagram replayed onto another worker's queue is
/// refused there too, whether or not that worker met the sender before.
#[test]
fn a_replay_onto_another_worker_is_refused() {
    let mut tx = workers(A, 1);
    let mut rx = workers(B, 2);
    let first = seal(&mut tx[0], b"first");
    let second = seal(&mut tx[0], b"second");
    // Worker 1 has never seen gateway A.
    assert_eq!(open(&mut rx[0], &first), Ok(()));
    assert_eq!(open(&mut rx[1], &first), Err(OpenError::Replay));
    // And now that it has a handle on the window, both ways round.
    assert_eq!(open(&mut rx[1], &second), Ok(()));
    assert_eq!(open(&mut rx[0], &second), Err(OpenError::Replay));
    assert_eq!(open(&mut rx[1], &second), Err(OpenError::Replay));
    assert_eq!(rx[0].shared().replay_windows(), 1);
}

/// A worker that has not yet applied an erasure another worker applied
/// still holds the old key: it must not make a fresh window for the
/// erased epoch (that would accept its old datagrams again).
#[test]
fn a_lagging_worker_makes_no_window_for_an_erased_epoch() {
    let mut tx = workers(A, 1);
    let old = seal(&mut tx[0], b"old");
    let mut rx = workers(B, 2);
    for core in &mut rx {
        core.install_key(key(2, 10), 0).unwrap();
    }
    rx[0].tick(10 + OVERLAP);
    assert_eq!(
        open(&mut rx[0], &old),
        Err(OpenError::UnknownOrErasedEpoch(1))
    );
    assert!(rx[1].keys().holds(1), "worker 1 has not ticked yet");
    assert_eq!(
        open(&mut rx[1], &old),
        Err(OpenError::UnknownOrErasedEpoch(1))
    );
}

/// The send counter is the gateway's: every worker's seals move it, and it
/// stays above every counter used (a driver may persist it).
#[test]
fn next_counter_is_above_every_worker_counter() {
    let mut tx = workers(A, 3);
    let mut max = 0;
    for round in 0..500 {
        let core = &mut tx[round % 3];
        max = max.max(header(&seal(core, b"x")).counter);
    }
    for core in &tx {
        assert!(core.next_counter() > max);
    }
}

/// Each worker's key ring counts only its own seals: its share of the
/// gateway's budget keeps the sum within the gateway's.
#[test]
fn workers_split_the_key_usage_budget() {
    use crate::tunnel::key::UsageLimits;
    let mut cfg = config(A);
    assert_eq!(cfg.worker_share(1), cfg);
    let gateways = cfg.max_gateways;
    assert_eq!(cfg.worker_share(4).max_gateways, gateways * 4);
    cfg.usage_limits = Some(UsageLimits {
        seal_soft: 10,
        seal_hard: 21,
        forgery_soft: 8,
    });
    let share = cfg.worker_share(2);
    assert_eq!(
        share.usage_limits,
        Some(UsageLimits {
            seal_soft: 5,
            seal_hard: 10,
            forgery_soft: 4,
        })
    );
    // Two workers each seal their 10, then both refuse: 20 <= 21.
    let shared = TunnelShared::new(cfg.counter_floor);
    let mut sealed = 0;
    for _ in 0..2 {
        let mut core = TunnelCore::worker(share, shared.clone());
        core.install_key(key(1, 0), 0).unwrap();
        let mut out = vec![0u8; MAX_DATAGRAM_LEN];
        while core.seal(7, b"x", &mut out).is_ok() {
            sealed += 1;
        }
    }
    assert_eq!(sealed, 20);
}
