//! BPF_PROG_TEST_RUN verdicts for routing: hits, misses, blackholes,
//! anti-spoofing, TTL, and the peer-CIDR fence. Each case checks the
//! verdict, the rewritten bytes and the counter that names the outcome.

use peering_common::Stat;
use peering_tests::{
    frame::{checksum_ok, parse, Frame, GW_B, HOST_B},
    verdict::{LO, XDP_DROP, XDP_PASS, XDP_REDIRECT},
    world::*,
};

#[test]
fn route_hit_forwards_with_rewritten_macs_ttl_and_checksum() {
    let h = harness();
    let sent = Frame::udp(A_HOST, B_HOST, 100).ttl(64);
    let out = h.run(LO, &sent.bytes());
    assert_eq!(out.verdict, XDP_REDIRECT);
    assert_forwarded_to_b(&h, &out.frame, &sent);
}

#[test]
fn ttl_decrement_checksum_carries_around() {
    let h = harness();
    // Sweep TTLs and ids so the checksum passes through its carry cases.
    for ttl in [2u8, 3, 17, 128, 255] {
        for id in [0u16, 0x00ff, 0xfeff, 0xffff] {
            let mut f = Frame::udp(A_HOST, B_HOST, 60).ttl(ttl);
            f.ip.identification = id;
            let out = h.run(LO, &f.bytes());
            assert_eq!(out.verdict, XDP_REDIRECT);
            let p = parse(&out.frame);
            assert_eq!(p.ip.time_to_live, ttl - 1);
            assert!(checksum_ok(&p.ip_bytes), "ttl {ttl} id {id:#x}");
        }
    }
}

#[test]
fn longest_prefix_wins_blackhole_inside_active_route() {
    let h = harness();
    let out = h.run(LO, &Frame::udp(A_HOST, B_BLACKHOLED, 60).bytes());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropBlackhole), 1);
    assert_eq!(h.packets(Stat::FwdLocal), 0);
}

#[test]
fn route_miss_passes_to_the_kernel() {
    let h = harness();
    let out = h.run(LO, &Frame::udp(A_HOST, GATEWAY_A, 60).bytes());
    assert_eq!(out.verdict, XDP_PASS);
    assert_eq!(h.packets(Stat::PassNoRoute), 1);
}

#[test]
fn spoofed_source_is_dropped() {
    let h = harness();
    // A source in the peer VPC, and one in no VPC at all.
    for src in [B_HOST, [192, 0, 2, 1]] {
        let out = h.run(LO, &Frame::udp(src, B_HOST, 60).bytes());
        assert_eq!(out.verdict, XDP_DROP);
    }
    assert_eq!(h.packets(Stat::DropSpoofedSource), 2);
    assert_eq!(h.packets(Stat::FwdLocal), 0);
}

#[test]
fn a_source_in_the_vpc_but_outside_the_ingress_subnet_is_spoofed() {
    let h = harness();
    // 10.1.5.5 lies in VPC A's block (10.1.0.0/16) but not in the subnet
    // of the port it arrives on (10.1.0.0/24): AWS checks sources per
    // network interface, the subnet's prefix is the gateway's analogue.
    let out = h.run(LO, &Frame::udp([10, 1, 5, 5], B_HOST, 60).bytes());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropSpoofedSource), 1);
    let out = h.run(LO, &Frame::udp([10, 1, 0, 200], B_HOST, 60).bytes());
    assert_eq!(out.verdict, XDP_REDIRECT, "any host of the subnet may send");
}

#[test]
fn ttl_one_is_dropped_and_ttl_two_forwarded() {
    let h = harness();
    for ttl in [0u8, 1] {
        let out = h.run(LO, &Frame::udp(A_HOST, B_HOST, 60).ttl(ttl).bytes());
        assert_eq!(out.verdict, XDP_DROP, "ttl {ttl}");
    }
    assert_eq!(h.packets(Stat::DropTtlExceeded), 2);
    let out = h.run(LO, &Frame::udp(A_HOST, B_HOST, 60).ttl(2).bytes());
    assert_eq!(out.verdict, XDP_REDIRECT);
}

#[test]
fn destination_outside_the_peer_is_dropped_even_with_a_route() {
    let h = harness();
    let out = h.run(LO, &Frame::udp(A_HOST, OUTSIDE_PEER, 60).bytes());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropDstOutsidePeer), 1);
}

#[test]
fn secondary_cidr_of_the_peer_is_reachable() {
    let h = harness();
    let out = h.run(LO, &Frame::udp(A_HOST, B_SECONDARY, 60).bytes());
    assert_eq!(out.verdict, XDP_REDIRECT);
    assert_eq!(parse(&out.frame).dst_mac, HOST_B);
}

#[test]
fn unknown_neighbour_is_dropped_and_counted() {
    let h = harness();
    let out = h.run(LO, &Frame::udp(A_HOST, B_HOST_NO_NEIGH, 60).bytes());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropNoNeighbour), 1);
}

