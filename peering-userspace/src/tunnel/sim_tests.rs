//! Simulated deployment: a control plane running the rotation planner, two
//! gateways with skewed clocks, and a lossy, reordering, duplicating link,
//! all on a fake millisecond clock. Checks, under a continuous stream:
//! no authentic datagram is lost across rotations, no (epoch, sender,
//! counter) is ever sealed twice, replays and bit flips are refused and
//! counted, erased epochs are refused.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use crate::tunnel::engine::{TunnelConfig, TunnelCore};
use crate::tunnel::error::{OpenError, SealError};
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial, UsageLimits};
use crate::tunnel::keyring::MAX_HELD_KEYS;
use crate::tunnel::schedule::{KeySchedule, RotationPolicy};
use crate::tunnel::testutil::{Rng, SeededKeySource};
use crate::tunnel::wire::{Packet, TunnelHeader, MAX_DATAGRAM_LEN};
use crate::tunnel::Millis;

#[derive(Clone, Copy)]
struct Scenario {
    seed: u64,
    duration: Millis,
    interval: Millis,
    /// Clock offset of gateway 1 relative to gateway 0.
    skew: Millis,
    loss_percent: u64,
    dup_percent: u64,
    max_delay: Millis,
    limits: Option<UsageLimits>,
    alternate_algorithms: bool,
}

const BASE: Scenario = Scenario {
    seed: 1,
    duration: 30_000,
    interval: 2_000,
    skew: 40,
    loss_percent: 2,
    dup_percent: 1,
    max_delay: 120,
    limits: None,
    alternate_algorithms: false,
};

const IDS: [u32; 2] = [0x0100_0001, 0x0200_0002];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// First copy of an authentic datagram: must open.
    Authentic,
    /// Link duplicate or attacker replay: must be refused.
    Replayed,
    /// Bit-flipped by the attacker: must be refused.
    Corrupted,
}

type InFlight = Reverse<(Millis, u64, usize, Kind, Vec<u8>)>;

#[derive(Default)]
struct Tally {
    delivered: u64,
    opened: u64,
    replays_sent: u64,
    corrupt_sent: u64,
    refused_attacks: u64,
    bootstrap_skips: u64,
}

struct World {
    s: Scenario,
    rng: Rng,
    cores: [TunnelCore; 2],
    schedule: KeySchedule,
    source: SeededKeySource,
    wake_at: Millis,
    keys_in_flight: Vec<(Millis, usize, u32, Algorithm, Millis, [u8; 32])>,
    link: BinaryHeap<InFlight>,
    seq: u64,
    nonces: HashSet<TunnelHeader>,
    history: Vec<Vec<u8>>,
    tally: Tally,
}

impl World {
    fn new(s: Scenario) -> Self {
        let policy = RotationPolicy::with_interval(s.interval).unwrap();
        let cores = IDS.map(|id| {
            let mut config = TunnelConfig::new(id, &policy, 0);
            config.usage_limits = s.limits;
            TunnelCore::new(config)
        });
        World {
            s,
            rng: Rng::new(s.seed),
            cores,
            schedule: KeySchedule::new(policy, Algorithm::Aes256Gcm, None),
            source: SeededKeySource(Rng::new(s.seed ^ 0xabcd)),
            wake_at: 0,
            keys_in_flight: Vec::new(),
            link: BinaryHeap::new(),
            seq: 0,
            nonces: HashSet::new(),
            history: Vec::new(),
            tally: Tally::default(),
        }
    }

    fn local(&self, gw: usize, now: Millis) -> Millis {
        now + if gw == 1 { self.s.skew } else { 0 }
    }

    /// The control plane: runs the planner, publishes keys to both gateways
    /// with independent distribution delays (well under the lead time).
    fn control_plane(&mut self, now: Millis) {
        let urgent = self.cores.iter().any(|c| c.rotation_needed().is_some());
        if now < self.wake_at && !urgent {
            return;
        }
        let (key, wake_at) = self.schedule.poll(now, urgent, &mut self.source).unwrap();
        self.wake_at = wake_at;
        if let Some(key) = key {
            let bytes = *key.material.as_bytes();
            for gw in 0..2 {
                let arrive = now + self.rng.below(self.schedule.policy.lead() / 3);
                self.keys_in_flight.push((
                    arrive,
                    gw,
                    key.epoch,
                    key.algorithm,
                    key.activate_at,
                    bytes,
                ));
            }
            if self.s.alternate_algorithms {
                self.schedule.algorithm = match key.algorithm {
                    Algorithm::Aes256Gcm => Algorithm::ChaCha20Poly1305,
                    Algorithm::ChaCha20Poly1305 => Algorithm::Aes256Gcm,
                };
            }
        }
    }

