//! The underlay interface: tunnel datagrams addressed to this gateway go to
//! the tunnel's AF_XDP socket on the queue they arrived on; everything else
//! (ARP, other traffic, fragments, anything malformed) goes on to the
//! kernel, which also serves the tunnel's UDP socket as the fallback path.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use network_types::udp::UdpHdr;
use peering_common::{Stat, UnderlayInfo, UNDERLAY_XSK_BASE, UNDERLAY_XSK_SLOTS};

use crate::{
    packet::{self, IP_OFFSET_MASK},
    UNDERLAY, XSKS,
};

const IPPROTO_UDP: u8 = 17;
/// "More fragments" in the IPv4 flags/offset word.
const IP_MF: u16 = 0x2000;

#[inline(always)]
pub fn process(ctx: &XdpContext, len: usize) -> (u32, Stat) {
    if !is_tunnel_datagram(ctx, len) {
        return (xdp_action::XDP_PASS, Stat::PassUnderlay);
    }
    let queue = ctx.rx_queue_index();
    if queue >= UNDERLAY_XSK_SLOTS {
        return (xdp_action::XDP_PASS, Stat::PassUnderlay);
    }
    // Without a socket on the slot the frame goes to the kernel (the
    // flags' low bits are the verdict on a miss).
    match XSKS.redirect(UNDERLAY_XSK_BASE + queue, u64::from(xdp_action::XDP_PASS)) {
        Ok(verdict) => (verdict, Stat::FwdTunnelRx),
        Err(_) => (xdp_action::XDP_PASS, Stat::PassUnderlay),
    }
}

/// True for an unfragmented IPv4 UDP datagram, with a valid header, to the
/// tunnel endpoint configured for the ingress interface. Parse errors are
/// not drops here: the kernel sees the frame and decides.
#[inline(always)]
fn is_tunnel_datagram(ctx: &XdpContext, len: usize) -> bool {
    let Some(endpoint) = endpoint(ctx) else {
        return false;
    };
    let Ok(Some(l2)) = packet::parse_l2(ctx) else {
        return false;
    };
    if l2.tagged() {
        return false;
    }
    let Ok(ip) = packet::parse_ipv4(ctx, l2.l3, len) else {
        return false;
    };
    if ip.proto != IPPROTO_UDP || ip.dst != endpoint.addr {
        return false;
    }
    if ip.frag & (IP_MF | IP_OFFSET_MASK) != 0 {
        return false;
    }
    let Ok(udp) = packet::ptr_at::<UdpHdr>(ctx, l2.l3 + ip.ihl) else {
        return false;
    };
    // SAFETY: ptr_at checked the header lies inside the frame.
    let dport = unsafe { (*udp).dst };
    dport == endpoint.port
}

#[inline(always)]
fn endpoint(ctx: &XdpContext) -> Option<UnderlayInfo> {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: plain-data value copied out of the map.
    unsafe { UNDERLAY.get(&ifindex) }.copied()
}
