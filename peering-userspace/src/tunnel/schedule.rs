//! Pure key-rotation planner for the control plane.
//!
//! Lifecycle of an epoch's key, on every gateway:
//!
//! ```text
//! distributed (next) --activate_at--> current --successor activates-->
//! previous --+overlap--> erased
//! ```
//!
//! The planner decides when the control store must publish the next key and
//! with which activation time; it reads no clock (time is an argument), so
//! the control plane can be driven by a fake clock in tests.
//!
//! Timing rules (all enforced by [`RotationPolicy::new`]):
//! - `lead`: a key is distributed at least `lead` before it is used, so every
//!   gateway already accepts it when the first peer switches to it.
//! - `overlap`: the previous key is still accepted for `overlap` after its
//!   successor activates, covering clock skew and packets in flight.
//! - `lead + overlap <= interval`: the next key is only published once the
//!   previous one is erased, so a gateway never holds more than three keys.

use crate::tunnel::error::KeyGenError;
use crate::tunnel::key::{Algorithm, EpochKey, KeySource};
use crate::tunnel::Millis;

/// Default rotation period: 10 minutes (design requirement).
pub const DEFAULT_INTERVAL: Millis = 10 * 60 * 1000;
/// Shortest period allowed: 1 second (design requirement).
pub const MIN_INTERVAL: Millis = 1000;
/// Default distribution lead and acceptance overlap: one minute, far above
/// NTP-disciplined clock skew (milliseconds) and inter-region one-way delay
/// (AWS inter-region RTTs are at most a few hundred ms).
pub const DEFAULT_LEAD: Millis = 60 * 1000;
pub const DEFAULT_OVERLAP: Millis = 60 * 1000;
/// Lead of the very first key of a deployment (at most the policy's lead).
pub const BOOTSTRAP_LEAD: Millis = 2000;

/// Invalid rotation parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("rotation interval below the 1 s minimum")]
    IntervalTooShort,
    #[error("lead and overlap must be non-zero and fit in the interval")]
    BadWindows,
    #[error("u32 epoch numbers exhausted")]
    EpochsExhausted,
}

/// When keys are rotated, distributed and erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    interval: Millis,
    lead: Millis,
    overlap: Millis,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            interval: DEFAULT_INTERVAL,
            lead: DEFAULT_LEAD,
            overlap: DEFAULT_OVERLAP,
        }
    }
}

/// The newest epoch the control store has published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedEpoch {
    pub epoch: u32,
    pub activate_at: Millis,
}

/// Instruction to generate and distribute a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distribute {
    pub epoch: u32,
    pub activate_at: Millis,
}

/// What the control plane should do now, and when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub distribute: Option<Distribute>,
    pub wake_at: Millis,
}

impl RotationPolicy {
    pub fn new(interval: Millis, lead: Millis, overlap: Millis) -> Result<Self, PolicyError> {
        if interval < MIN_INTERVAL {
            return Err(PolicyError::IntervalTooShort);
        }
        let fits = lead.checked_add(overlap).is_some_and(|sum| sum <= interval);
        if lead == 0 || overlap == 0 || !fits {
            return Err(PolicyError::BadWindows);
        }
        Ok(RotationPolicy {
            interval,
            lead,
            overlap,
        })
    }

    /// A policy for `interval` with lead and overlap of a quarter interval,
    /// capped at the defaults.
    pub fn with_interval(interval: Millis) -> Result<Self, PolicyError> {
        let window = (interval / 4).min(DEFAULT_LEAD);
        Self::new(interval, window, window)
    }

    pub fn interval(&self) -> Millis {
        self.interval
    }

    pub fn lead(&self) -> Millis {
        self.lead
    }

    pub fn overlap(&self) -> Millis {
        self.overlap
    }

    /// When the key superseded at `successor_activate_at` is erased.
    pub fn erase_at(&self, successor_activate_at: Millis) -> Millis {
        successor_activate_at.saturating_add(self.overlap)
    }

