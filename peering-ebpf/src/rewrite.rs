//! Header rewrites for forwarded packets: TTL and checksum, MACs, the VLAN
//! tag, and the metadata handed to the AF_XDP path. TTL and MACs are shared
//! with the TC program; the VLAN tag there lives in the socket buffer's
//! metadata instead (see `tc::skb`).

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_meta},
    programs::XdpContext,
};
use peering_common::{Stat, ETH_P_8021Q};

use crate::packet::{self, ptr_at_mut, Packet, ETH_LEN, L2, VLAN_LEN};

/// Decrements the TTL and patches the header checksum incrementally
/// (RFC 1624): TTL is the high byte of its 16-bit word, so the sum grows by
/// 0x0100 with an end-around carry.
#[inline(always)]
pub fn decrement_ttl(ctx: &impl Packet, l3: usize, ttl: u8) -> Result<(), Stat> {
    if ttl <= 1 {
        return Err(Stat::DropTtlExceeded);
    }
    // TTL and protocol form one 16-bit word; write the pair (see icmp.rs on
    // one-byte bounds checks).
    let word: *mut [u8; 2] = ptr_at_mut(ctx, l3 + 8)?;
    unsafe { (*word)[0] = ttl - 1 };
    let check = packet::read_u16(ctx, l3 + 10)? as u32 + 0x0100;
    let check = check + (check >> 16);
    packet::write_u16(ctx, l3 + 10, check as u16)
}

/// Writes the Ethernet header of a forwarded frame, adding, removing or
/// rewriting the 802.1Q tag so the frame leaves on `egress_vlan`.
#[inline(always)]
pub fn set_l2(
    ctx: &XdpContext,
    l2: &L2,
    egress_vlan: u16,
    dst: [u8; 6],
    src: [u8; 6],
) -> Result<(), Stat> {
    match (l2.tagged(), egress_vlan != 0) {
        (false, false) => {}
        (true, true) => set_vid(ctx, egress_vlan)?,
        (true, false) => pop_vlan(ctx)?,
        (false, true) => push_vlan(ctx, egress_vlan)?,
    }
    set_macs(ctx, dst, src)
}

/// Writes destination and source MAC as one 12-byte store.
#[inline(always)]
pub fn set_macs(ctx: &impl Packet, dst: [u8; 6], src: [u8; 6]) -> Result<(), Stat> {
    let macs: *mut [u8; 12] = ptr_at_mut(ctx, 0)?;
    let mut m = [0u8; 12];
    m[..6].copy_from_slice(&dst);
    m[6..].copy_from_slice(&src);
    unsafe { *macs = m };
    Ok(())
}

/// Replaces the VLAN id and keeps the priority bits.
#[inline(always)]
fn set_vid(ctx: &XdpContext, vlan: u16) -> Result<(), Stat> {
    let tci = packet::read_u16(ctx, ETH_LEN)?;
    packet::write_u16(ctx, ETH_LEN, (tci & 0xf000) | (vlan & 0x0fff))
}

/// Drops the tag: the inner ethertype already sits where the new header's
/// ethertype goes, so only the start of the frame moves by four bytes (the
/// MACs are written afterwards).
#[inline(always)]
fn pop_vlan(ctx: &XdpContext) -> Result<(), Stat> {
    adjust_head(ctx, VLAN_LEN as i32)
}

/// Adds a tag: after growing the head by four bytes the old ethertype
/// (IPv4) lands behind the new tag, so only TPID and TCI are written.
#[inline(always)]
fn push_vlan(ctx: &XdpContext, vlan: u16) -> Result<(), Stat> {
    adjust_head(ctx, -(VLAN_LEN as i32))?;
    packet::write_u16(ctx, 12, ETH_P_8021Q)?;
    packet::write_u16(ctx, ETH_LEN, vlan & 0x0fff)
}

#[inline(always)]
pub fn adjust_head(ctx: &XdpContext, delta: i32) -> Result<(), Stat> {
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    Ok(())
}

/// Puts the peering id in front of the frame as XDP metadata, where the
/// AF_XDP reader finds it without a second lookup.
#[inline(always)]
pub fn set_meta(ctx: &XdpContext, pcx: u32) -> Result<(), Stat> {
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -4) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    let meta = ctx.metadata();
    if meta + 4 > ctx.data() {
        return Err(Stat::DropAdjustFailed);
    }
    unsafe { *(meta as *mut u32) = pcx };
    Ok(())
}
