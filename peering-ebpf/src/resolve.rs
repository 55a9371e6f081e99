//! A packet for a host whose MAC the gateway does not know yet: it is
//! dropped (there is nowhere to queue it in XDP), and the agent is asked to
//! resolve the host through the `RESOLVE` ring buffer, so the next packets
//! find it. Requests are rate-limited per CPU, so a flood of packets to
//! unknown hosts costs the agent a bounded amount of work; each outcome is
//! its own counted drop reason.

use peering_common::{NeighKey, Stat};

use crate::{ratelimit, RESOLVE};

/// Asks the agent to resolve `host`; returns the reason the packet drops.
#[inline(always)]
pub fn request(host: &NeighKey) -> Stat {
    if !ratelimit::allow_resolve() {
        return Stat::DropNoNeighbourUnreported;
    }
    match RESOLVE.output::<NeighKey>(host, 0) {
        Ok(()) => Stat::DropNoNeighbour,
        Err(_) => Stat::DropNoNeighbourRingFull,
    }
}
