use super::*;
use crate::control::view::{self, PeeringView, RouteView, VpcView};
use crate::dataplane::reconcile::snapshot_of;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// Ports p1, p2, p3 exist; anything else does not.
fn resolve(name: &str) -> Option<Port> {
    let (ifindex, rx_queues) = match name {
        "p1" => (7, 2),
        "p2" => (4, 1),
        "p3" => (9, 3),
        _ => return None,
    };
    Some(Port {
        ifindex,
        mac: [2, 0, 0, 0, 0, ifindex as u8],
        rx_queues,
    })
}

fn empty(revision: u64) -> RegionView {
    RegionView {
        revision,
        region: "us-east-1".into(),
        vpcs: vec![],
        subnets: vec![],
        security_groups: vec![],
        interfaces: vec![],
        routes: vec![],
        peerings: vec![],
    }
}

/// Applies a plan to a fake of the maps, as `reconcile::apply` does to the
/// real ones.
fn apply_to(maps: &mut Desired, plan: &Plan) {
    for (k, v) in &plan.set_ifaces {
        maps.ifaces.insert(*k, *v);
    }
    maps.vpc_cidrs.extend(plan.add_cidrs.iter().copied());
    for (k, v) in &plan.set_subnets {
        maps.subnets.insert(*k, *v);
    }
    for (k, v) in &plan.set_neighbours {
        maps.neighbours.insert(*k, *v);
    }
    for (k, v) in &plan.set_routes {
        maps.routes.insert(*k, *v);
    }
    for k in &plan.del_routes {
        assert!(maps.routes.remove(k).is_some(), "removes a missing route");
    }
    for k in &plan.del_neighbours {
        assert!(maps.neighbours.remove(k).is_some());
    }
    for k in &plan.del_subnets {
        assert!(maps.subnets.remove(k).is_some());
    }
    for k in &plan.del_cidrs {
        assert!(maps.vpc_cidrs.remove(k));
    }
    for k in &plan.del_ifaces {
        assert!(maps.ifaces.remove(k).is_some());
    }
}

/// The map-held part of a desired state.
fn held(d: &Desired) -> Desired {
    Desired {
        ifaces: d.ifaces.clone(),
        vpc_cidrs: d.vpc_cidrs.clone(),
        subnets: d.subnets.clone(),
        routes: d.routes.clone(),
        neighbours: d.neighbours.clone(),
        ..Desired::default()
    }
}

fn full_desired(view: &RegionView, kernel: &[Neighbour], maps: &Desired) -> Desired {
    reconcile::desired(view, &resolve, kernel, &snapshot_of(maps)).0
}

fn route(table: u32, dst: &str, target: view::RouteTarget) -> RouteView {
    RouteView {
        route_table_dp_id: table,
        destination: net(dst),
        target,
    }
}

fn blackhole() -> view::RouteTarget {
    view::RouteTarget::Blackhole {
        pcx_id: "pcx-x".into(),
    }
}

fn subnet(id: &str, vpc: u32, cidr: &str, iface: &str, vlan: u16) -> SubnetView {
    let cidr = net(cidr);
    SubnetView {
        subnet_id: id.into(),
        vpc_dp_id: vpc,
        cidr,
        interface: iface.into(),
        vlan,
        gateway_ip: cidr.hosts().next().unwrap(),
        route_table_dp_id: vpc * 10,
    }
}

fn base() -> RegionView {
    let mut v = empty(1);
    v.vpcs = vec![VpcView {
        vpc_id: "vpc-1".into(),
        dp_id: 1,
        cidrs: vec![net("10.1.0.0/16")],
        default_group_dp_id: 0,
    }];
    v.subnets = vec![subnet("subnet-a", 1, "10.1.1.0/24", "p1", 0)];
    v.routes = vec![route(10, "10.2.0.0/16", blackhole())];
    v.sort();
    v
}

fn delta(from: &RegionView, edit: impl FnOnce(&mut RegionView)) -> RegionDelta {
    let mut to = from.clone();
    to.revision += 1;
    edit(&mut to);
    to.sort();
    from.diff(&to)
}

