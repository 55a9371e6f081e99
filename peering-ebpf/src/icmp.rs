//! ICMP "fragmentation needed" (type 3, code 4, RFC 792 + RFC 1191), built
//! in place from the oversized packet and sent back out of the ingress port.
//!
//! Layout trick: growing the head by 28 bytes (a new IPv4 + ICMP header)
//! leaves the original IPv4 header exactly where the quoted copy must go,
//! so nothing but the link-layer header is moved. The TC program builds
//! its reply the same way (`tc::reply`) from the header writers here.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use peering_common::{Stat, ETH_P_8021Q, ETH_P_IPV4};

use crate::{
    packet::{self, fold, ptr_at, ptr_at_mut, sum_words, Ipv4, Packet, ETH_LEN, L2},
    ratelimit, rewrite,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const IPPROTO_ICMP: u8 = 1;
/// Bytes of the new IPv4 header (no options) plus the ICMP header.
pub const NEW_HDRS: usize = 20 + 8;
/// RFC 792: the quote is the original header plus 64 bits of its data.
const QUOTED_DATA: usize = 8;
/// RFC 1812 §4.3.2.4: "internetwork control" precedence for ICMP errors.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
const TTL: u8 = 64;

#[inline(always)]
pub fn frag_needed(
    ctx: &XdpContext,
    l2: &L2,
    ip: &Ipv4,
    gateway_ip: [u8; 4],
    mtu: u16,
    orig_len: usize,
) -> Result<(), Stat> {
    // RFC 1812 §4.3.2.7: no ICMP error about a non-first fragment or about
    // another ICMP error.
    if !ip.is_first_fragment() || is_icmp_error(ctx, l2.l3, ip)? {
        return Err(Stat::DropMtuExceeded);
    }
    if !ratelimit::allow_icmp() {
        return Err(Stat::DropIcmpRateLimited);
    }
    let l3 = l2.l3;
    rewrite::adjust_head(ctx, -(NEW_HDRS as i32))?;
    write_l2(ctx, l2)?;
    let quoted = ip.ihl + QUOTED_DATA;
    let new_len = l3 + NEW_HDRS + quoted;
    shrink(ctx, orig_len + NEW_HDRS, new_len)?;
    write_ipv4(ctx, l3, (NEW_HDRS + quoted) as u16, gateway_ip, ip.src)?;
    write_icmp::<QUOTED_DATA>(ctx, l3 + 20, ip.ihl, mtu).map(|_| ())
}

#[inline(always)]
pub fn is_icmp_error(ctx: &impl Packet, l3: usize, ip: &Ipv4) -> Result<bool, Stat> {
    if ip.proto != IPPROTO_ICMP {
        return Ok(false);
    }
    let ihl = ip.ihl & 0x3c;
    // Type and code: read as a pair, since a one-byte bounds check is folded
    // by LLVM into a form the verifier cannot use for variable offsets.
    let t: *const [u8; 2] = ptr_at(ctx, l3 + ihl)?;
    // Echo reply/request, timestamp and info messages are queries; the rest
    // (3, 4, 5, 11, 12) are errors.
    Ok(matches!(unsafe { (*t)[0] }, 3 | 4 | 5 | 11 | 12))
}

/// The old link-layer header now starts NEW_HDRS bytes into the frame;
/// write the reply's header at the front with the MACs swapped.
#[inline(always)]
fn write_l2(ctx: &XdpContext, l2: &L2) -> Result<(), Stat> {
    let old: *const [u8; 12] = ptr_at(ctx, NEW_HDRS)?;
    let old = unsafe { *old };
    let macs: *mut [u8; 12] = ptr_at_mut(ctx, 0)?;
    let mut m = [0u8; 12];
    m[..6].copy_from_slice(&old[6..]);
    m[6..].copy_from_slice(&old[..6]);
    unsafe { *macs = m };
    if l2.tagged() {
        let tci = packet::read_u16(ctx, NEW_HDRS + ETH_LEN)?;
        packet::write_u16(ctx, 12, ETH_P_8021Q)?;
        packet::write_u16(ctx, ETH_LEN, tci)?;
        packet::write_u16(ctx, ETH_LEN + 2, ETH_P_IPV4)
    } else {
        packet::write_u16(ctx, 12, ETH_P_IPV4)
    }
}

#[inline(always)]
fn shrink(ctx: &XdpContext, cur_len: usize, new_len: usize) -> Result<(), Stat> {
    let delta = new_len as i32 - cur_len as i32;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    Ok(())
}

#[inline(always)]
pub fn write_ipv4(
    ctx: &impl Packet,
    l3: usize,
    total_len: u16,
    src: [u8; 4],
    dst: [u8; 4],
) -> Result<(), Stat> {
    let tl = total_len.to_be_bytes();
    let mut h: [u8; 20] = [
        0x45,
        TOS_INTERNETWORK_CONTROL,
        tl[0],
        tl[1],
        0,
        0,
        0,
        0,
        TTL,
        IPPROTO_ICMP,
        0,
        0,
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ];
    let check = !fold(sum_words(&h));
    h[10..12].copy_from_slice(&check.to_be_bytes());
    let p: *mut [u8; 20] = ptr_at_mut(ctx, l3)?;
    unsafe { *p = h };
    Ok(())
}

/// The ICMP checksum covers the ICMP header, the quoted IPv4 header and
/// `Q` data bytes. The quoted header was verified on ingress, so its own
/// sum is 0xffff, the one's complement zero: only the data bytes need
/// adding. Returns the unfolded sum of the quoted data bytes.
///
/// The header pointer is bounds-checked and kept before the variable-offset
/// read: LLVM would otherwise drop its check as implied by the later one,
/// which the verifier cannot follow.
#[inline(always)]
pub fn write_icmp<const Q: usize>(
    ctx: &impl Packet,
    at: usize,
    quoted_ihl: usize,
    mtu: u16,
) -> Result<u32, Stat> {
    let p: *mut [u8; 8] = ptr_at_mut(ctx, at)?;
    let m = mtu.to_be_bytes();
    let mut h: [u8; 8] = [ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0, m[0], m[1]];
    let data: *const [u8; Q] = ptr_at(ctx, at + 8 + (quoted_ihl & 0x3c))?;
    let quoted = sum_words(unsafe { &*data });
    let check = !fold(sum_words(&h) + quoted);
    h[2..4].copy_from_slice(&check.to_be_bytes());
    unsafe { *p = h };
    Ok(quoted)
}
