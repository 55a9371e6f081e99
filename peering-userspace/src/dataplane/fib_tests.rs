use super::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::net::Ipv4Addr;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn port(ifindex: u32, vlan: u16) -> EgressPort {
    EgressPort {
        ifindex,
        vlan,
        src_mac: [2, 0, 0, 0, 0, ifindex as u8],
    }
}

/// The FIB map as the writes leave it.
fn apply(fib: &mut BTreeMap<FibKey, FibEntry>, writes: &[FibWrite]) {
    for w in writes {
        match w {
            FibWrite::Set(k, e) => {
                fib.insert(*k, *e);
            }
            FibWrite::Del(k) => {
                assert!(fib.remove(k).is_some(), "deletes a missing entry {k:?}");
            }
        }
    }
}

/// What the XDP program finds: the longest entry of `table` containing
/// `addr`.
fn lookup(fib: &BTreeMap<FibKey, FibEntry>, table: u32, addr: Ipv4Addr) -> Option<FibEntry> {
    let host = Ipv4Net::new(addr, 32).unwrap();
    ancestors(host).find_map(|p| fib.get(&(table, p)).copied())
}

/// The naive control state and the two-stage lookup, by linear scans.
#[derive(Default)]
struct Naive {
    routes: Vec<(u32, Ipv4Net, RouteTarget, u32)>,
    subnets: Vec<(u32, Ipv4Net, EgressPort)>,
    blocks: Vec<(u32, Ipv4Net)>,
}

impl Naive {
    fn lookup(&self, table: u32, a: Ipv4Addr) -> Option<(FibAction, u32, u32)> {
        let (_, _, target, slot) = self
            .routes
            .iter()
            .filter(|(t, n, _, _)| *t == table && n.contains(&a))
            .max_by_key(|(_, n, _, _)| n.prefix_len())?;
        let (action, value) = match *target {
            RouteTarget::Blackhole => (FibAction::Blackhole, 0),
            RouteTarget::RemotePeer { pcx } => (FibAction::RemotePeer, pcx),
            RouteTarget::LocalPeer { peer_vpc } => {
                let subnet = self
                    .subnets
                    .iter()
                    .filter(|(v, n, _)| *v == peer_vpc && n.contains(&a))
                    .max_by_key(|(_, n, _)| n.prefix_len());
                let in_block = self
                    .blocks
                    .iter()
                    .any(|(v, n)| *v == peer_vpc && n.contains(&a));
                match subnet {
                    Some((_, _, p)) => (FibAction::Forward, p.ifindex),
                    None if in_block => (FibAction::NoSubnet, 0),
                    None => (FibAction::OutsidePeer, 0),
                }
            }
        };
        Some((action, value, *slot))
    }
}

fn summary(e: FibEntry) -> (FibAction, u32, u32) {
    let action = FibAction::from_u32(e.action).expect("a known action");
    (action, e.target, e.counter)
}

#[test]
fn routes_compile_with_the_peers_subnets_and_blocks() {
    let mut m = FibModel::default();
    let mut fib = BTreeMap::new();
    let b = RouteTarget::LocalPeer { peer_vpc: 2 };
    apply(&mut fib, &m.add_block(2, net("10.2.0.0/16")));
    apply(&mut fib, &m.set_subnet(2, net("10.2.0.0/24"), port(5, 0)));
    apply(&mut fib, &m.set_route(10, net("10.2.0.0/16"), b, 1));
    apply(&mut fib, &m.set_route(10, net("10.50.0.0/16"), b, 2));
    apply(
        &mut fib,
        &m.set_route(
            10,
            net("10.9.0.0/16"),
            RouteTarget::RemotePeer { pcx: 7 },
            3,
        ),
    );
    let got: Vec<(Ipv4Net, FibAction, u32, u32)> = fib
        .iter()
        .map(|((_, p), e)| {
            let (a, t, c) = summary(*e);
            (*p, a, t, c)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // The route itself: inside the peer's block, but no subnet.
            (net("10.2.0.0/16"), FibAction::NoSubnet, 0, 1),
            // The route met with the subnet: the egress port, the
            // route's counter.
            (net("10.2.0.0/24"), FibAction::Forward, 5, 1),
            (net("10.9.0.0/16"), FibAction::RemotePeer, 7, 3),
            (net("10.50.0.0/16"), FibAction::OutsidePeer, 0, 2),
        ]
    );
    assert_eq!(fib, m.entries());
    // A removed subnet takes its entry with it.
    apply(&mut fib, &m.remove_subnet(2, net("10.2.0.0/24")));
    assert_eq!(fib.len(), 3);
    assert_eq!(fib, m.entries());
}

