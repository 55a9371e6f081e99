//! Security groups, rules and network interfaces: every operation and
//! its errors, stale references, and the region view.

use super::support::*;
use crate::control::config::Limits;
use crate::control::network_interface::CreateNetworkInterface;
use crate::control::security_group::CreateSecurityGroup;
use crate::control::sg_rules::{Direction, IpPermission, IpRange, UserIdGroupPair};
use crate::control::sg_view::{SgPeer, SgProtocol};
use crate::control::view::region_view;

fn group(w: &mut World, account: &str, region: &str, vpc: &str, name: &str) -> String {
    let call = w.call(account, region);
    let req = CreateSecurityGroup {
        group_name: name.into(),
        description: format!("{name} group"),
        vpc_id: vpc.into(),
    };
    w.state
        .create_security_group(&call, &mut w.ids, &req)
        .unwrap()
}

fn tcp(from: i32, to: i32) -> IpPermission {
    IpPermission {
        ip_protocol: "tcp".into(),
        from_port: Some(from),
        to_port: Some(to),
        ..Default::default()
    }
}

fn cidr(mut p: IpPermission, c: &str) -> IpPermission {
    p.ip_ranges.push(IpRange {
        cidr_ip: c.into(),
        description: None,
    });
    p
}

fn from_group(mut p: IpPermission, g: &str, user: Option<&str>) -> IpPermission {
    p.user_id_group_pairs.push(UserIdGroupPair {
        group_id: Some(g.into()),
        user_id: user.map(str::to_owned),
        ..Default::default()
    });
    p
}

fn authorize(
    w: &mut World,
    account: &str,
    region: &str,
    dir: Direction,
    g: &str,
    p: IpPermission,
) -> Result<Vec<String>, crate::control::error::ApiError> {
    let call = w.call(account, region);
    w.state
        .authorize_security_group(&call, &mut w.ids, dir, g, &[p])
        .map(|rs| rs.into_iter().map(|r| r.security_group_rule_id).collect())
}

fn default_group(w: &World, vpc: &str) -> String {
    w.state.vpc(vpc).unwrap().default_group_id.clone().unwrap()
}

/// A's VPCs 10.0/16 and 10.1/16 in us-east-1, peered and active.
fn peered(w: &mut World) -> (String, String, String) {
    let a = w.vpc(A, E1, &["10.0.0.0/16"]);
    let b = w.vpc(A, E1, &["10.1.0.0/16"]);
    let pcx = w
        .request(A, E1, &a, &b, A, E1)
        .unwrap()
        .vpc_peering_connection_id;
    let call = w.call(A, E1);
    w.state.accept_vpc_peering_connection(&call, &pcx).unwrap();
    (a, b, pcx)
}

#[test]
fn every_vpc_gets_a_default_group_deleted_with_it() {
    let mut w = World::new();
    let before = w.state.next_dp_id();
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    // VPC, main table, group and its two rules.
    assert_eq!(w.state.next_dp_id(), before + 5);
    let sg = default_group(&w, &vpc);
    let call = w.call(A, E1);
    let d = &w
        .state
        .describe_security_groups(&call, std::slice::from_ref(&sg), &[])
        .unwrap()[0];
    assert_eq!(d.group_name, "default");
    assert_eq!(d.description, "default VPC security group");
    assert_eq!(d.ip_permissions[0].ip_protocol, "-1");
    assert_eq!(
        d.ip_permissions[0].user_id_group_pairs[0]
            .group_id
            .as_deref(),
        Some(sg.as_str())
    );
    assert_eq!(d.ip_permissions_egress[0].ip_ranges[0].cidr_ip, "0.0.0.0/0");
    assert_eq!(
        refused(&mut w, |s, _| s.delete_security_group(&call, &sg)),
        "CannotDelete"
    );
    let other = group(&mut w, A, E1, &vpc, "web");
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc(&call, &vpc)),
        "DependencyViolation"
    );
    w.state.delete_security_group(&call, &other).unwrap();
    w.state.delete_vpc(&call, &vpc).unwrap();
    assert!(w.state.security_group(&sg).is_none());
    assert_eq!(w.state.security_groups().count(), 0);
}

