//! Reconciliation: from a region's desired state (the control plane's
//! [`RegionView`]) and what the maps hold now, a plan of changes, applied
//! make-before-break so a restarted agent never interrupts forwarding.
//!
//! `desired` and `plan` are pure; only `apply` touches the maps.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use anyhow::Result;
use ipnet::Ipv4Net;
use log::warn;
use peering_common::{EgressPort, IfaceInfo, MAX_XSKS, UNDERLAY_XSK_BASE};

use super::{Maps, RouteTarget, Snapshot};
use crate::control::view::{self, RegionView};
use crate::gateway::PortSlots;

/// A gateway port as the kernel knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Receive queues: each gets an AF_XDP socket for the tunnel.
    pub rx_queues: u32,
}

/// A host the gateway's kernel has resolved: (ifindex, address, MAC).
pub type Neighbour = (u32, Ipv4Addr, [u8; 6]);

/// What the maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub ifaces: BTreeMap<(u32, u16), IfaceInfo>,
    pub vpc_cidrs: BTreeSet<(u32, Ipv4Net)>,
    pub subnets: BTreeMap<(u32, Ipv4Net), EgressPort>,
    pub routes: BTreeMap<(u32, Ipv4Net), RouteTarget>,
    pub neighbours: BTreeMap<(u32, Ipv4Addr), [u8; 6]>,
    /// Interfaces the XDP program must be attached to.
    pub ports: BTreeSet<String>,
    /// AF_XDP slots of each port (by ifindex): consecutive runs in ifindex
    /// order, one slot per receive queue.
    pub xsk_slots: BTreeMap<u32, PortSlots>,
    /// The VPC routers' addresses to put on the ports: (ifindex, the
    /// subnet's first host, its prefix length), for untagged subnets (a
    /// VLAN's router would need a VLAN interface of its own).
    pub router_addrs: BTreeSet<(u32, Ipv4Addr, u8)>,
}

/// Builds the desired state. `port` resolves an interface name (None: not
/// present on this gateway, so its subnets are skipped with a warning).
/// Neighbours are the kernel's, plus ones already programmed that still lie
/// in a subnet of their port: a host keeps working while the kernel's cache
/// ages out.
pub fn desired(
    view: &RegionView,
    port: &dyn Fn(&str) -> Option<Port>,
    kernel_neighbours: &[Neighbour],
    programmed: &Snapshot,
) -> (Desired, Vec<String>) {
    let mut d = Desired::default();
    let mut warnings = Vec::new();
    for v in &view.vpcs {
        d.vpc_cidrs
            .extend(v.cidrs.iter().map(|c| (v.dp_id, c.trunc())));
    }
    let mut on_port: BTreeMap<u32, Vec<Ipv4Net>> = BTreeMap::new();
    let mut resolved = Vec::new();
    for s in &view.subnets {
        match port(&s.interface) {
            Some(p) => resolved.push((s, p)),
            None => warnings.push(format!(
                "{}: interface {} not found",
                s.subnet_id, s.interface
            )),
        }
    }
    d.xsk_slots = xsk_slots(resolved.iter().map(|(_, p)| (p.ifindex, p.rx_queues)));
    for (s, p) in resolved {
        let info = super::iface_info(
            s.vpc_dp_id,
            s.route_table_dp_id,
            s.gateway_ip,
            s.cidr,
            d.xsk_slots[&p.ifindex].xsk_base,
        );
        d.ifaces.insert((p.ifindex, s.vlan), info);
        let egress = EgressPort {
            ifindex: p.ifindex,
            vlan: s.vlan,
            src_mac: p.mac,
        };
        d.subnets.insert((s.vpc_dp_id, s.cidr.trunc()), egress);
        if s.vlan == 0 {
            d.router_addrs
                .insert((p.ifindex, s.gateway_ip, s.cidr.prefix_len()));
        }
        on_port.entry(p.ifindex).or_default().push(s.cidr);
        d.ports.insert(s.interface.clone());
    }
    for r in &view.routes {
        d.routes.insert(
            (r.route_table_dp_id, r.destination.trunc()),
            route_target(&r.target),
        );
    }
    let in_subnet = |ifindex: u32, ip: Ipv4Addr| {
        on_port
            .get(&ifindex)
            .is_some_and(|nets| nets.iter().any(|n| n.contains(&ip)))
    };
    // Programmed first, then the kernel's view on top: a newer MAC wins.
    let all = programmed.neighbours.iter().chain(kernel_neighbours);
    for (ifindex, ip, mac) in all {
        if in_subnet(*ifindex, *ip) {
            d.neighbours.insert((*ifindex, *ip), *mac);
        }
    }
    (d, warnings)
}

