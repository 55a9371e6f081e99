//! The XDP route lookup checked against a naive linear scan: random
//! prefixes in one route table, random destinations, and per-route counters
//! compared with what longest-prefix match says they must be.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use peering_common::Stat;
use peering_tests::{
    frame::Frame,
    verdict::{Harness, LO, XDP_DROP, XDP_PASS},
    world::*,
};
use peering_userspace::dataplane::RouteTarget;

/// An address in 10.0.0.0/12, dense enough for prefixes to overlap.
fn random_addr(rng: &mut fastrand::Rng) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | rng.u32(..0x0010_0000))
}

fn oracle(routes: &[Ipv4Net], dst: Ipv4Addr) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.contains(&dst))
        .max_by_key(|(_, n)| n.prefix_len())
        .map(|(i, _)| i)
}

#[test]
fn xdp_lookup_matches_a_linear_scan() {
    let mut h = Harness::new();
    program(&mut h.dp.maps);
    // A fresh table for VPC A's interface, holding only random routes.
    let table = 77;
    let info = iface_a(table);
    h.dp.maps.set_iface(LO, 0, info).unwrap();
    // Seeded, so a failure replays exactly.
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut routes: Vec<Ipv4Net> = Vec::new();
    while routes.len() < 48 {
        let len = rng.u8(12..=32);
        let net = Ipv4Net::new(random_addr(&mut rng), len).unwrap().trunc();
        if !routes.contains(&net) {
            h.dp.maps
                .set_route(table, net, RouteTarget::Blackhole)
                .unwrap();
            routes.push(net);
        }
    }
    let mut expected = vec![0u64; routes.len()];
    let mut misses = 0;
    for _ in 0..2000 {
        // Half the probes aim inside a random route, half anywhere.
        let dst = if rng.bool() {
            let r = routes[rng.usize(..routes.len())];
            let host = rng.u32(..) & !u32::from(r.netmask());
            Ipv4Addr::from(u32::from(r.network()) | host)
        } else {
            // Anywhere in 10/8: routes cover only 10.0/12, so some miss.
            Ipv4Addr::from(0x0a00_0000 | rng.u32(..0x0100_0000))
        };
        let out = h.run(LO, &Frame::udp(A_HOST, dst.octets(), 40).bytes());
        match oracle(&routes, dst) {
            Some(i) => {
                assert_eq!(out.verdict, XDP_DROP, "{dst} should hit {}", routes[i]);
                expected[i] += 1;
            }
            None => {
                assert_eq!(out.verdict, XDP_PASS, "{dst} should miss");
                misses += 1;
            }
        }
    }
    for (i, r) in routes.iter().enumerate() {
        let got = h.dp.maps.route_stats(table, *r).unwrap().packets;
        assert_eq!(got, expected[i], "packets counted on {r}");
    }
    assert_eq!(h.packets(Stat::PassNoRoute), misses);
    let hit = expected.iter().filter(|c| **c > 0).count();
    assert!(
        misses > 0 && hit >= routes.len() / 4,
        "misses {misses}, routes hit {hit}"
    );
}
