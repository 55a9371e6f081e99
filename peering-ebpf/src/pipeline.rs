//! The packet pipeline for VPC-facing interfaces: parse, check the source,
//! look the route up, then act. Each step returns the [`Stat`] that names
//! why the packet stops there.

use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use peering_common::{
    scoped_prefix_len, IfaceInfo, IfaceKey, NeighKey, RouteAction, RouteValue, ScopedAddr, Stat,
    INTER_REGION_MTU,
};

use crate::{
    icmp,
    packet::{self, Ipv4, L2},
    resolve, rewrite, stats, EGRESS, IFACES, NEIGHBOURS, ROUTES, SUBNETS, VPC_CIDRS, XSKS,
};

type Outcome = (u32, Stat);

#[inline(always)]
pub fn process(ctx: &XdpContext, len: usize) -> Outcome {
    match try_process(ctx, len) {
        Ok(outcome) => outcome,
        Err(stat) => (xdp_action::XDP_DROP, stat),
    }
}

#[inline(always)]
fn try_process(ctx: &XdpContext, len: usize) -> Result<Outcome, Stat> {
    let Some(l2) = packet::parse_l2(ctx)? else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNotVpc));
    };
    let Some(iface) = ingress_subnet(ctx, &l2) else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNotVpc));
    };
    let ip = packet::parse_ipv4(ctx, l2.l3, len)?;
    if !in_vpc(iface.vpc_id, ip.src) {
        return Err(Stat::DropSpoofedSource);
    }
    let Some(route) = lookup_route(iface.route_table, ip.dst) else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNoRoute));
    };
    stats::count_route(route.counter, len as u64);
    match RouteAction::from_u32(route.action) {
        Some(RouteAction::LocalPeer) => forward_local(ctx, &l2, &ip, route.target),
        Some(RouteAction::RemotePeer) => forward_remote(ctx, &l2, &ip, &iface, route.target, len),
        Some(RouteAction::Blackhole) => Err(Stat::DropBlackhole),
        None => Err(Stat::DropBadRoute),
    }
}

#[inline(always)]
fn ingress_subnet(ctx: &XdpContext, l2: &L2) -> Option<IfaceInfo> {
    let key = IfaceKey::new(ctx.ingress_ifindex() as u32, l2.vlan);
    unsafe { IFACES.get(&key) }.copied()
}

/// True when `addr` lies in one of the VPC's CIDR blocks.
#[inline(always)]
fn in_vpc(vpc: u32, addr: [u8; 4]) -> bool {
    let key = Key::new(scoped_prefix_len(32), ScopedAddr::new(vpc, addr));
    VPC_CIDRS.get(&key).is_some()
}

#[inline(always)]
fn lookup_route(table: u32, dst: [u8; 4]) -> Option<RouteValue> {
    let key = Key::new(scoped_prefix_len(32), ScopedAddr::new(table, dst));
    ROUTES.get(&key).copied()
}

/// Intra-region peer: the destination must be inside the peer VPC (a route
/// never carries traffic beyond the peer), then route it like a router does.
///
/// Userspace only installs subnets inside their VPC's blocks, so a subnet
/// hit proves the destination is in the peer VPC; the block lookup runs
/// only on a miss, to name the drop.
#[inline(always)]
fn forward_local(ctx: &XdpContext, l2: &L2, ip: &Ipv4, peer_vpc: u32) -> Result<Outcome, Stat> {
    let key = Key::new(scoped_prefix_len(32), ScopedAddr::new(peer_vpc, ip.dst));
    let Some(port) = SUBNETS.get(&key).copied() else {
        return Err(if in_vpc(peer_vpc, ip.dst) {
            Stat::DropNoSubnet
        } else {
            Stat::DropDstOutsidePeer
        });
    };
    let neigh = NeighKey {
        ifindex: port.ifindex,
        addr: ip.dst,
    };
    let Some(mac) = unsafe { NEIGHBOURS.get(&neigh) }.map(|n| n.mac) else {
        return Err(resolve::request(&neigh));
    };
    rewrite::decrement_ttl(ctx, l2.l3, ip.ttl)?;
    rewrite::set_l2(ctx, l2, port.vlan, mac, port.src_mac)?;
    match EGRESS.redirect(port.ifindex, 0) {
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
