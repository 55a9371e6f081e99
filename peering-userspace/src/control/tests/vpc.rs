//! VPCs, CIDR blocks and subnets.

use super::support::*;
use crate::control::ids::{check_id, Kind, RngIds};
use crate::control::state::State;
use crate::control::subnet::CreateSubnet;

fn subnet_req(vpc: &str, cidr: &str, ifname: &str, vlan: Option<u16>) -> CreateSubnet {
    CreateSubnet {
        vpc_id: vpc.into(),
        cidr_block: cidr.into(),
        interface: ifname.into(),
        vlan,
    }
}

#[test]
fn create_vpc_assigns_ids_dp_ids_and_main_table() {
    let mut w = World::new();
    let v1 = w.vpc(A, E1, &["10.0.0.0/16"]);
    let v2 = w.vpc(A, E1, &["10.0.0.0/16"]); // overlapping VPCs are fine unpeered
    check_id(Kind::Vpc, &v1).unwrap();
    let (a, b) = (w.state.vpc(&v1).unwrap(), w.state.vpc(&v2).unwrap());
    assert_eq!(a.owner, acct(A));
    assert_eq!(a.region, E1);
    assert!(a.dp_id >= 1);
    let rtb = w.state.route_table(&a.main_route_table_id).unwrap();
    assert_eq!(rtb.vpc_id, v1);
    let mut dps = [a.dp_id, rtb.dp_id, b.dp_id];
    dps.sort();
    assert!(
        dps.windows(2).all(|p| p[0] < p[1]),
        "dp ids unique: {dps:?}"
    );
}

#[test]
fn create_vpc_bad_input() {
    let mut w = World::new();
    let call = w.call(A, E1);
    for (cidr, code) in [
        ("10.0.0.0/15", "InvalidVpc.Range"),
        ("10.0.0.0/29", "InvalidVpc.Range"),
        ("10.0.0.1/16", "InvalidParameterValue"),
        ("banana", "InvalidParameterValue"),
    ] {
        assert_eq!(
            refused(&mut w, |s, ids| s.create_vpc(&call, ids, cidr)),
            code
        );
    }
    let bad_region = w.call(A, "mars-1");
    assert_eq!(
        refused(&mut w, |s, ids| s.create_vpc(
            &bad_region,
            ids,
            "10.0.0.0/16"
        )),
        "InvalidParameterValue"
    );
}

#[test]
fn secondary_blocks() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16"]);
    let call = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.associate_vpc_cidr_block(
            &call,
            &v,
            "10.8.0.0/15"
        )),
        "InvalidVpc.Range"
    );
    assert_eq!(
        refused(&mut w, |s, _| s.associate_vpc_cidr_block(
            &call,
            &v,
            "10.0.5.0/24"
        )),
        "CidrConflict"
    );
    for c in ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"] {
        w.state.associate_vpc_cidr_block(&call, &v, c).unwrap();
    }
    assert_eq!(
        refused(&mut w, |s, _| s.associate_vpc_cidr_block(
            &call,
            &v,
            "10.5.0.0/16"
        )),
        "CidrLimitExceeded"
    );
    let d = w
        .state
        .describe_vpcs(&call, std::slice::from_ref(&v))
        .unwrap();
    assert_eq!(d[0].cidr_block, "10.0.0.0/16");
    assert_eq!(d[0].cidr_block_association_set.len(), 5);
}

#[test]
fn disassociate_blocks() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"]);
    w.subnet(A, E1, &v, "10.1.3.0/24", "eth0");
    let call = w.call(A, E1);
    let rm = |cidr: &'static str| {
        let (call, v) = (call.clone(), v.clone());
        move |s: &mut State, _: &mut _| s.disassociate_vpc_cidr_block(&call, &v, cidr)
    };
    assert_eq!(refused(&mut w, rm("10.0.0.0/16")), "OperationNotPermitted");
    assert_eq!(refused(&mut w, rm("10.1.0.0/16")), "DependencyViolation");
    assert_eq!(refused(&mut w, rm("10.9.0.0/16")), "InvalidParameterValue");
    w.state
        .disassociate_vpc_cidr_block(&call, &v, "10.2.0.0/16")
        .unwrap();
    assert_eq!(w.state.vpc(&v).unwrap().cidrs.len(), 2);
}

#[test]
fn delete_vpc_dependencies() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16"]);
    let main = w.state.vpc(&v).unwrap().main_route_table_id.clone();
    let sn = w.subnet(A, E1, &v, "10.0.1.0/24", "eth0");
    let call = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc(&call, &v)),
        "DependencyViolation"
    );
    w.state.delete_subnet(&call, &sn).unwrap();
    let rtb = w
        .state
        .create_route_table(&call, &mut w.ids, &v)
        .unwrap()
        .route_table_id;
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc(&call, &v)),
        "DependencyViolation"
    );
    w.state.delete_route_table(&call, &rtb).unwrap();
    w.state.delete_vpc(&call, &v).unwrap();
    assert!(w.state.vpc(&v).is_none());
    assert!(w.state.route_table(&main).is_none());
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc(&call, &v)),
        "InvalidVpcID.NotFound"
    );
}

