//! Longest prefix match against a naive linear-scan oracle.

use crate::control::route_table::{Route, RouteTable};
use ipnet::Ipv4Net;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::Ipv4Addr;

fn oracle(routes: &[Route], addr: Ipv4Addr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.destination.contains(&addr))
        .max_by_key(|r| r.destination.prefix_len())
}

/// Prefixes clustered in a few /8s so that nesting is common.
fn random_prefix(rng: &mut StdRng) -> Ipv4Net {
    let base = [10u32, 172, 192][rng.random_range(0..3)] << 24;
    let addr = base | rng.random_range(0..(1u32 << 24));
    let len = match rng.random_range(0..10) {
        0 => rng.random_range(0..=8),
        1 => 32,
        _ => rng.random_range(8..=28),
    };
    Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc()
}

#[test]
fn lookup_matches_linear_scan() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..50 {
        let mut table = RouteTable::new("rtb-t".into(), 1, "vpc-t".into());
        for i in 0..rng.random_range(0..200) {
            let destination = random_prefix(&mut rng);
            let route = Route {
                destination,
                pcx_id: format!("pcx-{round}-{i}"),
            };
            table.routes.insert(destination, route);
        }
        let routes: Vec<Route> = table.routes.values().cloned().collect();
        for _ in 0..500 {
            // Half the probes inside a known prefix, half anywhere.
            let addr = if !routes.is_empty() && rng.random_bool(0.5) {
                let r = &routes[rng.random_range(0..routes.len())].destination;
                let host = rng.random_range(0..=u32::MAX) & !u32::from(r.netmask());
                Ipv4Addr::from(u32::from(r.network()) | host)
            } else {
                Ipv4Addr::from(rng.random::<u32>())
            };
            assert_eq!(
                table.lookup(addr),
                oracle(&routes, addr),
                "round {round} addr {addr}"
            );
        }
    }
}

#[test]
fn lookup_edge_cases() {
    let mut table = RouteTable::new("rtb-t".into(), 1, "vpc-t".into());
    assert!(table.lookup(Ipv4Addr::new(1, 2, 3, 4)).is_none());
    for (d, p) in [
        ("0.0.0.0/0", "default"),
        ("10.0.0.0/8", "eight"),
        ("10.1.2.3/32", "host"),
    ] {
        let destination: Ipv4Net = d.parse().unwrap();
        table.routes.insert(
            destination,
            Route {
                destination,
                pcx_id: p.into(),
            },
        );
    }
    let hit = |a: [u8; 4]| table.lookup(Ipv4Addr::from(a)).unwrap().pcx_id.clone();
    assert_eq!(hit([10, 1, 2, 3]), "host");
    assert_eq!(hit([10, 1, 2, 4]), "eight");
    assert_eq!(hit([11, 0, 0, 0]), "default");
    assert_eq!(hit([255, 255, 255, 255]), "default");
}
