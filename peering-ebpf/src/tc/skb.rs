//! The socket buffer's metadata and the helpers that change it: ingress
//! port and VLAN, GSO segment size, VLAN push/pop, redirects. Helpers that
//! may move the packet invalidate packet pointers; callers hold offsets.

use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_skb_vlan_pop, bpf_skb_vlan_push},
    programs::TcContext,
};
use peering_common::{Stat, ETH_P_8021Q};

/// The port the packet came in on (at TC ingress, the skb's device).
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    unsafe { (*ctx.skb.skb).ifindex }
}

/// The 802.1Q TCI the stack took out of the frame before TC ingress runs
/// (`__netif_receive_skb_core` untags every frame, so a tag never sits in
/// the packet data here).
#[inline(always)]
pub fn vlan_tci(ctx: &TcContext) -> Option<u16> {
    let skb = ctx.skb.skb;
    if unsafe { (*skb).vlan_present } == 0 {
        return None;
    }
    Some(unsafe { (*skb).vlan_tci } as u16)
}

/// Payload bytes per segment of a GSO packet; 0 for a plain packet.
#[inline(always)]
pub fn gso_size(ctx: &TcContext) -> u32 {
    unsafe { (*ctx.skb.skb).gso_size }
}

/// Makes the packet leave tagged with `egress_vid` (0: untagged), keeping
/// the priority bits of an ingress tag. A push onto a tagged skb would
/// nest the old tag into the frame (QinQ), so a changed tag is popped
/// first.
#[inline(always)]
pub fn set_vlan(ctx: &TcContext, ingress: Option<u16>, egress_vid: u16) -> Result<(), Stat> {
    let pcp = match ingress {
        None if egress_vid == 0 => return Ok(()),
        Some(tci) if egress_vid != 0 && tci & 0x0fff == egress_vid => return Ok(()),
        Some(tci) => {
            pop_vlan(ctx)?;
            tci & 0xf000
        }
        None => 0,
    };
    if egress_vid == 0 {
        return Ok(());
    }
    let tci = pcp | (egress_vid & 0x0fff);
    if unsafe { bpf_skb_vlan_push(ctx.skb.skb, ETH_P_8021Q.to_be(), tci) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    Ok(())
}

#[inline(always)]
pub fn pop_vlan(ctx: &TcContext) -> Result<(), Stat> {
    if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    Ok(())
}

/// Out of `ifindex`: its egress, or with `peer` the ingress of its veth
/// peer (`bpf_redirect_peer`: the netns switch happens without a pass
/// through the backlog queue). Both helpers only record the target; the
/// kernel acts on it when the program returns `TC_ACT_REDIRECT`.
#[inline(always)]
pub fn redirect(ifindex: u32, peer: bool) -> Result<i32, Stat> {
    let verdict = if peer {
        unsafe { bpf_redirect_peer(ifindex, 0) }
    } else {
        unsafe { bpf_redirect(ifindex, 0) }
    };
    if verdict == TC_ACT_SHOT as i64 {
        return Err(Stat::DropRedirectFailed);
    }
    Ok(TC_ACT_REDIRECT as i32)
}
