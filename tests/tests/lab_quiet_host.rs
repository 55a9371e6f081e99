//! A host that has sent nothing is reachable: the agent puts the VPC
//! routers' addresses on the gateway's ports itself, and a packet for a
//! host without a MAC makes the gateway resolve it (the packet is dropped
//! and counted). Nothing in this test configures an address on the gateway
//! or lets a host speak first.

use std::time::Duration;

use peering_tests::{
    control_lab::{eventually, ControlPlane},
    inter_region::InterRegionLab,
    lab::{Agent, IntraRegionLab},
};

const REGION: &str = "us-east-1";
const OWNER_A: &str = "111111111111";
const OWNER_B: &str = "222222222222";

/// One lab at a time: two labs and their agents on two CPUs make the
/// first-packet timing a test of the scheduler.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when `dev` of the gateway holds `addr` (e.g. `10.1.0.1/24`).
fn has_addr(lab: &IntraRegionLab, dev: &str, addr: &str) -> bool {
    lab.gw
        .exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", dev])
        .contains(&format!("inet {addr} "))
}

#[test]
fn a_host_that_sent_nothing_is_reached_and_router_addresses_follow_subnets() {
    let _serial = one_lab();
    let lab = IntraRegionLab::network(false);
    let cp = ControlPlane::start(false);
    let a = cp.account(OWNER_A);
    let b = cp.account(OWNER_B);
    let _agent = cp.agent(&lab.gw, &lab.pins, REGION);
    let stats = Agent {
        ns: &lab.gw,
        pins: &lab.pins,
        verbose: false,
    };
    assert!(!has_addr(&lab, "vpc-a", "10.1.0.1/24"));

    let vpc_a = cp.create_vpc(&a, REGION, "10.1.0.0/16");
    let vpc_b = cp.create_vpc(&b, REGION, "10.2.0.0/16");
    let sub_a = cp.create_subnet(&a, REGION, &vpc_a, "10.1.0.0/24", "vpc-a");
    cp.create_subnet(&b, REGION, &vpc_b, "10.2.0.0/24", "vpc-b");
    // The routers' addresses (each subnet's first host) appear on the ports.
    let routers =
        || has_addr(&lab, "vpc-a", "10.1.0.1/24") && has_addr(&lab, "vpc-b", "10.2.0.1/24");
    assert!(
        eventually(Duration::from_secs(5), routers),
        "router addresses configured by the agent"
    );

    let rtb_a = cp.main_route_table(&a, REGION, &vpc_a);
    let rtb_b = cp.main_route_table(&b, REGION, &vpc_b);
    let pcx = cp.request_peering(&a, REGION, &vpc_a, &vpc_b, OWNER_B, REGION);
    cp.peering_action(&b, REGION, "accept-vpc-peering-connection", &pcx);
    cp.create_route(&a, REGION, &rtb_a, "10.2.0.0/16", &pcx);
    cp.create_route(&b, REGION, &rtb_b, "10.1.0.0/16", &pcx);
    cp.allow_from(&a, REGION, &vpc_a, "10.2.0.0/16");
    cp.allow_from(&b, REGION, &vpc_b, "10.1.0.0/16");
    let programmed = || {
        stats
            .try_ok(&["show"])
            .is_some_and(|s| s.lines().filter(|l| l.contains("-> local-peer")).count() == 2)
    };
    assert!(eventually(Duration::from_secs(5), programmed));

    // B has sent nothing: the gateway knows no MAC for it.
    let neigh = lab
        .gw
        .exec_ok(&["ip", "neigh", "show", "10.2.0.10", "dev", "vpc-b"]);
    assert!(neigh.trim().is_empty(), "B is unknown: {neigh}");
    assert!(!stats.ok(&["show"]).contains("10.2.0.10"));
    assert_eq!(stats.stat("drop_no_neighbour"), 0);

    // A pings B: the first packets may be dropped while the gateway
    // resolves B, then it answers.
    let start = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || lab.a.ping("10.2.0.10", 1)),
        "B answers within a few seconds"
    );
    let dropped = stats.stat("drop_no_neighbour");
    eprintln!(
        "quiet host reached after {:?}, {dropped} packet(s) dropped",
        start.elapsed()
    );
    assert!(dropped >= 1, "the first packet was dropped and counted");
    assert_eq!(stats.stat("drop_no_neighbour_ring_full"), 0);
    assert!(
        stats.ok(&["show"]).contains("10.2.0.10"),
        "B's MAC installed"
    );
    assert!(lab.b.ping("10.1.0.10", 2), "and back");
    assert!(stats.stat("fwd_local") >= 4);

    // A subnet that goes takes its router address with it.
    cp.peerctl(&a, REGION, &["delete-subnet", "--subnet-id", &sub_a]);
    assert!(
        eventually(Duration::from_secs(5), || !has_addr(
            &lab,
            "vpc-a",
            "10.1.0.1/24"
        )),
        "router address removed with its subnet"
    );
    assert!(has_addr(&lab, "vpc-b", "10.2.0.1/24"));
}

/// Across regions: C has sent nothing when A first pings it. The
/// receiving gateway's tunnel finds no MAC for C, counts the drop, and has
/// its agent resolve C; the ping then crosses.
#[test]
fn a_quiet_host_in_another_region_is_reached() {
    let _serial = one_lab();
    let lab = InterRegionLab::new(false, &[]);
    let v = lab.quiet_vpcs();
    lab.wait_for_keys();
    lab.peer_a_with_c(&v);
    let gw2 = lab.gateway(2);
    let neigh = gw2
        .ns
        .exec_ok(&["ip", "neigh", "show", "10.3.0.10", "dev", "vpc-c"]);
    assert!(neigh.trim().is_empty(), "C is unknown: {neigh}");
    let start = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C, which had sent nothing"
    );
    let dropped = gw2.tunnel_stats().drop_count("no_neighbour");
    eprintln!(
        "quiet host in another region reached after {:?}, {dropped} dropped",
        start.elapsed()
    );
    assert!(dropped >= 1, "the first packet was dropped and counted");
    assert_eq!(gw2.tunnel_stats().drop_count("resolve_queue_full"), 0);
}
