//! Unit tests of `TunnelCore`: round trips, every rejection path, counters,
//! padding, usage limits and a fuzz-style no-panic test.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};

use crate::tunnel::engine::{counter_floor_from_unix_ms, TunnelConfig, TunnelCore, SEAL_PREFIX};
use crate::tunnel::error::{OpenError, SealError};
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial, UsageLimits};
use crate::tunnel::keyring::{KeyState, RotationReason};
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::testutil::Rng;
use crate::tunnel::wire::{
    Packet, TunnelHeader, HEADER_LEN, INNER_HEADER_LEN, MAX_DATAGRAM_LEN, MIN_DATAGRAM_LEN,
    OVERHEAD,
};
use crate::tunnel::INNER_MTU;

const A: u32 = 0x0a;
const B: u32 = 0x0b;
const OVERLAP: u64 = 100;

fn material(epoch: u32) -> [u8; 32] {
    [epoch as u8 ^ 0x5c; 32]
}

fn epoch_key(epoch: u32, activate_at: u64, algorithm: Algorithm) -> EpochKey {
    EpochKey {
        epoch,
        algorithm,
        activate_at,
        material: KeyMaterial::from_bytes(material(epoch)),
    }
}

fn config(id: u32) -> TunnelConfig {
    let policy = RotationPolicy::new(1000, 100, OVERLAP).unwrap();
    TunnelConfig::new(id, &policy, 1000)
}

fn core_with(config: TunnelConfig, algorithm: Algorithm) -> TunnelCore {
    let mut core = TunnelCore::new(config);
    core.install_key(epoch_key(1, 0, algorithm), 0).unwrap();
    core
}

fn pair(algorithm: Algorithm) -> (TunnelCore, TunnelCore) {
    (
        core_with(config(A), algorithm),
        core_with(config(B), algorithm),
    )
}

fn seal_vec(core: &mut TunnelCore, pcx: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    let len = core.seal(pcx, inner, &mut out).unwrap();
    out.truncate(len);
    out
}

fn open_vec(core: &mut TunnelCore, datagram: &[u8]) -> Result<(u32, Vec<u8>), OpenError> {
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    let opened = core.open(datagram, &mut out)?;
    Ok((opened.pcx_dp_id, out[..opened.inner_len].to_vec()))
}

#[test]
fn round_trip_both_algorithms() {
    for algorithm in [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
        let (mut a, mut b) = pair(algorithm);
        for len in [0usize, 1, 20, 1499, INNER_MTU] {
            let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let datagram = seal_vec(&mut a, 77, &inner);
            assert_eq!(datagram.len(), len + OVERHEAD);
            let mut out = vec![0u8; MAX_DATAGRAM_LEN];
            let opened = b.open(&datagram, &mut out).unwrap();
            assert_eq!((opened.sender, opened.epoch, opened.pcx_dp_id), (A, 1, 77));
            assert_eq!(&out[..opened.inner_len], &inner[..]);
        }
        assert_eq!(a.counters().sealed, 5);
        assert_eq!(b.counters().opened, 5);
    }
}

#[test]
fn in_place_round_trip() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    buf[SEAL_PREFIX..SEAL_PREFIX + 4].copy_from_slice(b"ping");
    let len = a.seal_in_place(9, &mut buf, 4).unwrap();
    let opened = b.open_in_place(&mut buf[..len]).unwrap();
    assert_eq!(opened.pcx_dp_id, 9);
    assert_eq!(&buf[opened.inner.clone()], b"ping");
    assert_eq!(opened.inner, SEAL_PREFIX..SEAL_PREFIX + 4);
}

