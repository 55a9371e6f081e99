//! The keys one gateway holds: at most a previous, a current and a next one.
//!
//! States are derived from time, never stored: the current key is the
//! newest one whose activation time has passed; newer ones are "next"
//! (accepted on receive, not used to seal); the one before current is
//! "previous" until `overlap` after current's activation; anything older is
//! erased. Erasing drops ring's key object and advances `erased_below`,
//! below which no epoch is ever accepted or reinstalled again.

use ring::aead::{LessSafeKey, UnboundKey};

use crate::tunnel::error::{InstallError, SealError};
use crate::tunnel::key::{Algorithm, EpochKey, UsageLimits};
use crate::tunnel::Millis;

/// Previous + current + next.
pub const MAX_HELD_KEYS: usize = 3;

/// Where an epoch is in its lifecycle, as seen by this gateway now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Distributed, accepted on receive, not yet used to seal.
    Next,
    /// Used to seal and accepted on receive.
    Current,
    /// Superseded, still accepted on receive during the overlap.
    Previous,
    /// Dropped for forward secrecy; refused forever.
    Erased,
    /// Never installed (and newer than anything erased).
    Unknown,
}

/// Why the gateway asks the control plane for an early rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationReason {
    /// This gateway sealed half of its share of the key's usage limit.
    SealSoftLimit { epoch: u32 },
    /// Failed authentications under a held key reached the soft limit.
    ForgerySoftLimit { epoch: u32 },
}

struct Slot {
    epoch: u32,
    activate_at: Millis,
    key: LessSafeKey,
    limits: UsageLimits,
    sealed: u64,
    forgeries: u64,
}

/// Keys held by one gateway, ordered by epoch.
pub struct KeyRing {
    overlap: Millis,
    limits: Option<UsageLimits>,
    max_gateways: u32,
    held: Vec<Slot>,
    erased_below: u32,
    now: Millis,
}