#[test]
fn create_security_group_errors() {
    let mut w = World::with_limits(Limits {
        security_groups_per_region: 3,
        ..Limits::default()
    });
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    let call = w.call(A, E1);
    let req = |name: &str, vpc: &str| CreateSecurityGroup {
        group_name: name.into(),
        description: "d".into(),
        vpc_id: vpc.into(),
    };
    let web = w
        .state
        .create_security_group(&call, &mut w.ids, &req("web", &vpc))
        .unwrap();
    let sg = w.state.security_group(&web).unwrap();
    assert!(sg.ingress.is_empty());
    assert_eq!(sg.egress.len(), 1, "all traffic out, as EC2 creates it");
    for (name, vpc_id, code) in [
        ("web", vpc.as_str(), "InvalidGroup.Duplicate"),
        ("default", vpc.as_str(), "InvalidParameterValue"),
        ("sg-123", vpc.as_str(), "InvalidParameterValue"),
        ("", vpc.as_str(), "InvalidParameterValue"),
        ("bad\u{7}name", vpc.as_str(), "InvalidParameterValue"),
        ("x", "vpc-00000000000000099", "InvalidVpcID.NotFound"),
    ] {
        assert_eq!(
            refused(&mut w, |s, ids| s.create_security_group(
                &call,
                ids,
                &req(name, vpc_id)
            )),
            code,
            "{name}"
        );
    }
    // B cannot create a group in A's VPC.
    let b = w.call(B, E1);
    assert_eq!(
        refused(&mut w, |s, ids| s.create_security_group(
            &b,
            ids,
            &req("x", &vpc)
        )),
        "InvalidVpcID.NotFound"
    );
    // Quota: default + web + one more = 3.
    w.state
        .create_security_group(&call, &mut w.ids, &req("db", &vpc))
        .unwrap();
    assert_eq!(
        refused(&mut w, |s, ids| s.create_security_group(
            &call,
            ids,
            &req("x", &vpc)
        )),
        "SecurityGroupLimitExceeded"
    );
}

