//! Key material, AEAD algorithm choice, key generation and per-key usage
//! limits.
//!
//! Randomness enters the tunnel only through [`KeySource`]; production uses
//! [`SystemKeySource`] (ring's `SystemRandom`), tests inject deterministic
//! sources so every run is reproducible.

use core::fmt;

use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::tunnel::error::KeyGenError;
use crate::tunnel::Millis;

/// Key length of both supported AEADs (256 bits).
pub const KEY_LEN: usize = 32;

/// AES-GCM confidentiality limit, in packets under one key *across the whole
/// deployment* (the key is shared). The multi-message bound for AES-GCM is
/// about (s + q + 1)^2 / 2^129 (draft-irtf-cfrg-aead-limits, "AEAD_AES_128_GCM
/// and AEAD_AES_256_GCM"), with s the total 16-byte blocks and q the packets.
/// A datagram carries at most 1508 plaintext bytes, i.e. < 2^7 blocks, so
/// q = 2^32 packets gives s < 2^39 and an advantage below 2^-50. 2^32 is
/// also the invocation cap NIST SP 800-38D section 8.3 sets for random IVs;
/// our IVs are deterministic, so the cap here is the bound above, not the IV.
pub const AES_GCM_PACKET_LIMIT: u64 = 1 << 32;
/// ChaCha20-Poly1305 confidentiality limit: RFC 9001 section 6.6 notes it
/// exceeds the number of possible QUIC packets (2^62); we use 2^62.
pub const CHACHA_PACKET_LIMIT: u64 = 1 << 62;
/// Integrity limits (forgery attempts per key) from RFC 9001 section 6.6:
/// 2^52 for AES-GCM and 2^36 for ChaCha20-Poly1305.
pub const AES_GCM_FORGERY_LIMIT: u64 = 1 << 52;
pub const CHACHA_FORGERY_LIMIT: u64 = 1 << 36;
/// Gateways assumed to share a key when splitting the deployment-wide
/// limits into per-gateway budgets (one gateway per region; AWS has fewer
/// than 64 commercial regions).
pub const DEFAULT_MAX_GATEWAYS: u32 = 64;

/// AEAD used for one epoch. The algorithm travels with the key, so a
/// deployment can switch algorithms at a rotation without a new wire version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// AES-256-GCM: the default, hardware-accelerated on the gateways.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305: for CPUs without AES instructions.
    ChaCha20Poly1305,
}

impl Algorithm {
    pub fn ring_algorithm(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::Aes256Gcm => &aead::AES_256_GCM,
            Algorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn packet_limit(self) -> u64 {
        match self {
            Algorithm::Aes256Gcm => AES_GCM_PACKET_LIMIT,
            Algorithm::ChaCha20Poly1305 => CHACHA_PACKET_LIMIT,
        }
    }

    fn forgery_limit(self) -> u64 {
        match self {
            Algorithm::Aes256Gcm => AES_GCM_FORGERY_LIMIT,
            Algorithm::ChaCha20Poly1305 => CHACHA_FORGERY_LIMIT,
        }
    }
}

/// One gateway's share of a key's usage limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// Sealed packets after which the gateway asks for an early rotation.
    pub seal_soft: u64,
    /// Sealed packets after which the gateway refuses to seal.
    pub seal_hard: u64,
    /// Failed authentications after which the gateway asks for rotation.
    pub forgery_soft: u64,
}

impl UsageLimits {
    /// Splits the deployment-wide limits evenly among `max_gateways`; the
    /// soft limits sit at half the budget so that rotation (which takes at
    /// least one distribution lead time) completes long before the hard one.
    pub fn for_algorithm(algorithm: Algorithm, max_gateways: u32) -> Self {
        let gateways = u64::from(max_gateways.max(1));
        let seal_hard = algorithm.packet_limit() / gateways;
        UsageLimits {
            seal_soft: seal_hard / 2,
            seal_hard,
            forgery_soft: algorithm.forgery_limit() / gateways / 2,
        }
    }
}

/// 256 bits of secret key. Zeroized on drop, never printed, not `Clone`
/// (copies of secrets should be deliberate).
#[derive(Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct KeyMaterial([u8; KEY_LEN]);

