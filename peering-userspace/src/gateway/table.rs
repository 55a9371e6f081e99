//! What the tunnel needs to know to seal and deliver, and the checks it
//! makes, as plain data and pure functions.
//!
//! Built by the agent from the region view, the reconciled dataplane state
//! and the gateway registry; swapped whole into the tunnel thread on every
//! change.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddrV4},
};

use ipnet::Ipv4Net;
use peering_common::EgressPort;

use crate::control::view::RegionView;
use crate::dataplane::reconcile::Desired;

/// An active inter-region peering with a VPC of this region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pcx_id: String,
    pub local_vpc: u32,
    pub local_cidrs: Vec<Ipv4Net>,
    pub remote_cidrs: Vec<Ipv4Net>,
    pub remote_region: String,
    /// The remote region's gateway, once it has registered.
    pub remote: Option<RemoteGateway>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteGateway {
    pub id: u32,
    pub endpoint: SocketAddrV4,
}

/// Where an opened packet leaves the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub ifindex: u32,
    pub vlan: u16,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// Why the tunnel refused a packet after (or instead of) the AEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyDrop {
    /// No active inter-region peering with this id here.
    UnknownPeering,
    /// The peer region has no registered gateway.
    NoRemoteGateway,
    /// The destination is not in the peer VPC (no transitive or edge routing).
    DstOutsidePeer,
    /// The source is not in the sending side's VPC.
    SrcOutsidePeer,
    /// The datagram came from a gateway that does not serve the peer region.
    WrongSender,
    /// Inside the peer VPC, but in no subnet attached to this gateway.
    NoSubnet,
    /// The host has not been resolved on its port yet.
    NoNeighbour,
    /// Not a well-formed IPv4 packet, or TTL exhausted.
    BadInner,
}

