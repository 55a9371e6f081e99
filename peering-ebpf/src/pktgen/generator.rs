//! The generator: per frame, pick the size and the flow from the CPU's
//! sequence number, resize the frame, and write every header. Live frames'
//! pages are recycled with whatever the receivers wrote into them, so
//! nothing of the previous frame may be relied on.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use peering_common::pktgen::{
    GEN_FAILED, GEN_RATE_LIMITED, GEN_SENT, HEADERS_LEN, MAGIC, STAMP_LEN,
};

use crate::{config, packet, GEN_STATE, GEN_STATS};

/// Per-CPU state.
#[repr(C)]
pub struct State {
    /// Frames this CPU has built (sent or rate-limited).
    seq: u64,
    /// Rate limit bucket: when credit was last earned, and how much.
    last_ns: u64,
    credit_ns: u64,
}

/// Frames the rate limit lets through back to back after a pause.
const BURST: u64 = 64;

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    let Some(state) = GEN_STATE.get_ptr_mut(0) else {
        return failed();
    };
    // SAFETY: a per-CPU slot: nothing else runs on this CPU meanwhile.
    let state = unsafe { &mut *state };
    if !allow(state) {
        count(GEN_RATE_LIMITED, 0);
        return xdp_action::XDP_DROP;
    }
    let seq = state.seq;
    state.seq = seq.wrapping_add(1);
    match stamp(ctx, seq) {
        Some(len) => {
            count(GEN_SENT, len as u64);
            xdp_action::XDP_TX
        }
        None => failed(),
    }
}

#[inline(always)]
fn failed() -> u32 {
    count(GEN_FAILED, 0);
    xdp_action::XDP_DROP
}

/// Token bucket in nanoseconds of credit (no division per frame); always
/// true when no rate is set.
#[inline(always)]
fn allow(state: &mut State) -> bool {
    let cost = config::ns_per_frame();
    if cost == 0 {
        return true;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let earned = now.saturating_sub(state.last_ns);
    state.last_ns = now;
    let credit = state.credit_ns.saturating_add(earned).min(cost * BURST);
    if credit < cost {
        state.credit_ns = credit;
        return false;
    }
    state.credit_ns = credit - cost;
    true
}

/// Sizes the frame and writes its headers; returns its length.
#[inline(always)]
fn stamp(ctx: &XdpContext, seq: u64) -> Option<u16> {
    let period = config::size_period() as u64;
    if period == 0 {
        return None;
    }
    let len = config::size((seq % period) as u32);
    resize(ctx, len)?;
    let (src_ip, src_port) = flow(seq)?;
    let hdr = headers(len, src_ip, src_port, seq);
    let p: *mut [u8; STAMP_LEN] = packet::ptr_at_mut(ctx, 0).ok()?;
    // SAFETY: bounds checked by ptr_at_mut.
    unsafe { *p = hdr };
    Some(len)
}

/// Grows or shrinks the frame to `len` bytes.
#[inline(always)]
fn resize(ctx: &XdpContext, len: u16) -> Option<()> {
    let cur = (ctx.data_end() - ctx.data()) as i32;
    let delta = len as i32 - cur;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }
    Some(())
}

/// Source address and port of frame `seq`'s flow: flows are taken in
/// turn, addresses vary fastest.
#[inline(always)]
fn flow(seq: u64) -> Option<([u8; 4], u16)> {
    let flows = config::flows() as u64;
    let ips = config::src_ips();
    if flows == 0 || ips == 0 {
        return None;
    }
    let f = (seq % flows) as u32;
    let ip = u32::from_be_bytes(config::src_ip()).wrapping_add(f % ips);
    let port = config::src_port().wrapping_add((f / ips) as u16);
    Some((ip.to_be_bytes(), port))
}

/// Ethernet, IPv4 (TTL 64, no options, DF clear) and UDP (checksum 0: none,
/// RFC 768) headers, then the magic and the sequence number.
#[inline(always)]
fn headers(len: u16, src_ip: [u8; 4], src_port: u16, seq: u64) -> [u8; STAMP_LEN] {
    let mut h = [0u8; STAMP_LEN];
    h[0..6].copy_from_slice(&config::dst_mac());
    h[6..12].copy_from_slice(&config::src_mac());
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = len - 14;
    h[14] = 0x45;
    h[16..18].copy_from_slice(&ip_len.to_be_bytes());
    h[22] = 64;
    h[23] = 17;
    h[26..30].copy_from_slice(&src_ip);
    h[30..34].copy_from_slice(&config::dst_ip());
    let check = !ipv4_sum(&h);
    h[24..26].copy_from_slice(&check.to_be_bytes());
    h[34..36].copy_from_slice(&src_port.to_be_bytes());
    h[36..38].copy_from_slice(&config::dst_port().to_be_bytes());
    h[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    h[HEADERS_LEN..HEADERS_LEN + 4].copy_from_slice(&MAGIC);
    h[HEADERS_LEN + 4..STAMP_LEN].copy_from_slice(&seq.to_be_bytes());
    h
}

/// One's complement sum of the IPv4 header in `h`, folded.
#[inline(always)]
fn ipv4_sum(h: &[u8; STAMP_LEN]) -> u16 {
    let mut sum = 0u32;
    let mut i = 14;
    while i < 34 {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    packet::fold(sum)
}

#[inline(always)]
fn count(slot: u32, bytes: u64) {
    if let Some(c) = GEN_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
