//! The packet pipeline for VPC-facing interfaces: parse, check the source,
//! look the destination up, then act. Each step returns the [`Stat`] that
//! names why the packet stops there.

use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use peering_common::{
    scoped_prefix_len, FibAction, FibEntry, IfaceInfo, IfaceKey, NeighKey, ScopedAddr, Stat,
    INTER_REGION_MTU,
};

use crate::{
    icmp,
    packet::{self, Ipv4, L2},
    resolve, rewrite, stats, EGRESS, FIB, IFACES, NEIGHBOURS, XSKS,
};

type Outcome = (u32, Stat);

#[inline(always)]
pub fn process(ctx: &XdpContext, len: usize) -> Outcome {
    match try_process(ctx, len) {
        Ok(outcome) => outcome,
        Err(stat) => (xdp_action::XDP_DROP, stat),
    }
}

/// One hash lookup (the ingress port), one LPM lookup (the FIB, which the
/// agent compiles from the routes and the peers' subnets, see
/// `dataplane/fib.rs`) and, to forward locally, one hash lookup (the
/// neighbour): nothing per packet that the control path can precompute.
#[inline(always)]
fn try_process(ctx: &XdpContext, len: usize) -> Result<Outcome, Stat> {
    let Some(l2) = packet::parse_l2(ctx)? else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNotVpc));
    };
    let Some(iface) = ingress_subnet(ctx, &l2) else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNotVpc));
    };
    let ip = packet::parse_ipv4(ctx, l2.l3, len)?;
    if !in_subnet(iface, ip.src) {
        return Err(Stat::DropSpoofedSource);
    }
    let Some(entry) = lookup_fib(iface.route_table, ip.dst) else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNoRoute));
    };
    stats::count_route(entry.counter, len as u64);
    match FibAction::from_u32(entry.action) {
        Some(FibAction::Forward) => forward_local(ctx, &l2, &ip, entry),
        Some(FibAction::RemotePeer) => forward_remote(ctx, &l2, &ip, iface, entry.target, len),
        Some(FibAction::Blackhole) => Err(Stat::DropBlackhole),
        Some(FibAction::NoSubnet) => Err(Stat::DropNoSubnet),
        Some(FibAction::OutsidePeer) => Err(Stat::DropDstOutsidePeer),
        None => Err(Stat::DropBadRoute),
    }
}

#[inline(always)]
fn ingress_subnet<'a>(ctx: &XdpContext, l2: &L2) -> Option<&'a IfaceInfo> {
    let key = IfaceKey::new(ctx.ingress_ifindex() as u32, l2.vlan);
    unsafe { IFACES.get(&key) }
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

/// Intra-region peer: the FIB entry already names the egress port (the
/// agent compiled the route with the peer's subnet, which also proves the
/// destination is inside the peer); route it like a router does.
#[inline(always)]
fn forward_local(ctx: &XdpContext, l2: &L2, ip: &Ipv4, port: &FibEntry) -> Result<Outcome, Stat> {
    let neigh = NeighKey {
        ifindex: port.target,
        addr: ip.dst,
    };
    let Some(mac) = unsafe { NEIGHBOURS.get(&neigh) }.map(|n| n.mac) else {
        return Err(resolve::request(&neigh));
    };
    rewrite::decrement_ttl(ctx, l2.l3, ip.ttl)?;
    rewrite::set_l2(ctx, l2, port.vlan, mac, port.src_mac)?;
    match EGRESS.redirect(port.target, 0) {
        Ok(verdict) => Ok((verdict, Stat::FwdLocal)),
        Err(_) => Err(Stat::DropRedirectFailed),
    }
}

/// Sends a frame back out of the port it came in on. A redirect through
/// the egress map takes the same path as forwarded frames; XDP_TX is the
/// fallback (a veth peer drops XDP_TX frames unless it runs XDP itself).
#[inline(always)]
fn reflect(ctx: &XdpContext) -> u32 {
    EGRESS
        .redirect(ctx.ingress_ifindex() as u32, 0)
        .unwrap_or(xdp_action::XDP_TX)
}

/// Inter-region peer: enforce the 1500-byte MTU, then hand the packet to the
/// encapsulation path with the peering's id in the XDP metadata.
#[inline(always)]
fn forward_remote(
    ctx: &XdpContext,
    l2: &L2,
    ip: &Ipv4,
    iface: &IfaceInfo,
    pcx: u32,
    len: usize,
) -> Result<Outcome, Stat> {
    if ip.total_len > INTER_REGION_MTU {
        if !ip.dont_fragment() {
            return Err(Stat::DropMtuExceeded);
        }
        icmp::frag_needed(ctx, l2, ip, iface.gateway_ip, INTER_REGION_MTU, len)?;
        return Ok((reflect(ctx), Stat::TxIcmpFragNeeded));
    }
    rewrite::decrement_ttl(ctx, l2.l3, ip.ttl)?;
    rewrite::set_meta(ctx, pcx)?;
    let slot = iface.xsk_base.wrapping_add(ctx.rx_queue_index());
    match XSKS.redirect(slot, 0) {
        Ok(verdict) => Ok((verdict, Stat::FwdRemote)),
        Err(_) => Err(Stat::DropNoXsk),
    }
}
