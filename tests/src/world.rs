//! The map contents shared by the verdict tests: three VPCs, routes of every
//! kind, subnets and neighbours, all on loopback (see [`crate::verdict::LO`]).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use peering_common::{EgressPort, IfaceInfo};
use peering_userspace::dataplane::{iface_info, Maps, RouteTarget};

use crate::{
    frame::{GW_A, GW_B, HOST_A, HOST_B},
    verdict::{Harness, LO},
};

pub const VPC_A: u32 = 1;
pub const VPC_B: u32 = 2;
pub const RTB_A: u32 = 10;
pub const RTB_B: u32 = 20;
/// Dataplane id of the inter-region peering to 10.9.0.0/16.
pub const PCX_REMOTE: u32 = 7;
/// VLAN on which VPC B's subnet is attached to loopback.
pub const VLAN_B: u16 = 100;
/// VLAN of VPC B's second subnet (egress tagging).
pub const VLAN_B2: u16 = 200;
pub const HOST_B2: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x06];

pub const A_HOST: [u8; 4] = [10, 1, 0, 5];
pub const B_HOST: [u8; 4] = [10, 2, 0, 5];
pub const B_HOST_TAGGED: [u8; 4] = [10, 2, 1, 5];
pub const B_HOST_NO_NEIGH: [u8; 4] = [10, 2, 0, 6];
pub const B_BLACKHOLED: [u8; 4] = [10, 2, 99, 5];
pub const B_SECONDARY: [u8; 4] = [10, 3, 0, 5];
pub const OUTSIDE_PEER: [u8; 4] = [10, 50, 0, 5];
pub const REMOTE_HOST: [u8; 4] = [10, 9, 0, 5];
pub const GATEWAY_A: [u8; 4] = [10, 1, 0, 1];

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test CIDR")
}

/// VPC A's subnet (10.1.0.0/24) on a port bound to route table `table`.
pub fn iface_a(table: u32) -> IfaceInfo {
    iface_info(VPC_A, table, GATEWAY_A.into(), net("10.1.0.0/24"), 0)
}

/// Programs the world into `m`.
pub fn program(m: &mut Maps) {
    let a = iface_a(RTB_A);
    let b = iface_info(VPC_B, RTB_B, [10, 2, 0, 1].into(), net("10.2.0.0/24"), 0);
    m.set_iface(LO, 0, a).unwrap();
    m.set_iface(LO, VLAN_B, b).unwrap();
    m.add_vpc_cidr(VPC_A, net("10.1.0.0/16")).unwrap();
    m.add_vpc_cidr(VPC_B, net("10.2.0.0/16")).unwrap();
    m.add_vpc_cidr(VPC_B, net("10.3.0.0/24")).unwrap();

    let local_b = RouteTarget::LocalPeer { peer_vpc: VPC_B };
    m.set_route(RTB_A, net("10.2.0.0/16"), local_b).unwrap();
    m.set_route(RTB_A, net("10.3.0.0/24"), local_b).unwrap();
    m.set_route(RTB_A, net("10.2.99.0/24"), RouteTarget::Blackhole)
        .unwrap();
    m.set_route(RTB_A, net("10.50.0.0/16"), local_b).unwrap();
    let remote = RouteTarget::RemotePeer { pcx: PCX_REMOTE };
    m.set_route(RTB_A, net("10.9.0.0/16"), remote).unwrap();
    let local_a = RouteTarget::LocalPeer { peer_vpc: VPC_A };
    m.set_route(RTB_B, net("10.1.0.0/16"), local_a).unwrap();

    let port = |vlan, src_mac| EgressPort {
        ifindex: LO,
        vlan,
        src_mac,
    };
    m.set_subnet(VPC_A, net("10.1.0.0/24"), port(0, GW_A))
        .unwrap();
    m.set_subnet(VPC_B, net("10.2.0.0/24"), port(0, GW_B))
        .unwrap();
    m.set_subnet(VPC_B, net("10.2.1.0/24"), port(VLAN_B2, GW_B))
        .unwrap();
    m.set_subnet(VPC_B, net("10.3.0.0/24"), port(0, GW_B))
        .unwrap();
    m.set_neighbour(LO, Ipv4Addr::from(A_HOST), HOST_A).unwrap();
    m.set_neighbour(LO, Ipv4Addr::from(B_HOST), HOST_B).unwrap();
    m.set_neighbour(LO, Ipv4Addr::from(B_HOST_TAGGED), HOST_B2)
        .unwrap();
    m.set_neighbour(LO, Ipv4Addr::from(B_SECONDARY), HOST_B)
        .unwrap();
}

/// A verdict harness with this world programmed into fresh maps.
pub fn harness() -> Harness {
    let mut h = Harness::new();
    program(&mut h.dp.maps);
    h
}
