//! Error types of the tunnel core. Every rejection reason the driver may
//! want to count or log separately has its own variant; none of them
//! carries secret material.

use crate::tunnel::Millis;

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// No key is active yet (none installed, or only a future one).
    #[error("no active key to seal with")]
    NoCurrentKey,
    /// The inner packet is larger than `INNER_MTU`.
    #[error("inner packet of {len} bytes exceeds the tunnel MTU")]
    MtuExceeded { len: usize },
    /// The caller's buffer cannot hold the sealed datagram.
    #[error("output buffer too small: {needed} bytes needed")]
    OutputTooSmall { needed: usize },
    /// The current key reached its hard usage limit; sealing resumes once
    /// the control plane activates the next epoch.
    #[error("key of epoch {epoch} reached its usage limit")]
    KeyUsageExhausted { epoch: u32 },
    /// The 64-bit send counter is spent (cannot happen in practice, but a
    /// wrapped counter would reuse nonces, so it is checked).
    #[error("send counter exhausted")]
    CounterExhausted,
    /// The AEAD refused to seal (ring only does so for oversized input).
    #[error("AEAD seal failed")]
    Crypto,
}

/// Why a received datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header plus tag.
    #[error("datagram truncated")]
    Truncated,
    /// Any other structural problem: unknown kind, reserved bits set,
    /// oversized datagram, bad inner length.
    #[error("malformed datagram")]
    Malformed,
    /// Version byte is not 1.
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    /// Claims to come from this very gateway: a reflected datagram.
    #[error("datagram claims to come from this gateway")]
    Reflected,
    /// The epoch's key was never installed, or has been erased.
    #[error("unknown or erased key epoch {0}")]
    UnknownOrErasedEpoch(u32),
    /// The tag did not verify (forged, corrupted, or wrong key).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Counter already seen, or older than the replay window.
    #[error("replayed or too old")]
    Replay,
    /// The caller's output buffer cannot hold the decrypted payload.
    #[error("output buffer too small: {needed} bytes needed")]
    OutputTooSmall { needed: usize },
}

/// Why a distributed key was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The epoch is at or below one already erased: keys are never
    /// reinstated once forward secrecy has dropped them.
    #[error("epoch {0} is already erased")]
    Erased(u32),
    /// A not-yet-active key is already held; the ring holds one at a time.
    #[error("another future key (epoch {0}) is already pending")]
    PendingOccupied(u32),
    /// Activation times must increase with epochs.
    #[error("activation time {activate_at} out of order for epoch {epoch}")]
    OutOfOrder { epoch: u32, activate_at: Millis },
    /// ring refused the key bytes (wrong length).
    #[error("key rejected by the AEAD")]
    BadKey,
}

/// Key generation failed (the system RNG is unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("system random number generator failed")]
pub struct KeyGenError;
