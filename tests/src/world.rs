//! The map contents shared by the verdict tests: three VPCs, routes of every
//! kind, subnets and neighbours, all on loopback (see [`crate::verdict::LO`]).

use std::net::Ipv4Addr;

use etherparse::IpNumber;
use ipnet::Ipv4Net;
use peering_common::{EgressPort, IfaceInfo, Stat, INTER_REGION_MTU};
use peering_userspace::dataplane::{iface_info, Maps, RouteTarget};

use crate::{
    frame::{checksum_ok, parse, Frame, GW_A, GW_B, HOST_A, HOST_B},
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
/// What XDP and TC alike must have done to `sent` (A's host to B's,
/// TTL 64, 100 bytes of IP) to forward it to the local peer: B's MAC from
/// B's port, TTL 63 with a checksum that still verifies, addresses and
/// payload untouched, counted once for the port and the route.
pub fn assert_forwarded_to_b(h: &Harness, out: &[u8], sent: &Frame) {
    let p = parse(out);
    assert_eq!(p.dst_mac, HOST_B, "neighbour MAC");
    assert_eq!(p.src_mac, GW_B, "egress port MAC");
    assert_eq!(p.vlan, None);
    assert_eq!(p.ip.time_to_live, 63);
    assert!(
        checksum_ok(&p.ip_bytes),
        "incrementally patched checksum verifies"
    );
    assert_eq!(p.ip.source, A_HOST);
    assert_eq!(p.ip.destination, B_HOST);
    assert_eq!(p.payload, sent.payload, "payload untouched");
    assert_eq!(h.packets(Stat::FwdLocal), 1);
    let rs =
        h.dp.maps
            .route_stats(RTB_A, "10.2.0.0/16".parse().unwrap())
            .unwrap();
    assert_eq!((rs.packets, rs.bytes), (1, 114));
}

pub fn harness() -> Harness {
    let mut h = Harness::new();
    program(&mut h.dp.maps);
    h
}

/// Checks an ICMP "fragmentation needed" reply to `sent` (from VPC A's
/// host) that quotes `quoted_data` bytes after the original header.
pub fn assert_frag_needed(reply: &[u8], sent: &Frame, vlan: Option<u16>, quoted_data: usize) {
    let p = parse(reply);
    assert_eq!(p.vlan, vlan);
    assert_eq!((p.dst_mac, p.src_mac), (HOST_A, GW_A), "MACs swapped");
    assert_eq!(p.ip.source, GATEWAY_A, "from the VPC router");
    assert_eq!(p.ip.destination, A_HOST);
    assert_eq!(p.ip.protocol, IpNumber::ICMP);
    assert!(checksum_ok(&p.ip_bytes), "IPv4 checksum");
    let icmp = &p.payload;
    assert!(checksum_ok(icmp), "ICMP checksum");
    assert_eq!((icmp[0], icmp[1]), (3, 4), "type 3 code 4");
    let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
    assert_eq!(mtu, INTER_REGION_MTU, "next-hop MTU");
    // The quote: the original header as received, then the data bytes.
    let orig = sent.bytes();
    let l3 = if sent.vlan.is_some() { 18 } else { 14 };
    let hl = sent.ip.header_len();
    assert_eq!(&icmp[8..], &orig[l3..l3 + hl + quoted_data]);
    let l2 = if vlan.is_some() { 18 } else { 14 };
    assert_eq!(reply.len(), l2 + 20 + 8 + hl + quoted_data);
}