/// The map's form of a view's route target.
pub(crate) fn route_target(target: &view::RouteTarget) -> RouteTarget {
    match target {
        view::RouteTarget::LocalPeer { peer_vpc_dp_id, .. } => RouteTarget::LocalPeer {
            peer_vpc: *peer_vpc_dp_id,
        },
        view::RouteTarget::RemotePeer { pcx_dp_id, .. } => {
            RouteTarget::RemotePeer { pcx: *pcx_dp_id }
        }
        view::RouteTarget::Blackhole { .. } => RouteTarget::Blackhole,
    }
}

/// Hands out XSKMAP slots: ports in ifindex order, `queues` slots each.
/// Ports beyond the VPC share of the map get none (their remote-region packets are
/// counted as `DropNoXsk`).
pub(crate) fn xsk_slots(ports: impl Iterator<Item = (u32, u32)>) -> BTreeMap<u32, PortSlots> {
    let by_index: BTreeMap<u32, u32> = ports.collect();
    let mut next = 0u32;
    let mut out = BTreeMap::new();
    for (ifindex, queues) in by_index {
        let queues = queues.max(1);
        let fits = next
            .checked_add(queues)
            .is_some_and(|end| end <= UNDERLAY_XSK_BASE);
        let (xsk_base, queues) = if fits { (next, queues) } else { (MAX_XSKS, 0) };
        out.insert(ifindex, PortSlots { xsk_base, queues });
        next = next.saturating_add(queues);
    }
    out
}

/// The changes that turn `actual` into `desired`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub set_ifaces: Vec<((u32, u16), IfaceInfo)>,
    pub add_cidrs: Vec<(u32, Ipv4Net)>,
    pub set_subnets: Vec<((u32, Ipv4Net), EgressPort)>,
    pub set_neighbours: Vec<((u32, Ipv4Addr), [u8; 6])>,
    pub set_routes: Vec<((u32, Ipv4Net), RouteTarget)>,
    pub del_routes: Vec<(u32, Ipv4Net)>,
    pub del_neighbours: Vec<(u32, Ipv4Addr)>,
    pub del_subnets: Vec<(u32, Ipv4Net)>,
    pub del_cidrs: Vec<(u32, Ipv4Net)>,
    pub del_ifaces: Vec<(u32, u16)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }

    /// Number of map writes the plan makes.
    pub fn len(&self) -> usize {
        self.set_ifaces.len()
            + self.add_cidrs.len()
            + self.set_subnets.len()
            + self.set_neighbours.len()
            + self.set_routes.len()
            + self.del_routes.len()
            + self.del_neighbours.len()
            + self.del_subnets.len()
            + self.del_cidrs.len()
            + self.del_ifaces.len()
    }
}