impl KeyMaterial {
    /// Takes ownership of key bytes received from the control store. The
    /// caller should zeroize any other copy it holds.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        KeyMaterial(bytes)
    }

    /// Copies key bytes out of a slice (e.g. a decoded control message).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = KeyMaterial([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        key.0.copy_from_slice(bytes);
        Some(key)
    }

    /// The raw bytes, for the control plane to distribute.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// The only way randomness enters the tunnel.
pub trait KeySource {
    fn generate(&mut self) -> Result<KeyMaterial, KeyGenError>;
}

/// Production key source backed by the operating system's CSPRNG.
#[derive(Debug)]
pub struct SystemKeySource {
    rng: SystemRandom,
}

impl SystemKeySource {
    pub fn new() -> Self {
        SystemKeySource {
            rng: SystemRandom::new(),
        }
    }
}

impl Default for SystemKeySource {
    fn default() -> Self {
        Self::new()
    }
}

impl KeySource for SystemKeySource {
    fn generate(&mut self) -> Result<KeyMaterial, KeyGenError> {
        // Fill the final buffer directly so no stray copy of the key is left.
        let mut key = KeyMaterial([0u8; KEY_LEN]);
        self.rng.fill(&mut key.0).map_err(|_| KeyGenError)?;
        Ok(key)
    }
}

/// A key as distributed by the control store: its epoch, algorithm, the time
/// from which gateways seal with it, and the secret.
#[derive(Debug)]
pub struct EpochKey {
    pub epoch: u32,
    pub algorithm: Algorithm,
    pub activate_at: Millis,
    pub material: KeyMaterial,
}

impl EpochKey {
    /// A deliberate copy, key bytes included (one per tunnel worker: each
    /// holds its own key object). Both copies zeroize on drop.
    pub fn duplicate(&self) -> EpochKey {
        EpochKey {
            epoch: self.epoch,
            algorithm: self.algorithm,
            activate_at: self.activate_at,
            material: KeyMaterial(self.material.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_key_bytes() {
        let key = KeyMaterial::from_bytes([0xab; KEY_LEN]);
        let text = format!("{key:?}");
        assert_eq!(text, "KeyMaterial(<redacted>)");
        let epoch_key = EpochKey {
            epoch: 1,
            algorithm: Algorithm::Aes256Gcm,
            activate_at: 0,
            material: key,
        };
        let text = format!("{epoch_key:?}");
        assert!(!text.to_lowercase().contains("ab, ab"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn zeroize_clears_bytes() {
        let mut key = KeyMaterial::from_bytes([0x5a; KEY_LEN]);
        key.zeroize();
        assert_eq!(key.as_bytes(), &[0u8; KEY_LEN]);
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(KeyMaterial::from_slice(&[1u8; 31]).is_none());
        assert!(KeyMaterial::from_slice(&[1u8; 33]).is_none());
        let key = KeyMaterial::from_slice(&[1u8; 32]).unwrap();
        assert_eq!(key.as_bytes(), &[1u8; 32]);
    }

    #[test]
    fn system_source_generates_distinct_keys() {
        let mut source = SystemKeySource::new();
        let a = source.generate().unwrap();
        let b = source.generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.as_bytes(), &[0u8; KEY_LEN]);
    }

    #[test]
    fn usage_limits_split_and_soft_below_hard() {
        let aes = UsageLimits::for_algorithm(Algorithm::Aes256Gcm, 64);
        assert_eq!(aes.seal_hard, 1 << 26);
        assert_eq!(aes.seal_soft, 1 << 25);
        assert_eq!(aes.forgery_soft, 1 << 45);
        let chacha = UsageLimits::for_algorithm(Algorithm::ChaCha20Poly1305, 0);
        assert_eq!(chacha.seal_hard, 1 << 62);
        assert_eq!(chacha.forgery_soft, 1 << 35);
        assert_eq!(Algorithm::default(), Algorithm::Aes256Gcm);
    }

    #[test]
    fn algorithms_map_to_ring() {
        assert_eq!(Algorithm::Aes256Gcm.ring_algorithm().key_len(), KEY_LEN);
        assert_eq!(
            Algorithm::ChaCha20Poly1305.ring_algorithm().key_len(),
            KEY_LEN
        );
    }
}