impl core::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let epochs: Vec<u32> = self.held.iter().map(|slot| slot.epoch).collect();
        f.debug_struct("KeyRing")
            .field("held_epochs", &epochs)
            .field("erased_below", &self.erased_below)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// `limits` overrides the per-algorithm usage limits (tests, or drivers
    /// wanting tighter budgets); `None` derives them from `max_gateways`.
    pub fn new(overlap: Millis, max_gateways: u32, limits: Option<UsageLimits>) -> Self {
        KeyRing {
            overlap,
            limits,
            max_gateways,
            held: Vec::with_capacity(MAX_HELD_KEYS + 1),
            erased_below: 0,
            now: 0,
        }
    }

    /// Applies activations and erasures due at `now`. Time never moves
    /// backwards here: an earlier `now` is ignored, so a clock step back
    /// cannot revive an older key for sealing.
    pub fn tick(&mut self, now: Millis) {
        self.now = self.now.max(now);
        let Some(current) = self.current_index() else {
            return;
        };
        let overlap_over = self.held[current].activate_at.saturating_add(self.overlap) <= self.now;
        let erase = if overlap_over {
            current
        } else {
            current.saturating_sub(1)
        };
        for slot in self.held.drain(..erase) {
            // Dropping the slot drops ring's key object.
            self.erased_below = self.erased_below.max(slot.epoch.saturating_add(1));
        }
    }

    /// Installs a distributed key and applies `tick(now)`. Re-installing a
    /// held epoch is a no-op, so the control store may re-send freely.
    pub fn install(&mut self, key: EpochKey, now: Millis) -> Result<(), InstallError> {
        self.tick(now);
        if key.epoch < self.erased_below {
            return Err(InstallError::Erased(key.epoch));
        }
        if self.held.iter().any(|slot| slot.epoch == key.epoch) {
            return Ok(());
        }
        let position = self.held.partition_point(|slot| slot.epoch < key.epoch);
        self.check_order(position, &key)?;
        if key.activate_at > self.now {
            if let Some(pending) = self.held.iter().find(|s| s.activate_at > self.now) {
                return Err(InstallError::PendingOccupied(pending.epoch));
            }
        }
        let slot = self.make_slot(&key)?;
        self.held.insert(position, slot);
        self.tick(now);
        debug_assert!(self.held.len() <= MAX_HELD_KEYS);
        if self.state_of(key.epoch) == KeyState::Erased {
            return Err(InstallError::Erased(key.epoch));
        }
        Ok(())
    }

    fn check_order(&self, position: usize, key: &EpochKey) -> Result<(), InstallError> {
        let out_of_order = InstallError::OutOfOrder {
            epoch: key.epoch,
            activate_at: key.activate_at,
        };
        let older = position.checked_sub(1).map(|i| &self.held[i]);
        if older.is_some_and(|slot| slot.activate_at >= key.activate_at) {
            return Err(out_of_order);
        }
        let newer = self.held.get(position);
        if newer.is_some_and(|slot| slot.activate_at <= key.activate_at) {
            return Err(out_of_order);
        }
        Ok(())
    }

    fn make_slot(&self, key: &EpochKey) -> Result<Slot, InstallError> {
        let algorithm: Algorithm = key.algorithm;
        let unbound = UnboundKey::new(algorithm.ring_algorithm(), key.material.as_bytes())
            .map_err(|_| InstallError::BadKey)?;
        let limits = self
            .limits
            .unwrap_or_else(|| UsageLimits::for_algorithm(algorithm, self.max_gateways));
        Ok(Slot {
            epoch: key.epoch,
            activate_at: key.activate_at,
            key: LessSafeKey::new(unbound),
            limits,
            sealed: 0,
            forgeries: 0,
        })
    }

    fn current_index(&self) -> Option<usize> {
        self.held
            .iter()
            .rposition(|slot| slot.activate_at <= self.now)
    }

    /// Epoch used to seal now, if any.
    pub fn current_epoch(&self) -> Option<u32> {
        self.current_index().map(|i| self.held[i].epoch)
    }

    /// Epochs accepted on receive, oldest first.
    pub fn held_epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.iter().map(|slot| slot.epoch)
    }

    /// Every epoch below this one is erased.
    pub fn erased_below(&self) -> u32 {
        self.erased_below
    }

    pub fn holds(&self, epoch: u32) -> bool {
        self.held.iter().any(|slot| slot.epoch == epoch)
    }

    pub fn state_of(&self, epoch: u32) -> KeyState {
        if epoch < self.erased_below {
            return KeyState::Erased;
        }
        let Some(index) = self.held.iter().position(|s| s.epoch == epoch) else {
            return KeyState::Unknown;
        };
        match self.current_index() {
            Some(current) if index == current => KeyState::Current,
            Some(current) if index < current => KeyState::Previous,
            _ => KeyState::Next,
        }
    }

    /// Reserves one use of the current key for sealing; refuses once the
    /// hard usage limit is reached.
    pub(super) fn seal_key(&mut self) -> Result<(u32, &LessSafeKey), SealError> {
        let index = self.current_index().ok_or(SealError::NoCurrentKey)?;
        let slot = &mut self.held[index];
        if slot.sealed >= slot.limits.seal_hard {
            return Err(SealError::KeyUsageExhausted { epoch: slot.epoch });
        }
        slot.sealed += 1;
        Ok((slot.epoch, &slot.key))
    }

    /// Key accepted for receiving under `epoch` (previous, current or next).
    pub(super) fn open_key(&self, epoch: u32) -> Option<&LessSafeKey> {
        self.held.iter().find(|s| s.epoch == epoch).map(|s| &s.key)
    }

    pub(super) fn record_forgery(&mut self, epoch: u32) {
        if let Some(slot) = self.held.iter_mut().find(|s| s.epoch == epoch) {
            slot.forgeries = slot.forgeries.saturating_add(1);
        }
    }

    /// Whether the control plane should rotate early, and why.
    pub fn rotation_needed(&self) -> Option<RotationReason> {
        if let Some(index) = self.current_index() {
            let slot = &self.held[index];
            if slot.sealed >= slot.limits.seal_soft {
                return Some(RotationReason::SealSoftLimit { epoch: slot.epoch });
            }
        }
        self.held
            .iter()
            .find(|slot| slot.forgeries >= slot.limits.forgery_soft)
            .map(|slot| RotationReason::ForgerySoftLimit { epoch: slot.epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::key::KeyMaterial;

    fn key(epoch: u32, activate_at: Millis) -> EpochKey {
        EpochKey {
            epoch,
            algorithm: Algorithm::Aes256Gcm,
            activate_at,
            material: KeyMaterial::from_bytes([epoch as u8; 32]),
        }
    }

    fn ring() -> KeyRing {
        KeyRing::new(100, 64, None)
    }

    #[test]
    fn lifecycle_next_current_previous_erased() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        assert_eq!(r.state_of(1), KeyState::Current);
        r.install(key(2, 1000), 500).unwrap();
        assert_eq!(r.state_of(2), KeyState::Next);
        assert_eq!(r.current_epoch(), Some(1));
        r.tick(1000);
        assert_eq!(r.state_of(1), KeyState::Previous);
        assert_eq!(r.state_of(2), KeyState::Current);
        r.tick(1099);
        assert!(r.holds(1));
        r.tick(1100);
        assert_eq!(r.state_of(1), KeyState::Erased);
        assert!(r.open_key(1).is_none());
        assert_eq!(r.erased_below(), 2);
        assert_eq!(r.state_of(3), KeyState::Unknown);
    }

    #[test]
    fn erased_epochs_cannot_be_reinstalled() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        r.install(key(2, 10), 0).unwrap();
        r.tick(200);
        assert_eq!(r.install(key(1, 0), 200), Err(InstallError::Erased(1)));
        r.install(key(3, 300), 250).unwrap();
        r.tick(1000);
        assert_eq!(r.install(key(2, 10), 1000), Err(InstallError::Erased(2)));
    }

    #[test]
    fn stale_key_is_erased_on_arrival() {
        let mut r = ring();
        r.install(key(5, 1000), 2000).unwrap();
        // Epoch 4 was never seen here, but its overlap is long over.
        assert_eq!(r.install(key(4, 500), 2000), Err(InstallError::Erased(4)));
        assert_eq!(r.held_epochs().collect::<Vec<_>>(), vec![5]);
        // Within the overlap it is still useful as the previous key.
        let mut r = ring();
        r.install(key(5, 1000), 1050).unwrap();
        r.install(key(4, 500), 1050).unwrap();
        assert_eq!(r.state_of(4), KeyState::Previous);
    }

    #[test]
    fn duplicate_install_is_noop() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        r.install(key(1, 0), 0).unwrap();
        assert_eq!(r.held_epochs().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn only_one_pending_key() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        r.install(key(2, 1000), 0).unwrap();
        assert_eq!(
            r.install(key(3, 2000), 0),
            Err(InstallError::PendingOccupied(2))
        );
    }

    #[test]
    fn activation_order_enforced() {
        let mut r = ring();
        r.install(key(5, 1000), 0).unwrap();
        let err = r.install(key(4, 1000), 0);
        assert!(matches!(
            err,
            Err(InstallError::OutOfOrder { epoch: 4, .. })
        ));
        let err = r.install(key(6, 900), 0);
        assert!(matches!(
            err,
            Err(InstallError::OutOfOrder { epoch: 6, .. })
        ));
    }

    #[test]
    fn fresh_gateway_installs_in_any_order() {
        let mut r = ring();
        r.install(key(8, 5000), 4000).unwrap();
        assert_eq!(r.current_epoch(), None);
        r.install(key(7, 3000), 4000).unwrap();
        assert_eq!(r.current_epoch(), Some(7));
        assert_eq!(r.state_of(8), KeyState::Next);
    }

    #[test]
    fn rejoining_gateway_jumps_ahead() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        r.install(key(2, 100), 0).unwrap();
        // Partitioned for a long time, then handed epoch 40 (already active).
        r.install(key(40, 9000), 10_000).unwrap();
        assert_eq!(r.held_epochs().collect::<Vec<_>>(), vec![40]);
        assert_eq!(r.erased_below(), 3);
        assert_eq!(r.state_of(39), KeyState::Unknown);
    }

    #[test]
    fn time_never_moves_backwards() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        r.install(key(2, 1000), 0).unwrap();
        r.tick(1050);
        r.tick(10);
        assert_eq!(r.current_epoch(), Some(2));
    }

    #[test]
    fn seal_limits_and_rotation_signal() {
        let limits = UsageLimits {
            seal_soft: 2,
            seal_hard: 3,
            forgery_soft: 2,
        };
        let mut r = KeyRing::new(100, 64, Some(limits));
        assert_eq!(r.seal_key().err(), Some(SealError::NoCurrentKey));
        r.install(key(1, 0), 0).unwrap();
        assert!(r.seal_key().is_ok());
        assert_eq!(r.rotation_needed(), None);
        assert!(r.seal_key().is_ok());
        assert_eq!(
            r.rotation_needed(),
            Some(RotationReason::SealSoftLimit { epoch: 1 })
        );
        assert!(r.seal_key().is_ok());
        let exhausted = SealError::KeyUsageExhausted { epoch: 1 };
        assert_eq!(r.seal_key().err(), Some(exhausted));
        r.install(key(2, 10), 10).unwrap();
        assert_eq!(r.seal_key().map(|(epoch, _)| epoch), Ok(2));
        r.record_forgery(2);
        r.record_forgery(2);
        let forged = Some(RotationReason::ForgerySoftLimit { epoch: 2 });
        assert_eq!(r.rotation_needed(), forged);
    }

    #[test]
    fn debug_does_not_print_keys() {
        let mut r = ring();
        r.install(key(1, 0), 0).unwrap();
        let text = format!("{r:?}");
        assert!(text.contains("held_epochs: [1]"), "{text}");
    }
}