    /// Decides whether to publish a new epoch now. `urgent` is set when a
    /// gateway reported a usage limit (see `TunnelCore::rotation_needed`):
    /// the next key is then published as early as the three-key capacity
    /// allows instead of at the regular time.
    pub fn plan(
        &self,
        now: Millis,
        latest: Option<PublishedEpoch>,
        urgent: bool,
    ) -> Result<Plan, PolicyError> {
        let Some(latest) = latest else {
            // Bootstrap: even the first key is distributed before use, but
            // nothing is sealed yet, so a short lead (gateways poll the
            // store every 200 ms) beats a minute without connectivity.
            let activate_at = now.saturating_add(self.lead.min(BOOTSTRAP_LEAD));
            let distribute = Some(Distribute {
                epoch: 1,
                activate_at,
            });
            return Ok(Plan {
                distribute,
                wake_at: activate_at,
            });
        };
        if latest.activate_at > now {
            // A key is pending; nothing to do until it becomes current.
            return Ok(Plan {
                distribute: None,
                wake_at: latest.activate_at,
            });
        }
        let regular_activation = latest.activate_at.saturating_add(self.interval);
        let distribute_at = if urgent {
            // The predecessor of `latest` must be erased first.
            self.erase_at(latest.activate_at)
        } else {
            regular_activation - self.lead
        };
        if now < distribute_at {
            return Ok(Plan {
                distribute: None,
                wake_at: distribute_at,
            });
        }
        let epoch = latest
            .epoch
            .checked_add(1)
            .ok_or(PolicyError::EpochsExhausted)?;
        // A late control plane still gives gateways the full lead time.
        let earliest = now.saturating_add(self.lead);
        let activate_at = if urgent {
            earliest
        } else {
            regular_activation.max(earliest)
        };
        Ok(Plan {
            distribute: Some(Distribute { epoch, activate_at }),
            wake_at: activate_at,
        })
    }
}

/// Control-plane helper: the planner plus the newest published epoch and
/// key generation. The caller stores and distributes the returned keys.
#[derive(Debug, Clone)]
pub struct KeySchedule {
    pub policy: RotationPolicy,
    pub algorithm: Algorithm,
    latest: Option<PublishedEpoch>,
}

impl KeySchedule {
    /// `latest` is what the control store already holds (None when new).
    pub fn new(
        policy: RotationPolicy,
        algorithm: Algorithm,
        latest: Option<PublishedEpoch>,
    ) -> Self {
        KeySchedule {
            policy,
            algorithm,
            latest,
        }
    }

    pub fn latest(&self) -> Option<PublishedEpoch> {
        self.latest
    }

    /// Runs the planner and, if it says so, generates the next key.
    pub fn poll(
        &mut self,
        now: Millis,
        urgent: bool,
        source: &mut dyn KeySource,
    ) -> Result<(Option<EpochKey>, Millis), ScheduleError> {
        let plan = self.policy.plan(now, self.latest, urgent)?;
        let Some(next) = plan.distribute else {
            return Ok((None, plan.wake_at));
        };
        let key = EpochKey {
            epoch: next.epoch,
            algorithm: self.algorithm,
            activate_at: next.activate_at,
            material: source.generate()?,
        };
        self.latest = Some(PublishedEpoch {
            epoch: next.epoch,
            activate_at: next.activate_at,
        });
        Ok((Some(key), plan.wake_at))
    }
}