/// Decrypts with ring directly, following docs/protocol.md rather than the
/// core's own open path, to pin the wire format.
#[test]
fn wire_format_matches_spec() {
    let (mut a, _) = pair(Algorithm::Aes256Gcm);
    let datagram = seal_vec(&mut a, 0x0102_0304, b"\x45abc");
    assert_eq!(&datagram[..4], &[1, 1, 0, 0]);
    assert_eq!(&datagram[4..8], &1u32.to_be_bytes());
    assert_eq!(&datagram[8..12], &A.to_be_bytes());
    assert_eq!(&datagram[12..20], &1000u64.to_be_bytes());
    let key = UnboundKey::new(&ring::aead::AES_256_GCM, &material(1)).unwrap();
    let key = LessSafeKey::new(key);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&A.to_be_bytes());
    nonce[4..].copy_from_slice(&1000u64.to_be_bytes());
    let mut body = datagram[HEADER_LEN..].to_vec();
    let aad = Aad::from(&datagram[..HEADER_LEN]);
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), aad, &mut body)
        .unwrap();
    assert_eq!(plain, b"\x01\x02\x03\x04\x00\x04\x00\x00\x45abc");
}

#[test]
fn nothing_identifying_in_cleartext() {
    let (mut a, _) = pair(Algorithm::Aes256Gcm);
    let marker = [0xeeu8; 64];
    let datagram = seal_vec(&mut a, 0xdead_beef, &marker);
    assert!(!datagram.windows(8).any(|w| w == [0xee; 8]));
    assert!(!datagram
        .windows(4)
        .any(|w| w == 0xdead_beefu32.to_be_bytes()));
}

#[test]
fn mtu_and_buffer_sizes() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let mut out = [0u8; 2048];
    let too_big = [0u8; INNER_MTU + 1];
    let err = a.seal(1, &too_big, &mut out);
    assert_eq!(err, Err(SealError::MtuExceeded { len: INNER_MTU + 1 }));
    assert_eq!(a.seal_in_place(1, &mut out, INNER_MTU + 1), err);
    assert_eq!(a.counters().mtu_drops, 2);
    let err = a.seal(1, &[0u8; 10], &mut out[..10 + OVERHEAD - 1]);
    assert_eq!(
        err,
        Err(SealError::OutputTooSmall {
            needed: 10 + OVERHEAD
        })
    );
    let datagram = seal_vec(&mut a, 1, &[0u8; 10]);
    let err = b.open(&datagram, &mut out[..10]);
    let needed = datagram.len() - HEADER_LEN;
    assert_eq!(err, Err(OpenError::OutputTooSmall { needed }));
    // The failed open consumed nothing: the datagram still opens.
    assert!(b.open(&datagram, &mut out).is_ok());
}

#[test]
fn seal_needs_an_active_key() {
    let mut core = TunnelCore::new(config(A));
    let mut out = [0u8; 128];
    assert_eq!(core.seal(1, b"x", &mut out), Err(SealError::NoCurrentKey));
    core.install_key(epoch_key(1, 500, Algorithm::Aes256Gcm), 0)
        .unwrap();
    assert_eq!(core.seal(1, b"x", &mut out), Err(SealError::NoCurrentKey));
    core.tick(500);
    assert!(core.seal(1, b"x", &mut out).is_ok());
}

#[test]
fn next_epoch_accepted_before_local_activation() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    for core in [&mut a, &mut b] {
        core.install_key(epoch_key(2, 1000, Algorithm::ChaCha20Poly1305), 900)
            .unwrap();
    }
    a.tick(1000); // a's clock runs ahead; b still at 900.
    let datagram = seal_vec(&mut a, 1, b"new");
    assert_eq!(b.keys().state_of(2), KeyState::Next);
    let mut out = [0u8; 128];
    assert_eq!(b.open(&datagram, &mut out).unwrap().epoch, 2);
    // And b's packets under the now-previous epoch 1 are accepted by a.
    let datagram = seal_vec(&mut b, 1, b"old");
    assert_eq!(a.open(&datagram, &mut out).unwrap().epoch, 1);
}

