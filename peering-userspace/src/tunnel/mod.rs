//! Sans-IO core of the inter-region tunnel.
//!
//! Traffic between VPCs in different regions crosses the underlay inside
//! UDP datagrams sealed with one AEAD key shared by every gateway of the
//! deployment. The key is rotated on a schedule driven by the control
//! plane (see [`schedule`]), so all inter-region traffic looks alike and a
//! leaked key exposes at most a few minutes of traffic.
//!
//! This module never touches sockets, clocks or threads: the IO driver
//! hands it datagrams, buffers and the current time (milliseconds, see
//! [`Millis`]) and gets back sealed datagrams, opened packets and errors.
//! The wire format is specified in `docs/protocol.md`.
//!
//! Layout:
//! - [`wire`]: typed views over the outer tunnel header and inner header.
//! - [`key`]: key material, algorithms, key generation, usage limits.
//! - [`keyring`]: the previous/current/next keys a gateway holds.
//! - [`schedule`]: the pure rotation planner used by the control plane.
//! - [`replay`]: RFC 6479-style anti-replay window.
//! - [`windows`]: the replay windows a gateway's workers share.
//! - [`counter`]: the send counter a gateway's workers draw nonces from.
//! - [`engine`]: [`TunnelCore`], the seal/open state machine (one per
//!   worker; [`TunnelShared`] is what the workers share).
//! - [`bench`]: a helper the driver can time to measure throughput.

pub mod bench;
pub mod counter;
pub mod engine;
pub mod error;
pub mod key;
pub mod keyring;
pub mod replay;
pub mod schedule;
pub mod windows;
pub mod wire;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod worker_tests;

pub use self::engine::{
    counter_floor_from_unix_ms, Counters, Opened, OpenedInPlace, RotationReason, TunnelConfig,
    TunnelCore, TunnelShared, SEAL_PREFIX,
};
pub use self::error::{InstallError, KeyGenError, OpenError, SealError};
pub use self::key::{Algorithm, EpochKey, KeyMaterial, KeySource, SystemKeySource, UsageLimits};
pub use self::keyring::{KeyRing, KeyState};
pub use self::replay::ReplayWindow;
pub use self::schedule::{
    Distribute, KeySchedule, Plan, PolicyError, PublishedEpoch, RotationPolicy, ScheduleError,
};
pub use self::wire::{InnerHeader, InnerPacket, Packet, TunnelHeader, WireError};

/// Time as seen by the tunnel: milliseconds on a clock shared by the
/// deployment. Key activation times are distributed by the control store in
/// this unit, so gateways should use Unix time in milliseconds; the core only
/// ever compares values, it never reads a clock itself.
pub type Millis = u64;

/// Well-known UDP destination port of tunnel datagrams.
///
/// Chosen from the IANA "User Ports" range and, at the time of writing,
/// unassigned; it avoids 4789 (VXLAN, RFC 7348), 6081 (Geneve, RFC 8926)
/// and 51820 (WireGuard's customary port) so that captures are unambiguous.
pub const TUNNEL_UDP_PORT: u16 = 51900;

/// Largest inner IPv4 packet the tunnel carries.
///
/// AWS documents an MTU of 1500 bytes for traffic over inter-region VPC
/// peering (no jumbo frames). The XDP path already answers larger packets with
/// ICMP "fragmentation needed"; refusing them here is defence in depth.
pub const INNER_MTU: usize = 1500;