/// Failure of [`KeySchedule::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    KeyGen(#[from] KeyGenError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::testutil::{Rng, SeededKeySource};

    fn published(epoch: u32, activate_at: Millis) -> Option<PublishedEpoch> {
        Some(PublishedEpoch { epoch, activate_at })
    }

    #[test]
    fn policy_validation() {
        assert_eq!(
            RotationPolicy::new(999, 1, 1),
            Err(PolicyError::IntervalTooShort)
        );
        assert_eq!(
            RotationPolicy::new(1000, 0, 1),
            Err(PolicyError::BadWindows)
        );
        assert_eq!(
            RotationPolicy::new(1000, 1, 0),
            Err(PolicyError::BadWindows)
        );
        assert_eq!(
            RotationPolicy::new(1000, 600, 401),
            Err(PolicyError::BadWindows)
        );
        assert_eq!(
            RotationPolicy::new(1000, u64::MAX, 1),
            Err(PolicyError::BadWindows)
        );
        assert!(RotationPolicy::new(1000, 600, 400).is_ok());
        let fast = RotationPolicy::with_interval(MIN_INTERVAL).unwrap();
        assert_eq!((fast.lead(), fast.overlap()), (250, 250));
        let default = RotationPolicy::default();
        assert_eq!(RotationPolicy::with_interval(DEFAULT_INTERVAL), Ok(default));
        assert_eq!(default.interval(), 600_000);
    }

    #[test]
    fn bootstrap_distributes_before_use() {
        let policy = RotationPolicy::default();
        let plan = policy.plan(5_000, None, false).unwrap();
        let expected = Distribute {
            epoch: 1,
            activate_at: 5_000 + BOOTSTRAP_LEAD,
        };
        assert_eq!(plan.distribute, Some(expected));
        assert_eq!(plan.wake_at, 5_000 + BOOTSTRAP_LEAD);
        // A fast policy keeps its own, shorter lead.
        let fast = RotationPolicy::with_interval(1000).unwrap();
        let plan = fast.plan(5_000, None, false).unwrap();
        assert_eq!(plan.distribute.unwrap().activate_at, 5_250);
    }

    #[test]
    fn pending_key_waits_for_activation() {
        let policy = RotationPolicy::default();
        let plan = policy.plan(10, published(1, 100), true).unwrap();
        assert_eq!(
            plan,
            Plan {
                distribute: None,
                wake_at: 100
            }
        );
    }

    #[test]
    fn regular_rotation_timeline() {
        let policy = RotationPolicy::default();
        let latest = published(4, 1_000_000);
        let before = policy.plan(1_539_999, latest, false).unwrap();
        assert_eq!(
            before,
            Plan {
                distribute: None,
                wake_at: 1_540_000
            }
        );
        let at = policy.plan(1_540_000, latest, false).unwrap();
        let expected = Distribute {
            epoch: 5,
            activate_at: 1_600_000,
        };
        assert_eq!(at.distribute, Some(expected));
    }

    #[test]
    fn late_control_plane_keeps_full_lead() {
        let policy = RotationPolicy::default();
        let plan = policy
            .plan(2_000_000, published(4, 1_000_000), false)
            .unwrap();
        assert_eq!(plan.distribute.unwrap().activate_at, 2_060_000);
    }

    #[test]
    fn urgent_rotation_waits_for_previous_erasure() {
        let policy = RotationPolicy::default();
        let latest = published(9, 1_000_000);
        let early = policy.plan(1_010_000, latest, true).unwrap();
        assert_eq!(
            early,
            Plan {
                distribute: None,
                wake_at: 1_060_000
            }
        );
        let plan = policy.plan(1_060_000, latest, true).unwrap();
        let expected = Distribute {
            epoch: 10,
            activate_at: 1_120_000,
        };
        assert_eq!(plan.distribute, Some(expected));
    }

    #[test]
    fn epochs_exhausted() {
        let policy = RotationPolicy::default();
        let result = policy.plan(u64::MAX / 2, published(u32::MAX, 0), false);
        assert_eq!(result, Err(PolicyError::EpochsExhausted));
    }

    #[test]
    fn schedule_driven_by_fake_clock() {
        let policy = RotationPolicy::with_interval(MIN_INTERVAL).unwrap();
        let mut schedule = KeySchedule::new(policy, Algorithm::Aes256Gcm, None);
        let mut source = SeededKeySource(Rng::new(1));
        let mut activations = Vec::new();
        let mut now = 0;
        while now < 60_000 {
            let (key, wake_at) = schedule.poll(now, false, &mut source).unwrap();
            if let Some(key) = key {
                // Each key is distributed at least `lead` before use.
                assert!(key.activate_at >= now + policy.lead());
                activations.push((key.epoch, key.activate_at));
            }
            assert!(wake_at > now);
            now = wake_at;
        }
        assert!(activations.len() >= 59);
        for pair in activations.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1);
            assert_eq!(pair[1].1 - pair[0].1, MIN_INTERVAL);
        }
    }
}
