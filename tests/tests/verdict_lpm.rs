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

/// xorshift64*: deterministic, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// An address in 10.0.0.0/12, dense enough for prefixes to overlap.
    fn addr(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 | (self.next() as u32 & 0x000f_ffff))
    }
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
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut routes: Vec<Ipv4Net> = Vec::new();
    while routes.len() < 48 {
        let len = 12 + (rng.next() % 21) as u8;
        let net = Ipv4Net::new(rng.addr(), len).unwrap().trunc();
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
        let dst = if rng.next().is_multiple_of(2) {
            let r = routes[(rng.next() as usize) % routes.len()];
            let host = (rng.next() as u32) & !u32::from(r.netmask());
            Ipv4Addr::from(u32::from(r.network()) | host)
        } else {
            // Anywhere in 10/8: routes cover only 10.0/12, so some miss.
            Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff))
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
