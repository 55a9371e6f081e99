//! The tunnel entry: how packets for another region leave the TC path.
//!
//! A TC program cannot hand a packet to an AF_XDP socket. It redirects it
//! instead to the egress of `pe-tun-in`, one end of a veth pair in the
//! gateway's namespace. `pe-tun-in` has TSO, GSO and TX checksum offload
//! off, so the kernel segments GSO packets and completes partial checksums
//! before the frames cross; on the other end, `pe-tun-xsk`, the XDP
//! program `peering_tun_entry` moves each frame (the peering id rides in
//! its destination MAC) into the tunnel workers' AF_XDP sockets at
//! [`TUN_ENTRY_XSK_BASE`] + queue. The pair has one queue per worker, no
//! addresses and no IPv6, so the kernel never sends anything of its own
//! through it.
//!
//! The agent creates the pair when the first TC port appears and keeps
//! it across restarts (an existing pair with the right queue count is
//! reused); detaching the last TC port removes it.

use std::path::Path;

use anyhow::{Context as _, Result};
use log::{info, warn};
use peering_common::{TUN_ENTRY_XSK_BASE, TUN_ENTRY_XSK_SLOTS};

use super::{upgrade, AttachMode, Dataplane, LinkKind};
use crate::{
    gateway::{nexthop::Resolver, PortSlots},
    sys,
};

/// The sending end: the TC program redirects to its egress.
pub const ENTRY_IN: &str = "pe-tun-in";
/// The receiving end, where `peering_tun_entry` runs.
pub const ENTRY_XSK: &str = "pe-tun-xsk";

/// The entry pair as set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunEntry {
    pub in_ifindex: u32,
    pub xsk_ifindex: u32,
    pub queues: u32,
}

impl TunEntry {
    /// The AF_XDP slots of `pe-tun-xsk`'s queues, for the tunnel workers
    /// (one more port they receive from).
    pub fn slots(&self) -> PortSlots {
        PortSlots {
            xsk_base: TUN_ENTRY_XSK_BASE,
            queues: self.queues.min(TUN_ENTRY_XSK_SLOTS),
        }
    }
}

/// Makes sure the entry pair exists with `queues` queues (one per tunnel
/// worker), its program is attached and `TUN_ENTRY` names it. Idempotent.
pub fn ensure(dp: &mut Dataplane, queues: u32, mode: AttachMode) -> Result<TunEntry> {
    let queues = queues.clamp(1, TUN_ENTRY_XSK_SLOTS);
    let existing = (sys::ifindex(ENTRY_IN), sys::ifindex(ENTRY_XSK));
    let reuse = match existing {
        (Ok(_), Ok(_)) => sys::rx_queues(ENTRY_XSK) == queues,
        _ => false,
    };
    if !reuse {
        let mut nl = Resolver::new()?;
        for ifindex in [existing.0.ok(), existing.1.ok()].into_iter().flatten() {
            warn!("tunnel entry: replacing the pair (ifindex {ifindex}): wrong queue count or half of it missing");
            nl.del_link(ifindex)?;
        }
        nl.add_veth_pair(ENTRY_IN, ENTRY_XSK, queues)?;
        for name in [ENTRY_IN, ENTRY_XSK] {
            disable_ipv6(name);
        }
        for offload in [
            sys::Offload::TxChecksum,
            sys::Offload::Tso,
            sys::Offload::Gso,
        ] {
            sys::set_offload(ENTRY_IN, offload, false)
                .with_context(|| format!("tunnel entry: {offload:?} off on {ENTRY_IN}"))?;
        }
        for name in [ENTRY_XSK, ENTRY_IN] {
            nl.set_up(sys::ifindex(name)?)?;
        }
        info!("tunnel entry: created {ENTRY_IN} / {ENTRY_XSK} with {queues} queue(s)");
    }
    let entry = TunEntry {
        in_ifindex: sys::ifindex(ENTRY_IN)?,
        xsk_ifindex: sys::ifindex(ENTRY_XSK)?,
        queues,
    };
    let how = dp
        .attach_tun_entry(ENTRY_XSK, mode)
        .with_context(|| format!("attaching the tunnel entry program to {ENTRY_XSK}"))?;
    if dp.maps.tun_entry()? != entry.in_ifindex {
        dp.maps.set_tun_entry(entry.in_ifindex)?;
        info!(
            "tunnel entry: TC ports send to {ENTRY_IN} (ifindex {}), {ENTRY_XSK} program {how:?}",
            entry.in_ifindex
        );
    }
    Ok(entry)
}

/// Removes the entry pair and its attachment, and clears `TUN_ENTRY`;
/// nothing to do when there is none.
pub fn remove(pin_dir: &Path) -> Result<()> {
    if let Ok(maps) = Dataplane::open_pinned(pin_dir).as_mut() {
        maps.set_tun_entry(0)?;
    }
    if let Ok(ifindex) = sys::ifindex(ENTRY_XSK) {
        let pin = upgrade::link_pin_path(pin_dir, LinkKind::Xdp, ifindex);
        if pin.exists() {
            std::fs::remove_file(&pin).with_context(|| format!("unpinning {}", pin.display()))?;
        }
    }
    let mut nl = Resolver::new()?;
    for name in [ENTRY_IN, ENTRY_XSK] {
        if let Ok(ifindex) = sys::ifindex(name) {
            nl.del_link(ifindex)?;
            info!("tunnel entry: removed {name}");
        }
    }
    Ok(())
}

/// No IPv6 on an entry veth: no link-local address, no router
/// solicitations, nothing of the kernel's own crosses the pair.
fn disable_ipv6(name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    if let Err(e) = std::fs::write(&path, "1") {
        // A kernel without IPv6 has nothing to disable.
        warn!("tunnel entry: {path}: {e}");
    }
}
