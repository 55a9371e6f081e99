//! [`TunnelCore`]: the sans-IO seal/open state machine of one gateway.
//!
//! It owns the gateway id, the key ring and the counters, and shares two
//! things with the other workers of its gateway ([`TunnelShared`]): the
//! send counter it draws nonces from and the per-sender replay windows.
//! The IO driver feeds it time (`tick`), keys from the control store
//! (`install_key`), packets to seal and datagrams to open. Sealing and
//! opening never allocate; only the first authenticated datagram of a
//! (sender, epoch) pair on a worker looks up (or allocates) its window.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce};

use crate::tunnel::counter::{CounterBlock, SendCounter};
use crate::tunnel::error::{InstallError, OpenError, SealError};
use crate::tunnel::key::{EpochKey, UsageLimits, DEFAULT_MAX_GATEWAYS};
use crate::tunnel::keyring::KeyRing;
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::windows::{self, NoWindow, ReplayWindows, SharedWindow};
use crate::tunnel::wire::{
    InnerHeader, InnerPacket, Packet, TunnelHeader, WireError, HEADER_LEN, INNER_HEADER_LEN,
    MAX_DATAGRAM_LEN, MIN_DATAGRAM_LEN, TAG_LEN,
};
use crate::tunnel::{Millis, INNER_MTU};

pub use crate::tunnel::keyring::RotationReason;

/// Offset at which `seal_in_place` expects the inner packet.
pub const SEAL_PREFIX: usize = HEADER_LEN + INNER_HEADER_LEN;

/// Bits of sub-millisecond room in [`counter_floor_from_unix_ms`]: a
/// restarted gateway starts above its previous counters as long as it
/// sealed fewer than 2^20 (about a million) packets per millisecond of
/// uptime, which exceeds any line rate the gateway can reach.
pub const COUNTER_FLOOR_SHIFT: u32 = 20;

pub use crate::tunnel::windows::MAX_REPLAY_WINDOWS;

/// First send counter for a gateway starting at `unix_ms`. Counters must
/// never repeat under a key, including across restarts of the same gateway
/// id; deriving the floor from the wall clock guarantees it without
/// persisting state, provided the clock does not step back across a
/// restart (see docs/protocol.md, "Nonce invariant").
pub fn counter_floor_from_unix_ms(unix_ms: u64) -> u64 {
    unix_ms.saturating_mul(1 << COUNTER_FLOOR_SHIFT)
}

/// Static configuration of one gateway's tunnel core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelConfig {
    /// This gateway's id; must be unique in the deployment (it is half of
    /// every nonce it seals with).
    pub gateway_id: u32,
    /// How long a superseded key stays accepted; the deployment's
    /// `RotationPolicy::overlap()`.
    pub overlap: Millis,
    /// First send counter (see [`counter_floor_from_unix_ms`]).
    pub counter_floor: u64,
    /// Pad inner packets to a multiple of this many bytes (never past the
    /// MTU) to blur packet sizes; 0 or 1 disables padding.
    pub pad_multiple: u16,
    /// Gateways sharing the key, to split usage limits.
    pub max_gateways: u32,
    /// Explicit usage limits; `None` derives them per algorithm.
    pub usage_limits: Option<UsageLimits>,
}

impl TunnelConfig {
    pub fn new(gateway_id: u32, policy: &RotationPolicy, counter_floor: u64) -> Self {
        TunnelConfig {
            gateway_id,
            overlap: policy.overlap(),
            counter_floor,
            pad_multiple: 0,
            max_gateways: DEFAULT_MAX_GATEWAYS,
            usage_limits: None,
        }
    }

    /// This configuration for each of `workers` workers of one gateway:
    /// each key ring counts only its own worker's seals and forgeries, so
    /// each gets an equal share of the gateway's usage budget and together
    /// they stay within it (a worker carrying more than its share asks for
    /// an early rotation sooner; that is the price of not sharing the
    /// count).
    pub fn worker_share(mut self, workers: u32) -> Self {
        let n = workers.max(1);
        self.max_gateways = self.max_gateways.saturating_mul(n);
        let share = |v: u64| v / u64::from(n);
        self.usage_limits = self.usage_limits.map(|l| UsageLimits {
            seal_soft: share(l.seal_soft),
            seal_hard: share(l.seal_hard),
            forgery_soft: share(l.forgery_soft),
        });
        self
    }
}

/// Event counters for export by the driver (monotonic, never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sealed: u64,
    pub opened: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub unknown_epoch: u64,
    /// Truncated, bad version, reflected or otherwise malformed datagrams.
    pub malformed: u64,
    pub mtu_drops: u64,
}

