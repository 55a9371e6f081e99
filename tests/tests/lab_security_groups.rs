//! Security groups on the dataplane, end to end: two accounts' VPCs in one
//! region, peered and routed with `peerctl`, the region's agent programming
//! the gateway. A rule naming the peer VPC's group admits that group's
//! members and nobody else of the peer; what one side starts comes back as
//! return traffic while the other side cannot start anything; deleting the
//! peering leaves the rule stale.

use std::time::Duration;

use peering_tests::{
    control_lab::{eventually, field, ControlPlane},
    lab::{iperf3, Agent, IntraRegionLab},
};

const REGION: &str = "us-east-1";
const OWNER_A: &str = "111111111111";
const OWNER_B: &str = "222222222222";

#[test]
fn a_peer_group_rule_admits_its_members_and_return_traffic_only() {
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
    // A second host address in VPC A, with no interface record: a member
    // of A's default group only.
    lab.a
        .exec_ok(&["ip", "addr", "add", "10.1.0.11/24", "dev", "eth0"]);

    let vpc_a = cp.create_vpc(&a, REGION, "10.1.0.0/16");
    let vpc_b = cp.create_vpc(&b, REGION, "10.2.0.0/16");
    let sub_a = cp.create_subnet(&a, REGION, &vpc_a, "10.1.0.0/24", "vpc-a");
    cp.create_subnet(&b, REGION, &vpc_b, "10.2.0.0/24", "vpc-b");
    lab.hosts_announce();
    let rtb_a = cp.main_route_table(&a, REGION, &vpc_a);
    let rtb_b = cp.main_route_table(&b, REGION, &vpc_b);
    let pcx = cp.request_peering(&a, REGION, &vpc_a, &vpc_b, OWNER_B, REGION);
    cp.peering_action(&b, REGION, "accept-vpc-peering-connection", &pcx);
    cp.create_route(&a, REGION, &rtb_a, "10.2.0.0/16", &pcx);
    cp.create_route(&b, REGION, &rtb_b, "10.1.0.0/16", &pcx);

    // A's web tier: a group of its own, held by the interface of 10.1.0.10.
    let web = field(
        &cp.peerctl(
            &a,
            REGION,
            &[
                "create-security-group",
                "--group-name",
                "web",
                "--description",
                "web tier",
                "--vpc-id",
                &vpc_a,
            ],
        ),
        &["GroupId"],
    );
    cp.peerctl(
        &a,
        REGION,
        &[
            "create-network-interface",
            "--subnet-id",
            &sub_a,
            "--private-ip-address",
            "10.1.0.10",
            "--groups",
            &web,
        ],
    );
    // B admits A's web tier by group, across the (same-region) peering.
    let b_default = cp.default_group(&b, REGION, &vpc_b);
    cp.peerctl(
        &b,
        REGION,
        &[
            "authorize-security-group-ingress",
            "--group-id",
            &b_default,
            "--protocol",
            "all",
            "--source-group",
            &web,
            "--group-owner",
            OWNER_A,
        ],
    );

    assert!(
        eventually(Duration::from_secs(5), || lab.a.ping("10.2.0.10", 1)),
        "a member of the named group reaches B"
    );
    let refused_before = stats.stat("drop_sg_ingress");
    assert!(
        !lab.a.ping_from(Some("10.1.0.11"), "10.2.0.10", 2),
        "an address of A outside the group does not"
    );
    assert!(stats.stat("drop_sg_ingress") > refused_before);

    // Stateful: A's web tier starts TCP to B and gets every reply, while
    // nothing B starts gets into A (A's groups admit nothing from B).
    let up = iperf3(&lab.a, &lab.b, "10.2.0.10", &["-t", "1"]).unwrap();
    assert!(up.get("error").is_none(), "A → B TCP: {up}");
    let sent = up["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(sent > 0, "A → B carried data: {up}");
    assert!(!lab.b.ping("10.1.0.10", 2), "B cannot start a flow into A");
    let down = iperf3(
        &lab.b,
        &lab.a,
        "10.1.0.10",
        &["-t", "1", "--connect-timeout", "1500"],
    )
    .unwrap();
    assert!(
        down.get("error").is_some(),
        "B → A TCP must not connect: {down}"
    );

    // The peering goes: B's rule stays, stale.
    cp.peering_action(&a, REGION, "delete-vpc-peering-connection", &pcx);
    let stale = cp.peerctl(
        &b,
        REGION,
        &["describe-stale-security-groups", "--vpc-id", &vpc_b],
    );
    assert!(stale.to_string().contains(&web), "stale: {stale}");
    assert!(eventually(Duration::from_secs(3), || !lab
        .a
        .ping("10.2.0.10", 1)));
}
