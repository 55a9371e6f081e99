//! The routing decision both VPC programs (XDP and TC) share: the ingress
//! subnet, the source check, the FIB lookup and the neighbour. None of it
//! touches the packet; the programs parse before and act after.

use aya_ebpf::maps::lpm_trie::Key;
use peering_common::{
    scoped_prefix_len, FibAction, FibEntry, IfaceInfo, IfaceKey, NeighKey, ScopedAddr, Stat,
};

use crate::{packet::Ipv4, resolve, stats, FIB, IFACES, NEIGHBOURS};

/// What the FIB says about a packet that may leave the gateway.
pub enum Route<'a> {
    /// No route: traffic for the gateway itself, passed to the kernel.
    NoRoute,
    /// Intra-region peer: out of the entry's port.
    Forward(&'a FibEntry),
    /// Inter-region peer: to the encapsulation path with this peering id.
    Remote(u32),
}

/// The subnet a port (and VLAN) is attached to; `None` for ports and
/// VLANs the dataplane does not serve.
#[inline(always)]
pub fn ingress_subnet<'a>(ifindex: u32, vlan: u16) -> Option<&'a IfaceInfo> {
    let key = IfaceKey::new(ifindex, vlan);
    unsafe { IFACES.get(&key) }
}

/// One LPM lookup (the FIB, which the agent compiles from the routes and
/// the peers' subnets, see `dataplane/fib.rs`), after the source check.
/// Drops are the `Err` side, named by their [`Stat`].
#[inline(always)]
pub fn decide<'a>(iface: &IfaceInfo, ip: &Ipv4, len: usize) -> Result<Route<'a>, Stat> {
    if !in_subnet(iface, ip.src) {
        return Err(Stat::DropSpoofedSource);
    }
    let Some(entry) = lookup_fib(iface.route_table, ip.dst) else {
        return Ok(Route::NoRoute);
    };
    stats::count_route(entry.counter, len as u64);
    match FibAction::from_u32(entry.action) {
        Some(FibAction::Forward) => Ok(Route::Forward(entry)),
        Some(FibAction::RemotePeer) => Ok(Route::Remote(entry.target)),
        Some(FibAction::Blackhole) => Err(Stat::DropBlackhole),
        Some(FibAction::NoSubnet) => Err(Stat::DropNoSubnet),
        Some(FibAction::OutsidePeer) => Err(Stat::DropDstOutsidePeer),
        None => Err(Stat::DropBadRoute),
    }
}

/// The destination host's MAC on the egress port; without one the agent
/// is asked to resolve it and the packet drops.
#[inline(always)]
pub fn neighbour(port: &FibEntry, dst: [u8; 4]) -> Result<[u8; 6], Stat> {
    let neigh = NeighKey {
        ifindex: port.target,
        addr: dst,
    };
    match unsafe { NEIGHBOURS.get(&neigh) } {
        Some(n) => Ok(n.mac),
        None => Err(resolve::request(&neigh)),
    }
}

/// True when `src` lies in the ingress subnet: a mask and a compare on the
/// prefix the interface entry carries (bytes in wire order on both sides,
/// so the AND works on the raw words).
#[inline(always)]
fn in_subnet(iface: &IfaceInfo, src: [u8; 4]) -> bool {
    let mask = u32::from_ne_bytes(iface.subnet_mask);
    u32::from_ne_bytes(src) & mask == u32::from_ne_bytes(iface.subnet)
}

/// The FIB is the kernel's LPM trie, chosen by measurement (README,
/// Performance): with a million routes a hit costs 1.33x what it costs
/// with one (the trie's depth levels off after a thousand routes), inside
/// the 1.5x target. A hash per prefix length, probed longest first, makes
/// each probe cheaper but costs a probe per length in use above the match
/// (up to 33), which a table of mixed lengths pays on every packet.
#[inline(always)]
fn lookup_fib<'a>(table: u32, dst: [u8; 4]) -> Option<&'a FibEntry> {
    let key = Key::new(scoped_prefix_len(32), ScopedAddr::new(table, dst));
    FIB.get(&key)
}