#[test]
fn erased_epoch_refused_and_window_forgotten() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let old = seal_vec(&mut a, 1, b"old");
    let mut out = [0u8; 128];
    b.open(&seal_vec(&mut a, 1, b"x"), &mut out).unwrap();
    let older = seal_vec(&mut b, 1, b"y");
    for core in [&mut a, &mut b] {
        core.install_key(epoch_key(2, 1000, Algorithm::Aes256Gcm), 1000)
            .unwrap();
    }
    assert!(
        b.open(&old, &mut out).is_ok(),
        "previous epoch still accepted"
    );
    b.tick(1000 + OVERLAP);
    a.tick(1000 + OVERLAP);
    assert_eq!(b.keys().state_of(1), KeyState::Erased);
    assert_eq!(
        b.open(&old, &mut out),
        Err(OpenError::UnknownOrErasedEpoch(1))
    );
    assert_eq!(
        a.open(&older, &mut out),
        Err(OpenError::UnknownOrErasedEpoch(1))
    );
    assert_eq!(b.counters().unknown_epoch, 1);
    assert!(b.open(&seal_vec(&mut a, 1, b"z"), &mut out).is_ok());
}

#[test]
fn header_rejections() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let good = seal_vec(&mut a, 1, b"hello");
    let mut out = [0u8; 256];
    let mut bad = good.clone();
    bad[0] = 2;
    assert_eq!(b.open(&bad, &mut out), Err(OpenError::BadVersion(2)));
    let mut bad = good.clone();
    bad[1] = 9;
    assert_eq!(b.open(&bad, &mut out), Err(OpenError::Malformed));
    let mut bad = good.clone();
    bad[3] = 1;
    assert_eq!(b.open(&bad, &mut out), Err(OpenError::Malformed));
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&99u32.to_be_bytes());
    assert_eq!(
        b.open(&bad, &mut out),
        Err(OpenError::UnknownOrErasedEpoch(99))
    );
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&B.to_be_bytes());
    assert_eq!(b.open(&bad, &mut out), Err(OpenError::Reflected));
    let mut long = good.clone();
    long.resize(MAX_DATAGRAM_LEN + 1, 0);
    assert_eq!(b.open(&long, &mut out), Err(OpenError::Malformed));
    assert_eq!(b.counters().malformed, 5);
    assert_eq!(b.counters().unknown_epoch, 1);
    assert!(b.open(&good, &mut out).is_ok());
}

#[test]
fn every_truncation_is_refused() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let good = seal_vec(&mut a, 1, &[7u8; 100]);
    let mut out = [0u8; 256];
    for len in 0..good.len() {
        let expected = if len < MIN_DATAGRAM_LEN {
            OpenError::Truncated
        } else {
            OpenError::AuthenticationFailed
        };
        assert_eq!(b.open(&good[..len], &mut out), Err(expected), "len {len}");
        let mut copy = good[..len].to_vec();
        assert_eq!(b.open_in_place(&mut copy).err(), Some(expected));
    }
    assert!(b.open(&good, &mut out).is_ok());
}

#[test]
fn every_bit_flip_is_refused_and_does_not_advance_window() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let good = seal_vec(&mut a, 1, b"flip me");
    let mut out = [0u8; 256];
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(b.open(&bad, &mut out).is_err(), "bit {bit}");
    }
    // Forgeries with a higher counter must not have moved the window.
    assert!(b.open(&good, &mut out).is_ok());
    let body_bits = (good.len() - HEADER_LEN) as u64 * 8;
    assert!(b.counters().auth_failures >= body_bits);
    assert_eq!(b.counters().opened, 1);
}

#[test]
fn forged_future_counter_does_not_slide_window() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let first = seal_vec(&mut a, 1, b"one");
    let mut forged = first.clone();
    forged[12..20].copy_from_slice(&u64::MAX.to_be_bytes());
    let mut out = [0u8; 128];
    assert_eq!(
        b.open(&forged, &mut out),
        Err(OpenError::AuthenticationFailed)
    );
    assert!(b.open(&first, &mut out).is_ok());
}