#[test]
fn vpcs_are_private_to_owner_and_region() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16"]);
    for call in [w.call(B, E1), w.call(A, W2)] {
        assert_eq!(
            refused(&mut w, |s, _| s.delete_vpc(&call, &v)),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            refused(&mut w, |s, _| s.associate_vpc_cidr_block(
                &call,
                &v,
                "10.9.0.0/16"
            )),
            "InvalidVpcID.NotFound"
        );
        assert!(w.state.describe_vpcs(&call, &[]).unwrap().is_empty());
        assert_eq!(
            w.state
                .describe_vpcs(&call, std::slice::from_ref(&v))
                .unwrap_err()
                .code(),
            "InvalidVpcID.NotFound"
        );
    }
    let call = w.call(A, E1);
    assert_eq!(w.state.describe_vpcs(&call, &[]).unwrap().len(), 1);
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc(&call, "vpc-123")),
        "InvalidVpcID.Malformed"
    );
}

#[test]
fn subnet_rules() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16", "10.1.0.0/16"]);
    let other = w.vpc(A, E1, &["10.8.0.0/16"]);
    let call = w.call(A, E1);
    let try_subnet = |w: &mut World, cidr: &str, ifname: &str, vlan| {
        let req = subnet_req(&v, cidr, ifname, vlan);
        refused(w, |s, ids| s.create_subnet(&call, ids, &req))
    };
    assert_eq!(
        try_subnet(&mut w, "10.2.0.0/24", "eth0", None),
        "InvalidSubnet.Range"
    );
    assert_eq!(
        try_subnet(&mut w, "10.0.0.0/29", "eth0", None),
        "InvalidSubnet.Range"
    );
    assert_eq!(
        try_subnet(&mut w, "10.0.0.1/24", "eth0", None),
        "InvalidParameterValue"
    );
    assert_eq!(
        try_subnet(&mut w, "10.0.0.0/24", "", None),
        "InvalidParameterValue"
    );
    assert_eq!(
        try_subnet(&mut w, "10.0.0.0/24", "eth0", Some(0)),
        "InvalidParameterValue"
    );
    assert_eq!(
        try_subnet(&mut w, "10.0.0.0/24", "eth0", Some(4095)),
        "InvalidParameterValue"
    );
    let ok = subnet_req(&v, "10.1.0.0/24", "eth0", Some(10));
    let d = w.state.create_subnet(&call, &mut w.ids, &ok).unwrap();
    assert_eq!((d.gateway_ip.as_str(), d.vlan), ("10.1.0.1", Some(10)));
    assert_eq!(
        try_subnet(&mut w, "10.1.0.128/25", "eth1", None),
        "InvalidSubnet.Conflict"
    );
    assert_eq!(
        try_subnet(&mut w, "10.1.0.0/16", "eth1", None),
        "InvalidSubnet.Conflict"
    );
    // Same segment, same VPC: fine. Same segment, other VPC: refused.
    let same = subnet_req(&v, "10.0.4.0/24", "eth0", Some(10));
    w.state.create_subnet(&call, &mut w.ids, &same).unwrap();
    let clash = subnet_req(&other, "10.8.0.0/24", "eth0", Some(10));
    assert_eq!(
        refused(&mut w, |s, ids| s.create_subnet(&call, ids, &clash)),
        "InvalidParameterValue"
    );
    let untagged = subnet_req(&other, "10.8.0.0/24", "eth0", None);
    w.state.create_subnet(&call, &mut w.ids, &untagged).unwrap();
    assert_eq!(w.state.describe_subnets(&call, &[]).unwrap().len(), 3);
}

#[test]
fn subnets_are_private() {
    let mut w = World::new();
    let v = w.vpc(A, E1, &["10.0.0.0/16"]);
    let sn = w.subnet(A, E1, &v, "10.0.0.0/24", "eth0");
    let b = w.call(B, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.delete_subnet(&b, &sn)),
        "InvalidSubnetID.NotFound"
    );
    let req = subnet_req(&v, "10.0.1.0/24", "eth0", None);
    assert_eq!(
        refused(&mut w, |s, ids| s.create_subnet(&b, ids, &req)),
        "InvalidVpcID.NotFound"
    );
    assert!(w.state.describe_subnets(&b, &[]).unwrap().is_empty());
    assert_eq!(
        refused(&mut w, |s, _| s.delete_subnet(&b, "subnet-zz")),
        "InvalidSubnetID.Malformed"
    );
}

#[test]
fn model_is_deterministic_and_serializable() {
    let build = || {
        let mut w = World::new();
        w.ids = crate::control::ids::SequentialIds(0);
        let mut rng = RngIds::seeded(42);
        let call = w.call(A, E1);
        let v = w
            .state
            .create_vpc(&call, &mut rng, "10.0.0.0/16")
            .unwrap()
            .vpc_id;
        let req = subnet_req(&v, "10.0.0.0/24", "eth0", None);
        w.state.create_subnet(&call, &mut rng, &req).unwrap();
        w.state
    };
    let (s1, s2) = (build(), build());
    assert_eq!(s1, s2);
    let json = serde_json::to_string(&s1).unwrap();
    let back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s1);
}
