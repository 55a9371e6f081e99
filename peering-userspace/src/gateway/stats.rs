//! The tunnel's counters and their export.
//!
//! Each tunnel worker has its own [`Shared`] and is the only writer of
//! every counter in it: each is an atomic it bumps with a relaxed load and
//! store (no locked read-modify-write, no cache line shared between
//! workers), so counting costs what a plain `u64` does. A separate
//! exporter thread reads every worker's counters, sums them
//! ([`TunnelStats::absorb`]) and writes the JSON file four times a second:
//! the packet threads never serialize anything and never walk a map to
//! export.
//!
//! What the counters are keyed by is bounded by the control plane, never
//! by the network: per-reason drops are a fixed array, per-peering and
//! per-gateway counters exist only for the peerings and registered
//! gateways of the current [`super::TunnelTable`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, Weak,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use log::warn;
use serde::{Deserialize, Serialize};

use super::{
    reason::{DropReason, DROP_REASONS},
    xdp_underlay::UnderlayCounters,
    xsk::XskCounters,
    UnderlayIo,
};

/// A counter with a single writer (one packet thread) and any readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only one thread may call this for a given counter: the
    /// packet thread, hence not public outside the crate.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Counters of one peering or one registered gateway. Failures before
/// authentication are charged to a gateway only when the datagram claims
/// a registered sender (the claim is unproven; the fixed per-reason
/// counters are the authoritative ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    pub sealed: u64,
    pub sealed_bytes: u64,
    pub opened: u64,
    pub opened_bytes: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub unknown_epoch: u64,
    pub malformed: u64,
    pub mtu_drops: u64,
    pub policy_drops: u64,
}

/// The live form of [`PathStats`].
#[derive(Debug, Default)]
pub struct PathCounters {
    pub sealed: Counter,
    pub sealed_bytes: Counter,
    pub opened: Counter,
    pub opened_bytes: Counter,
    pub auth_failures: Counter,
    pub replays: Counter,
    pub unknown_epoch: Counter,
    pub malformed: Counter,
    pub mtu_drops: Counter,
    pub policy_drops: Counter,
}

impl PathStats {
    /// Adds `other`, counter by counter (another worker's share).
    pub fn add(&mut self, other: &PathStats) {
        self.sealed += other.sealed;
        self.sealed_bytes += other.sealed_bytes;
        self.opened += other.opened;
        self.opened_bytes += other.opened_bytes;
        self.auth_failures += other.auth_failures;
        self.replays += other.replays;
        self.unknown_epoch += other.unknown_epoch;
        self.malformed += other.malformed;
        self.mtu_drops += other.mtu_drops;
        self.policy_drops += other.policy_drops;
    }
}

impl PathCounters {
    pub fn snapshot(&self) -> PathStats {
        PathStats {
            sealed: self.sealed.get(),
            sealed_bytes: self.sealed_bytes.get(),
            opened: self.opened.get(),
            opened_bytes: self.opened_bytes.get(),
            auth_failures: self.auth_failures.get(),
            replays: self.replays.get(),
            unknown_epoch: self.unknown_epoch.get(),
            malformed: self.malformed.get(),
            mtu_drops: self.mtu_drops.get(),
            policy_drops: self.policy_drops.get(),
        }
    }

    /// Charges a failed open to the gateway it claims to come from.
    pub(super) fn charge_open_failure(&self, reason: DropReason) {
        match reason {
            DropReason::AuthFailed => self.auth_failures.add(1),
            DropReason::Replay => self.replays.add(1),
            DropReason::UnknownEpoch => self.unknown_epoch.add(1),
            _ => self.malformed.add(1),
        }
    }
}

/// The labelled path counters of one table, swapped whole when the table
/// changes (counters of peerings and gateways that stay carry over).
#[derive(Debug, Default)]
pub struct PathSet {
    pub peerings: Vec<(String, Arc<PathCounters>)>,
    pub gateways: Vec<(String, Arc<PathCounters>)>,
}

/// Slots for the held key epochs (the ring holds at most three, plus one
/// while a new key is installed).
const EPOCH_SLOTS: usize = crate::tunnel::keyring::MAX_HELD_KEYS + 1;
const NO_EPOCH: u64 = u64::MAX;

/// What the IO edge publishes once per stats period: the socket and
/// underlay counters (sockets are bounded by configuration).
#[derive(Debug, Default, Clone)]
pub struct IoStats {
    pub sockets: Vec<((u32, u32), XskCounters)>,
    pub underlay_io: Option<UnderlayIo>,
    pub underlay: UnderlayCounters,
}