    fn deliver_keys(&mut self, now: Millis) {
        let due: Vec<_> = self
            .keys_in_flight
            .iter()
            .filter(|k| k.0 <= now)
            .copied()
            .collect();
        self.keys_in_flight.retain(|k| k.0 > now);
        for (_, gw, epoch, algorithm, activate_at, bytes) in due {
            let material = KeyMaterial::from_bytes(bytes);
            let key = EpochKey {
                epoch,
                algorithm,
                activate_at,
                material,
            };
            let local = self.local(gw, now);
            self.cores[gw].install_key(key, local).unwrap();
        }
    }

    fn send(&mut self, now: Millis, from: usize) {
        let mut inner = [0u8; 1500];
        let len = if self.rng.chance(5) {
            1500
        } else {
            20 + self.rng.below(200) as usize
        };
        inner[..8].copy_from_slice(&self.seq.to_be_bytes());
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        let pcx = 1000 + from as u32;
        let n = match self.cores[from].seal(pcx, &inner[..len], &mut out) {
            Ok(n) => n,
            Err(SealError::NoCurrentKey) if now < 2 * self.s.interval => {
                self.tally.bootstrap_skips += 1;
                return;
            }
            Err(e) => panic!("seal failed at {now}: {e}"),
        };
        let datagram = out[..n].to_vec();
        let header = TunnelHeader::parse(&Packet::new_checked(&datagram[..]).unwrap()).unwrap();
        assert!(self.nonces.insert(header), "nonce reuse: {header:?}");
        self.transmit(now, 1 - from, datagram);
    }

    fn transmit(&mut self, now: Millis, to: usize, datagram: Vec<u8>) {
        if self.rng.chance(5) {
            self.attack(now, to, &datagram);
        }
        if self.rng.chance(self.s.loss_percent) {
            return;
        }
        let at = self.enqueue(now, to, Kind::Authentic, datagram.clone());
        if self.rng.chance(self.s.dup_percent) {
            // The link's duplicate trails the original (otherwise the copy
            // would simply be the first to arrive).
            self.enqueue(at, to, Kind::Replayed, datagram);
        }
    }

    /// The attacker replays an old datagram or flips a bit of this one.
    fn attack(&mut self, now: Millis, to: usize, datagram: &[u8]) {
        if self.rng.chance(50) {
            let mut bad = datagram.to_vec();
            let bit = self.rng.below(bad.len() as u64 * 8) as usize;
            bad[bit / 8] ^= 1 << (bit % 8);
            self.tally.corrupt_sent += 1;
            self.enqueue(now, to, Kind::Corrupted, bad);
        } else if !self.history.is_empty() {
            let old = self.history[self.rng.below(self.history.len() as u64) as usize].clone();
            let dest = IDS.iter().position(|&id| id != sender_of(&old)).unwrap();
            self.tally.replays_sent += 1;
            self.enqueue(now, dest, Kind::Replayed, old);
        }
    }

    /// Queues a datagram with a random delay; returns its arrival time.
    fn enqueue(&mut self, now: Millis, to: usize, kind: Kind, datagram: Vec<u8>) -> Millis {
        let at = now + 1 + self.rng.below(self.s.max_delay);
        self.seq += 1;
        self.link.push(Reverse((at, self.seq, to, kind, datagram)));
        at
    }

    fn receive(&mut self, now: Millis) {
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        while self.link.peek().is_some_and(|Reverse(d)| d.0 <= now) {
            let Reverse((_, _, to, kind, datagram)) = self.link.pop().unwrap();
            let result = self.cores[to].open(&datagram, &mut out);
            match kind {
                Kind::Authentic => {
                    self.tally.delivered += 1;
                    let opened = result.unwrap_or_else(|e| panic!("lost at {now}: {e}"));
                    assert_eq!(opened.pcx_dp_id, 1000 + (1 - to) as u32);
                    self.tally.opened += 1;
                    if self.rng.chance(2) {
                        self.history.push(datagram);
                    }
                }
                Kind::Replayed | Kind::Corrupted => {
                    assert!(result.is_err(), "{kind:?} accepted at {now}");
                    self.tally.refused_attacks += 1;
                }
            }
        }
    }

