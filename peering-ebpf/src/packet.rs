//! Bounds-checked access to the frame and header parsing, shared by the XDP
//! and TC programs through [`Packet`].
//!
//! Every access goes through [`ptr_at`] / [`ptr_at_mut`], which compare the
//! end of the access with `data_end` in a form the verifier tracks.

use aya_ebpf::{
    helpers::{bpf_skb_pull_data, bpf_xdp_get_buff_len},
    programs::{TcContext, XdpContext},
};
use core::mem::size_of;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use peering_common::{Stat, ETH_P_8021Q, ETH_P_IPV4};

pub const ETH_LEN: usize = EthHdr::LEN;
pub const VLAN_LEN: usize = 4;
pub const IPV4_MIN_LEN: usize = Ipv4Hdr::LEN;
pub const IPV4_MAX_LEN: usize = 60;

/// IPv4 "don't fragment" flag in the flags/offset word (RFC 791).
pub const IP_DF: u16 = 0x4000;
pub const IP_OFFSET_MASK: u16 = 0x1fff;

/// A frame the parsers and rewrites can work on: an XDP buffer or a
/// socket buffer at TC. Both expose the directly accessible bytes as
/// `data..data_end`; anything else differs per program type.
pub trait Packet {
    /// True when every header is always directly accessible (XDP), so no
    /// code for [`Packet::pull`] need be emitted.
    const HEADERS_DIRECT: bool;
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Makes the first `len` bytes directly accessible. XDP: headers are
    /// always in the first buffer, nothing to do. TC: a socket buffer may
    /// hold them in page fragments (GRO, GSO); `bpf_skb_pull_data` moves
    /// only those `len` bytes into the linear part, never the whole packet.
    /// Invalidates earlier packet pointers: callers keep offsets only.
    fn pull(&self, len: usize) -> Result<(), Stat>;
}

impl Packet for XdpContext {
    const HEADERS_DIRECT: bool = true;

    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn pull(&self, _len: usize) -> Result<(), Stat> {
        Ok(())
    }
}

impl Packet for TcContext {
    const HEADERS_DIRECT: bool = false;

    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn pull(&self, len: usize) -> Result<(), Stat> {
        if self.data() + len <= self.data_end() {
            return Ok(());
        }
        // Fails when the packet is shorter than `len`: a truncated header.
        if unsafe { bpf_skb_pull_data(self.skb.skb, len as u32) } != 0 {
            return Err(Stat::DropMalformed);
        }
        Ok(())
    }
}

/// Length of the whole frame, fragments of a multi-buffer frame included
/// (`data_end` only bounds the first buffer).
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    unsafe { bpf_xdp_get_buff_len(ctx.ctx) as usize }
}

#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Packet, offset: usize) -> Result<*const T, Stat> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Stat::DropMalformed);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &impl Packet, offset: usize) -> Result<*mut T, Stat> {
    Ok(ptr_at::<T>(ctx, offset)? as *mut T)
}

#[inline(always)]
pub fn read_u16(ctx: &impl Packet, offset: usize) -> Result<u16, Stat> {
    let p: *const [u8; 2] = ptr_at(ctx, offset)?;
    Ok(u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
pub fn write_u16(ctx: &impl Packet, offset: usize, v: u16) -> Result<(), Stat> {
    let p: *mut [u8; 2] = ptr_at_mut(ctx, offset)?;
    unsafe { *p = v.to_be_bytes() };
    Ok(())
}

/// What the link layer told us: where IPv4 starts and which VLAN it came on.
#[derive(Clone, Copy)]
pub struct L2 {
    /// Offset of the IPv4 header: 14, or 18 behind one 802.1Q tag.
    pub l3: usize,
    /// VLAN id, 0 when untagged.
    pub vlan: u16,
}

impl L2 {
    #[inline(always)]
    pub fn tagged(&self) -> bool {
        self.l3 != ETH_LEN
    }
}

/// Parses Ethernet and at most one 802.1Q tag. `Ok(None)` for anything
/// that is not IPv4 (ARP, IPv6, …): the kernel handles those.
#[inline(always)]
pub fn parse_l2(ctx: &impl Packet) -> Result<Option<L2>, Stat> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let ethertype = u16::from_be(unsafe { (*eth).ether_type });
    if ethertype == ETH_P_IPV4 {
        return Ok(Some(L2 {
            l3: ETH_LEN,
            vlan: 0,
        }));
    }
    if ethertype != ETH_P_8021Q {
        return Ok(None);
    }
    let tci = read_u16(ctx, ETH_LEN)?;
    let inner = read_u16(ctx, ETH_LEN + 2)?;
    if inner != ETH_P_IPV4 {
        return Ok(None);
    }
    Ok(Some(L2 {
        l3: ETH_LEN + VLAN_LEN,
        vlan: tci & 0x0fff,
    }))
}

/// The IPv4 fields the pipeline needs, read once.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub ihl: usize,
    pub total_len: u16,
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4 {
    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        self.frag & IP_DF != 0
    }

    #[inline(always)]
    pub fn is_first_fragment(&self) -> bool {
        self.frag & IP_OFFSET_MASK == 0
    }
}

