//! The sink: the generator's frames (IPv4 without options, UDP to the
//! configured port, the magic in front of the payload) are counted and
//! dropped; everything else goes on to the kernel. The same test runs at
//! XDP, for frames that arrive as frames, and at TC ingress, for socket
//! buffers a gateway's TC program put straight into the host
//! (`bpf_redirect_peer` enters the stack behind the XDP hook).

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    programs::{TcContext, XdpContext},
};
use peering_common::pktgen::{HEADERS_LEN, MAGIC, STAMP_LEN};

use crate::{
    config,
    packet::{self, Packet},
    SINK_STATS,
};

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    if !take(ctx, (ctx.data_end() - ctx.data()) as u64) {
        return xdp_action::XDP_PASS;
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
pub fn process_tc(ctx: &TcContext) -> i32 {
    // A generated frame is short and linear; a pull failure means not ours.
    if ctx.pull(STAMP_LEN).is_err() || !take(ctx, ctx.len() as u64) {
        return TC_ACT_OK;
    }
    TC_ACT_SHOT
}

/// Counts `len` bytes when the frame is the generator's.
#[inline(always)]
fn take<P: Packet>(ctx: &P, len: u64) -> bool {
    if !is_generated(ctx) {
        return false;
    }
    if let Some(c) = SINK_STATS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
    true
}

#[inline(always)]
fn is_generated<P: Packet>(ctx: &P) -> bool {
    let Ok(h) = packet::ptr_at::<[u8; STAMP_LEN]>(ctx, 0) else {
        return false;
    };
    // SAFETY: the whole stamp is within the frame (checked by ptr_at).
    let h = unsafe { &*h };
    h[12] == 0x08
        && h[13] == 0x00
        && h[14] == 0x45
        && h[23] == 17
        && u16::from_be_bytes([h[36], h[37]]) == config::sink_port()
        && h[HEADERS_LEN..HEADERS_LEN + 4] == MAGIC
}