#[test]
fn a_route_upsert_is_one_route_write() {
    let (mut p, _, _) = Programmed::full(base(), &resolve, &[], &Snapshot::default());
    let d = delta(p.view(), |v| {
        v.routes.push(route(10, "10.3.0.0/16", blackhole()))
    });
    let step = p.apply(&d, &resolve).unwrap();
    assert_eq!(step.plan.len(), 1);
    assert_eq!(step.plan.set_routes.len(), 1);
    assert!(!step.tunnel && !step.slots && !step.ports);
    // And its removal one route deletion.
    let d = delta(p.view(), |v| {
        v.routes.retain(|r| r.destination != net("10.3.0.0/16"))
    });
    let step = p.apply(&d, &resolve).unwrap();
    assert_eq!(step.plan.del_routes, vec![(10, net("10.3.0.0/16"))]);
    assert_eq!(step.plan.len(), 1);
}

#[test]
fn a_changed_vpc_touches_only_its_cidrs() {
    let (mut p, _, _) = Programmed::full(base(), &resolve, &[], &Snapshot::default());
    let d = delta(p.view(), |v| v.vpcs[0].cidrs.push(net("10.9.0.0/16")));
    let step = p.apply(&d, &resolve).unwrap();
    assert_eq!(step.plan.add_cidrs, vec![(1, net("10.9.0.0/16"))]);
    assert_eq!(step.plan.len(), 1);
    let d = delta(p.view(), |v| v.vpcs.clear());
    let step = p.apply(&d, &resolve).unwrap();
    assert_eq!(step.plan.del_cidrs.len(), 2);
    assert_eq!(step.plan.len(), 2);
}

#[test]
fn a_subnet_on_a_new_port_moves_the_slots_of_later_ports() {
    let kernel = [(7, "10.1.1.9".parse().unwrap(), [2, 0, 0, 0, 1, 9])];
    let (mut p, plan, _) = Programmed::full(base(), &resolve, &kernel, &Snapshot::default());
    assert_eq!(plan.set_neighbours.len(), 1);
    assert_eq!(p.desired().xsk_slots[&7].xsk_base, 0);
    // p2 (ifindex 4) sorts before p1 (ifindex 7): p1's slots move by one.
    let d = delta(p.view(), |v| {
        v.subnets
            .push(subnet("subnet-b", 1, "10.1.2.0/24", "p2", 0))
    });
    let step = p.apply(&d, &resolve).unwrap();
    assert!(step.slots && step.ports && step.tunnel);
    assert_eq!(step.plan.set_subnets.len(), 1);
    assert_eq!(step.plan.set_ifaces.len(), 2, "{:?}", step.plan);
    assert_eq!(p.desired().ifaces[&(7, 0)].xsk_base, 1);
    assert!(step.plan.set_neighbours.is_empty() && step.plan.del_neighbours.is_empty());
    // Removing p1's subnet drops its entries and its neighbour.
    let d = delta(p.view(), |v| v.subnets.retain(|s| s.interface != "p1"));
    let step = p.apply(&d, &resolve).unwrap();
    assert_eq!(step.plan.del_ifaces, vec![(7, 0)]);
    assert_eq!(step.plan.del_subnets, vec![(1, net("10.1.1.0/24"))]);
    assert_eq!(step.plan.del_neighbours.len(), 1);
}

#[test]
fn peerings_only_touch_the_tunnel() {
    let (mut p, _, _) = Programmed::full(base(), &resolve, &[], &Snapshot::default());
    let d = delta(p.view(), |v| {
        v.peerings.push(PeeringView {
            pcx_id: "pcx-1".into(),
            dp_id: 3,
            local_vpc_dp_id: 1,
            remote_region: "eu-west-1".into(),
            remote_vpc_cidrs: vec![net("10.20.0.0/16")],
            local_vpc_cidrs: vec![net("10.1.0.0/16")],
            remote_allows_dns: false,
        })
    });
    let step = p.apply(&d, &resolve).unwrap();
    assert!(step.plan.is_empty() && step.tunnel);
}

#[test]
fn a_delta_from_another_revision_changes_nothing() {
    let (mut p, _, _) = Programmed::full(base(), &resolve, &[], &Snapshot::default());
    let mut d = delta(p.view(), |v| v.routes.clear());
    d.from = 0;
    let before = p.desired().clone();
    assert!(p.apply(&d, &resolve).is_err());
    assert_eq!(p.desired(), &before);
    assert_eq!(p.view().revision, 1);
}