/// Everything the exporter reads.
#[derive(Debug)]
pub struct Shared {
    pub gateway_id: u32,
    drops: [Counter; DROP_REASONS],
    current_epoch: AtomicU64,
    held_epochs: [AtomicU64; EPOCH_SLOTS],
    /// Replaced on table changes only.
    pub paths: Mutex<Arc<PathSet>>,
    /// Written by the IO edge every stats period.
    pub io: Mutex<IoStats>,
}

impl Shared {
    pub fn new(gateway_id: u32) -> Self {
        Shared {
            gateway_id,
            drops: std::array::from_fn(|_| Counter::default()),
            current_epoch: AtomicU64::new(NO_EPOCH),
            held_epochs: std::array::from_fn(|_| AtomicU64::new(NO_EPOCH)),
            paths: Mutex::default(),
            io: Mutex::default(),
        }
    }

    #[inline]
    pub(super) fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].add(1);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }

    /// Publishes the key ring's state (called by the packet thread on
    /// ticks and key installs: a handful of stores).
    pub(super) fn set_epochs(&self, current: Option<u32>, held: impl Iterator<Item = u32>) {
        self.current_epoch
            .store(current.map_or(NO_EPOCH, u64::from), Relaxed);
        let mut held = held.map(u64::from);
        for slot in &self.held_epochs {
            slot.store(held.next().unwrap_or(NO_EPOCH), Relaxed);
        }
    }

    /// The whole export, built off the packet thread.
    pub fn snapshot(&self) -> TunnelStats {
        let paths = lock(&self.paths).clone();
        let io = lock(&self.io).clone();
        let epoch = |a: &AtomicU64| match a.load(Relaxed) {
            NO_EPOCH => None,
            e => u32::try_from(e).ok(),
        };
        let label = |v: &[(String, Arc<PathCounters>)]| {
            v.iter()
                .map(|(name, c)| (name.clone(), c.snapshot()))
                .collect()
        };
        TunnelStats {
            gateway_id: self.gateway_id,
            current_epoch: epoch(&self.current_epoch),
            held_epochs: self.held_epochs.iter().filter_map(epoch).collect(),
            peerings: label(&paths.peerings),
            gateways: label(&paths.gateways),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), self.drops(*r)))
                .collect(),
            sockets: io
                .sockets
                .iter()
                .map(|((ifindex, queue), c)| (format!("{ifindex}/{queue}"), *c))
                .collect(),
            underlay_io: io.underlay_io,
            underlay: io.underlay,
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the data is counters.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the tunnel exports (as JSON, see `TunnelParams::stats_path`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStats {
    pub gateway_id: u32,
    pub current_epoch: Option<u32>,
    pub held_epochs: Vec<u32>,
    pub peerings: BTreeMap<String, PathStats>,
    pub gateways: BTreeMap<String, PathStats>,
    /// Drops by reason ([`DropReason`]), over all peerings and gateways:
    /// every reason, zero or not.
    pub drops: BTreeMap<String, u64>,
    /// Per AF_XDP socket (VPC ports and underlay), "ifindex/queue".
    pub sockets: BTreeMap<String, XskCounters>,
    /// The underlay path in use ("af-xdp" or "socket") and its counters.
    #[serde(default)]
    pub underlay_io: Option<UnderlayIo>,
    #[serde(default)]
    pub underlay: UnderlayCounters,
}

impl TunnelStats {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Sum of one counter over all gateways.
    pub fn gateway_total(&self, f: impl Fn(&PathStats) -> u64) -> u64 {
        self.gateways.values().map(f).sum()
    }

    /// Adds another worker's counters: packet counters summed, sockets
    /// listed side by side (each worker has its own), key epochs and the
    /// underlay path kept from the first worker (all hold the same keys).
    pub fn absorb(&mut self, other: TunnelStats) {
        let sum = |into: &mut BTreeMap<String, PathStats>, from: BTreeMap<String, PathStats>| {
            for (name, s) in from {
                into.entry(name).or_default().add(&s);
            }
        };
        sum(&mut self.peerings, other.peerings);
        sum(&mut self.gateways, other.gateways);
        for (reason, n) in other.drops {
            *self.drops.entry(reason).or_default() += n;
        }
        self.sockets.extend(other.sockets);
        self.underlay_io = self.underlay_io.or(other.underlay_io);
        self.underlay.add(&other.underlay);
    }

    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }

    /// Sum of the drops decided before authentication.
    pub fn drops_before_auth(&self) -> u64 {
        DropReason::ALL
            .iter()
            .filter(|r| r.before_auth())
            .map(|r| self.drop_count(r.name()))
            .sum()
    }
}

