//! Route tables: route edits, route state as peerings change, associations.

use super::support::*;
use crate::control::clock::DAY;
use crate::control::route_table::RouteState;
use crate::control::state::State;

struct Setup {
    w: World,
    a: String,
    rtb: String,
    pcx: String,
}

/// A (us-east-1, 10.0/16) requests peering with B (us-west-2, 10.1/16).
fn setup() -> Setup {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    let pcx = w
        .request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let rtb = w.state.vpc(&a).unwrap().main_route_table_id.clone();
    Setup { w, a, rtb, pcx }
}

fn state_of(w: &World, rtb: &str, dest: &str) -> RouteState {
    let d = w
        .state
        .describe_route_tables(&w.call(A, E1), &[rtb.to_owned()])
        .unwrap();
    d[0].routes
        .iter()
        .find(|r| r.destination_cidr_block == dest)
        .unwrap()
        .state
}

#[test]
fn route_state_follows_the_peering() {
    let Setup {
        mut w, rtb, pcx, ..
    } = setup();
    let a = w.call(A, E1);
    w.state.create_route(&a, &rtb, "10.1.0.0/16", &pcx).unwrap();
    assert_eq!(state_of(&w, &rtb, "10.1.0.0/16"), RouteState::Blackhole);
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    assert_eq!(state_of(&w, &rtb, "10.1.0.0/16"), RouteState::Active);
    w.state
        .delete_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    assert_eq!(state_of(&w, &rtb, "10.1.0.0/16"), RouteState::Blackhole);
    // The route stays until deleted, even after the peering is purged.
    w.clock.advance(3 * DAY);
    w.state.purge_peerings(w.now());
    assert_eq!(state_of(&w, &rtb, "10.1.0.0/16"), RouteState::Blackhole);
    let a = w.call(A, E1);
    w.state.delete_route(&a, &rtb, "10.1.0.0/16").unwrap();
    assert_eq!(
        refused(&mut w, |s, _| s.delete_route(&a, &rtb, "10.1.0.0/16")),
        "InvalidRoute.NotFound"
    );
}

#[test]
fn expiry_and_rejection_blackhole_routes() {
    let Setup {
        mut w, rtb, pcx, ..
    } = setup();
    let a = w.call(A, E1);
    w.state.create_route(&a, &rtb, "10.1.0.0/16", &pcx).unwrap();
    w.clock.advance(7 * DAY);
    assert_eq!(state_of(&w, &rtb, "10.1.0.0/16"), RouteState::Blackhole);
    let a = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.create_route(&a, &rtb, "10.1.4.0/24", &pcx)),
        "InvalidVpcPeeringConnectionID.NotFound"
    );
}