#[test]
fn replays_refused_reordering_accepted() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let datagrams: Vec<Vec<u8>> = (0..100).map(|i| seal_vec(&mut a, 1, &[i as u8])).collect();
    let mut out = [0u8; 128];
    for d in datagrams.iter().rev() {
        assert!(b.open(d, &mut out).is_ok());
    }
    for d in &datagrams {
        assert_eq!(b.open(d, &mut out), Err(OpenError::Replay));
    }
    assert_eq!(b.counters().replays, 100);
}

/// A packet that authenticates but whose inner header is wrong (a buggy or
/// hostile key holder) is refused as malformed, never panics.
#[test]
fn authentic_but_malformed_inner() {
    let (_, mut b) = pair(Algorithm::Aes256Gcm);
    let key = LessSafeKey::new(UnboundKey::new(&ring::aead::AES_256_GCM, &material(1)).unwrap());
    let bodies: [&[u8]; 3] = [
        &[0, 0, 0, 1, 0, 9, 0, 0, 1],
        &[0, 0, 0, 1, 0, 0, 1, 0],
        &[1, 2],
    ];
    for (i, body) in bodies.iter().enumerate() {
        let header = TunnelHeader {
            epoch: 1,
            sender: A,
            counter: i as u64,
        };
        let mut datagram = vec![0u8; HEADER_LEN];
        header.emit(&mut Packet::new_unchecked(&mut datagram[..]));
        let mut sealed = body.to_vec();
        let nonce = Nonce::assume_unique_for_key(header.nonce());
        let aad = Aad::from(datagram.clone());
        key.seal_in_place_append_tag(nonce, aad, &mut sealed)
            .unwrap();
        datagram.extend_from_slice(&sealed);
        let mut out = [0u8; 128];
        let expected = if datagram.len() < MIN_DATAGRAM_LEN {
            OpenError::Truncated
        } else {
            OpenError::Malformed
        };
        assert_eq!(b.open(&datagram, &mut out), Err(expected), "body {i}");
    }
    assert_eq!(b.counters().malformed, 3);
}

#[test]
fn padding_hides_lengths_within_mtu() {
    let mut cfg = config(A);
    cfg.pad_multiple = 128;
    let mut a = core_with(cfg, Algorithm::Aes256Gcm);
    let (_, mut b) = pair(Algorithm::Aes256Gcm);
    for len in [0usize, 1, 100, 128, 129, 1400, INNER_MTU] {
        let inner = vec![0x11u8; len];
        let datagram = seal_vec(&mut a, 3, &inner);
        let padded = datagram.len() - OVERHEAD;
        assert!(
            padded == INNER_MTU || padded.is_multiple_of(128),
            "len {len}"
        );
        assert!(padded >= len && padded <= INNER_MTU);
        assert_eq!(open_vec(&mut b, &datagram).unwrap(), (3, inner));
    }
}

#[test]
fn usage_limits_signal_then_refuse() {
    let mut cfg = config(A);
    let limits = UsageLimits {
        seal_soft: 3,
        seal_hard: 5,
        forgery_soft: 2,
    };
    cfg.usage_limits = Some(limits);
    let mut a = core_with(cfg, Algorithm::Aes256Gcm);
    let mut out = [0u8; 128];
    for _ in 0..3 {
        a.seal(1, b"x", &mut out).unwrap();
    }
    assert_eq!(
        a.rotation_needed(),
        Some(RotationReason::SealSoftLimit { epoch: 1 })
    );
    a.seal(1, b"x", &mut out).unwrap();
    a.seal(1, b"x", &mut out).unwrap();
    let exhausted = Err(SealError::KeyUsageExhausted { epoch: 1 });
    assert_eq!(a.seal(1, b"x", &mut out), exhausted);
    a.install_key(epoch_key(2, 10, Algorithm::Aes256Gcm), 10)
        .unwrap();
    assert!(a.seal(1, b"x", &mut out).is_ok());
    assert_eq!(a.rotation_needed(), None);
}