#[test]
fn authorize_and_revoke_rules() {
    let mut w = World::with_limits(Limits {
        inbound_rules_per_group: 3,
        ..Limits::default()
    });
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    let web = group(&mut w, A, E1, &vpc, "web");
    let db = group(&mut w, A, E1, &vpc, "db");
    let dp = w.state.next_dp_id();
    let ids = authorize(&mut w, A, E1, Direction::Ingress, &db, {
        let p = cidr(tcp(5432, 5432), "10.0.0.0/24");
        from_group(cidr(p, "10.0.1.0/24"), &web, None)
    })
    .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i.starts_with("sgr-")));
    assert_eq!(w.state.next_dp_id(), dp + 3, "one dataplane id per rule");
    let call = w.call(A, E1);
    // Duplicates, within the request or against existing rules.
    for p in [
        cidr(tcp(5432, 5432), "10.0.0.0/24"),
        cidr(cidr(tcp(1, 2), "10.9.0.0/16"), "10.9.0.0/16"),
    ] {
        assert_eq!(
            refused(&mut w, |s, ids| s.authorize_security_group(
                &call,
                ids,
                Direction::Ingress,
                &db,
                &[p]
            )),
            "InvalidPermission.Duplicate"
        );
    }
    // The quota (3 inbound rules); outbound has its own.
    assert_eq!(
        refused(&mut w, |s, ids| s.authorize_security_group(
            &call,
            ids,
            Direction::Ingress,
            &db,
            &[cidr(tcp(1, 1), "10.8.0.0/16")]
        )),
        "RulesPerSecurityGroupLimitExceeded"
    );
    authorize(
        &mut w,
        A,
        E1,
        Direction::Egress,
        &db,
        cidr(tcp(1, 1), "10.8.0.0/16"),
    )
    .unwrap();
    // Malformed permissions change nothing.
    let bad = |proto: &str, from: Option<i32>, to: Option<i32>| {
        cidr(
            IpPermission {
                ip_protocol: proto.into(),
                from_port: from,
                to_port: to,
                ..Default::default()
            },
            "10.7.0.0/16",
        )
    };
    for (p, code) in [
        (bad("tcp", Some(10), Some(5)), "InvalidParameterValue"),
        (bad("tcp", None, Some(5)), "InvalidParameterValue"),
        (bad("udp", Some(0), Some(65536)), "InvalidParameterValue"),
        (bad("icmp", Some(-1), Some(3)), "InvalidParameterValue"),
        (bad("icmp", Some(256), Some(-1)), "InvalidParameterValue"),
        (bad("gre", None, None), "InvalidParameterValue"),
        (cidr(tcp(1, 1), "10.7.0.1/16"), "InvalidParameterValue"),
        (
            from_group(tcp(1, 1), "sg-00000000000000099", None),
            "InvalidGroup.NotFound",
        ),
        (
            from_group(tcp(1, 1), "sg-1", None),
            "InvalidGroupId.Malformed",
        ),
        (tcp(1, 1), "InvalidParameterValue"),
    ] {
        assert_eq!(
            refused(&mut w, |s, ids| s.authorize_security_group(
                &call,
                ids,
                Direction::Egress,
                &web,
                std::slice::from_ref(&p)
            )),
            code,
            "{p:?}"
        );
    }
    // Protocol forms: numbers, ICMP type/code, all.
    for (p, want) in [
        (
            bad("6", Some(80), Some(80)),
            SgProtocol::Tcp {
                from_port: 80,
                to_port: 80,
            },
        ),
        (
            bad("icmp", Some(8), Some(-1)),
            SgProtocol::Icmp {
                icmp_type: Some(8),
                code: None,
            },
        ),
        (
            bad("1", Some(3), Some(4)),
            SgProtocol::Icmp {
                icmp_type: Some(3),
                code: Some(4),
            },
        ),
        (bad("-1", Some(9), Some(9)), SgProtocol::All),
        (bad("47", None, None), SgProtocol::Other(47)),
    ] {
        authorize(&mut w, A, E1, Direction::Egress, &web, p.clone()).unwrap();
        let g = w.state.security_group(&web).unwrap();
        assert_eq!(g.egress.last().unwrap().protocol, want, "{p:?}");
        let call = w.call(A, E1);
        w.state
            .revoke_security_group(&call, Direction::Egress, &web, &[p], &[])
            .unwrap();
    }
    // Revoke: by permission, by id; unknown ones are refused, all or none.
    assert_eq!(
        refused(&mut w, |s, _| s.revoke_security_group(
            &call,
            Direction::Ingress,
            &db,
            &[cidr(cidr(tcp(5432, 5432), "10.0.0.0/24"), "10.6.0.0/16")],
            &[]
        )),
        "InvalidPermission.NotFound"
    );
    assert_eq!(
        refused(&mut w, |s, _| s.revoke_security_group(
            &call,
            Direction::Egress,
            &db,
            &[],
            &[ids[0].clone()]
        )),
        "InvalidSecurityGroupRuleId.NotFound"
    );
    w.state
        .revoke_security_group(
            &call,
            Direction::Ingress,
            &db,
            &[cidr(tcp(5432, 5432), "10.0.0.0/24")],
            &[ids[2].clone()],
        )
        .unwrap();
    let g = w.state.security_group(&db).unwrap();
    assert_eq!(g.ingress.len(), 1);
    assert_eq!(g.ingress[0].id, ids[1]);
    // Rules are described one by one.
    let rules = w
        .state
        .describe_security_group_rules(&call, &[ids[1].clone()])
        .unwrap();
    assert_eq!(rules[0].cidr_ipv4.as_deref(), Some("10.0.1.0/24"));
    assert!(!rules[0].is_egress);
    assert_eq!((rules[0].from_port, rules[0].to_port), (5432, 5432));
    // B sees none of A's groups.
    let b = w.call(B, E1);
    assert_eq!(
        refused(&mut w, |s, ids| s.authorize_security_group(
            &b,
            ids,
            Direction::Ingress,
            &db,
            &[cidr(tcp(1, 1), "10.5.0.0/16")]
        )),
        "InvalidGroup.NotFound"
    );
    assert!(w
        .state
        .describe_security_groups(&b, &[], &[])
        .unwrap()
        .is_empty());
}