#[test]
fn a_longer_route_shadows_what_a_shorter_one_compiled() {
    // A blackhole inside a local route, with a subnet inside the
    // blackhole: the subnet entry must not revive forwarding there.
    let mut m = FibModel::default();
    let mut fib = BTreeMap::new();
    let b = RouteTarget::LocalPeer { peer_vpc: 2 };
    apply(&mut fib, &m.add_block(2, net("10.2.0.0/16")));
    apply(&mut fib, &m.set_route(10, net("10.2.0.0/16"), b, 1));
    apply(
        &mut fib,
        &m.set_route(10, net("10.2.99.0/24"), RouteTarget::Blackhole, 2),
    );
    apply(
        &mut fib,
        &m.set_subnet(2, net("10.2.99.128/25"), port(5, 0)),
    );
    let e = lookup(&fib, 10, "10.2.99.200".parse().unwrap()).unwrap();
    assert_eq!(summary(e), (FibAction::Blackhole, 0, 2));
    // With the blackhole gone, the subnet forwards under the /16.
    apply(&mut fib, &m.remove_route(10, net("10.2.99.0/24")));
    let e = lookup(&fib, 10, "10.2.99.200".parse().unwrap()).unwrap();
    assert_eq!(summary(e), (FibAction::Forward, 5, 1));
    assert_eq!(fib, m.entries());
}

#[test]
fn compiled_lookups_match_the_two_stage_lookup() {
    // Random routes, subnets and blocks in a small space (so they nest and
    // overlap), changed one at a time; after each change the map the
    // writes produced equals a compile from scratch, and lookups in it
    // agree with the naive two-stage lookup.
    let mut rng = StdRng::seed_from_u64(11);
    let mut m = FibModel::default();
    let mut naive = Naive::default();
    let mut fib = BTreeMap::new();
    let prefix = |rng: &mut StdRng| {
        let addr = Ipv4Addr::from(0x0a00_0000 | (rng.random::<u32>() & 0x0000_ffff));
        Ipv4Net::new(addr, rng.random_range(14..=28))
            .unwrap()
            .trunc()
    };
    for step in 0..3000 {
        let vpc = rng.random_range(1..=3);
        let p = prefix(&mut rng);
        let writes = match rng.random_range(0..6) {
            0 | 1 => {
                let table = rng.random_range(1..=2);
                let target = match rng.random_range(0..4) {
                    0 => RouteTarget::Blackhole,
                    1 => RouteTarget::RemotePeer { pcx: 9 },
                    _ => RouteTarget::LocalPeer { peer_vpc: vpc },
                };
                let slot = step + 1;
                naive.routes.retain(|(t, n, _, _)| (*t, *n) != (table, p));
                naive.routes.push((table, p, target, slot));
                m.set_route(table, p, target, slot)
            }
            2 => {
                let table = rng.random_range(1..=2);
                naive.routes.retain(|(t, n, _, _)| (*t, *n) != (table, p));
                m.remove_route(table, p)
            }
            3 => {
                let pt = port(rng.random_range(1..=4), 0);
                naive.subnets.retain(|(v, n, _)| (*v, *n) != (vpc, p));
                naive.subnets.push((vpc, p, pt));
                m.set_subnet(vpc, p, pt)
            }
            4 => {
                naive.blocks.retain(|b| *b != (vpc, p));
                match rng.random_bool(0.5) {
                    true => {
                        naive.blocks.push((vpc, p));
                        m.add_block(vpc, p)
                    }
                    false => m.remove_block(vpc, p),
                }
            }
            _ => {
                naive.subnets.retain(|(v, n, _)| (*v, *n) != (vpc, p));
                m.remove_subnet(vpc, p)
            }
        };
        apply(&mut fib, &writes);
        if step % 50 == 0 {
            assert_eq!(fib, m.entries(), "step {step}");
        }
        for _ in 0..20 {
            let a = Ipv4Addr::from(0x0a00_0000 | (rng.random::<u32>() & 0x0000_ffff));
            let table = rng.random_range(1..=2);
            let got = lookup(&fib, table, a).map(summary);
            assert_eq!(
                got,
                naive.lookup(table, a),
                "step {step}: {a} in table {table}"
            );
        }
    }
}

