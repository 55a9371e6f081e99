//! [`GatewayCore`]: every per-packet decision of the gateway, without IO.
//!
//! It owns the sans-IO [`TunnelCore`] (keys, replay windows), the
//! [`TunnelTable`] (peerings, registered gateways, subnets, neighbours)
//! and the counters. A frame from a VPC port goes in and a sealed
//! datagram comes out ([`Action::Transmit`]); a datagram from the
//! underlay goes in and an inner packet with its way out comes back
//! ([`Action::Deliver`]); anything else is [`Action::Drop`] with a
//! [`DropReason`], already counted. No sockets, no clock (time comes in
//! with [`GatewayCore::tick`]), no allocation per packet.
//!
//! Nothing an unauthenticated datagram carries creates state: before the
//! AEAD verifies a datagram, its failure is counted under its reason in a
//! fixed array, and charged to the gateway it claims to come from only if
//! that gateway is registered (the registry is bounded by the control
//! plane). Per-sender counters move only for authentic datagrams from
//! registered gateways.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    ops::Range,
    sync::Arc,
};

use crate::tunnel::{
    wire::Packet, EpochKey, InstallError, Millis, RotationReason, TunnelConfig, TunnelCore,
    TunnelShared,
};

use super::{
    frame,
    reason::DropReason,
    stats::{lock, PathCounters, PathSet, Shared},
    table::{Delivery, TunnelTable},
};

/// IPv4 and UDP headers around a datagram on the underlay.
const IP_UDP_LEN: usize = 28;

/// What to do with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the `len` bytes sealed into the caller's buffer to `to`.
    Transmit { to: SocketAddrV4, len: usize },
    /// Frame `datagram[inner]` for `delivery`'s port and send it there.
    Deliver {
        delivery: Delivery,
        inner: Range<usize>,
    },
    /// Dropped (and counted) for this reason.
    Drop(DropReason),
    /// Dropped and counted as [`DropReason::NoNeighbour`]: `host` has no
    /// MAC on port `ifindex` yet; the caller should have it resolved.
    Resolve { ifindex: u32, host: Ipv4Addr },
}

/// Where a frame from a VPC port is to be sealed to
/// ([`GatewayCore::route`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub to: SocketAddrV4,
    /// The inner IPv4 packet within the frame.
    pub packet: Range<usize>,
    /// Outer UDP source port for the AF_XDP underlay ([`frame::flow_port`]).
    pub flow_port: u16,
}

/// The gateway's packet logic: tunnel core, table and counters.
pub struct GatewayCore {
    tunnel: TunnelCore,
    table: TunnelTable,
    /// Counters of the table's peerings and registered gateways, by id.
    peerings: HashMap<u32, Arc<PathCounters>>,
    gateways: HashMap<u32, Arc<PathCounters>>,
    shared: Arc<Shared>,
    /// Largest sealed datagram the underlay carries, if limited.
    max_datagram: Option<usize>,
}

impl GatewayCore {
    /// A gateway with one worker.
    pub fn new(config: TunnelConfig) -> Self {
        Self::worker(config, TunnelShared::new(config.counter_floor))
    }

    /// One worker of a gateway whose workers share `tunnel` (send counter,
    /// replay windows; see [`TunnelCore::worker`]). Its counters are its
    /// own (one writer each); the exporter sums the workers'.
    pub fn worker(config: TunnelConfig, tunnel: TunnelShared) -> Self {
        GatewayCore {
            shared: Arc::new(Shared::new(config.gateway_id)),
            tunnel: TunnelCore::worker(config, tunnel),
            table: TunnelTable::default(),
            peerings: HashMap::new(),
            gateways: HashMap::new(),
            max_datagram: None,
        }
    }

