//! The per-region dataplane view.

use super::support::*;
use crate::control::subnet::CreateSubnet;
use crate::control::view::{region_view, RouteTarget};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn inter_and_intra_region_view() {
    let mut w = World::new();
    let a = w.vpc(A, E1, &["10.0.0.0/16", "10.100.0.0/16"]);
    let a2 = w.vpc(A, E1, &["10.2.0.0/16"]);
    let b = w.vpc(B, W2, &["10.1.0.0/16"]);
    let call = w.call(A, E1);
    let req = CreateSubnet {
        vpc_id: a.clone(),
        cidr_block: "10.100.1.0/24".into(),
        interface: "eth1".into(),
        vlan: Some(7),
    };
    w.state.create_subnet(&call, &mut w.ids, &req).unwrap();
    let remote = w
        .request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let local = w
        .request(A, E1, &a, &a2, A, E1)
        .unwrap()
        .vpc_peering_connection_id;
    let pending = {
        let c = w.vpc(C, E1, &["10.3.0.0/16"]);
        w.request(C, E1, &c, &a, A, E1)
            .unwrap()
            .vpc_peering_connection_id
    };
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &remote)
        .unwrap();
    w.state
        .accept_vpc_peering_connection(&call, &local)
        .unwrap();
    let rtb = w.state.vpc(&a).unwrap().main_route_table_id.clone();
    w.state
        .create_route(&call, &rtb, "10.1.0.0/16", &remote)
        .unwrap();
    w.state
        .create_route(&call, &rtb, "10.2.0.0/16", &local)
        .unwrap();
    w.state
        .create_route(&call, &rtb, "10.3.0.0/16", &pending)
        .unwrap();

    let (va, va2, vb) = (
        w.state.vpc(&a).unwrap(),
        w.state.vpc(&a2).unwrap(),
        w.state.vpc(&b).unwrap(),
    );
    let (pr, pl) = (
        w.state.peering(&remote).unwrap(),
        w.state.peering(&local).unwrap(),
    );
    let view = region_view(&w.state, E1, w.now());
    assert_eq!(view.region, E1);
    assert_eq!(view.vpcs.len(), 3);
    assert_eq!(
        view.vpcs[0].cidrs.len() + view.vpcs[1].cidrs.len() + view.vpcs[2].cidrs.len(),
        4
    );
    let s = &view.subnets[0];
    assert_eq!(
        (s.vpc_dp_id, s.vlan, s.interface.as_str()),
        (va.dp_id, 7, "eth1")
    );
    assert_eq!(s.gateway_ip, Ipv4Addr::new(10, 100, 1, 1));
    assert_eq!(
        s.route_table_dp_id,
        w.state.route_table(&rtb).unwrap().dp_id
    );
    let target = |d: &str| {
        view.routes
            .iter()
            .find(|r| r.destination == net(d))
            .unwrap()
            .target
            .clone()
    };
    assert_eq!(
        target("10.1.0.0/16"),
        RouteTarget::RemotePeer {
            pcx_id: remote.clone(),
            pcx_dp_id: pr.dp_id,
            remote_region: W2.into(),
            peer_vpc_cidrs: vec![net("10.1.0.0/16")],
        }
    );
    assert_eq!(
        target("10.2.0.0/16"),
        RouteTarget::LocalPeer {
            pcx_id: local.clone(),
            pcx_dp_id: pl.dp_id,
            peer_vpc_dp_id: va2.dp_id
        }
    );
    assert_eq!(
        target("10.3.0.0/16"),
        RouteTarget::Blackhole {
            pcx_id: pending.clone()
        }
    );
    // Intra-region peering appears once per local VPC; the remote one once.
    let mut seen: Vec<(String, u32)> = view
        .peerings
        .iter()
        .map(|p| (p.pcx_id.clone(), p.local_vpc_dp_id))
        .collect();
    seen.sort();
    let mut want = vec![
        (remote.clone(), va.dp_id),
        (local.clone(), va.dp_id),
        (local.clone(), va2.dp_id),
    ];
    want.sort();
    assert_eq!(seen, want);
    let pv = view.peerings.iter().find(|p| p.pcx_id == remote).unwrap();
    assert_eq!(pv.remote_vpc_cidrs, vec![net("10.1.0.0/16")]);
    assert_eq!(
        pv.local_vpc_cidrs,
        vec![net("10.0.0.0/16"), net("10.100.0.0/16")]
    );

    // The other region sees its side of the remote peering only.
    let west = region_view(&w.state, W2, w.now());
    assert_eq!(west.vpcs.len(), 1);
    assert_eq!(west.peerings.len(), 1);
    assert_eq!(west.peerings[0].local_vpc_dp_id, vb.dp_id);
    assert_eq!(west.peerings[0].remote_region, E1);
    assert!(west.routes.is_empty());

    // Deleting the peering: routes turn into blackholes, peering leaves.
    w.state
        .delete_vpc_peering_connection(&w.call(B, W2), &remote)
        .unwrap();
    let view = region_view(&w.state, E1, w.now());
    let r = view
        .routes
        .iter()
        .find(|r| r.destination == net("10.1.0.0/16"))
        .unwrap();
    assert_eq!(
        r.target,
        RouteTarget::Blackhole {
            pcx_id: remote.clone()
        }
    );
    assert!(view.peerings.iter().all(|p| p.pcx_id != remote));
    assert!(region_view(&w.state, W2, w.now()).peerings.is_empty());
}

#[test]
fn dp_ids_are_never_reused() {
    let mut w = World::new();
    let call = w.call(A, E1);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let v = w.vpc(A, E1, &[&format!("10.{i}.0.0/16")]);
        let vpc = w.state.vpc(&v).unwrap();
        assert!(seen.insert(vpc.dp_id));
        assert!(seen.insert(w.state.route_table(&vpc.main_route_table_id).unwrap().dp_id));
        w.state.delete_vpc(&call, &v).unwrap();
    }
    assert!(!seen.contains(&0));
}

#[test]
fn view_serializes() {
    let mut w = World::new();
    w.vpc(A, E1, &["10.0.0.0/16"]);
    let v = region_view(&w.state, E1, w.now());
    let back = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(v, back);
}