/// Parses and validates the IPv4 header at `l3`: version, header length,
/// total length against the frame, and the header checksum (a router must
/// not forward a corrupted header, RFC 1812 §5.2.2). Pulls the header into
/// the directly accessible part when needed (TC), and no further.
#[inline(always)]
pub fn parse_ipv4<C: Packet>(ctx: &C, l3: usize, frame_len: usize) -> Result<Ipv4, Stat> {
    if !C::HEADERS_DIRECT {
        pull_ipv4(ctx, l3)?;
    }
    let h: *const Ipv4Hdr = ptr_at(ctx, l3)?;
    let h = unsafe { &*h };
    if h.version() != 4 {
        return Err(Stat::DropMalformed);
    }
    let ihl = h.ihl() as usize;
    let total_len = h.tot_len();
    if ihl < IPV4_MIN_LEN || (total_len as usize) < ihl {
        return Err(Stat::DropMalformed);
    }
    // The frame may carry link-layer padding beyond total_len, never less.
    if l3 + total_len as usize > frame_len {
        return Err(Stat::DropMalformed);
    }
    if header_sum(ctx, l3, ihl)? != 0xffff {
        return Err(Stat::DropBadChecksum);
    }
    Ok(Ipv4 {
        ihl,
        total_len,
        frag: u16::from_be_bytes(h.frags),
        ttl: h.ttl,
        proto: h.proto,
        src: h.src_addr,
        dst: h.dst_addr,
    })
}

/// Pulls the IPv4 header at `l3`, options included, and nothing more.
#[inline(always)]
fn pull_ipv4(ctx: &impl Packet, l3: usize) -> Result<(), Stat> {
    ctx.pull(l3 + IPV4_MIN_LEN)?;
    let h: *const Ipv4Hdr = ptr_at(ctx, l3)?;
    let ihl = unsafe { (*h).ihl() } as usize;
    if ihl > IPV4_MIN_LEN {
        ctx.pull(l3 + (ihl & 0x3c))?;
    }
    Ok(())
}

/// One's complement sum of the IPv4 header, folded to 16 bits. A valid
/// header (checksum field included) sums to 0xffff.
#[inline(always)]
fn header_sum(ctx: &impl Packet, l3: usize, ihl: usize) -> Result<u16, Stat> {
    let fixed: *const [u8; IPV4_MIN_LEN] = ptr_at(ctx, l3)?;
    let mut sum = sum_words(unsafe { &*fixed });
    // Options: at most 40 bytes, ten 32-bit words, read one word at a time.
    let mut off = IPV4_MIN_LEN;
    for _ in 0..(IPV4_MAX_LEN - IPV4_MIN_LEN) / 4 {
        if off >= ihl {
            break;
        }
        let w: *const [u8; 4] = ptr_at(ctx, l3 + off)?;
        sum += sum_words(unsafe { &*w });
        off += 4;
    }
    Ok(fold(sum))
}

/// Sum of the big-endian 16-bit words of `bytes` (even length), unfolded.
#[inline(always)]
pub fn sum_words<const N: usize>(bytes: &[u8; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Folds a 32-bit one's complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
