//! The sink: the generator's frames (IPv4 without options, UDP to the
//! configured port, the magic in front of the payload) are counted and
//! dropped; everything else goes on to the kernel.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use peering_common::pktgen::{HEADERS_LEN, MAGIC, STAMP_LEN};

use crate::{config, packet, SINK_STATS};

#[inline(always)]
pub fn process(ctx: &XdpContext) -> u32 {
    if !is_generated(ctx) {
        return xdp_action::XDP_PASS;
    }
    if let Some(c) = SINK_STATS.get_ptr_mut(0) {
        let len = (ctx.data_end() - ctx.data()) as u64;
        // SAFETY: per-CPU slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
fn is_generated(ctx: &XdpContext) -> bool {
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
