//! The control plane driving the dataplane, end to end: two accounts create
//! VPCs in one region with `peerctl` only; a peering is requested, accepted
//! and routed; the region's agent (a separate process) programs the gateway.

use std::time::Duration;

use peering_tests::{
    control_lab::{eventually, ControlPlane},
    lab::{Agent, IntraRegionLab},
};

const REGION: &str = "us-east-1";
const OWNER_A: &str = "111111111111";
const OWNER_B: &str = "222222222222";

fn crosses(lab: &IntraRegionLab) -> bool {
    lab.a.ping("10.2.0.10", 1) && lab.b.ping("10.1.0.10", 1)
}

#[test]
fn peering_lifecycle_drives_forwarding() {
    let lab = IntraRegionLab::network(false);
    let cp = ControlPlane::start(false);
    let a = cp.account(OWNER_A);
    let b = cp.account(OWNER_B);
    let agent = cp.agent(&lab.gw, &lab.pins, REGION);
    let stats = Agent {
        ns: &lab.gw,
        pins: &lab.pins,
        verbose: false,
    };

    let vpc_a = cp.create_vpc(&a, REGION, "10.1.0.0/16");
    let vpc_b = cp.create_vpc(&b, REGION, "10.2.0.0/16");
    cp.create_subnet(&a, REGION, &vpc_a, "10.1.0.0/24", "vpc-a");
    cp.create_subnet(&b, REGION, &vpc_b, "10.2.0.0/24", "vpc-b");
    lab.hosts_announce();
    let rtb_a = cp.main_route_table(&a, REGION, &vpc_a);
    let rtb_b = cp.main_route_table(&b, REGION, &vpc_b);

    let pcx = cp.request_peering(&a, REGION, &vpc_a, &vpc_b, OWNER_B, REGION);
    // Pending: a route may already point at it, but it is a blackhole.
    cp.create_route(&a, REGION, &rtb_a, "10.2.0.0/16", &pcx);
    let blackholed = || {
        stats
            .try_ok(&["show"])
            .is_some_and(|s| s.contains("blackhole"))
    };
    assert!(eventually(Duration::from_secs(3), blackholed));
    assert!(!crosses(&lab), "nothing crosses before accept");

    cp.peering_action(&b, REGION, "accept-vpc-peering-connection", &pcx);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!crosses(&lab), "B has no route back yet");

    cp.create_route(&b, REGION, &rtb_b, "10.1.0.0/16", &pcx);
    // The agent polls every 200 ms: the route is in the dataplane within a
    // second of the API call.
    let programmed = || {
        stats
            .try_ok(&["show"])
            .is_some_and(|s| s.lines().filter(|l| l.contains("-> local-peer")).count() == 2)
    };
    assert!(
        eventually(Duration::from_secs(1), programmed),
        "programmed within 1 s"
    );
    // Routed both ways, but a default security group admits only its own
    // members: nothing crosses until each owner lets the peer's block in.
    assert!(!crosses(&lab), "no rule admits the peer yet");
    assert!(stats.stat("drop_sg_ingress") > 0);
    cp.allow_from(&a, REGION, &vpc_a, "10.2.0.0/16");
    cp.allow_from(&b, REGION, &vpc_b, "10.1.0.0/16");
    assert!(
        eventually(Duration::from_secs(2), || crosses(&lab)),
        "traffic crosses after accept, routes and rules"
    );
    assert!(stats.stat("fwd_local") >= 2);

    // Forwarding lives in the pinned dataplane, not in the agent: stop it,
    // traffic still crosses; a new agent reconciles from the pinned maps and
    // changes nothing.
    let before = stats.ok(&["show"]);
    drop(agent);
    assert!(crosses(&lab), "still crosses with no agent running");
    let _agent = cp.agent(&lab.gw, &lab.pins, REGION);
    std::thread::sleep(Duration::from_millis(800));
    assert!(crosses(&lab), "crosses after the agent restarted");
    assert_eq!(
        stats.ok(&["show"]),
        before,
        "the restarted agent changed nothing"
    );

    cp.peering_action(&a, REGION, "delete-vpc-peering-connection", &pcx);
    let routes = cp.peerctl(
        &a,
        REGION,
        &["describe-route-tables", "--route-table-ids", &rtb_a],
    );
    assert!(
        routes.to_string().contains("blackhole"),
        "route state: {routes}"
    );
    assert!(
        eventually(Duration::from_secs(3), || !lab.a.ping("10.2.0.10", 1)),
        "traffic stops"
    );
    assert!(stats.stat("drop_blackhole") >= 1);
}