#[test]
fn delete_security_group_dependencies() {
    let mut w = World::new();
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    let subnet = w.subnet(A, E1, &vpc, "10.0.1.0/24", "eth1");
    let web = group(&mut w, A, E1, &vpc, "web");
    let db = group(&mut w, A, E1, &vpc, "db");
    authorize(
        &mut w,
        A,
        E1,
        Direction::Ingress,
        &db,
        from_group(tcp(1, 1), &web, None),
    )
    .unwrap();
    let call = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.delete_security_group(&call, &web)),
        "DependencyViolation"
    );
    // A self-reference does not block.
    authorize(
        &mut w,
        A,
        E1,
        Direction::Ingress,
        &web,
        from_group(tcp(1, 1), &web, None),
    )
    .unwrap();
    w.state
        .revoke_security_group(
            &call,
            Direction::Ingress,
            &db,
            &[from_group(tcp(1, 1), &web, None)],
            &[],
        )
        .unwrap();
    let eni = w
        .state
        .create_network_interface(
            &call,
            &mut w.ids,
            &CreateNetworkInterface {
                subnet_id: subnet.clone(),
                groups: vec![web.clone()],
                ..Default::default()
            },
        )
        .unwrap()
        .network_interface_id;
    assert_eq!(
        refused(&mut w, |s, _| s.delete_security_group(&call, &web)),
        "DependencyViolation"
    );
    assert_eq!(
        refused(&mut w, |s, _| s.delete_subnet(&call, &subnet)),
        "DependencyViolation"
    );
    w.state.delete_network_interface(&call, &eni).unwrap();
    w.state.delete_security_group(&call, &web).unwrap();
    assert_eq!(
        refused(&mut w, |s, _| s.delete_security_group(&call, &web)),
        "InvalidGroup.NotFound"
    );
}

