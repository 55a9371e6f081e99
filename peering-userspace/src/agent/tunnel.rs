//! The agent's side of the tunnel thread: starting it, and handing it
//! what changed (table, ports, keys, next hops).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use log::{info, warn};

use super::AgentConfig;
use crate::{
    control::{clock::unix_ms, store::TunnelSettings, view::RegionView},
    dataplane::{reconcile::Desired, Dataplane},
    gateway::{
        nexthop::{Resolution, Resolver},
        Link, PortSlots, Tunnel, TunnelParams, TunnelTable, UnderlayIo, UnderlayPort, Update,
    },
    sys,
    tunnel::{counter_floor_from_unix_ms, key::EpochKey, TunnelConfig},
};

/// File under the state directory holding the tunnel's counters.
pub const TUNNEL_STATS_FILE: &str = "tunnel-stats.json";

/// The agent's side of the tunnel thread: what it last sent, so only
/// changes cross the channel.
pub(super) struct TunnelLink {
    pub(super) tunnel: Tunnel,
    table: TunnelTable,
    ports: BTreeMap<u32, PortSlots>,
    /// Newest key epoch handed over.
    epoch: u32,
    underlay: SocketAddrV4,
    /// Next-hop resolution for AF_XDP on the underlay (None: socket only).
    next_hops: Option<NextHops>,
}

/// The remote gateways' next hops as last handed to the tunnel.
struct NextHops {
    resolver: Resolver,
    sent: Vec<(Ipv4Addr, u32, Link)>,
    last_nudge: Option<Instant>,
    /// The last resolution problem per gateway, so it is logged once.
    problems: BTreeMap<Ipv4Addr, String>,
}

/// How often usable neighbours are re-confirmed: frames sent through
/// AF_XDP never confirm a neighbour, so the kernel would let it go stale
/// and never notice a changed MAC.
const NUDGE_EVERY: Duration = Duration::from_secs(5);

impl TunnelLink {
    /// Starts the tunnel as gateway `gateway_id` (registered by the
    /// control link) with the deployment's `settings`.
    pub(super) fn start(
        cfg: &AgentConfig,
        dp: &mut Dataplane,
        underlay: SocketAddrV4,
        gateway_id: u32,
        settings: &TunnelSettings,
    ) -> Result<Self> {
        let now = unix_ms();
        let config = TunnelConfig::new(
            gateway_id,
            &settings.policy,
            counter_floor_from_unix_ms(now),
        );
        let af_xdp = match cfg.underlay_io {
            UnderlayIo::AfXdp => {
                match underlay_port(cfg, dp, underlay) {
                    Ok(port) => Some(port),
                    Err(e) => {
                        warn!("AF_XDP on the underlay is off, the UDP socket carries the tunnel: {e:#}");
                        None
                    }
                }
            }
            UnderlayIo::Socket => {
                // An earlier AF_XDP run may have left the endpoint behind.
                if let Ok(ifindex) =
                    sys::iface_with_addr(*underlay.ip()).and_then(|n| sys::ifindex(&n))
                {
                    dp.maps.remove_underlay(ifindex)?;
                }
                None
            }
        };
        let params = |dp: &Dataplane, af_xdp| -> Result<TunnelParams> {
            Ok(TunnelParams {
                config,
                bind: underlay,
                xsk_map: dp.xsk_map()?,
                stats_path: cfg.state_dir.join(TUNNEL_STATS_FILE),
                af_xdp,
                workers: cfg.workers,
            })
        };
        let tunnel = match Tunnel::spawn(params(dp, af_xdp)?) {
            Ok(t) => t,
            Err(e) if af_xdp.is_some() => {
                warn!("AF_XDP on the underlay failed, the UDP socket carries the tunnel: {e:#}");
                if let Some(p) = af_xdp {
                    dp.maps.remove_underlay(p.ifindex)?;
                }
                Tunnel::spawn(params(dp, None)?)?
            }
            Err(e) => return Err(e),
        };
        let next_hops = if tunnel.uses_af_xdp() {
            Some(NextHops {
                resolver: Resolver::new()?,
                sent: Vec::new(),
                last_nudge: None,
                problems: BTreeMap::new(),
            })
        } else {
            None
        };
        info!(
            "tunnel up: gateway {gateway_id} of {} on {underlay} ({}, {} worker(s)), keys rotated every {} ms",
            cfg.region,
            if next_hops.is_some() {
                "AF_XDP"
            } else {
                "UDP socket"
            },
            tunnel.workers(),
            settings.policy.interval()
        );
        Ok(TunnelLink {
            tunnel,
            table: TunnelTable::default(),
            ports: BTreeMap::new(),
            epoch: 0,
            underlay,
            next_hops,
        })
    }