#[test]
fn an_interface_that_appears_later_is_picked_up_by_reprobe() {
    let mut v = base();
    v.subnets
        .push(subnet("subnet-z", 1, "10.1.5.0/24", "late0", 0));
    v.sort();
    let (mut p, plan, warnings) = Programmed::full(v, &resolve, &[], &Snapshot::default());
    assert_eq!(warnings.len(), 1);
    assert_eq!(plan.set_ifaces.len(), 1);
    assert!(p.reprobe(&resolve).is_empty());
    let late = |name: &str| match name {
        "late0" => resolve("p3"),
        other => resolve(other),
    };
    let step = p.reprobe(&late);
    assert_eq!(
        step.plan.set_ifaces,
        vec![((9, 0), p.desired().ifaces[&(9, 0)])]
    );
    assert_eq!(step.plan.set_subnets.len(), 1);
    assert!(step.ports);
}

#[test]
fn kernel_neighbours_inside_a_subnet_are_written_once() {
    let (mut p, _, _) = Programmed::full(base(), &resolve, &[], &Snapshot::default());
    let a: Ipv4Addr = "10.1.1.7".parse().unwrap();
    let outside: Ipv4Addr = "192.168.1.1".parse().unwrap();
    let k1 = [(7, a, [1; 6]), (7, outside, [2; 6])];
    let step = p.kernel(&k1);
    assert_eq!(step.plan.set_neighbours, vec![((7, a), [1; 6])]);
    assert!(step.tunnel);
    assert!(p.kernel(&k1).is_empty(), "nothing new");
    // Forgotten by the kernel: kept while the subnet exists.
    assert!(p.kernel(&[]).is_empty());
    assert_eq!(p.desired().neighbours[&(7, a)], [1; 6]);
}

fn random_view(rng: &mut StdRng, revision: u64) -> RegionView {
    let mut v = empty(revision);
    let names = ["p1", "p2", "p3", "gone0"];
    for dp_id in 1..=3u32 {
        if rng.random_bool(0.8) {
            let cidrs = (0..rng.random_range(1..3))
                .map(|_| Ipv4Net::new(Ipv4Addr::new(10, rng.random_range(0..4), 0, 0), 16).unwrap())
                .collect();
            v.vpcs.push(VpcView {
                vpc_id: format!("vpc-{dp_id}"),
                dp_id,
                cidrs,
                default_group_dp_id: 0,
            });
        }
    }
    for i in 0..rng.random_range(0..6) {
        let vpc = rng.random_range(1..=3u32);
        let cidr = format!("10.{}.{}.0/24", vpc, rng.random_range(0..4));
        let iface = names[rng.random_range(0..names.len())];
        let vlan = rng.random_range(0..2u16);
        v.subnets
            .push(subnet(&format!("subnet-{i}"), vpc, &cidr, iface, vlan));
    }
    for _ in 0..rng.random_range(0..8) {
        let table = 10 * rng.random_range(1..=3u32);
        // Untruncated destinations too: they collide once truncated.
        let dst = format!(
            "10.{}.{}.0/16",
            rng.random_range(0..5),
            rng.random_range(0..2)
        );
        let target = match rng.random_range(0..3) {
            0 => blackhole(),
            1 => view::RouteTarget::LocalPeer {
                pcx_id: "pcx-l".into(),
                pcx_dp_id: 5,
                peer_vpc_dp_id: rng.random_range(1..=3),
            },
            _ => view::RouteTarget::RemotePeer {
                pcx_id: "pcx-r".into(),
                pcx_dp_id: rng.random_range(6..8),
                remote_region: "eu-west-1".into(),
                peer_vpc_cidrs: vec![net("10.20.0.0/16")],
            },
        };
        v.routes.push(route(table, &dst, target));
    }
    v.routes.dedup_by_key(|r| r.key());
    if rng.random_bool(0.5) {
        v.peerings.push(PeeringView {
            pcx_id: "pcx-r".into(),
            dp_id: 6,
            local_vpc_dp_id: 1,
            remote_region: "eu-west-1".into(),
            remote_vpc_cidrs: vec![net("10.20.0.0/16")],
            local_vpc_cidrs: vec![net("10.1.0.0/16")],
            remote_allows_dns: false,
        });
    }
    v.sort();
    // Keys are unique in a view.
    v.routes.dedup_by_key(|r| r.key());
    v.subnets.dedup_by_key(|s| s.key());
    v
}

