//! Who may see and act on a peering, and from which region.

use super::support::*;
use crate::control::peering::{ModifyPeeringOptions, PeeringStatus as S};

const NF: &str = "InvalidVpcPeeringConnectionID.NotFound";

fn pending(w: &mut World) -> String {
    let (a, b) = two_vpcs(w, W2);
    w.request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id
}

#[test]
fn strangers_see_nothing_and_touch_nothing() {
    let mut w = World::new();
    let pcx = pending(&mut w);
    for region in [E1, W2] {
        let c = w.call(C, region);
        assert!(w
            .state
            .describe_vpc_peering_connections(&c, &[], &[])
            .unwrap()
            .is_empty());
        assert_eq!(
            w.state
                .describe_vpc_peering_connections(&c, std::slice::from_ref(&pcx), &[])
                .unwrap_err()
                .code(),
            NF
        );
        assert_eq!(
            refused(&mut w, |s, _| s.accept_vpc_peering_connection(&c, &pcx)),
            NF
        );
        assert_eq!(
            refused(&mut w, |s, _| s.reject_vpc_peering_connection(&c, &pcx)),
            NF
        );
        assert_eq!(
            refused(&mut w, |s, _| s.delete_vpc_peering_connection(&c, &pcx)),
            NF
        );
    }
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    let c = w.call(C, E1);
    let o = ModifyPeeringOptions {
        requester_allow_dns_resolution_from_remote_vpc: Some(true),
        ..Default::default()
    };
    assert_eq!(
        refused(&mut w, |s, _| s
            .modify_vpc_peering_connection_options(&c, &pcx, &o)),
        NF
    );
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc_peering_connection(&c, &pcx)),
        NF
    );
}

#[test]
fn requester_cannot_accept_or_reject() {
    let mut w = World::new();
    let pcx = pending(&mut w);
    let a = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.accept_vpc_peering_connection(&a, &pcx)),
        "UnauthorizedOperation"
    );
    assert_eq!(
        refused(&mut w, |s, _| s.reject_vpc_peering_connection(&a, &pcx)),
        "UnauthorizedOperation"
    );
}

#[test]
fn accept_only_in_the_accepter_region() {
    let mut w = World::new();
    let pcx = pending(&mut w);
    // B calling from us-east-1: the peering's B side is in us-west-2, so B
    // is not party to it there.
    let b_east = w.call(B, E1);
    assert_eq!(
        refused(&mut w, |s, _| s
            .accept_vpc_peering_connection(&b_east, &pcx)),
        NF
    );
    assert_eq!(w.seen(B, E1, &pcx), None);
    assert_eq!(w.seen(B, W2, &pcx), Some(S::PendingAcceptance));
    // Requester sees it in its own region only.
    assert_eq!(w.seen(A, W2, &pcx), None);
    assert_eq!(w.seen(A, E1, &pcx), Some(S::PendingAcceptance));
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
}

#[test]
fn same_owner_wrong_region_is_operation_not_permitted() {
    // A owns both VPCs, in two regions: in the requester region A sees the
    // peering (as requester) but cannot accept it there.
    let mut w = World::new();
    let a1 = w.vpc(A, E1, &["10.0.0.0/16"]);
    let a2 = w.vpc(A, W2, &["10.1.0.0/16"]);
    let pcx = w
        .request(A, E1, &a1, &a2, A, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let east = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.accept_vpc_peering_connection(&east, &pcx)),
        "OperationNotPermitted"
    );
    w.state
        .accept_vpc_peering_connection(&w.call(A, W2), &pcx)
        .unwrap();
    // Each side's option is set from that side's region.
    let o = ModifyPeeringOptions {
        accepter_allow_dns_resolution_from_remote_vpc: Some(true),
        ..Default::default()
    };
    assert_eq!(
        refused(&mut w, |s, _| s
            .modify_vpc_peering_connection_options(&east, &pcx, &o)),
        "OperationNotPermitted"
    );
    w.state
        .modify_vpc_peering_connection_options(&w.call(A, W2), &pcx, &o)
        .unwrap();
    assert!(
        w.state
            .peering(&pcx)
            .unwrap()
            .accepter
            .allow_dns_resolution_from_remote_vpc
    );
}

#[test]
fn options_only_by_their_side() {
    let mut w = World::new();
    let pcx = pending(&mut w);
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    let (a, b) = (w.call(A, E1), w.call(B, W2));
    let req = ModifyPeeringOptions {
        requester_allow_dns_resolution_from_remote_vpc: Some(true),
        ..Default::default()
    };
    let acc = ModifyPeeringOptions {
        accepter_allow_dns_resolution_from_remote_vpc: Some(true),
        ..Default::default()
    };
    let both = ModifyPeeringOptions {
        requester_allow_dns_resolution_from_remote_vpc: Some(true),
        accepter_allow_dns_resolution_from_remote_vpc: Some(true),
    };
    let unauth = "UnauthorizedOperation";
    assert_eq!(
        refused(&mut w, |s, _| s
            .modify_vpc_peering_connection_options(&a, &pcx, &acc)),
        unauth
    );
    assert_eq!(
        refused(&mut w, |s, _| s
            .modify_vpc_peering_connection_options(&b, &pcx, &req)),
        unauth
    );
    // All-or-nothing: the allowed half is not applied either.
    assert_eq!(
        refused(&mut w, |s, _| s
            .modify_vpc_peering_connection_options(&a, &pcx, &both)),
        unauth
    );
    w.state
        .modify_vpc_peering_connection_options(&a, &pcx, &req)
        .unwrap();
    w.state
        .modify_vpc_peering_connection_options(&b, &pcx, &acc)
        .unwrap();
    let d = &w
        .state
        .describe_vpc_peering_connections(&a, &[], &[])
        .unwrap()[0];
    assert!(
        d.requester_vpc_info
            .peering_options
            .unwrap()
            .allow_dns_resolution_from_remote_vpc
    );
    assert!(
        d.accepter_vpc_info
            .peering_options
            .unwrap()
            .allow_dns_resolution_from_remote_vpc
    );
}

#[test]
fn malformed_ids_and_bad_regions() {
    let mut w = World::new();
    let b = w.call(B, W2);
    for bad in ["", "pcx-", "pcx-ABCDEF12345678901", "vpc-00000000000000001"] {
        assert_eq!(
            refused(&mut w, |s, _| s.accept_vpc_peering_connection(&b, bad)),
            "InvalidVpcPeeringConnectionId.Malformed"
        );
    }
    assert_eq!(
        refused(&mut w, |s, _| s
            .accept_vpc_peering_connection(&b, "pcx-00000000000000abc")),
        NF
    );
    let nowhere = w.call(B, "xx-nowhere-1");
    assert_eq!(
        refused(&mut w, |s, _| s.delete_vpc_peering_connection(
            &nowhere,
            "pcx-00000000000000abc"
        )),
        "InvalidParameterValue"
    );
}
