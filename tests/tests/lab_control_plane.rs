//! The control plane driving the dataplane, end to end: two accounts create
//! VPCs in one region with `peerctl` only; a peering is requested, accepted
//! and routed; the region's agent (a separate process) programs the gateway.

use std::time::Duration;

use peering_tests::{
    control_lab::{eventually, field, ControlPlane},
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

    let vpc_a = field(
        &cp.peerctl(&a, REGION, &["create-vpc", "--cidr-block", "10.1.0.0/16"]),
        &["Vpc", "VpcId"],
    );
    let vpc_b = field(
        &cp.peerctl(&b, REGION, &["create-vpc", "--cidr-block", "10.2.0.0/16"]),
        &["Vpc", "VpcId"],
    );
    for (who, vpc, cidr, port) in [
        (&a, &vpc_a, "10.1.0.0/24", "vpc-a"),
        (&b, &vpc_b, "10.2.0.0/24", "vpc-b"),
    ] {
        cp.peerctl(
            who,
            REGION,
            &[
                "create-subnet",
                "--vpc-id",
                vpc,
                "--cidr-block",
                cidr,
                "--interface",
                port,
            ],
        );
    }
    lab.hosts_announce();
    let main_rtb = |who, vpc: &str| {
        let f = format!("Name=vpc-id,Values={vpc}");
        let v = cp.peerctl(who, REGION, &["describe-route-tables", "--filters", &f]);
        field(&v, &["RouteTables", "0", "RouteTableId"])
    };
    let (rtb_a, rtb_b) = (main_rtb(&a, &vpc_a), main_rtb(&b, &vpc_b));

    let req = cp.peerctl(
        &a,
        REGION,
        &[
            "create-vpc-peering-connection",
            "--vpc-id",
            &vpc_a,
            "--peer-vpc-id",
            &vpc_b,
            "--peer-owner-id",
            OWNER_B,
            "--peer-region",
            REGION,
        ],
    );
    let pcx = field(&req, &["VpcPeeringConnection", "VpcPeeringConnectionId"]);
    // Pending: a route may already point at it, but it is a blackhole.
    cp.peerctl(
        &a,
        REGION,
        &[
            "create-route",
            "--route-table-id",
            &rtb_a,
            "--destination-cidr-block",
            "10.2.0.0/16",
            "--vpc-peering-connection-id",
            &pcx,
        ],
    );
    let blackholed = || {
        stats
            .try_ok(&["show"])
            .is_some_and(|s| s.contains("blackhole"))
    };
    assert!(eventually(Duration::from_secs(3), blackholed));
    assert!(!crosses(&lab), "nothing crosses before accept");

    cp.peerctl(
        &b,
        REGION,
        &[
            "accept-vpc-peering-connection",
            "--vpc-peering-connection-id",
            &pcx,
        ],
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!crosses(&lab), "B has no route back yet");

    cp.peerctl(
        &b,
        REGION,
        &[
            "create-route",
            "--route-table-id",
            &rtb_b,
            "--destination-cidr-block",
            "10.1.0.0/16",
            "--vpc-peering-connection-id",
            &pcx,
        ],
    );
    // The agent polls every 200 ms: the change is live within a second.
    assert!(
        eventually(Duration::from_secs(2), || crosses(&lab)),
        "traffic crosses after accept and routes"
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

    cp.peerctl(
        &a,
        REGION,
        &[
            "delete-vpc-peering-connection",
            "--vpc-peering-connection-id",
            &pcx,
        ],
    );
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
