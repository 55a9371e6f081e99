//! Tunnel data in the control store: the types of the deployment-wide
//! tunnel keys, the rotation settings and the gateway registry.
//!
//! None of this is part of the [`crate::control::state::State`]: keys are
//! secret and change every few minutes. They are stored under keys of
//! their own (see [`super::codec`]) and served by the controller
//! ([`crate::control::controller::Controller`]).

use crate::tunnel::key::Algorithm;
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::Millis;
use std::net::SocketAddrV4;

/// The gateway serving one region, as registered by its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRecord {
    pub region: String,
    /// Unique in the deployment, stable for the region, >= 1.
    pub gateway_id: u32,
    /// Underlay address peers send tunnel datagrams to.
    pub endpoint: SocketAddrV4,
    /// When the gateway last registered (Unix milliseconds).
    pub updated_at: Millis,
}

/// Deployment-wide tunnel configuration, written by `peering-controld`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSettings {
    pub policy: RotationPolicy,
    /// Algorithm of newly generated keys (each key carries its own).
    pub algorithm: Algorithm,
}

/// Stored (and command-line) name of an algorithm.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Aes256Gcm => "aes-256-gcm",
        Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
    }
}

/// Inverse of [`algorithm_name`].
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "aes-256-gcm" => Some(Algorithm::Aes256Gcm),
        "chacha20-poly1305" => Some(Algorithm::ChaCha20Poly1305),
        _ => None,
    }
}