/// Entries of `want` that `have` lacks or holds with another value.
fn changed<K: Ord + Clone, V: PartialEq + Clone>(
    want: &BTreeMap<K, V>,
    have: &BTreeMap<K, V>,
) -> Vec<(K, V)> {
    want.iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn stale<K: Ord + Clone, V>(have: &BTreeMap<K, V>, want: &BTreeMap<K, V>) -> Vec<K> {
    have.keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect()
}

pub fn plan(desired: &Desired, actual: &Snapshot) -> Plan {
    let ifaces: BTreeMap<_, _> = actual
        .ifaces
        .iter()
        .map(|(k, v)| ((k.ifindex, k.vlan), *v))
        .collect();
    let cidrs: BTreeSet<_> = actual.vpc_cidrs.iter().copied().collect();
    let subnets: BTreeMap<_, _> = actual
        .subnets
        .iter()
        .map(|(v, n, p)| ((*v, *n), *p))
        .collect();
    let routes: BTreeMap<_, _> = actual
        .routes
        .iter()
        .map(|(t, n, r, _)| ((*t, *n), *r))
        .collect();
    let neighbours: BTreeMap<_, _> = actual
        .neighbours
        .iter()
        .map(|(i, a, m)| ((*i, *a), *m))
        .collect();
    Plan {
        set_ifaces: changed(&desired.ifaces, &ifaces),
        add_cidrs: desired.vpc_cidrs.difference(&cidrs).copied().collect(),
        set_subnets: changed(&desired.subnets, &subnets),
        set_neighbours: changed(&desired.neighbours, &neighbours),
        set_routes: changed(&desired.routes, &routes),
        del_routes: stale(&routes, &desired.routes),
        del_neighbours: stale(&neighbours, &desired.neighbours),
        del_subnets: stale(&subnets, &desired.subnets),
        del_cidrs: cidrs.difference(&desired.vpc_cidrs).copied().collect(),
        del_ifaces: stale(&ifaces, &desired.ifaces),
    }
}

/// Applies `plan`: additions and updates first (what a route points at
/// exists before the route), removals after, routes first among them.
/// Every write is attempted; the first error is returned after the rest.
pub fn apply(maps: &mut Maps, plan: &Plan) -> Result<()> {
    let mut first_err = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            warn!("dataplane update failed: {e:#}");
            first_err.get_or_insert(e);
        }
    };
    for ((ifindex, vlan), info) in &plan.set_ifaces {
        note(maps.set_iface(*ifindex, *vlan, *info));
    }
    for (vpc, net) in &plan.add_cidrs {
        note(maps.add_vpc_cidr(*vpc, *net));
    }
    for ((vpc, net), port) in &plan.set_subnets {
        note(maps.set_subnet(*vpc, *net, *port));
    }
    for ((ifindex, ip), mac) in &plan.set_neighbours {
        note(maps.set_neighbour(*ifindex, *ip, *mac));
    }
    for ((table, net), target) in &plan.set_routes {
        note(maps.set_route(*table, *net, *target).map(|_| ()));
    }
    for (table, net) in &plan.del_routes {
        note(maps.remove_route(*table, *net));
    }
    for (ifindex, ip) in &plan.del_neighbours {
        note(maps.remove_neighbour(*ifindex, *ip));
    }
    for (vpc, net) in &plan.del_subnets {
        note(maps.remove_subnet(*vpc, *net));
    }
    for (vpc, net) in &plan.del_cidrs {
        note(maps.remove_vpc_cidr(*vpc, *net));
    }
    for (ifindex, vlan) in &plan.del_ifaces {
        note(maps.remove_iface(*ifindex, *vlan));
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Parses the kernel's IPv4 neighbour table (`/proc/net/arp`) into
/// complete entries; `ifindex` resolves device names.
pub fn parse_arp(text: &str, ifindex: &dyn Fn(&str) -> Option<u32>) -> Vec<Neighbour> {
    // Columns: IP address, HW type, Flags, HW address, Mask, Device.
    const ATF_COM: u32 = 0x2; // completed entry (linux/if_arp.h)
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ip, _hw, flags, mac, _mask, dev] = f.as_slice() else {
                return None;
            };
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            if flags & ATF_COM == 0 {
                return None;
            }
            let mac = crate::sys::parse_mac(mac).ok()?;
            Some((ifindex(dev)?, ip.parse().ok()?, mac))
        })
        .collect()
}