/// Result of [`TunnelCore::open`]: the inner packet is `out[..inner_len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub sender: u32,
    pub epoch: u32,
    pub pcx_dp_id: u32,
    pub inner_len: usize,
}

/// Result of [`TunnelCore::open_in_place`]: the inner packet is
/// `datagram[inner]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedInPlace {
    pub sender: u32,
    pub epoch: u32,
    pub pcx_dp_id: u32,
    pub inner: Range<usize>,
}

/// What the workers of one gateway share: the send counter (no nonce may
/// repeat across workers, see [`crate::tunnel::counter`]) and the replay
/// windows (a datagram replayed onto another worker's queue must still be
/// refused, see [`crate::tunnel::windows`]). Clones share.
#[derive(Debug, Clone)]
pub struct TunnelShared {
    counter: Arc<SendCounter>,
    windows: Arc<ReplayWindows>,
}

impl TunnelShared {
    /// Counters start at `counter_floor` (see [`counter_floor_from_unix_ms`]).
    pub fn new(counter_floor: u64) -> Self {
        TunnelShared {
            counter: Arc::new(SendCounter::new(counter_floor)),
            windows: Arc::new(ReplayWindows::new()),
        }
    }

    /// Replay windows held, over all workers.
    pub fn replay_windows(&self) -> usize {
        self.windows.len()
    }
}

/// One gateway's tunnel endpoint, or one worker of it.
#[derive(Debug)]
pub struct TunnelCore {
    config: TunnelConfig,
    keys: KeyRing,
    shared: TunnelShared,
    /// This worker's handles to the shared windows it has used.
    windows: HashMap<(u32, u32), SharedWindow>,
    block: CounterBlock,
    counters: Counters,
}

impl TunnelCore {
    /// A gateway with one worker.
    pub fn new(config: TunnelConfig) -> Self {
        Self::worker(config, TunnelShared::new(config.counter_floor))
    }

    /// One worker of a gateway whose workers all share `shared` (and the
    /// same `config`, except `counter_floor`, which `shared` holds).
    /// `config.usage_limits` / `max_gateways` should give each worker its
    /// share of the gateway's key usage budget.
    pub fn worker(config: TunnelConfig, shared: TunnelShared) -> Self {
        TunnelCore {
            keys: KeyRing::new(config.overlap, config.max_gateways, config.usage_limits),
            config,
            shared,
            windows: HashMap::new(),
            block: CounterBlock::default(),
            counters: Counters::default(),
        }
    }

    /// What this core shares with the other workers of its gateway.
    pub fn shared(&self) -> &TunnelShared {
        &self.shared
    }