#[test]
fn peer_group_references_same_region_only_and_go_stale() {
    let mut w = World::new();
    let (a, b, pcx) = peered(&mut w);
    let ga = group(&mut w, A, E1, &a, "app");
    let gb = group(&mut w, A, E1, &b, "db");
    // Same region, active peering: allowed, recorded with the peering.
    authorize(
        &mut w,
        A,
        E1,
        Direction::Ingress,
        &gb,
        from_group(tcp(5432, 5432), &ga, None),
    )
    .unwrap();
    let call = w.call(A, E1);
    let d = &w
        .state
        .describe_security_groups(&call, std::slice::from_ref(&gb), &[])
        .unwrap()[0];
    let pair = &d.ip_permissions[0].user_id_group_pairs[0];
    assert_eq!(
        pair.vpc_peering_connection_id.as_deref(),
        Some(pcx.as_str())
    );
    assert_eq!(pair.vpc_id.as_deref(), Some(a.as_str()));
    // The region view carries it as a group peer.
    let view = region_view(&w.state, E1, w.now());
    let gv = view
        .security_groups
        .iter()
        .find(|g| g.group_id == gb)
        .unwrap();
    let ga_dp = w.state.security_group(&ga).unwrap().dp_id;
    assert_eq!(gv.ingress[0].peer, SgPeer::Group { group_dp_id: ga_dp });
    assert!(w
        .state
        .describe_stale_security_groups(&call, &b)
        .unwrap()
        .is_empty());
    // An unpeered VPC's group: refused.
    let c = w.vpc(A, E1, &["10.2.0.0/16"]);
    let gc = group(&mut w, A, E1, &c, "other");
    assert_eq!(
        refused(&mut w, |s, ids| s.authorize_security_group(
            &call,
            ids,
            Direction::Ingress,
            &gb,
            &[from_group(tcp(1, 1), &gc, None)]
        )),
        "InvalidGroup.NotFound"
    );
    // Deleting the peering: the rule stays, is stale, and leaves the view.
    w.state.delete_vpc_peering_connection(&call, &pcx).unwrap();
    assert_eq!(w.state.security_group(&gb).unwrap().ingress.len(), 1);
    let stale = w.state.describe_stale_security_groups(&call, &b).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].group_id, gb);
    let sp = &stale[0].stale_ip_permissions[0];
    assert_eq!(
        sp.user_id_group_pairs[0].group_id.as_deref(),
        Some(ga.as_str())
    );
    assert_eq!(
        sp.user_id_group_pairs[0].peering_status.as_deref(),
        Some("deleted")
    );
    assert!(stale[0].stale_ip_permissions_egress.is_empty());
    let view = region_view(&w.state, E1, w.now());
    let gv = view
        .security_groups
        .iter()
        .find(|g| g.group_id == gb)
        .unwrap();
    assert!(gv.ingress.is_empty());
    // The peer's group may be deleted now (the reference is in another VPC).
    w.state.delete_security_group(&call, &ga).unwrap();
    assert_eq!(
        w.state
            .describe_stale_security_groups(&call, &b)
            .unwrap()
            .len(),
        1
    );
    // A stale rule can still be revoked.
    w.state
        .revoke_security_group(
            &call,
            Direction::Ingress,
            &gb,
            &[from_group(tcp(5432, 5432), &ga, None)],
            &[],
        )
        .unwrap();
    assert!(w
        .state
        .describe_stale_security_groups(&call, &b)
        .unwrap()
        .is_empty());
}