impl PolicyDrop {
    pub const ALL: [PolicyDrop; 8] = [
        PolicyDrop::UnknownPeering,
        PolicyDrop::NoRemoteGateway,
        PolicyDrop::DstOutsidePeer,
        PolicyDrop::SrcOutsidePeer,
        PolicyDrop::WrongSender,
        PolicyDrop::NoSubnet,
        PolicyDrop::NoNeighbour,
        PolicyDrop::BadInner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyDrop::UnknownPeering => "unknown_peering",
            PolicyDrop::NoRemoteGateway => "no_remote_gateway",
            PolicyDrop::DstOutsidePeer => "dst_outside_peer",
            PolicyDrop::SrcOutsidePeer => "src_outside_peer",
            PolicyDrop::WrongSender => "wrong_sender",
            PolicyDrop::NoSubnet => "no_subnet",
            PolicyDrop::NoNeighbour => "no_neighbour",
            PolicyDrop::BadInner => "bad_inner",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelTable {
    pub peers: HashMap<u32, Peer>,
    /// Gateway id → region, for naming counters.
    pub gateways: BTreeMap<u32, String>,
    /// Subnets attached to this gateway, by VPC.
    subnets: HashMap<u32, Vec<(Ipv4Net, EgressPort)>>,
    neighbours: HashMap<(u32, Ipv4Addr), [u8; 6]>,
}

fn inside(nets: &[Ipv4Net], addr: Ipv4Addr) -> bool {
    nets.iter().any(|n| n.contains(&addr))
}

impl TunnelTable {
    /// `gateways`: (region, gateway id, endpoint) of every registered gateway.
    pub fn build(
        view: &RegionView,
        desired: &Desired,
        gateways: &[(String, u32, SocketAddrV4)],
    ) -> Self {
        let remote = |region: &str| {
            gateways
                .iter()
                .find(|(r, _, _)| r == region)
                .map(|(_, id, endpoint)| RemoteGateway {
                    id: *id,
                    endpoint: *endpoint,
                })
        };
        let peers = view
            .peerings
            .iter()
            .filter(|p| p.remote_region != view.region)
            .map(|p| {
                let peer = Peer {
                    pcx_id: p.pcx_id.clone(),
                    local_vpc: p.local_vpc_dp_id,
                    local_cidrs: p.local_vpc_cidrs.clone(),
                    remote_cidrs: p.remote_vpc_cidrs.clone(),
                    remote_region: p.remote_region.clone(),
                    remote: remote(&p.remote_region),
                };
                (p.dp_id, peer)
            })
            .collect();
        TunnelTable {
            peers,
            gateways: gateways.iter().map(|(r, id, _)| (*id, r.clone())).collect(),
            subnets: desired.subnets.iter().fold(
                HashMap::new(),
                |mut by_vpc, ((vpc, net), port)| {
                    by_vpc
                        .entry(*vpc)
                        .or_insert_with(Vec::new)
                        .push((*net, *port));
                    by_vpc
                },
            ),
            neighbours: desired.neighbours.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }

    /// Where to send a packet the XDP program handed over for peering
    /// `pcx`. The program checked the source against the ingress VPC and
    /// found a route to `pcx`; the tunnel adds what only it knows: the
    /// destination must lie in the peer VPC.
    pub fn seal_to(&self, pcx: u32, dst: Ipv4Addr) -> Result<SocketAddrV4, PolicyDrop> {
        let peer = self.peers.get(&pcx).ok_or(PolicyDrop::UnknownPeering)?;
        if !inside(&peer.remote_cidrs, dst) {
            return Err(PolicyDrop::DstOutsidePeer);
        }
        peer.remote
            .map(|g| g.endpoint)
            .ok_or(PolicyDrop::NoRemoteGateway)
    }

    /// Checks an opened packet against its peering and finds its way out:
    /// the peering is active here, the sender serves the peer region, the
    /// source lies in the peer VPC and the destination in ours.
    pub fn deliver(
        &self,
        pcx: u32,
        sender: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Delivery, PolicyDrop> {
        let peer = self.peers.get(&pcx).ok_or(PolicyDrop::UnknownPeering)?;
        if peer.remote.map(|g| g.id) != Some(sender) {
            return Err(PolicyDrop::WrongSender);
        }
        if !inside(&peer.remote_cidrs, src) {
            return Err(PolicyDrop::SrcOutsidePeer);
        }
        if !inside(&peer.local_cidrs, dst) {
            return Err(PolicyDrop::DstOutsidePeer);
        }
        let port = self
            .subnet_port(peer.local_vpc, dst)
            .ok_or(PolicyDrop::NoSubnet)?;
        let dst_mac = *self
            .neighbours
            .get(&(port.ifindex, dst))
            .ok_or(PolicyDrop::NoNeighbour)?;
        Ok(Delivery {
            ifindex: port.ifindex,
            vlan: port.vlan,
            dst_mac,
            src_mac: port.src_mac,
        })
    }

    /// The port of the subnet of `vpc` holding `dst`, the longest match.
    fn subnet_port(&self, vpc: u32, dst: Ipv4Addr) -> Option<EgressPort> {
        self.subnets
            .get(&vpc)
            .into_iter()
            .flatten()
            .filter(|(net, _)| net.contains(&dst))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, port)| *port)
    }

    /// The port a packet for `dst` over peering `pcx` would leave by, for
    /// resolving a host [`TunnelTable::deliver`] found no MAC for.
    pub fn port_of(&self, pcx: u32, dst: Ipv4Addr) -> Option<u32> {
        let peer = self.peers.get(&pcx)?;
        self.subnet_port(peer.local_vpc, dst).map(|p| p.ifindex)
    }

    /// Counter label of a peering.
    pub fn peering_name(&self, pcx: u32) -> String {
        self.peers
            .get(&pcx)
            .map(|p| p.pcx_id.clone())
            .unwrap_or_else(|| format!("dp-{pcx}"))
    }

    /// Counter label of a gateway.
    pub fn gateway_name(&self, id: u32) -> String {
        self.gateways
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("gateway-{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::PeeringView;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// Region us-east-1 holds VPC 1 (10.1.0.0/16, subnet 10.1.1.0/24 on
    /// ifindex 7); peering 9 joins it to 10.3.0.0/16 in us-west-2, whose
    /// gateway is id 2. Peering 5 is intra-region and must be ignored.
    fn table(with_remote: bool) -> TunnelTable {
        let view = RegionView {
            revision: 1,
            region: "us-east-1".into(),
            vpcs: vec![],
            subnets: vec![],
            security_groups: vec![],
            interfaces: vec![],
            routes: vec![],
            peerings: vec![
                PeeringView {
                    pcx_id: "pcx-9".into(),
                    dp_id: 9,
                    local_vpc_dp_id: 1,
                    remote_region: "us-west-2".into(),
                    remote_vpc_cidrs: vec![net("10.3.0.0/16")],
                    local_vpc_cidrs: vec![net("10.1.0.0/16")],
                    remote_allows_dns: false,
                },
                PeeringView {
                    pcx_id: "pcx-5".into(),
                    dp_id: 5,
                    local_vpc_dp_id: 1,
                    remote_region: "us-east-1".into(),
                    remote_vpc_cidrs: vec![net("10.2.0.0/16")],
                    local_vpc_cidrs: vec![net("10.1.0.0/16")],
                    remote_allows_dns: false,
                },
            ],
        };
        let mut desired = Desired::default();
        let port = EgressPort {
            ifindex: 7,
            vlan: 0,
            src_mac: PORT_MAC,
        };
        desired.subnets.insert((1, net("10.1.1.0/24")), port);
        desired.neighbours.insert((7, ip("10.1.1.10")), HOST_MAC);
        let gateways = if with_remote {
            vec![
                (
                    "us-east-1".to_string(),
                    1,
                    "198.18.0.1:51900".parse().unwrap(),
                ),
                (
                    "us-west-2".to_string(),
                    2,
                    "198.18.0.2:51900".parse().unwrap(),
                ),
            ]
        } else {
            vec![]
        };
        TunnelTable::build(&view, &desired, &gateways)
    }

    #[test]
    fn seal_needs_an_inter_region_peering_a_gateway_and_a_peer_destination() {
        let t = table(true);
        assert_eq!(
            t.seal_to(9, ip("10.3.0.5")),
            Ok("198.18.0.2:51900".parse().unwrap())
        );
        assert_eq!(
            t.seal_to(5, ip("10.2.0.5")),
            Err(PolicyDrop::UnknownPeering)
        );
        assert_eq!(
            t.seal_to(77, ip("10.3.0.5")),
            Err(PolicyDrop::UnknownPeering)
        );
        assert_eq!(
            t.seal_to(9, ip("10.4.0.5")),
            Err(PolicyDrop::DstOutsidePeer)
        );
        let t = table(false);
        assert_eq!(
            t.seal_to(9, ip("10.3.0.5")),
            Err(PolicyDrop::NoRemoteGateway)
        );
    }

    #[test]
    fn deliver_checks_sender_source_destination_subnet_and_neighbour() {
        let t = table(true);
        let ok = t.deliver(9, 2, ip("10.3.0.5"), ip("10.1.1.10")).unwrap();
        assert_eq!(
            ok,
            Delivery {
                ifindex: 7,
                vlan: 0,
                dst_mac: HOST_MAC,
                src_mac: PORT_MAC
            }
        );
        let cases = [
            (8, 2, "10.3.0.5", "10.1.1.10", PolicyDrop::UnknownPeering),
            (5, 2, "10.2.0.5", "10.1.1.10", PolicyDrop::UnknownPeering),
            (9, 3, "10.3.0.5", "10.1.1.10", PolicyDrop::WrongSender),
            (9, 1, "10.3.0.5", "10.1.1.10", PolicyDrop::WrongSender),
            (9, 2, "10.9.0.5", "10.1.1.10", PolicyDrop::SrcOutsidePeer),
            (9, 2, "10.3.0.5", "10.5.1.10", PolicyDrop::DstOutsidePeer),
            (9, 2, "10.3.0.5", "10.1.2.10", PolicyDrop::NoSubnet),
            (9, 2, "10.3.0.5", "10.1.1.11", PolicyDrop::NoNeighbour),
        ];
        // The host without a MAC is resolved on its subnet's port.
        assert_eq!(t.port_of(9, ip("10.1.1.11")), Some(7));
        assert_eq!(t.port_of(9, ip("10.1.2.11")), None);
        assert_eq!(t.port_of(8, ip("10.1.1.11")), None);
        for (pcx, sender, src, dst, want) in cases {
            assert_eq!(
                t.deliver(pcx, sender, ip(src), ip(dst)),
                Err(want),
                "pcx {pcx} sender {sender} {src} -> {dst}"
            );
        }
        let t = table(false);
        assert_eq!(
            t.deliver(9, 2, ip("10.3.0.5"), ip("10.1.1.10")),
            Err(PolicyDrop::WrongSender)
        );
    }

    #[test]
    fn names_fall_back_to_ids() {
        let t = table(true);
        assert_eq!(t.peering_name(9), "pcx-9");
        assert_eq!(t.peering_name(1234), "dp-1234");
        assert_eq!(t.gateway_name(2), "us-west-2");
        assert_eq!(t.gateway_name(40), "gateway-40");
    }
}
