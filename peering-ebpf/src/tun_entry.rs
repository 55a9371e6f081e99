//! The tunnel entry veth's receiving end: inter-region packets the TC
//! program sent through the veth (segmented and checksummed by the kernel
//! on the way) go to the tunnel's AF_XDP sockets, with the peering id
//! moved from the destination MAC into the XDP metadata, where the tunnel
//! workers read it for packets from XDP ports too (`rewrite::set_meta`).
//! Only drops are counted: the TC program counted `FwdRemote` already.

use aya_ebpf::programs::XdpContext;
use peering_common::{Stat, ETH_P_IPV4, TUN_ENTRY_XSK_BASE, TUN_ENTRY_XSK_SLOTS};

use crate::{packet, rewrite, XSKS};

/// The verdict, or the drop reason.
#[inline(always)]
pub fn process(ctx: &XdpContext) -> Result<u32, Stat> {
    // Nothing but IPv4 is sent into the entry veth (IPv6 is off on both
    // ends): anything else is not a stamped packet.
    if packet::read_u16(ctx, 12)? != ETH_P_IPV4 {
        return Err(Stat::DropMalformed);
    }
    let mac: *const [u8; 4] = packet::ptr_at(ctx, 0)?;
    let pcx = u32::from_ne_bytes(unsafe { *mac });
    rewrite::set_meta(ctx, pcx)?;
    let queue = ctx.rx_queue_index();
    if queue >= TUN_ENTRY_XSK_SLOTS {
        return Err(Stat::DropNoXsk);
    }
    XSKS.redirect(TUN_ENTRY_XSK_BASE + queue, 0)
        .map_err(|_| Stat::DropNoXsk)
}