    /// The counters, for an exporter on another thread.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn tunnel(&self) -> &TunnelCore {
        &self.tunnel
    }

    /// Limits sealed datagrams to what an underlay interface with this
    /// IPv4 MTU carries; `None` leaves it to the kernel.
    pub fn set_underlay_mtu(&mut self, mtu: Option<usize>) {
        self.max_datagram = mtu.map(|m| m.saturating_sub(IP_UDP_LEN));
    }

    /// Replaces the table. Counters of peerings and gateways that stay
    /// carry over; those of removed ones go.
    pub fn set_table(&mut self, table: TunnelTable) {
        let keep = |old: &mut HashMap<u32, Arc<PathCounters>>, ids: Vec<u32>| {
            ids.into_iter()
                .map(|id| (id, old.remove(&id).unwrap_or_default()))
                .collect::<HashMap<_, _>>()
        };
        self.peerings = keep(&mut self.peerings, table.peers.keys().copied().collect());
        self.gateways = keep(&mut self.gateways, table.gateways.keys().copied().collect());
        let label = |by_id: &HashMap<u32, Arc<PathCounters>>, name: &dyn Fn(u32) -> String| {
            by_id.iter().map(|(id, c)| (name(*id), c.clone())).collect()
        };
        let set = PathSet {
            peerings: label(&self.peerings, &|id| table.peering_name(id)),
            gateways: label(&self.gateways, &|id| table.gateway_name(id)),
        };
        *lock(&self.shared.paths) = Arc::new(set);
        self.table = table;
    }

    pub fn table(&self) -> &TunnelTable {
        &self.table
    }

    /// Applies key activations and erasures due at `now`.
    pub fn tick(&mut self, now: Millis) {
        self.tunnel.tick(now);
        self.publish_keys();
    }

    pub fn install_key(&mut self, key: EpochKey, now: Millis) -> Result<(), InstallError> {
        let result = self.tunnel.install_key(key, now);
        self.publish_keys();
        result
    }

    pub fn rotation_needed(&self) -> Option<RotationReason> {
        self.tunnel.rotation_needed()
    }

    fn publish_keys(&self) {
        let keys = self.tunnel.keys();
        self.shared
            .set_epochs(keys.current_epoch(), keys.held_epochs());
    }

    /// Counts a drop the IO edge decided (e.g. no socket on a port).
    pub fn count_drop(&self, reason: DropReason) {
        self.shared.count_drop(reason);
    }

    fn drop(&self, reason: DropReason) -> Action {
        self.shared.count_drop(reason);
        Action::Drop(reason)
    }

    /// A policy or seal failure of peering `pcx` (charged to it if known).
    fn drop_for_peering(&self, pcx: u32, reason: DropReason) -> Action {
        if let Some(p) = self.peerings.get(&pcx) {
            match reason {
                DropReason::MtuExceeded | DropReason::UnderlayMtuExceeded => p.mtu_drops.add(1),
                DropReason::UnknownPeering
                | DropReason::NoRemoteGateway
                | DropReason::DstOutsidePeer
                | DropReason::SrcOutsidePeer
                | DropReason::WrongSender
                | DropReason::NoSubnet
                | DropReason::NoNeighbour
                | DropReason::BadInner => p.policy_drops.add(1),
                _ => {}
            }
        }
        self.drop(reason)
    }

    /// First half of sealing a frame the XDP program handed over for
    /// peering `pcx`: checks it and finds the remote gateway. A drop is
    /// counted here.
    pub fn route(&mut self, pcx: u32, frame: &[u8]) -> Result<Route, DropReason> {
        let routed = route(&self.table, pcx, frame);
        if let Err(reason) = routed {
            self.drop_for_peering(pcx, reason);
        }
        routed
    }

    /// Second half: seals the routed packet of `frame` into `out`.
    pub fn seal_routed(&mut self, pcx: u32, frame: &[u8], route: &Route, out: &mut [u8]) -> Action {
        let Some(packet) = frame.get(route.packet.clone()) else {
            return self.drop_for_peering(pcx, DropReason::BadInner);
        };
        let len = match self.tunnel.seal(pcx, packet, out) {
            Ok(len) => len,
            Err(e) => return self.drop_for_peering(pcx, e.into()),
        };
        if self.max_datagram.is_some_and(|max| len > max) {
            return self.drop_for_peering(pcx, DropReason::UnderlayMtuExceeded);
        }
        let gateway = self.table.peers.get(&pcx).and_then(|p| p.remote);
        let paths = [
            self.peerings.get(&pcx),
            gateway.and_then(|g| self.gateways.get(&g.id)),
        ];
        for c in paths.into_iter().flatten() {
            c.sealed.add(1);
            c.sealed_bytes.add(packet.len() as u64);
        }
        Action::Transmit { to: route.to, len }
    }

    /// Seals `frame` (from a VPC port, for peering `pcx`) into `out`.
    pub fn seal(&mut self, pcx: u32, frame: &[u8], out: &mut [u8]) -> Action {
        match self.route(pcx, frame) {
            Ok(route) => self.seal_routed(pcx, frame, &route, out),
            Err(reason) => Action::Drop(reason),
        }
    }

    /// Opens `datagram` (from the underlay) in place and checks its inner
    /// packet against the peering it names.
    pub fn open(&mut self, datagram: &mut [u8]) -> Action {
        let opened = match self.tunnel.open_in_place(datagram) {
            Ok(opened) => opened,
            Err(e) => {
                let reason = DropReason::from(e);
                // Bounded: only registered gateways have counters.
                let claimed = Packet::new_checked(&*datagram).map(|p| p.sender());
                if let Some(g) = claimed.ok().and_then(|id| self.gateways.get(&id)) {
                    g.charge_open_failure(reason);
                }
                return self.drop(reason);
            }
        };
        let Some(gateway) = self.gateways.get(&opened.sender) else {
            return self.drop(DropReason::UnknownSender);
        };
        let pcx = opened.pcx_dp_id;
        let packet = &datagram[opened.inner.clone()];
        gateway.opened.add(1);
        gateway.opened_bytes.add(packet.len() as u64);
        let delivery = frame::addresses(packet)
            .ok_or(DropReason::BadInner)
            .and_then(|(src, dst)| {
                self.table
                    .deliver(pcx, opened.sender, src, dst)
                    .map_err(DropReason::from)
            });
        match delivery {
            Ok(delivery) => {
                if let Some(p) = self.peerings.get(&pcx) {
                    p.opened.add(1);
                    p.opened_bytes.add(packet.len() as u64);
                }
                Action::Deliver {
                    delivery,
                    inner: opened.inner,
                }
            }
            Err(DropReason::NoNeighbour) => {
                let dst = frame::addresses(packet).map(|(_, dst)| dst);
                let port = dst.and_then(|dst| Some((self.table.port_of(pcx, dst)?, dst)));
                let dropped = self.drop_for_peering(pcx, DropReason::NoNeighbour);
                match port {
                    Some((ifindex, host)) => Action::Resolve { ifindex, host },
                    None => dropped,
                }
            }
            Err(reason) => self.drop_for_peering(pcx, reason),
        }
    }
}

fn route(table: &TunnelTable, pcx: u32, frame: &[u8]) -> Result<Route, DropReason> {
    let packet = frame::ipv4_in_frame(frame).ok_or(DropReason::BadInner)?;
    let (_, dst) = frame::addresses(packet).ok_or(DropReason::BadInner)?;
    let to = table.seal_to(pcx, dst)?;
    // `packet` is a subslice of `frame`: its offset is where it starts.
    let start = packet.as_ptr() as usize - frame.as_ptr() as usize;
    Ok(Route {
        to,
        packet: start..start + packet.len(),
        flow_port: frame::flow_port(packet),
    })
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
