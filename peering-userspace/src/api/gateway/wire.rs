//! The gateway API's messages, shared by the server ([`crate::api::gateway`])
//! and the client ([`crate::control::remote`]).
//!
//! `GET /v1/gateway/sync` answers a [`SyncReply`]; `POST
//! /v1/gateway/register` takes a [`RegisterRequest`] and answers a
//! [`RegisterReply`]. Key material travels as lowercase hex in
//! [`WireKey::material`], a [`Secret`] that is wiped when dropped.

use crate::control::delta::RegionDelta;
use crate::control::store::tunnel::{algorithm_name, parse_algorithm};
use crate::control::store::{GatewayRecord, TunnelSettings};
use crate::control::view::RegionView;
use crate::tunnel::key::{EpochKey, KeyMaterial, KEY_LEN};
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::Millis;
use serde::{Deserialize, Serialize};
use std::net::SocketAddrV4;
use zeroize::Zeroize;

/// Route of the long-poll.
pub const SYNC_PATH: &str = "/v1/gateway/sync";
/// Route registering the gateway's underlay endpoint.
pub const REGISTER_PATH: &str = "/v1/gateway/register";
/// Route asking for an early key rotation.
pub const ROTATION_PATH: &str = "/v1/gateway/rotation-request";

/// Longest a sync may wait for a new revision (`wait=`), in seconds.
pub const MAX_WAIT_SECS: u64 = 30;

/// How the region's view reaches the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewUpdate {
    /// The whole view: on the first sync, and whenever the controller no
    /// longer holds the changes since the gateway's revision.
    Full(RegionView),
    /// What changed since the revision the gateway asked from.
    Delta(RegionDelta),
}

impl ViewUpdate {
    /// The revision the update brings the gateway to.
    pub fn revision(&self) -> u64 {
        match self {
            ViewUpdate::Full(v) => v.revision,
            ViewUpdate::Delta(d) => d.revision,
        }
    }
}

/// The answer of `GET /v1/gateway/sync`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SyncReply {
    pub revision: u64,
    pub view: ViewUpdate,
    /// Every key epoch the controller holds.
    pub keys: Vec<WireKey>,
    pub settings: Option<WireSettings>,
    /// Every registered gateway of the deployment.
    pub gateways: Vec<WireGateway>,
}

/// A string holding secret bytes (hex), overwritten when dropped.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireKey {
    pub epoch: u32,
    /// `aes-256-gcm` or `chacha20-poly1305`.
    pub algorithm: String,
    pub activate_at: Millis,
    pub material: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireSettings {
    pub interval_ms: Millis,
    pub lead_ms: Millis,
    pub overlap_ms: Millis,
    pub algorithm: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireGateway {
    pub region: String,
    pub gateway_id: u32,
    pub endpoint: SocketAddrV4,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterReply {
    #[serde(rename = "GatewayId")]
    pub gateway_id: u32,
}

/// A field of a sync answer that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0} in the controller's answer")]
pub struct WireError(pub String);

impl WireKey {
    pub fn encode(key: &EpochKey) -> Self {
        WireKey {
            epoch: key.epoch,
            algorithm: algorithm_name(key.algorithm).to_owned(),
            activate_at: key.activate_at,
            material: Secret(hex::encode(key.material.as_bytes())),
        }
    }

    /// Decodes the key; the bytes are copied once into the
    /// [`KeyMaterial`] and the intermediate buffer is wiped.
    pub fn decode(&self) -> Result<EpochKey, WireError> {
        let bad = |what: &str| WireError(format!("{what} of key epoch {}", self.epoch));
        let algorithm = parse_algorithm(&self.algorithm).ok_or_else(|| bad("algorithm"))?;
        let mut bytes = [0u8; KEY_LEN];
        let decoded = hex::decode_to_slice(&self.material.0, &mut bytes);
        let material = KeyMaterial::from_bytes(bytes);
        bytes.zeroize();
        decoded.map_err(|_| bad("material"))?;
        Ok(EpochKey {
            epoch: self.epoch,
            algorithm,
            activate_at: self.activate_at,
            material,
        })
    }
}

impl WireSettings {
    pub fn encode(s: &TunnelSettings) -> Self {
        WireSettings {
            interval_ms: s.policy.interval(),
            lead_ms: s.policy.lead(),
            overlap_ms: s.policy.overlap(),
            algorithm: algorithm_name(s.algorithm).to_owned(),
        }
    }

    pub fn decode(&self) -> Result<TunnelSettings, WireError> {
        let policy = RotationPolicy::new(self.interval_ms, self.lead_ms, self.overlap_ms)
            .map_err(|e| WireError(format!("rotation policy ({e})")))?;
        let algorithm = parse_algorithm(&self.algorithm)
            .ok_or_else(|| WireError("settings algorithm".into()))?;
        Ok(TunnelSettings { policy, algorithm })
    }
}

impl WireGateway {
    pub fn encode(g: &GatewayRecord) -> Self {
        WireGateway {
            region: g.region.clone(),
            gateway_id: g.gateway_id,
            endpoint: g.endpoint,
            updated_at: g.updated_at,
        }
    }

    pub fn decode(self) -> GatewayRecord {
        GatewayRecord {
            region: self.region,
            gateway_id: self.gateway_id,
            endpoint: self.endpoint,
            updated_at: self.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::key::Algorithm;

    #[test]
    fn keys_round_trip_and_never_print() {
        let key = EpochKey {
            epoch: 7,
            algorithm: Algorithm::ChaCha20Poly1305,
            activate_at: 1234,
            material: KeyMaterial::from_bytes([0xab; KEY_LEN]),
        };
        let wire = WireKey::encode(&key);
        assert!(!format!("{wire:?}").contains("abab"));
        let json = serde_json::to_string(&wire).unwrap();
        assert!(json.contains(&"ab".repeat(KEY_LEN)));
        let back: WireKey = serde_json::from_str(&json).unwrap();
        let key2 = back.decode().unwrap();
        assert_eq!(key2.epoch, 7);
        assert_eq!(key2.algorithm, Algorithm::ChaCha20Poly1305);
        assert_eq!(key2.activate_at, 1234);
        assert_eq!(key2.material, key.material);
    }

    #[test]
    fn bad_keys_are_refused() {
        for (algorithm, material) in [
            ("des", "ab".repeat(KEY_LEN)),
            ("aes-256-gcm", "ab".repeat(KEY_LEN - 1)),
            ("aes-256-gcm", "zz".repeat(KEY_LEN)),
            ("aes-256-gcm", String::new()),
        ] {
            let wire = WireKey {
                epoch: 1,
                algorithm: algorithm.into(),
                activate_at: 0,
                material: Secret(material),
            };
            let err = wire.decode().unwrap_err();
            assert!(!err.to_string().contains("abab"), "{err}");
        }
    }

    #[test]
    fn settings_round_trip() {
        let s = TunnelSettings {
            policy: RotationPolicy::with_interval(2000).unwrap(),
            algorithm: crate::tunnel::key::Algorithm::Aes256Gcm,
        };
        assert_eq!(WireSettings::encode(&s).decode().unwrap(), s);
        let mut bad = WireSettings::encode(&s);
        bad.interval_ms = 1;
        assert!(bad.decode().is_err());
    }
}