#[test]
fn counter_exhaustion_and_floor() {
    let mut cfg = config(A);
    cfg.counter_floor = u64::MAX - 1;
    let mut a = core_with(cfg, Algorithm::Aes256Gcm);
    let mut out = [0u8; 128];
    assert!(a.seal(1, b"x", &mut out).is_ok());
    assert_eq!(a.seal(1, b"x", &mut out), Err(SealError::CounterExhausted));
    assert_eq!(a.next_counter(), u64::MAX);
    let now_ms = 1_750_000_000_000;
    assert!(
        counter_floor_from_unix_ms(now_ms + 1) > counter_floor_from_unix_ms(now_ms) + (1 << 19)
    );
    assert_eq!(counter_floor_from_unix_ms(u64::MAX), u64::MAX);
}

/// Restart with a clock-derived floor: the new process's counters are all
/// above the old one's, so the receiver's window accepts them and no nonce
/// repeats.
#[test]
fn restart_with_clock_floor_keeps_nonces_fresh() {
    let mut cfg = config(A);
    cfg.counter_floor = counter_floor_from_unix_ms(1_000);
    let mut a = core_with(cfg, Algorithm::Aes256Gcm);
    let (_, mut b) = pair(Algorithm::Aes256Gcm);
    let before = seal_vec(&mut a, 1, b"x");
    cfg.counter_floor = counter_floor_from_unix_ms(1_001);
    let mut restarted = core_with(cfg, Algorithm::Aes256Gcm);
    let after = seal_vec(&mut restarted, 1, b"y");
    assert!(after[12..20] > before[12..20]);
    assert!(open_vec(&mut b, &after).is_ok());
    assert!(
        open_vec(&mut b, &before).is_err(),
        "far below the restarted window"
    );
}

#[test]
fn fuzz_open_never_panics() {
    let (mut a, mut b) = pair(Algorithm::Aes256Gcm);
    let mut rng = Rng::new(0xf022);
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    let valid: Vec<Vec<u8>> = (0..32)
        .map(|i| seal_vec(&mut a, i, &[i as u8; 40]))
        .collect();
    for round in 0..20_000 {
        let mut input = if rng.below(2) == 0 {
            let mut bytes = vec![0u8; rng.below(1600) as usize];
            rng.fill(&mut bytes);
            if rng.below(2) == 0 && bytes.len() >= HEADER_LEN {
                // Plausible header so deeper paths run.
                bytes[..4].copy_from_slice(&[1, 1, 0, 0]);
                bytes[4..8].copy_from_slice(&1u32.to_be_bytes());
            }
            bytes
        } else {
            let pick = rng.below(32) as usize;
            mutate(&mut rng, &valid[pick])
        };
        let small = rng.below(5) == 0;
        let out_len = if small {
            rng.below(64) as usize
        } else {
            out.len()
        };
        let copy = b.open(&input, &mut out[..out_len]);
        let in_place = b.open_in_place(&mut input);
        assert!(copy.is_err() && in_place.is_err(), "round {round}");
    }
    assert_eq!(b.counters().opened, 0, "fuzzed inputs never open");
}

fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match rng.below(4) {
        0 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
        1 => bytes.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
        _ => {
            for _ in 0..=rng.below(3) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
        }
    }
    if bytes == valid {
        // Two flips of the same bit cancel out; force a real change.
        bytes[0] ^= 0x80;
    }
    bytes
}

#[test]
fn header_constants_consistent() {
    assert_eq!(SEAL_PREFIX, HEADER_LEN + INNER_HEADER_LEN);
    assert_eq!(MIN_DATAGRAM_LEN, OVERHEAD);
}