/// What the maps hold once `d` is programmed (for tests).
#[cfg(test)]
pub(crate) fn snapshot_of(d: &Desired) -> Snapshot {
    Snapshot {
        ifaces: d
            .ifaces
            .iter()
            .map(|((i, v), info)| {
                let key = peering_common::IfaceKey::new(*i, *v);
                (key, *info)
            })
            .collect(),
        vpc_cidrs: d.vpc_cidrs.iter().copied().collect(),
        routes: d.routes.iter().map(|((t, n), r)| (*t, *n, *r, 1)).collect(),
        subnets: d.subnets.iter().map(|((v, n), p)| (*v, *n, *p)).collect(),
        neighbours: d
            .neighbours
            .iter()
            .map(|((i, a), m)| (*i, *a, *m))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::{RouteView, SubnetView, VpcView};

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn view() -> RegionView {
        RegionView {
            revision: 7,
            region: "us-east-1".into(),
            security_groups: vec![],
            interfaces: vec![],
            vpcs: vec![
                VpcView {
                    vpc_id: "vpc-a".into(),
                    dp_id: 1,
                    cidrs: vec![net("10.1.0.0/16")],
                    default_group_dp_id: 0,
                },
                VpcView {
                    vpc_id: "vpc-b".into(),
                    dp_id: 2,
                    cidrs: vec![net("10.2.0.0/16"), net("10.3.0.0/24")],
                    default_group_dp_id: 0,
                },
            ],
            subnets: vec![
                SubnetView {
                    subnet_id: "subnet-a".into(),
                    vpc_dp_id: 1,
                    cidr: net("10.1.0.0/24"),
                    interface: "vpc-a".into(),
                    vlan: 0,
                    gateway_ip: "10.1.0.1".parse().unwrap(),
                    route_table_dp_id: 11,
                },
                SubnetView {
                    subnet_id: "subnet-gone".into(),
                    vpc_dp_id: 2,
                    cidr: net("10.2.0.0/24"),
                    interface: "missing0".into(),
                    vlan: 5,
                    gateway_ip: "10.2.0.1".parse().unwrap(),
                    route_table_dp_id: 22,
                },
            ],
            routes: vec![
                RouteView {
                    route_table_dp_id: 11,
                    destination: net("10.2.0.0/16"),
                    target: view::RouteTarget::LocalPeer {
                        pcx_id: "pcx-1".into(),
                        pcx_dp_id: 3,
                        peer_vpc_dp_id: 2,
                    },
                },
                RouteView {
                    route_table_dp_id: 11,
                    destination: net("10.9.0.0/16"),
                    target: view::RouteTarget::Blackhole {
                        pcx_id: "pcx-2".into(),
                    },
                },
                RouteView {
                    route_table_dp_id: 11,
                    destination: net("10.20.0.0/16"),
                    target: view::RouteTarget::RemotePeer {
                        pcx_id: "pcx-3".into(),
                        pcx_dp_id: 33,
                        remote_region: "eu-west-1".into(),
                        peer_vpc_cidrs: vec![net("10.20.0.0/16")],
                    },
                },
            ],
            peerings: vec![],
        }
    }

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];

    fn port(name: &str) -> Option<Port> {
        (name == "vpc-a").then_some(Port {
            ifindex: 4,
            mac: MAC_A,
            rx_queues: 2,
        })
    }

    #[test]
    fn desired_state_follows_the_view() {
        let kernel = [
            (4, "10.1.0.10".parse().unwrap(), [2, 0, 0, 0, 1, 10]),
            (4, "192.168.9.9".parse().unwrap(), [2, 0, 0, 0, 9, 9]), // not a subnet host
        ];
        let (d, warnings) = desired(&view(), &port, &kernel, &Snapshot::default());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("missing0"));
        assert_eq!(d.ifaces.len(), 1);
        assert_eq!(d.ifaces[&(4, 0)].route_table, 11);
        assert_eq!(d.ifaces[&(4, 0)].xsk_base, 0);
        // The source check's prefix is the subnet's.
        assert_eq!(d.ifaces[&(4, 0)].subnet, [10, 1, 0, 0]);
        assert_eq!(d.ifaces[&(4, 0)].subnet_mask, [255, 255, 255, 0]);
        assert_eq!(
            d.xsk_slots[&4],
            PortSlots {
                xsk_base: 0,
                queues: 2
            }
        );
        assert_eq!(d.vpc_cidrs.len(), 3);
        assert_eq!(d.subnets[&(1, net("10.1.0.0/24"))].src_mac, MAC_A);
        // The router of the subnet on a present port goes on that port.
        assert_eq!(
            d.router_addrs.iter().copied().collect::<Vec<_>>(),
            vec![(4, "10.1.0.1".parse().unwrap(), 24)]
        );
        assert_eq!(
            d.routes[&(11, net("10.2.0.0/16"))],
            RouteTarget::LocalPeer { peer_vpc: 2 }
        );
        assert_eq!(d.routes[&(11, net("10.9.0.0/16"))], RouteTarget::Blackhole);
        assert_eq!(
            d.routes[&(11, net("10.20.0.0/16"))],
            RouteTarget::RemotePeer { pcx: 33 },
            "inter-region peerings program the encapsulation path"
        );
        assert_eq!(d.neighbours.len(), 1);
        assert_eq!(d.ports.iter().collect::<Vec<_>>(), ["vpc-a"]);
    }

    #[test]
    fn programmed_neighbours_are_kept_while_their_subnet_exists() {
        let mut programmed = Snapshot::default();
        let ip: Ipv4Addr = "10.1.0.20".parse().unwrap();
        programmed.neighbours.push((4, ip, [2, 0, 0, 0, 1, 20]));
        programmed.neighbours.push((9, ip, [2, 0, 0, 0, 9, 20])); // port gone
        let newer = [(4, ip, [2, 0, 0, 0, 1, 21])];
        let (d, _) = desired(&view(), &port, &newer, &programmed);
        assert_eq!(d.neighbours.len(), 1);
        assert_eq!(
            d.neighbours[&(4, ip)],
            [2, 0, 0, 0, 1, 21],
            "kernel MAC wins"
        );
    }

    #[test]
    fn plan_converges_and_is_empty_once_applied() {
        let (d, _) = desired(&view(), &port, &[], &Snapshot::default());
        let p = plan(&d, &Snapshot::default());
        assert_eq!(p.set_routes.len(), 3);
        assert_eq!(p.add_cidrs.len(), 3);
        assert!(p.del_routes.is_empty() && p.del_cidrs.is_empty());
        // A snapshot that holds exactly the desired state needs nothing.
        let snap = snapshot_of(&d);
        assert!(plan(&d, &snap).is_empty());
    }

    #[test]
    fn plan_removes_what_the_view_dropped_and_updates_changed_routes() {
        let (d, _) = desired(&view(), &port, &[], &Snapshot::default());
        let mut snap = snapshot_of(&d);
        snap.routes
            .push((11, net("10.4.0.0/16"), RouteTarget::Blackhole, 9));
        snap.vpc_cidrs.push((3, net("10.7.0.0/16")));
        snap.routes[0].2 = RouteTarget::Blackhole; // was LocalPeer
        let p = plan(&d, &snap);
        assert_eq!(p.del_routes, vec![(11, net("10.4.0.0/16"))]);
        assert_eq!(p.del_cidrs, vec![(3, net("10.7.0.0/16"))]);
        assert_eq!(p.set_routes.len(), 1);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn arp_table_parses_complete_entries_only() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.1.0.10        0x1         0x2         c2:46:2d:05:7d:62     *        vpc-a\n\
                    10.1.0.11        0x1         0x0         00:00:00:00:00:00     *        vpc-a\n\
                    10.2.0.10        0x1         0x2         8e:23:26:ae:43:96     *        gone0\n\
                    garbage line\n";
        let idx = |d: &str| (d == "vpc-a").then_some(4);
        let n = parse_arp(text, &idx);
        assert_eq!(
            n,
            vec![(
                4,
                "10.1.0.10".parse().unwrap(),
                [0xc2, 0x46, 0x2d, 5, 0x7d, 0x62]
            )]
        );
    }

    #[test]
    fn xsk_slots_are_consecutive_runs_in_ifindex_order_within_the_map() {
        let slots = xsk_slots([(9, 2), (3, 1), (5, 0), (3, 1)].into_iter());
        let runs: Vec<_> = slots
            .iter()
            .map(|(i, s)| (*i, s.xsk_base, s.queues))
            .collect();
        assert_eq!(runs, vec![(3, 0, 1), (5, 1, 1), (9, 2, 2)]);
        let big = xsk_slots([(1, UNDERLAY_XSK_BASE - 1), (2, 1), (3, 1)].into_iter());
        assert_eq!(big[&2].xsk_base, UNDERLAY_XSK_BASE - 1);
        assert_eq!(big[&3].queues, 0, "no room left: no slots");
    }
}
