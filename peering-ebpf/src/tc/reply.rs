//! ICMP "fragmentation needed" from the TC program: the XDP reply's layout
//! trick (`icmp.rs`) on a socket buffer. The packet is cut to what the
//! reply quotes first (which also ends GSO: `bpf_skb_change_tail` resets
//! its state), then 28 bytes open behind the Ethernet header, so the
//! original IPv4 header is already where the quote goes.

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    helpers::{bpf_csum_update, bpf_skb_adjust_room, bpf_skb_change_tail},
    programs::TcContext,
};
use peering_common::Stat;

use crate::{
    icmp::{self, NEW_HDRS},
    packet::{fold, ptr_at, ptr_at_mut, Ipv4, Packet, ETH_LEN},
    ratelimit,
};

/// Data bytes quoted after the original header: a whole option-less TCP
/// header rather than the 8 bytes RFC 792 asks for at least (RFC 1812
/// §4.3.2.3 asks for as much as fits in 576). With 20, the L4 checksum
/// field of TCP (bytes 16..18) and UDP (6..8) stays inside the packet, so
/// cutting a CHECKSUM_PARTIAL skb succeeds (the kernel refuses a trim that
/// would cut the field a partial checksum is to be written to).
const QUOTED_DATA: usize = 20;

/// Turns the packet into the reply, addressed back to its sender.
///
/// What stays: a reply made from a CHECKSUM_PARTIAL skb (a host with TX
/// checksum offload on) is still marked partial, with the checksum start
/// at the quoted L4 header; no helper clears that mark. The host that
/// sent the packet receives it locally and trusts a partial checksum, so
/// the reply works; were it forwarded on to a device without checksum
/// offload, the kernel would write a checksum into the quoted L4 header
/// and the ICMP checksum would no longer verify.
#[inline(always)]
pub fn frag_needed(ctx: &TcContext, ip: &Ipv4, gateway_ip: [u8; 4], mtu: u16) -> Result<(), Stat> {
    // RFC 1812 §4.3.2.7: no ICMP error about a non-first fragment or about
    // another ICMP error.
    if !ip.is_first_fragment() {
        return Err(Stat::DropMtuExceeded);
    }
    let ihl = ip.ihl & 0x3c;
    let keep = ETH_LEN + ihl + QUOTED_DATA;
    ctx.pull(keep)?;
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, keep as u32, 0) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    if icmp::is_icmp_error(ctx, ETH_LEN, ip)? {
        return Err(Stat::DropMtuExceeded);
    }
    if !ratelimit::allow_icmp() {
        return Err(Stat::DropIcmpRateLimited);
    }
    let grow = unsafe { bpf_skb_adjust_room(ctx.skb.skb, NEW_HDRS as i32, BPF_ADJ_ROOM_MAC, 0) };
    if grow != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    swap_macs(ctx)?;
    let total = (NEW_HDRS + ihl + QUOTED_DATA) as u16;
    icmp::write_ipv4(ctx, ETH_LEN, total, gateway_ip, ip.src)?;
    let quoted = icmp::write_icmp::<QUOTED_DATA>(ctx, ETH_LEN + 20, ihl, mtu)?;
    // A CHECKSUM_COMPLETE skb's sum still covers the old content: the
    // quoted header (sum 0) and data (`quoted`); the new content sums to
    // 0, so take `quoted` out. A no-op (an error) for other skbs.
    unsafe { bpf_csum_update(ctx.skb.skb, !fold(quoted) as u32) };
    Ok(())
}

#[inline(always)]
fn swap_macs(ctx: &TcContext) -> Result<(), Stat> {
    let old: *const [u8; 12] = ptr_at(ctx, 0)?;
    let old = unsafe { *old };
    let mut m = [0u8; 12];
    m[..6].copy_from_slice(&old[6..]);
    m[6..].copy_from_slice(&old[..6]);
    let macs: *mut [u8; 12] = ptr_at_mut(ctx, 0)?;
    unsafe { *macs = m };
    Ok(())
}