    fn step(&mut self, now: Millis) {
        self.control_plane(now);
        self.deliver_keys(now);
        for gw in 0..2 {
            let local = self.local(gw, now);
            self.cores[gw].tick(local);
            assert!(self.cores[gw].keys().held_epochs().count() <= MAX_HELD_KEYS);
        }
        for from in 0..2 {
            for _ in 0..self.rng.below(3) {
                self.send(now, from);
            }
        }
        self.receive(now);
    }

    fn run(mut self) -> Self {
        for now in 0..self.s.duration {
            self.step(now);
        }
        // Drain the link.
        for now in self.s.duration..self.s.duration + self.s.max_delay + 2 {
            self.receive(now);
        }
        self
    }
}

fn sender_of(datagram: &[u8]) -> u32 {
    Packet::new_checked(datagram).unwrap().sender()
}

fn check_common(w: &World) {
    let t = &w.tally;
    assert_eq!(t.opened, t.delivered);
    assert!(
        t.delivered > w.s.duration,
        "stream too thin: {}",
        t.delivered
    );
    let c: Vec<_> = w.cores.iter().map(|c| c.counters()).collect();
    let rejected: u64 = c
        .iter()
        .map(|c| c.auth_failures + c.replays + c.unknown_epoch + c.malformed)
        .sum();
    assert_eq!(rejected, t.refused_attacks, "every refusal is counted once");
    assert_eq!(c[0].opened + c[1].opened, t.opened);
    assert!(t.corrupt_sent > 50 && t.replays_sent > 50);
    assert!(c.iter().all(|c| c.auth_failures > 0 && c.replays > 0));
    assert!(
        t.bootstrap_skips > 0,
        "the stream starts before the first key"
    );
}

#[test]
fn rotation_under_continuous_stream_loses_nothing() {
    let w = World::new(BASE).run();
    check_common(&w);
    // ~30 s / 2 s rotations; each epoch is seen by the receivers.
    let latest = w.schedule.latest().unwrap().epoch;
    assert!(latest >= 14, "only {latest} epochs");
    let epochs: HashSet<u32> = w.nonces.iter().map(|h| h.epoch).collect();
    assert!(epochs.len() as u32 >= latest - 2);
    // Old epochs are refused as erased (the attacker's old replays).
    let unknown: u64 = w.cores.iter().map(|c| c.counters().unknown_epoch).sum();
    assert!(unknown > 0);
    // A datagram from the first epochs, replayed at the end of the run.
    let mut w = w;
    let early = w.history[0].clone();
    let epoch = Packet::new_checked(&early[..]).unwrap().epoch();
    assert!(epoch < latest - 2);
    let to = IDS.iter().position(|&id| id != sender_of(&early)).unwrap();
    let mut out = [0u8; MAX_DATAGRAM_LEN];
    let result = w.cores[to].open(&early, &mut out);
    assert_eq!(result, Err(OpenError::UnknownOrErasedEpoch(epoch)));
}

#[test]
fn one_second_rotation_with_fast_sender_and_chacha_migration() {
    let s = Scenario {
        seed: 7,
        duration: 12_000,
        interval: 1_000,
        skew: 30,
        max_delay: 60,
        alternate_algorithms: true,
        ..BASE
    };
    let w = World::new(s).run();
    check_common(&w);
    assert!(w.schedule.latest().unwrap().epoch >= 11);
}

#[test]
fn usage_limit_forces_early_rotation_without_loss() {
    let limits = UsageLimits {
        seal_soft: 3_000,
        seal_hard: 20_000,
        forgery_soft: u64::MAX,
    };
    let s = Scenario {
        seed: 3,
        duration: 40_000,
        interval: 10_000,
        limits: Some(limits),
        ..BASE
    };
    let w = World::new(s).run();
    check_common(&w);
    // Regular rotation would give 4 epochs in 40 s; the usage limit
    // (about 3 s of traffic) forces roughly one every 5.5 s.
    let latest = w.schedule.latest().unwrap().epoch;
    assert!(latest >= 6, "only {latest} epochs");
}