#[test]
fn route_edit_errors() {
    let Setup {
        mut w,
        a: vpc,
        rtb,
        pcx,
    } = setup();
    let a = w.call(A, E1);
    let stranger = w.vpc(C, E1, &["10.7.0.0/16"]);
    let other_pcx = w
        .request(C, E1, &stranger, &vpc, A, E1)
        .unwrap()
        .vpc_peering_connection_id;
    let unrelated = {
        let x = w.vpc(C, E1, &["10.8.0.0/16"]);
        w.request(C, E1, &x, &stranger, C, E1)
            .unwrap()
            .vpc_peering_connection_id
    };
    w.state.create_route(&a, &rtb, "10.1.0.0/16", &pcx).unwrap();
    let cases: [(&str, &str, &str); 9] = [
        ("10.1.0.0/16", pcx.as_str(), "RouteAlreadyExists"),
        ("10.0.0.0/16", pcx.as_str(), "RouteAlreadyExists"), // local
        ("10.0.1.0/24", pcx.as_str(), "InvalidParameterValue"), // inside local
        ("10.1.0.1/16", pcx.as_str(), "InvalidParameterValue"),
        ("nonsense", pcx.as_str(), "InvalidParameterValue"),
        (
            "10.2.0.0/16",
            "pcx-1",
            "InvalidVpcPeeringConnectionId.Malformed",
        ),
        (
            "10.2.0.0/16",
            "pcx-0000000000000beef",
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            "10.2.0.0/16",
            unrelated.as_str(),
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        ("10.2.0.0/16", pcx.as_str(), "OK"),
    ];
    for (dest, target, code) in cases {
        if code == "OK" {
            w.state.create_route(&a, &rtb, dest, target).unwrap();
        } else {
            assert_eq!(
                refused(&mut w, |s, _| s.create_route(&a, &rtb, dest, target)),
                code,
                "{dest}"
            );
        }
    }
    // A route to a peering requested *to* this VPC is fine too.
    w.state
        .create_route(&a, &rtb, "10.7.0.0/16", &other_pcx)
        .unwrap();
    // Replace needs an existing route; the local route is not editable.
    assert_eq!(
        refused(&mut w, |s, _| s.replace_route(
            &a,
            &rtb,
            "10.3.0.0/16",
            &pcx
        )),
        "InvalidRoute.NotFound"
    );
    for op in ["replace", "delete"] {
        let code = refused(&mut w, |s: &mut State, _| match op {
            "replace" => s.replace_route(&a, &rtb, "10.0.0.0/16", &pcx),
            _ => s.delete_route(&a, &rtb, "10.0.0.0/16"),
        });
        assert_eq!(code, "InvalidParameterValue", "{op} local");
    }
    w.state
        .replace_route(&a, &rtb, "10.7.0.0/16", &pcx)
        .unwrap();
    assert_eq!(w.state.route_table(&rtb).unwrap().routes.len(), 3);
    // Other accounts and regions cannot see the table.
    for call in [w.call(B, E1), w.call(A, W2)] {
        assert_eq!(
            refused(&mut w, |s, _| s.create_route(
                &call,
                &rtb,
                "10.9.0.0/16",
                &pcx
            )),
            "InvalidRouteTableID.NotFound"
        );
    }
    assert_eq!(
        refused(&mut w, |s, _| s.delete_route(&a, "rtb-nope", "10.9.0.0/16")),
        "InvalidRouteTableId.Malformed"
    );
}

#[test]
fn new_block_cannot_swallow_a_route() {
    let Setup {
        mut w,
        a: vpc,
        rtb,
        pcx,
    } = setup();
    let a = w.call(A, E1);
    w.state.create_route(&a, &rtb, "10.5.1.0/24", &pcx).unwrap();
    assert_eq!(
        refused(&mut w, |s, _| s.associate_vpc_cidr_block(
            &a,
            &vpc,
            "10.5.0.0/16"
        )),
        "CidrConflict"
    );
}

#[test]
fn route_limit() {
    let mut w = World::with_limits(crate::control::config::Limits {
        routes_per_route_table: 2,
        ..Default::default()
    });
    let (a_vpc, b) = two_vpcs(&mut w, E1);
    let pcx = w
        .request(A, E1, &a_vpc, &b, B, E1)
        .unwrap()
        .vpc_peering_connection_id;
    let rtb = w.state.vpc(&a_vpc).unwrap().main_route_table_id.clone();
    let a = w.call(A, E1);
    w.state.create_route(&a, &rtb, "10.1.0.0/17", &pcx).unwrap();
    w.state
        .create_route(&a, &rtb, "10.1.128.0/17", &pcx)
        .unwrap();
    assert_eq!(
        refused(&mut w, |s, _| s.create_route(&a, &rtb, "10.1.0.0/16", &pcx)),
        "RouteLimitExceeded"
    );
}

#[test]
fn associations() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16"]);
    let other = w.vpc(A, E1, &["10.1.0.0/16"]);
    let sn = w.subnet(A, E1, &v, "10.0.0.0/24", "eth0");
    let a = w.call(A, E1);
    let rtb = w
        .state
        .create_route_table(&a, &mut w.ids, &v)
        .unwrap()
        .route_table_id;
    let foreign = w
        .state
        .create_route_table(&a, &mut w.ids, &other)
        .unwrap()
        .route_table_id;
    let main = w.state.vpc(&v).unwrap().main_route_table_id.clone();
    let subnet = |w: &World| w.state.subnet(&sn).unwrap().clone();
    assert_eq!(
        w.state.effective_route_table(&subnet(&w)),
        Some(main.as_str())
    );
    assert_eq!(
        refused(&mut w, |s, ids| s
            .associate_route_table(&a, ids, &foreign, &sn)),
        "InvalidParameterValue"
    );
    let assoc = w
        .state
        .associate_route_table(&a, &mut w.ids, &rtb, &sn)
        .unwrap();
    assert_eq!(
        w.state.effective_route_table(&subnet(&w)),
        Some(rtb.as_str())
    );
    assert_eq!(
        refused(&mut w, |s, ids| s.associate_route_table(&a, ids, &rtb, &sn)),
        "Resource.AlreadyAssociated"
    );
    assert_eq!(
        refused(&mut w, |s, _| s.delete_route_table(&a, &rtb)),
        "DependencyViolation"
    );
    assert_eq!(
        refused(&mut w, |s, _| s.delete_route_table(&a, &main)),
        "DependencyViolation"
    );
    let d = w
        .state
        .describe_route_tables(&a, std::slice::from_ref(&rtb))
        .unwrap();
    let json = serde_json::to_value(&d[0]).unwrap();
    assert_eq!(json["Associations"][0]["SubnetId"], sn.as_str());
    assert_eq!(json["Associations"][0]["Main"], false);
    assert_eq!(json["Routes"][0]["GatewayId"], "local");
    assert_eq!(json["Routes"][0]["State"], "active");
    let b = w.call(B, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.disassociate_route_table(&b, &assoc)),
        "InvalidAssociationID.NotFound"
    );
    w.state.disassociate_route_table(&a, &assoc).unwrap();
    assert_eq!(
        w.state.effective_route_table(&subnet(&w)),
        Some(main.as_str())
    );
    assert_eq!(
        refused(&mut w, |s, _| s.disassociate_route_table(&a, &assoc)),
        "InvalidAssociationID.NotFound"
    );
    w.state.delete_route_table(&a, &rtb).unwrap();
    let main_desc = w.state.describe_route_tables(&a, &[main]).unwrap();
    assert!(main_desc[0].associations[0].main);
}

#[test]
fn routes_survive_serialization() {
    let Setup {
        mut w, rtb, pcx, ..
    } = setup();
    let a = w.call(A, E1);
    w.state.create_route(&a, &rtb, "10.1.0.0/16", &pcx).unwrap();
    w.state
        .create_route(&a, &rtb, "192.168.0.1/32", &pcx)
        .unwrap();
    let json = serde_json::to_string(&w.state).unwrap();
    let back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, w.state);
}
