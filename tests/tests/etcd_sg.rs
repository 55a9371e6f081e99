//! Security groups and network interfaces on the etcd backend (one
//! member, in a network namespace): what one controller writes, another
//! loads exactly; a store written before security groups existed gets its
//! default groups on the first model write.

use std::sync::Arc;

use peering_tests::etcd::EtcdCluster;
use peering_tests::lab::unique;
use peering_userspace::control::controller::Controller;
use peering_userspace::control::network_interface::CreateNetworkInterface;
use peering_userspace::control::security_group::CreateSecurityGroup;
use peering_userspace::control::sg_rules::{Direction, IpPermission, UserIdGroupPair};
use peering_userspace::control::store::codec;
use peering_userspace::control::store::kv::{Commit, Kv, Op};
use peering_userspace::control::{AccountId, Call, CreateSubnet, SequentialIds, State, Store};

fn call() -> Call {
    Call::at(
        AccountId::parse("111122223333").unwrap(),
        "us-east-1",
        1_700_000_000,
    )
}

#[test]
fn groups_and_interfaces_round_trip_and_old_stores_adopt() {
    let cluster = EtcdCluster::start(1);
    let prefix = format!("/{}/", unique("sg"));
    let a = Controller::new(Arc::new(cluster.kv(&prefix))).unwrap();
    let mut ids = SequentialIds(1 << 64);
    let c = call();
    let (vpc, _) = a
        .transact(|s| s.create_vpc(&c, &mut ids, "10.0.0.0/16"))
        .unwrap();
    let (subnet, _) = a
        .transact(|s| {
            let req = CreateSubnet {
                vpc_id: vpc.vpc_id.clone(),
                cidr_block: "10.0.1.0/24".into(),
                interface: "eth1".into(),
                vlan: None,
            };
            s.create_subnet(&c, &mut ids, &req)
        })
        .unwrap();
    let (sg, _) = a
        .transact(|s| {
            let req = CreateSecurityGroup {
                group_name: "web".into(),
                description: "web".into(),
                vpc_id: vpc.vpc_id.clone(),
            };
            s.create_security_group(&c, &mut ids, &req)
        })
        .unwrap();
    let perm = IpPermission {
        ip_protocol: "tcp".into(),
        from_port: Some(80),
        to_port: Some(80),
        user_id_group_pairs: vec![UserIdGroupPair {
            group_id: Some(sg.clone()),
            ..Default::default()
        }],
        ..Default::default()
    };
    a.transact(|s| {
        s.authorize_security_group(
            &c,
            &mut ids,
            Direction::Ingress,
            &sg,
            std::slice::from_ref(&perm),
        )
    })
    .unwrap();
    let (_, rev) = a
        .transact(|s| {
            let req = CreateNetworkInterface {
                subnet_id: subnet.subnet_id.clone(),
                groups: vec![sg.clone()],
                ..Default::default()
            };
            s.create_network_interface(&c, &mut ids, &req)
        })
        .unwrap();
    // A second controller on the same prefix loads the same state.
    let b = Controller::new(Arc::new(cluster.kv(&prefix))).unwrap();
    let (sa, sb) = (a.load().unwrap(), b.load().unwrap());
    assert_eq!(sb.revision, rev);
    assert_eq!(sa, sb);
    assert_eq!(sb.security_groups().count(), 2);
    assert_eq!(sb.network_interfaces().count(), 1);
    drop((a, b));

    // An old store: a VPC without a default group, as an earlier version
    // wrote it.
    let prefix = format!("/{}/", unique("sgold"));
    let kv = cluster.kv(&prefix);
    let mut legacy = State::default();
    legacy.create_vpc(&c, &mut ids, "10.9.0.0/16").unwrap();
    let entries: Vec<Op> = codec::state_entries(&legacy)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(codec::SECURITY_GROUPS))
        .map(|(k, v)| {
            let v = if k.starts_with(codec::VPCS) {
                let mut j: serde_json::Value = serde_json::from_slice(&v).unwrap();
                j.as_object_mut().unwrap().remove("default_group_id");
                serde_json::to_vec(&j).unwrap()
            } else {
                v
            };
            codec::put(k, v)
        })
        .collect();
    let (base, _) = kv.snapshot().unwrap();
    assert!(matches!(
        kv.commit(base, &entries).unwrap(),
        Commit::Done(_)
    ));
    let old = Controller::new(Arc::new(kv)).unwrap();
    let state = old.load().unwrap();
    assert_eq!(state.security_groups().count(), 0);
    assert!(state.vpcs().all(|v| v.default_group_id.is_none()));
    old.transact(|s| s.create_vpc(&c, &mut ids, "10.8.0.0/16"))
        .unwrap();
    let state = old.load().unwrap();
    assert!(state.vpcs().all(|v| v
        .default_group_id
        .as_ref()
        .is_some_and(|g| state.security_group(g).is_some())));
    assert_eq!(state.security_groups().count(), 2);
}