    /// Resolves every remote gateway's next hop and hands changes to the
    /// tunnel. Unresolved neighbours are nudged (the kernel starts ARP);
    /// resolved ones are nudged every [`NUDGE_EVERY`] so they stay
    /// confirmed. A gateway that cannot be resolved simply stays on the
    /// UDP socket.
    pub(super) fn follow_next_hops(
        &mut self,
        gateways: &[(String, u32, SocketAddrV4)],
    ) -> Result<()> {
        let Some(nh) = self.next_hops.as_mut() else {
            return Ok(());
        };
        let renudge = nh.last_nudge.is_none_or(|t| t.elapsed() >= NUDGE_EVERY);
        if renudge {
            nh.last_nudge = Some(Instant::now());
        }
        let local = *self.underlay.ip();
        let mut links = Vec::new();
        let mut problems = BTreeMap::new();
        for (_, _, endpoint) in gateways {
            let remote = *endpoint.ip();
            if remote == local {
                continue;
            }
            match nh.resolver.resolve(remote, local) {
                Ok(Resolution::Ready(hop)) => {
                    if renudge {
                        let _ = nh.resolver.nudge(hop.ifindex, hop.via);
                    }
                    let link = Link {
                        src_mac: hop.src_mac,
                        dst_mac: hop.dst_mac,
                    };
                    links.push((remote, hop.ifindex, link));
                }
                Ok(Resolution::Unresolved { ifindex, via }) => {
                    if let Err(e) = nh.resolver.nudge(ifindex, via) {
                        problems.insert(remote, format!("resolving next hop {via}: {e:#}"));
                    }
                }
                Err(e) => {
                    problems.insert(remote, format!("{e:#}"));
                }
            }
        }
        // Said once per change, not every poll.
        for (remote, problem) in &problems {
            if nh.problems.get(remote) != Some(problem) {
                warn!("gateway {remote} stays on the UDP socket: {problem}");
            }
        }
        for remote in nh.problems.keys().filter(|r| !problems.contains_key(r)) {
            info!("gateway {remote}: next hop problem cleared");
        }
        nh.problems = problems;
        links.sort_by_key(|(ip, _, _)| *ip);
        if links != nh.sent {
            nh.sent = links.clone();
            self.tunnel.update(Update::Links(links))?;
        }
        Ok(())
    }

    /// Sends the tunnel a new table and port set when they changed. Called
    /// only when something the table is built from changed. `entry` is the
    /// tunnel entry veth's receiving end (ifindex, slots): one more port
    /// the workers receive from.
    pub(super) fn follow(
        &mut self,
        view: &RegionView,
        desired: &Desired,
        gateways: &[(String, u32, SocketAddrV4)],
        entry: Option<(u32, PortSlots)>,
    ) -> Result<()> {
        let mut ports = desired.xsk_slots.clone();
        ports.extend(entry);
        if ports != self.ports {
            self.ports = ports;
            self.tunnel.update(Update::Ports(self.ports.clone()))?;
        }
        let table = TunnelTable::build(view, desired, gateways);
        if table != self.table {
            self.table = table.clone();
            self.tunnel.update(Update::Table(Box::new(table)))?;
        }
        Ok(())
    }

    /// Takes the keys (oldest first) and hands over those newer than any
    /// handed over; the others are dropped (and zeroized). True when the
    /// tunnel asks for an early rotation.
    pub(super) fn sync_keys(&mut self, keys: &mut Vec<EpochKey>) -> Result<bool> {
        for key in keys.drain(..) {
            if key.epoch > self.epoch {
                self.epoch = key.epoch;
                self.tunnel.update(Update::Key(key))?;
            }
        }
        Ok(self.tunnel.take_rotation_request())
    }
}

/// Prepares AF_XDP on the interface holding the underlay address: the
/// underlay program attached, the tunnel endpoint in its map.
fn underlay_port(
    cfg: &AgentConfig,
    dp: &mut Dataplane,
    underlay: SocketAddrV4,
) -> Result<UnderlayPort> {
    let name = sys::iface_with_addr(*underlay.ip())?;
    let ifindex = sys::ifindex(&name)?;
    let mtu = sys::mtu(&name)? as usize;
    // The map entry first: a program switched in by an upgrade finds it.
    dp.maps.set_underlay(ifindex, underlay)?;
    let how = dp
        .attach_underlay(&name, cfg.attach_mode)
        .with_context(|| format!("attaching the underlay program to {name}"))?;
    info!("underlay {name} (ifindex {ifindex}, MTU {mtu}): XDP program {how:?}");
    Ok(UnderlayPort {
        ifindex,
        mtu,
        rx_queues: sys::rx_queues(&name),
    })
}