fn random_kernel(rng: &mut StdRng) -> Vec<Neighbour> {
    (0..rng.random_range(0..5))
        .map(|_| {
            let ifindex = [4, 7, 9][rng.random_range(0..3)];
            let ip = Ipv4Addr::new(10, rng.random_range(1..4), rng.random_range(0..4), 9);
            (ifindex, ip, [2, 0, 0, 0, rng.random_range(0..3), 9])
        })
        .collect()
}

/// For random sequences of views (as deltas) and kernel neighbours, the
/// incremental plans applied to fake maps give what a full reconciliation
/// wants, and a full plan afterwards finds nothing to do.
#[test]
fn incremental_plans_match_full_reconciliation() {
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let first = random_view(&mut rng, 1);
        let kernel = random_kernel(&mut rng);
        let (mut p, plan, _) = Programmed::full(first, &resolve, &kernel, &Snapshot::default());
        let mut maps = Desired::default();
        apply_to(&mut maps, &plan);
        let mut kernel = kernel;
        for step_no in 0..12u64 {
            let step = if rng.random_bool(0.25) {
                kernel = random_kernel(&mut rng);
                p.kernel(&kernel)
            } else {
                let next = random_view(&mut rng, p.view().revision + 1);
                let delta = p.view().diff(&next);
                let step = p.apply(&delta, &resolve).unwrap();
                assert_eq!(p.view(), &next, "seed {seed} step {step_no}");
                step
            };
            apply_to(&mut maps, &step.plan);
            let want = full_desired(p.view(), &kernel, &maps);
            let ctx = format!("seed {seed} step {step_no}");
            assert_eq!(maps, held(&want), "{ctx}");
            assert_eq!(p.desired(), &want, "{ctx}");
            let again = reconcile::plan(&want, &snapshot_of(&maps));
            assert!(again.is_empty(), "{ctx}: {again:?}");
        }
    }
}

/// A delta that changes nothing writes nothing.
#[test]
fn an_empty_delta_is_an_empty_step() {
    let (mut p, _, _) = Programmed::full(base(), &resolve, &[], &Snapshot::default());
    let d = delta(p.view(), |_| {});
    assert!(d.is_empty());
    assert!(p.apply(&d, &resolve).unwrap().is_empty());
    assert_eq!(p.view().revision, 2);
}

/// In a region of 20,000 routes and 200 subnets, one new route is one
/// write; the test prints what the incremental step and a full recompute
/// (desired state and plan, in memory, no map dump) cost.
#[test]
fn one_route_in_a_large_region_is_one_write() {
    let mut v = empty(1);
    for i in 0..200u32 {
        let cidr = format!("10.{}.{}.0/24", 1 + i / 250, i % 250);
        let iface = ["p1", "p2", "p3"][i as usize % 3];
        v.subnets.push(subnet(
            &format!("subnet-{i:04}"),
            1 + i / 250,
            &cidr,
            iface,
            (i / 3) as u16,
        ));
    }
    for i in 0..20_000u32 {
        let dst = Ipv4Net::new(Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap();
        v.routes.push(RouteView {
            route_table_dp_id: 10 + i % 50,
            destination: dst,
            target: blackhole(),
        });
    }
    v.sort();
    let (mut p, plan, _) = Programmed::full(v, &resolve, &[], &Snapshot::default());
    let mut maps = Desired::default();
    apply_to(&mut maps, &plan);
    let d = delta(p.view(), |v| {
        v.routes.push(route(12, "12.0.0.0/24", blackhole()))
    });
    let t = std::time::Instant::now();
    let step = p.apply(&d, &resolve).unwrap();
    let incremental = t.elapsed();
    assert_eq!(step.plan.len(), 1);
    apply_to(&mut maps, &step.plan);
    let t = std::time::Instant::now();
    let want = full_desired(p.view(), &[], &maps);
    let full = reconcile::plan(&want, &snapshot_of(&maps));
    let recompute = t.elapsed();
    assert!(full.is_empty());
    println!("one route in 20,000: incremental step {incremental:?}, full recompute {recompute:?}");
}
