//! The TC (sched_cls, tcx ingress) pipeline for veth VPC ports: the XDP
//! pipeline's decisions (`route`) acted out on the socket buffer, so GSO
//! packets and CHECKSUM_PARTIAL survive the forward (an XDP redirect turns
//! the skb back into a frame and loses both). Never linearises: at most the
//! headers are pulled.

mod reply;
mod skb;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use peering_common::{
    FibEntry, IfaceInfo, Stat, ETH_P_IPV4, FIB_F_PEER_REDIRECT, INTER_REGION_MTU,
};

use crate::{
    packet::{self, Ipv4, ETH_LEN},
    rewrite,
    route::{self, Route},
    sg, TUN_ENTRY,
};

type Outcome = (i32, Stat);

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const UDP_HDR_LEN: u32 = 8;

#[inline(always)]
pub fn process(ctx: &TcContext, len: usize) -> Outcome {
    match try_process(ctx, len) {
        Ok(outcome) => outcome,
        Err(stat) => (TC_ACT_SHOT, stat),
    }
}

/// As the XDP pipeline, but the ingress VLAN is the skb's metadata: the
/// frame itself must be plain Ethernet + IPv4 (a tag left in the data is
/// a second, QinQ tag: not ours, passed on).
#[inline(always)]
fn try_process(ctx: &TcContext, len: usize) -> Result<Outcome, Stat> {
    // The Ethernet header is always in the linear part at TC ingress.
    if packet::read_u16(ctx, 12)? != ETH_P_IPV4 {
        return Ok((TC_ACT_OK, Stat::PassNotVpc));
    }
    let tci = skb::vlan_tci(ctx);
    let vlan = tci.map_or(0, |t| t & 0x0fff);
    let Some(iface) = route::ingress_subnet(skb::ifindex(ctx), vlan) else {
        return Ok((TC_ACT_OK, Stat::PassNotVpc));
    };
    let ip = packet::parse_ipv4(ctx, ETH_LEN, len)?;
    match route::decide(iface, &ip, len)? {
        Route::NoRoute => Ok((TC_ACT_OK, Stat::PassNoRoute)),
        Route::Forward(port) => {
            sg::admit(ctx, ETH_LEN, &ip, len, true)?;
            forward_local(ctx, &ip, tci, port)
        }
        Route::Remote(pcx) => {
            sg::admit(ctx, ETH_LEN, &ip, len, false)?;
            forward_remote(ctx, &ip, tci, iface, pcx)
        }
    }
}

/// Intra-region peer: rewrite like a router, then out of the egress port,
/// or for a veth port (the agent sets `FIB_F_PEER_REDIRECT`) straight into
/// the host's side of it.
#[inline(always)]
fn forward_local(
    ctx: &TcContext,
    ip: &Ipv4,
    tci: Option<u16>,
    port: &FibEntry,
) -> Result<Outcome, Stat> {
    let mac = route::neighbour(port, ip.dst)?;
    rewrite::decrement_ttl(ctx, ETH_LEN, ip.ttl)?;
    skb::set_vlan(ctx, tci, port.vlan)?;
    rewrite::set_macs(ctx, mac, port.src_mac)?;
    let peer = port.flags & FIB_F_PEER_REDIRECT != 0;
    Ok((skb::redirect(port.target, peer)?, Stat::FwdLocal))
}

/// Inter-region peer: enforce the 1500-byte MTU, then send the packet
/// through the tunnel entry veth with the peering id in its destination
/// MAC (`peering_tun_entry` moves it to the XDP metadata on the other end).
/// That veth's sending end has TSO, GSO and checksum offload off, so the
/// kernel segments GSO packets and completes partial checksums there.
#[inline(always)]
fn forward_remote(
    ctx: &TcContext,
    ip: &Ipv4,
    tci: Option<u16>,
    iface: &IfaceInfo,
    pcx: u32,
) -> Result<Outcome, Stat> {
    if exceeds_mtu(ctx, ip)? {
        if !ip.dont_fragment() {
            return Err(Stat::DropMtuExceeded);
        }
        reply::frag_needed(ctx, ip, iface.gateway_ip, INTER_REGION_MTU)?;
        // Back out of the ingress port; the ingress tag stays on the skb.
        let verdict = skb::redirect(skb::ifindex(ctx), false)?;
        return Ok((verdict, Stat::TxIcmpFragNeeded));
    }
    rewrite::decrement_ttl(ctx, ETH_LEN, ip.ttl)?;
    // 0: the agent has not set the entry veth up; as for XDP without a
    // socket on the queue, the encapsulation path is not there.
    let entry = TUN_ENTRY.get(0).copied().unwrap_or(0);
    if entry == 0 {
        return Err(Stat::DropNoXsk);
    }
    if tci.is_some() {
        skb::pop_vlan(ctx)?;
    }
    stamp_pcx(ctx, pcx)?;
    Ok((skb::redirect(entry, false)?, Stat::FwdRemote))
}

/// The largest IPv4 packet the packet becomes on the wire: itself, or for
/// a GSO packet each segment, `gso_size` plus the IP and L4 headers.
#[inline(always)]
fn exceeds_mtu(ctx: &TcContext, ip: &Ipv4) -> Result<bool, Stat> {
    let gso = skb::gso_size(ctx);
    if gso == 0 {
        return Ok(ip.total_len > INTER_REGION_MTU);
    }
    let l4 = match ip.proto {
        IPPROTO_TCP => tcp_header_len(ctx, ETH_LEN + (ip.ihl & 0x3c))?,
        IPPROTO_UDP => UDP_HDR_LEN,
        _ => 0,
    };
    Ok(gso + ip.ihl as u32 + l4 > INTER_REGION_MTU as u32)
}

/// TCP's data offset, read with `bpf_skb_load_bytes` (the header may sit
/// in a fragment; nothing is pulled for it).
#[inline(always)]
fn tcp_header_len(ctx: &TcContext, l4: usize) -> Result<u32, Stat> {
    let off: u8 = ctx.load(l4 + 12).map_err(|_| Stat::DropMalformed)?;
    Ok(u32::from(off >> 4) * 4)
}

/// Destination MAC bytes 0..4: the peering id (native endian), 4..6 zero.
#[inline(always)]
fn stamp_pcx(ctx: &TcContext, pcx: u32) -> Result<(), Stat> {
    let dst: *mut [u8; 6] = packet::ptr_at_mut(ctx, 0)?;
    let id = pcx.to_ne_bytes();
    unsafe { *dst = [id[0], id[1], id[2], id[3], 0, 0] };
    Ok(())
}