#[test]
fn cross_account_and_cross_region_references() {
    let mut w = World::new();
    let a = w.vpc(A, E1, &["10.0.0.0/16"]);
    let b = w.vpc(B, E1, &["10.1.0.0/16"]);
    let pcx = w
        .request(A, E1, &a, &b, B, E1)
        .unwrap()
        .vpc_peering_connection_id;
    let gb = default_group(&w, &b);
    let ga = default_group(&w, &a);
    // Pending: not yet.
    let ca = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, ids| s.authorize_security_group(
            &ca,
            ids,
            Direction::Ingress,
            &ga,
            &[from_group(tcp(1, 1), &gb, Some(B))]
        )),
        "InvalidGroup.NotFound"
    );
    let cb = w.call(B, E1);
    w.state.accept_vpc_peering_connection(&cb, &pcx).unwrap();
    // Another account's group needs its account named.
    assert_eq!(
        refused(&mut w, |s, ids| s.authorize_security_group(
            &ca,
            ids,
            Direction::Ingress,
            &ga,
            &[from_group(tcp(1, 1), &gb, None)]
        )),
        "InvalidGroup.NotFound"
    );
    authorize(
        &mut w,
        A,
        E1,
        Direction::Ingress,
        &ga,
        from_group(tcp(1, 1), &gb, Some(B)),
    )
    .unwrap();
    // Across regions: refused even over an active peering.
    let d = w.vpc(B, W2, &["10.3.0.0/16"]);
    let pcx2 = w
        .request(A, E1, &a, &d, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let cw = w.call(B, W2);
    w.state.accept_vpc_peering_connection(&cw, &pcx2).unwrap();
    let gd = default_group(&w, &d);
    let err = w
        .state
        .authorize_security_group(
            &ca,
            &mut w.ids,
            Direction::Ingress,
            &ga,
            &[from_group(tcp(1, 1), &gd, Some(B))],
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidGroup.NotFound");
    assert!(err.message.contains("different networks"), "{err}");
    // A CIDR rule across regions is fine.
    authorize(
        &mut w,
        A,
        E1,
        Direction::Ingress,
        &ga,
        cidr(tcp(22, 22), "10.3.0.0/16"),
    )
    .unwrap();
}

#[test]
fn network_interfaces() {
    let mut w = World::with_limits(Limits {
        groups_per_interface: 2,
        ..Limits::default()
    });
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    let other = w.vpc(A, E1, &["10.1.0.0/16"]);
    let subnet = w.subnet(A, E1, &vpc, "10.0.1.0/28", "eth1");
    let web = group(&mut w, A, E1, &vpc, "web");
    let db = group(&mut w, A, E1, &vpc, "db");
    let foreign = group(&mut w, A, E1, &other, "x");
    let call = w.call(A, E1);
    let create = |addr: Option<&str>, groups: &[&str]| CreateNetworkInterface {
        subnet_id: subnet.clone(),
        private_ip_address: addr.map(str::to_owned),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        description: Some("d".into()),
    };
    // First free address: network + 4 (network, router, DNS, reserved).
    let n1 = w
        .state
        .create_network_interface(&call, &mut w.ids, &create(None, &[]))
        .unwrap();
    assert_eq!(n1.private_ip_address, "10.0.1.4");
    assert_eq!(n1.groups[0].group_id, default_group(&w, &vpc));
    assert_eq!(n1.groups[0].group_name, "default");
    let n2 = w
        .state
        .create_network_interface(&call, &mut w.ids, &create(Some("10.0.1.6"), &[&web, &db]))
        .unwrap();
    let n3 = w
        .state
        .create_network_interface(&call, &mut w.ids, &create(None, &[&web]))
        .unwrap();
    assert_eq!(n3.private_ip_address, "10.0.1.5");
    for (addr, groups, code) in [
        (Some("10.0.1.6"), vec![], "InvalidIPAddress.InUse"),
        (Some("10.0.2.9"), vec![], "InvalidParameterValue"),
        (Some("10.0.1.0"), vec![], "InvalidParameterValue"),
        (Some("10.0.1.1"), vec![], "InvalidParameterValue"),
        (Some("10.0.1.2"), vec![], "InvalidParameterValue"),
        (Some("10.0.1.3"), vec![], "InvalidParameterValue"),
        (Some("10.0.1.15"), vec![], "InvalidParameterValue"),
        (Some("banana"), vec![], "InvalidParameterValue"),
        (
            None,
            vec![web.as_str(), db.as_str(), "sg-00000000000000099"],
            "SecurityGroupsPerInterfaceLimitExceeded",
        ),
        (None, vec!["sg-00000000000000099"], "InvalidGroup.NotFound"),
        (None, vec![foreign.as_str()], "InvalidGroup.NotFound"),
    ] {
        assert_eq!(
            refused(&mut w, |s, ids| s.create_network_interface(
                &call,
                ids,
                &create(addr, &groups)
            )),
            code,
            "{addr:?} {groups:?}"
        );
    }
    let mut bad_subnet = create(None, &[]);
    bad_subnet.subnet_id = "subnet-00000000000000099".into();
    assert_eq!(
        refused(&mut w, |s, ids| s.create_network_interface(
            &call,
            ids,
            &bad_subnet
        )),
        "InvalidSubnetID.NotFound"
    );
    // Fill the /28: .7 to .14 are 8 more addresses.
    for _ in 0..8 {
        w.state
            .create_network_interface(&call, &mut w.ids, &create(None, &[]))
            .unwrap();
    }
    assert_eq!(
        refused(&mut w, |s, ids| s.create_network_interface(
            &call,
            ids,
            &create(None, &[])
        )),
        "InsufficientFreeAddressesInSubnet"
    );
    // Modify the groups.
    let id = n2.network_interface_id.clone();
    w.state
        .modify_network_interface_groups(&call, &id, std::slice::from_ref(&db))
        .unwrap();
    assert_eq!(
        w.state.network_interface(&id).unwrap().groups,
        vec![db.clone()]
    );
    for (groups, code) in [
        (vec![], "InvalidParameterValue"),
        (vec![foreign.clone()], "InvalidGroup.NotFound"),
    ] {
        assert_eq!(
            refused(&mut w, |s, _| s
                .modify_network_interface_groups(&call, &id, &groups)),
            code
        );
    }
    // Only the owner sees and changes it.
    let b = w.call(B, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.delete_network_interface(&b, &id)),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert!(w
        .state
        .describe_network_interfaces(&b, &[])
        .unwrap()
        .is_empty());
    assert_eq!(
        w.state
            .describe_network_interfaces(&call, &[])
            .unwrap()
            .len(),
        11
    );
    // The region view has every interface with its groups' dataplane ids.
    let view = region_view(&w.state, E1, w.now());
    let nv = view.interfaces.iter().find(|n| n.eni_id == id).unwrap();
    assert_eq!(
        nv.group_dp_ids,
        vec![w.state.security_group(&db).unwrap().dp_id]
    );
    assert_eq!(nv.address.to_string(), "10.0.1.6");
    let vv = view.vpcs.iter().find(|v| v.vpc_id == vpc).unwrap();
    let default_dp = w
        .state
        .security_group(&default_group(&w, &vpc))
        .unwrap()
        .dp_id;
    assert_eq!(vv.default_group_dp_id, default_dp);
    // The VPC cannot go while interfaces remain.
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc(&call, &vpc)),
        "DependencyViolation"
    );
    w.state.delete_network_interface(&call, &id).unwrap();
    assert_eq!(
        refused(&mut w, |s, _| s.delete_network_interface(&call, &id)),
        "InvalidNetworkInterfaceID.NotFound"
    );
    let _ = n1;
}