#[test]
fn return_traffic_routes_through_the_peer_table() {
    let h = harness();
    let f = Frame::udp(B_HOST, A_HOST, 80).vlan(VLAN_B);
    let out = h.run(LO, &f.bytes());
    assert_eq!(out.verdict, XDP_REDIRECT);
    let p = parse(&out.frame);
    assert_eq!(p.vlan, None, "tag removed towards the untagged port");
    assert_eq!(p.dst_mac, peering_tests::frame::HOST_A);
    assert_eq!(p.ip.time_to_live, 63);
    assert!(checksum_ok(&p.ip_bytes));
    assert_eq!(p.payload, f.payload);
}

#[test]
fn removing_a_route_stops_forwarding() {
    let mut h = harness();
    h.dp.maps
        .remove_route(RTB_A, "10.2.0.0/16".parse().unwrap())
        .unwrap();
    let out = h.run(LO, &Frame::udp(A_HOST, B_HOST, 60).bytes());
    assert_eq!(out.verdict, XDP_PASS);
    assert_eq!(h.packets(Stat::PassNoRoute), 1);
}

#[test]
fn subnets_must_lie_inside_their_vpc_and_blocks_outlive_them() {
    let mut h = harness();
    let port = peering_common::EgressPort {
        ifindex: LO,
        vlan: 0,
        src_mac: GW_B,
    };
    let outside = "10.50.0.0/24".parse().unwrap();
    let e = h.dp.maps.set_subnet(VPC_B, outside, port).unwrap_err();
    assert!(e.to_string().contains("not inside"), "{e}");
    let straddling = "10.2.0.0/15".parse().unwrap();
    assert!(h.dp.maps.set_subnet(VPC_B, straddling, port).is_err());
    let e =
        h.dp.maps
            .remove_vpc_cidr(VPC_B, "10.2.0.0/16".parse().unwrap())
            .unwrap_err();
    assert!(e.to_string().contains("still holds subnet"), "{e}");
    // Without the subnet, the destination is inside the peer but unroutable.
    h.dp.maps
        .remove_subnet(VPC_B, "10.2.0.0/24".parse().unwrap())
        .unwrap();
    let out = h.run(LO, &Frame::udp(A_HOST, B_HOST, 60).bytes());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropNoSubnet), 1);
}

/// Jumbo frames (multi-buffer XDP): forwarded intra-region with the same
/// rewrites, counted at their full length.
#[test]
fn jumbo_frames_are_forwarded_whole() {
    let h = harness();
    let sent = Frame::udp(A_HOST, B_HOST, 9000);
    let out = h.run(LO, &sent.bytes());
    assert_eq!(out.verdict, XDP_REDIRECT);
    assert_eq!(out.frame.len(), 14 + 9000);
    let p = parse(&out.frame);
    assert_eq!(p.ip.time_to_live, 63);
    assert!(checksum_ok(&p.ip_bytes));
    assert_eq!(p.payload, sent.payload);
    assert_eq!(h.stat(Stat::FwdLocal).bytes, 14 + 9000);
}

/// Past the last per-route counter slot, routes are still installed and
/// forward, uncounted (slot 0); a removed route's slot is handed out again.
#[test]
fn routes_beyond_the_counter_slots_forward_uncounted() {
    let mut h = harness();
    let held = h.dp.maps.snapshot().unwrap().routes.len() as u32;
    let local_b = peering_userspace::dataplane::RouteTarget::LocalPeer { peer_vpc: VPC_B };
    // Fill every other slot with routes of a table no interface uses.
    let filler = |i: u32| -> ipnet::Ipv4Net {
        let [_, b, c, d] = (i << 4).to_be_bytes();
        format!("172.{}.{c}.{d}/28", 16 + b).parse().unwrap()
    };
    for i in 0..(peering_common::MAX_ROUTE_COUNTERS - 1 - held) {
        let slot = h.dp.maps.set_route(99, filler(i), local_b).unwrap();
        assert_ne!(slot, 0, "route {i} went uncounted early");
    }
    let more = "10.2.0.0/24".parse().unwrap();
    assert_eq!(h.dp.maps.set_route(RTB_A, more, local_b).unwrap(), 0);
    let out = h.run(LO, &Frame::udp(A_HOST, B_HOST, 100).bytes());
    assert_eq!(out.verdict, XDP_REDIRECT, "an uncounted route forwards");
    assert_eq!(h.packets(Stat::FwdLocal), 1);
    // The covering /16 was not hit; the /24 has no counter of its own.
    let wide = "10.2.0.0/16".parse().unwrap();
    assert_eq!(h.dp.maps.route_stats(RTB_A, wide).unwrap().packets, 0);
    // A slot freed by a removal goes to the next route written, and a
    // rewrite of a counted route keeps its slot.
    let freed = h.dp.maps.set_route(99, filler(7), local_b).unwrap();
    h.dp.maps.remove_route(99, filler(7)).unwrap();
    assert_eq!(h.dp.maps.set_route(RTB_A, more, local_b).unwrap(), freed);
    assert_eq!(h.dp.maps.set_route(RTB_A, more, local_b).unwrap(), freed);
    let snapshot = h.dp.maps.snapshot().unwrap();
    // The held routes, the fillers less the removed one, and the /24.
    assert_eq!(
        snapshot.routes.len() as u32,
        peering_common::MAX_ROUTE_COUNTERS - 1,
        "every route installed, the removed one gone"
    );
}