#[test]
fn repair_turns_any_map_into_the_compiled_one() {
    let mut m = FibModel::default();
    let b = RouteTarget::LocalPeer { peer_vpc: 2 };
    m.add_block(2, net("10.2.0.0/16"));
    m.set_subnet(2, net("10.2.0.0/24"), port(5, 0));
    m.set_route(10, net("10.2.0.0/16"), b, 1);
    let mut stale = BTreeMap::new();
    let junk = FibEntry::default();
    stale.insert((10, net("10.7.0.0/16")), junk);
    stale.insert((10, net("10.2.0.0/24")), junk);
    let writes = m.repair(&stale);
    apply(&mut stale, &writes);
    assert_eq!(stale, m.entries());
    assert!(m.repair(&stale).is_empty());
}

#[test]
fn forward_entries_to_veth_ports_ask_for_a_peer_redirect() {
    let mut m = FibModel::default();
    let mut fib = BTreeMap::new();
    let b = RouteTarget::LocalPeer { peer_vpc: 2 };
    apply(&mut fib, &m.add_block(2, net("10.2.0.0/16")));
    apply(&mut fib, &m.set_route(1, net("10.2.0.0/16"), b, 1));
    apply(&mut fib, &m.set_subnet(2, net("10.2.0.0/24"), port(5, 0)));
    apply(&mut fib, &m.set_subnet(2, net("10.2.1.0/24"), port(6, 0)));
    apply(
        &mut fib,
        &m.set_route(1, net("10.9.0.0/16"), RouteTarget::RemotePeer { pcx: 7 }, 2),
    );
    let flags = |fib: &BTreeMap<FibKey, FibEntry>, a: &str| {
        lookup(fib, 1, a.parse().unwrap()).unwrap().flags
    };
    assert!(fib.values().all(|e| e.flags == 0), "no veth named yet");

    // Port 5 is a veth: only its Forward entry changes, and only its flag.
    let writes = m.set_peer_redirect([5].into());
    assert_eq!(writes.len(), 1, "{writes:?}");
    let before = fib.clone();
    apply(&mut fib, &writes);
    assert_eq!(flags(&fib, "10.2.0.9"), FIB_F_PEER_REDIRECT);
    assert_eq!(flags(&fib, "10.2.1.9"), 0, "port 6 is not a veth");
    assert_eq!(flags(&fib, "10.9.0.1"), 0, "not a Forward entry");
    assert_eq!(flags(&fib, "10.2.200.1"), 0, "NoSubnet entry");
    let key = (1, net("10.2.0.0/24"));
    let (old, new) = (before[&key], fib[&key]);
    assert_eq!(
        FibEntry { flags: 0, ..new },
        old,
        "the rest of the entry stays"
    );
    assert!(m.set_peer_redirect([5].into()).is_empty(), "no change");

    // Subnets added later on a veth port get the flag from the start, a
    // port that stops being named loses it, and the FIB stays compiled.
    apply(&mut fib, &m.set_subnet(2, net("10.2.2.0/24"), port(5, 0)));
    assert_eq!(flags(&fib, "10.2.2.9"), FIB_F_PEER_REDIRECT);
    apply(&mut fib, &m.set_peer_redirect([6].into()));
    assert_eq!(flags(&fib, "10.2.0.9"), 0);
    assert_eq!(flags(&fib, "10.2.2.9"), 0);
    assert_eq!(flags(&fib, "10.2.1.9"), FIB_F_PEER_REDIRECT);
    assert_eq!(fib, m.entries());
}
