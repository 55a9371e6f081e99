//! The XDP pipeline for VPC-facing interfaces: parse, decide (`route`),
//! admit (`sg`: security groups, for packets crossing a peering), then act. Each step returns the [`Stat`] that names why the packet stops
//! there.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use peering_common::{FibEntry, IfaceInfo, Stat, INTER_REGION_MTU};

use crate::{
    icmp,
    packet::{self, Ipv4, L2},
    rewrite,
    route::{self, Route},
    sg, EGRESS, XSKS,
};

type Outcome = (u32, Stat);

#[inline(always)]
pub fn process(ctx: &XdpContext, len: usize) -> Outcome {
    match try_process(ctx, len) {
        Ok(outcome) => outcome,
        Err(stat) => (xdp_action::XDP_DROP, stat),
    }
}

/// One hash lookup (the ingress port), one LPM lookup (the FIB) and, to
/// forward locally, one hash lookup (the neighbour): nothing per packet
/// that the control path can precompute.
#[inline(always)]
fn try_process(ctx: &XdpContext, len: usize) -> Result<Outcome, Stat> {
    let Some(l2) = packet::parse_l2(ctx)? else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNotVpc));
    };
    let Some(iface) = route::ingress_subnet(ctx.ingress_ifindex() as u32, l2.vlan) else {
        return Ok((xdp_action::XDP_PASS, Stat::PassNotVpc));
    };
    let ip = packet::parse_ipv4(ctx, l2.l3, len)?;
    match route::decide(iface, &ip, len)? {
        Route::NoRoute => Ok((xdp_action::XDP_PASS, Stat::PassNoRoute)),
        Route::Forward(port) => {
            sg::admit(ctx, l2.l3, &ip, len, true)?;
            forward_local(ctx, &l2, &ip, port)
        }
        Route::Remote(pcx) => {
            sg::admit(ctx, l2.l3, &ip, len, false)?;
            forward_remote(ctx, &l2, &ip, iface, pcx, len)
        }
    }
}

/// Intra-region peer: the FIB entry already names the egress port (the
/// agent compiled the route with the peer's subnet, which also proves the
/// destination is inside the peer); route it like a router does.
#[inline(always)]
fn forward_local(ctx: &XdpContext, l2: &L2, ip: &Ipv4, port: &FibEntry) -> Result<Outcome, Stat> {
    let mac = route::neighbour(port, ip.dst)?;
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