/// The workers' counters summed (worker 0's first); `None` once every
/// worker has stopped.
pub fn snapshot_all(workers: &[Weak<Shared>]) -> Option<TunnelStats> {
    let mut live = workers.iter().filter_map(Weak::upgrade);
    let mut stats = live.next()?.snapshot();
    for w in live {
        stats.absorb(w.snapshot());
    }
    Some(stats)
}

/// Starts the thread that writes the workers' counters, summed, to `path`
/// every `every`; it ends once every worker dropped its counters.
pub fn spawn_exporter(
    workers: Vec<Weak<Shared>>,
    path: PathBuf,
    every: Duration,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tunnel-stats".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(stats) = snapshot_all(&workers) else {
                return;
            };
            if let Err(e) = write_atomic(&path, &stats) {
                warn!("writing {}: {e:#}", path.display());
            }
        })
        .context("starting the tunnel stats thread")
}

/// Writes JSON to a temporary file and renames it over `path`, so a reader
/// never sees half a file.
fn write_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_every_reason_and_the_published_epochs() {
        let s = Shared::new(7);
        s.count_drop(DropReason::AuthFailed);
        s.count_drop(DropReason::AuthFailed);
        s.set_epochs(Some(4), [3, 4].into_iter());
        let paths = PathSet {
            peerings: vec![("pcx-1".into(), Arc::default())],
            gateways: vec![],
        };
        paths.peerings[0].1.sealed.add(5);
        *lock(&s.paths) = Arc::new(paths);
        let t = s.snapshot();
        assert_eq!(t.gateway_id, 7);
        assert_eq!(t.current_epoch, Some(4));
        assert_eq!(t.held_epochs, vec![3, 4]);
        assert_eq!(t.drops.len(), DROP_REASONS);
        assert_eq!(t.drop_count("auth_failed"), 2);
        assert_eq!(t.drops_before_auth(), 2);
        assert_eq!(t.peerings["pcx-1"].sealed, 5);
        s.set_epochs(None, std::iter::empty());
        let t = s.snapshot();
        assert_eq!((t.current_epoch, t.held_epochs.len()), (None, 0));
    }

    #[test]
    fn workers_counters_are_summed_and_their_sockets_listed() {
        let workers: Vec<Arc<Shared>> = (0..2).map(|_| Arc::new(Shared::new(7))).collect();
        for (i, w) in workers.iter().enumerate() {
            w.count_drop(DropReason::Replay);
            let paths = PathSet {
                peerings: vec![("pcx-1".into(), Arc::default())],
                gateways: vec![],
            };
            paths.peerings[0].1.sealed.add(10 + i as u64);
            *lock(&w.paths) = Arc::new(paths);
            let mut io = lock(&w.io);
            io.sockets.push(((4, i as u32), XskCounters::default()));
            io.underlay.tx_socket = 3;
        }
        workers[0].set_epochs(Some(2), [2].into_iter());
        let weak: Vec<_> = workers.iter().map(Arc::downgrade).collect();
        let t = snapshot_all(&weak).unwrap();
        assert_eq!(t.drop_count("replay"), 2);
        assert_eq!(t.drops.len(), DROP_REASONS);
        assert_eq!(t.peerings["pcx-1"].sealed, 21);
        assert_eq!(t.sockets.len(), 2);
        assert_eq!(t.underlay.tx_socket, 6);
        assert_eq!(t.current_epoch, Some(2));
        drop(workers);
        assert!(snapshot_all(&weak).is_none());
    }

    #[test]
    fn the_exporter_writes_and_stops_with_the_counters() {
        let dir = std::env::temp_dir().join(format!("stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        let shared = Arc::new(Shared::new(3));
        shared.count_drop(DropReason::Truncated);
        let t = spawn_exporter(
            vec![Arc::downgrade(&shared)],
            path.clone(),
            Duration::from_millis(5),
        )
        .unwrap();
        let mut read = None;
        for _ in 0..200 {
            if let Ok(s) = TunnelStats::read(&path) {
                read = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(shared);
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let read = read.expect("stats written");
        assert_eq!(read.drop_count("truncated"), 1);
    }
}