#[test]
fn old_states_adopt_default_groups() {
    let mut w = World::new();
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    // Simulate a VPC stored before security groups existed.
    let sg = default_group(&w, &vpc);
    w.state.security_groups.remove(&sg);
    w.state.vpcs.get_mut(&vpc).unwrap().default_group_id = None;
    let dp = w.state.next_dp_id();
    assert_eq!(w.state.adopt_default_groups(&mut w.ids).unwrap(), 1);
    assert_eq!(w.state.next_dp_id(), dp + 3);
    let sg = default_group(&w, &vpc);
    assert_eq!(w.state.security_group(&sg).unwrap().name, "default");
    assert_eq!(w.state.adopt_default_groups(&mut w.ids).unwrap(), 0);
}

#[test]
fn old_configs_get_the_default_quotas() {
    // A config as stored before security groups existed.
    let old = r#"{"regions":["us-east-1"],"limits":{"active_peerings_per_vpc":50,
        "outstanding_requests_per_account":25,"cidr_blocks_per_vpc":5,
        "route_tables_per_vpc":200,"routes_per_route_table":50}}"#;
    let c: crate::control::config::Config = serde_json::from_str(old).unwrap();
    assert_eq!(c.limits.security_groups_per_region, 2500);
    assert_eq!(c.limits.inbound_rules_per_group, 60);
    assert_eq!(c.limits.outbound_rules_per_group, 60);
    assert_eq!(c.limits.groups_per_interface, 5);
}

#[test]
fn a_request_over_the_rule_quota_is_refused_whole() {
    let mut w = World::new();
    let vpc = w.vpc(A, E1, &["10.0.0.0/16"]);
    let g = group(&mut w, A, E1, &vpc, "web");
    let mut p = tcp(1, 1);
    for i in 0..61 {
        p = cidr(p, &format!("10.{}.{}.0/24", 100 + i / 200, i % 200));
    }
    let call = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, ids| s.authorize_security_group(
            &call,
            ids,
            Direction::Ingress,
            &g,
            std::slice::from_ref(&p)
        )),
        "RulesPerSecurityGroupLimitExceeded"
    );
    // 60 fit exactly.
    p.ip_ranges.pop();
    authorize(&mut w, A, E1, Direction::Ingress, &g, p).unwrap();
    assert_eq!(w.state.security_group(&g).unwrap().ingress.len(), 60);
}