    pub fn gateway_id(&self) -> u32 {
        self.config.gateway_id
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Above every counter sealed with by any worker of this gateway (a
    /// driver may persist it as the next floor).
    pub fn next_counter(&self) -> u64 {
        self.shared.counter.next_unreserved()
    }

    /// Applies key activations and erasures due at `now`, and forgets the
    /// replay windows of erased epochs. Call it at least a few times per
    /// second, and whenever a key is installed.
    pub fn tick(&mut self, now: Millis) {
        self.keys.tick(now);
        self.forget_windows();
    }

    /// Installs a key distributed by the control store.
    pub fn install_key(&mut self, key: EpochKey, now: Millis) -> Result<(), InstallError> {
        let result = self.keys.install(key, now);
        self.forget_windows();
        result
    }

    fn forget_windows(&mut self) {
        let keys = &self.keys;
        self.windows.retain(|&(_, epoch), _| keys.holds(epoch));
        self.shared.windows.erase_below(keys.erased_below());
    }

    /// Whether this gateway needs the control plane to rotate early.
    pub fn rotation_needed(&self) -> Option<RotationReason> {
        self.keys.rotation_needed()
    }

    fn padded_len(&self, inner_len: usize) -> usize {
        let multiple = usize::from(self.config.pad_multiple.max(1));
        inner_len
            .div_ceil(multiple)
            .saturating_mul(multiple)
            .min(INNER_MTU)
            .max(inner_len)
    }

    /// Seals `inner` for peering connection `pcx_dp_id` into `out`, returning
    /// the datagram length. Needs `out.len() >= inner.len() + OVERHEAD` (plus
    /// padding).
    pub fn seal(
        &mut self,
        pcx_dp_id: u32,
        inner: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let total = self.check_seal_sizes(inner.len(), out.len())?;
        out[SEAL_PREFIX..SEAL_PREFIX + inner.len()].copy_from_slice(inner);
        debug_assert!(total <= out.len());
        self.seal_in_place(pcx_dp_id, out, inner.len())
    }

    /// Seals the `inner_len` bytes the caller placed at
    /// `buf[SEAL_PREFIX..]`, writing header, inner header, padding and tag
    /// around them without copying the packet. Returns the datagram length.
    pub fn seal_in_place(
        &mut self,
        pcx_dp_id: u32,
        buf: &mut [u8],
        inner_len: usize,
    ) -> Result<usize, SealError> {
        let total = self.check_seal_sizes(inner_len, buf.len())?;
        // Never u64::MAX: keeps "next" representable and the counter
        // strictly monotonic without wrapping.
        let counter = self
            .block
            .take(&self.shared.counter)
            .ok_or(SealError::CounterExhausted)?;
        let (epoch, key) = self.keys.seal_key()?;
        let header = TunnelHeader {
            epoch,
            sender: self.config.gateway_id,
            counter,
        };
        let plaintext_len = total - HEADER_LEN - TAG_LEN;
        write_headers(&header, pcx_dp_id, inner_len, &mut buf[..total]);
        seal_body(key, &header, &mut buf[..total], plaintext_len)?;
        self.counters.sealed += 1;
        Ok(total)
    }

    /// Validates sizes and returns the sealed datagram length.
    fn check_seal_sizes(&mut self, inner_len: usize, buf_len: usize) -> Result<usize, SealError> {
        if inner_len > INNER_MTU {
            self.counters.mtu_drops += 1;
            return Err(SealError::MtuExceeded { len: inner_len });
        }
        let total = HEADER_LEN + INNER_HEADER_LEN + self.padded_len(inner_len) + TAG_LEN;
        if buf_len < total {
            return Err(SealError::OutputTooSmall { needed: total });
        }
        Ok(total)
    }

    /// Opens `datagram` into `out`; the inner packet lands at
    /// `out[..inner_len]`. Needs `out.len() >= datagram.len() - HEADER_LEN`.
    pub fn open(&mut self, datagram: &[u8], out: &mut [u8]) -> Result<Opened, OpenError> {
        let result = self.open_copy(datagram, out);
        self.count(result)
    }

    fn open_copy(&mut self, datagram: &[u8], out: &mut [u8]) -> Result<Opened, OpenError> {
        let header = self.precheck(datagram)?;
        let sealed = &datagram[HEADER_LEN..];
        let needed = sealed.len();
        let body = out
            .get_mut(..needed)
            .ok_or(OpenError::OutputTooSmall { needed })?;
        body.copy_from_slice(sealed);
        let (pcx_dp_id, inner) = self.decrypt(&header, &datagram[..HEADER_LEN], body)?;
        out.copy_within(inner.clone(), 0);
        Ok(Opened {
            sender: header.sender,
            epoch: header.epoch,
            pcx_dp_id,
            inner_len: inner.len(),
        })
    }

    /// Opens `datagram` where it lies; the inner packet is
    /// `datagram[result.inner]`. The buffer is garbage after an error.
    pub fn open_in_place(&mut self, datagram: &mut [u8]) -> Result<OpenedInPlace, OpenError> {
        let result = self.open_in_place_inner(datagram);
        self.count(result)
    }

    fn open_in_place_inner(&mut self, datagram: &mut [u8]) -> Result<OpenedInPlace, OpenError> {
        let header = self.precheck(datagram)?;
        let (aad, body) = datagram.split_at_mut(HEADER_LEN);
        let (pcx_dp_id, inner) = self.decrypt(&header, aad, body)?;
        Ok(OpenedInPlace {
            sender: header.sender,
            epoch: header.epoch,
            pcx_dp_id,
            inner: inner.start + HEADER_LEN..inner.end + HEADER_LEN,
        })
    }

    /// Everything that can be checked before spending cycles on the AEAD:
    /// structure, sizes, reflection, key availability, replay window.
    fn precheck(&self, datagram: &[u8]) -> Result<TunnelHeader, OpenError> {
        let packet = Packet::new_checked(datagram).map_err(wire_to_open)?;
        let header = TunnelHeader::parse(&packet).map_err(wire_to_open)?;
        if datagram.len() < MIN_DATAGRAM_LEN {
            return Err(OpenError::Truncated);
        }
        if datagram.len() > MAX_DATAGRAM_LEN {
            return Err(OpenError::Malformed);
        }
        if header.sender == self.config.gateway_id {
            return Err(OpenError::Reflected);
        }
        if self.keys.open_key(header.epoch).is_none() {
            return Err(OpenError::UnknownOrErasedEpoch(header.epoch));
        }
        // Only this worker's handles: a pair it has not met yet is looked
        // up after authentication, so forgeries never take the shared lock.
        if let Some(window) = self.windows.get(&(header.sender, header.epoch)) {
            windows::lock(window)
                .check(header.counter)
                .map_err(|_| OpenError::Replay)?;
        }
        Ok(header)
    }

    /// Authenticates and decrypts `body` (ciphertext || tag) in place, then
    /// commits the counter. Returns the pcx id and the inner packet's range
    /// within `body`.
    fn decrypt(
        &mut self,
        header: &TunnelHeader,
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<(u32, Range<usize>), OpenError> {
        let key = self.keys.open_key(header.epoch);
        let key = key.ok_or(OpenError::UnknownOrErasedEpoch(header.epoch))?;
        let nonce = Nonce::assume_unique_for_key(header.nonce());
        let plaintext_len = match key.open_in_place(nonce, Aad::from(aad), body) {
            Ok(plaintext) => plaintext.len(),
            Err(_) => {
                self.keys.record_forgery(header.epoch);
                return Err(OpenError::AuthenticationFailed);
            }
        };
        // Authentic: only now may the window move.
        windows::lock(self.window(header.sender, header.epoch)?)
            .commit(header.counter)
            .map_err(|_| OpenError::Replay)?;
        let inner =
            InnerPacket::new_checked(&body[..plaintext_len]).map_err(|_| OpenError::Malformed)?;
        let repr = InnerHeader::parse(&inner).map_err(|_| OpenError::Malformed)?;
        let start = INNER_HEADER_LEN;
        Ok((repr.pcx_dp_id, start..start + usize::from(repr.inner_len)))
    }

    /// The shared window of (`sender`, `epoch`), through this worker's
    /// handle or from the registry. Only for authentic datagrams.
    fn window(&mut self, sender: u32, epoch: u32) -> Result<&SharedWindow, OpenError> {
        use std::collections::hash_map::Entry;
        match self.windows.entry((sender, epoch)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => match self.shared.windows.get_or_create(sender, epoch) {
                Ok(window) => Ok(e.insert(window)),
                Err(NoWindow::Erased) => Err(OpenError::UnknownOrErasedEpoch(epoch)),
                Err(NoWindow::Full) => Err(OpenError::Malformed),
            },
        }
    }

    /// Bumps the counter matching an open result.
    fn count<T>(&mut self, result: Result<T, OpenError>) -> Result<T, OpenError> {
        let c = &mut self.counters;
        match &result {
            Ok(_) => c.opened += 1,
            Err(OpenError::AuthenticationFailed) => c.auth_failures += 1,
            Err(OpenError::Replay) => c.replays += 1,
            Err(OpenError::UnknownOrErasedEpoch(_)) => c.unknown_epoch += 1,
            Err(OpenError::OutputTooSmall { .. }) => {}
            Err(OpenError::Truncated | OpenError::Malformed | OpenError::BadVersion(_))
            | Err(OpenError::Reflected) => c.malformed += 1,
        }
        result
    }
}

fn wire_to_open(error: WireError) -> OpenError {
    match error {
        WireError::Truncated => OpenError::Truncated,
        WireError::BadVersion(version) => OpenError::BadVersion(version),
        WireError::UnknownKind(_) | WireError::ReservedNonZero | WireError::BadLength => {
            OpenError::Malformed
        }
    }
}

/// Writes the cleartext header, the inner header and zero padding into
/// `datagram` (whose length is the final datagram length).
fn write_headers(header: &TunnelHeader, pcx_dp_id: u32, inner_len: usize, datagram: &mut [u8]) {
    header.emit(&mut Packet::new_unchecked(&mut datagram[..HEADER_LEN]));
    let inner_header = InnerHeader {
        pcx_dp_id,
        // Cannot truncate: inner_len <= INNER_MTU was checked.
        inner_len: inner_len as u16,
    };
    let inner_start = HEADER_LEN + INNER_HEADER_LEN;
    inner_header.emit(&mut InnerPacket::new_unchecked(
        &mut datagram[HEADER_LEN..inner_start],
    ));
    let padding_end = datagram.len() - TAG_LEN;
    datagram[inner_start + inner_len..padding_end].fill(0);
}

/// Encrypts the plaintext after the header in place and appends the tag.
fn seal_body(
    key: &LessSafeKey,
    header: &TunnelHeader,
    datagram: &mut [u8],
    plaintext_len: usize,
) -> Result<(), SealError> {
    let (aad, body) = datagram.split_at_mut(HEADER_LEN);
    let (plaintext, tag_out) = body.split_at_mut(plaintext_len);
    let nonce = Nonce::assume_unique_for_key(header.nonce());
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(&*aad), plaintext)
        .map_err(|_| SealError::Crypto)?;
    tag_out.copy_from_slice(tag.as_ref());
    Ok(())
}
