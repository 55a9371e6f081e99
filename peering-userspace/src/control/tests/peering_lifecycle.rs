//! Peering state machine: every state × action, creation outcomes, expiry,
//! retention and quotas.

use super::support::*;
use crate::control::clock::{DAY, HOUR};
use crate::control::config::Limits;
use crate::control::peering::{ModifyPeeringOptions, PeeringStatus as S};
use crate::control::peering_describe::Filter;

#[derive(Debug, Clone, Copy)]
enum Reach {
    Pending,
    Active,
    Rejected,
    DeletedWhilePending,
    DeletedWhileActive,
    Failed,
    Expired,
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Accept,
    Reject,
    DeleteByRequester,
    DeleteByAccepter,
    ModifyRequesterOption,
}

/// Builds a peering between A's VPC (us-east-1) and B's VPC in `b_region`
/// and drives it into `reach`.
fn reach(w: &mut World, b_region: &str, reach: Reach) -> String {
    let (va, vb) = two_vpcs(w, b_region);
    let peer = if matches!(reach, Reach::Failed) {
        w.vpc(B, b_region, &["10.0.0.0/20"])
    } else {
        vb
    };
    let pcx = w
        .request(A, E1, &va, &peer, B, b_region)
        .unwrap()
        .vpc_peering_connection_id;
    let (req, acc) = (w.call(A, E1), w.call(B, b_region));
    match reach {
        Reach::Pending | Reach::Failed => {}
        Reach::Active => drop(w.state.accept_vpc_peering_connection(&acc, &pcx).unwrap()),
        Reach::Rejected => w.state.reject_vpc_peering_connection(&acc, &pcx).unwrap(),
        Reach::DeletedWhilePending => w.state.delete_vpc_peering_connection(&req, &pcx).unwrap(),
        Reach::DeletedWhileActive => {
            w.state.accept_vpc_peering_connection(&acc, &pcx).unwrap();
            w.state.delete_vpc_peering_connection(&req, &pcx).unwrap();
        }
        Reach::Expired => w.clock.advance(7 * DAY),
    }
    pcx
}

fn act(w: &mut World, b_region: &str, pcx: &str, action: Act) -> Result<S, &'static str> {
    let (req, acc) = (w.call(A, E1), w.call(B, b_region));
    let before = w.state.clone();
    let r = match action {
        Act::Accept => w.state.accept_vpc_peering_connection(&acc, pcx).map(drop),
        Act::Reject => w.state.reject_vpc_peering_connection(&acc, pcx),
        Act::DeleteByRequester => w.state.delete_vpc_peering_connection(&req, pcx),
        Act::DeleteByAccepter => w.state.delete_vpc_peering_connection(&acc, pcx),
        Act::ModifyRequesterOption => {
            let o = ModifyPeeringOptions {
                requester_allow_dns_resolution_from_remote_vpc: Some(true),
                ..Default::default()
            };
            w.state.modify_vpc_peering_connection_options(&req, pcx, &o)
        }
    };
    match r {
        Ok(()) => Ok(w.status(pcx)),
        Err(e) => {
            assert_eq!(w.state, before, "refused {action:?} changed state");
            Err(e.code())
        }
    }
}

const IST: &str = "InvalidStateTransition";
const NF: &str = "InvalidVpcPeeringConnectionID.NotFound";
const ONP: &str = "OperationNotPermitted";

#[test]
fn every_state_times_every_action() {
    use Act::*;
    use Reach::*;
    let table: [(Reach, [Result<S, &str>; 5]); 7] = [
        (
            Pending,
            [
                Ok(S::Active),
                Ok(S::Rejected),
                Ok(S::Deleted),
                Err("UnauthorizedOperation"),
                Err(ONP),
            ],
        ),
        (
            Active,
            [
                Err(IST),
                Err(IST),
                Ok(S::Deleted),
                Ok(S::Deleted),
                Ok(S::Active),
            ],
        ),
        (Rejected, [Err(IST), Err(IST), Err(IST), Err(IST), Err(ONP)]),
        (
            DeletedWhilePending,
            [Err(IST), Err(IST), Err(IST), Err(IST), Err(ONP)],
        ),
        (
            DeletedWhileActive,
            [Err(IST), Err(IST), Err(IST), Err(IST), Err(ONP)],
        ),
        // The accepter never sees a failed request.
        (Failed, [Err(NF), Err(NF), Err(IST), Err(NF), Err(ONP)]),
        (Expired, [Err(IST), Err(IST), Err(IST), Err(IST), Err(ONP)]),
    ];
    let actions = [
        Accept,
        Reject,
        DeleteByRequester,
        DeleteByAccepter,
        ModifyRequesterOption,
    ];
    for b_region in [E1, W2] {
        for (state, expected) in &table {
            for (action, want) in actions.iter().zip(expected) {
                let mut w = World::new();
                let pcx = reach(&mut w, b_region, *state);
                let got = act(&mut w, b_region, &pcx, *action);
                assert_eq!(
                    &got, want,
                    "{state:?} × {action:?} (accepter in {b_region})"
                );
            }
        }
    }
}

#[test]
fn transitions_are_recorded() {
    let mut w = World::new();
    let pcx = reach(&mut w, W2, Reach::DeletedWhileActive);
    let h: Vec<S> = w
        .state
        .peering(&pcx)
        .unwrap()
        .history
        .iter()
        .map(|t| t.status)
        .collect();
    assert_eq!(
        h,
        [
            S::InitiatingRequest,
            S::PendingAcceptance,
            S::Provisioning,
            S::Active,
            S::Deleting,
            S::Deleted
        ]
    );
    // Intra-region deletion skips `deleting`.
    let mut w = World::new();
    let pcx = reach(&mut w, E1, Reach::DeletedWhileActive);
    let last: Vec<S> = w
        .state
        .peering(&pcx)
        .unwrap()
        .history
        .iter()
        .rev()
        .take(2)
        .map(|t| t.status)
        .collect();
    assert_eq!(last, [S::Deleted, S::Active]);
}

#[test]
fn overlap_fails_including_secondary_blocks() {
    let mut w = World::new();
    // Secondary blocks outside RFC 1918 (AWS allows no second private
    // range in a VPC).
    let a = w.vpc(A, E1, &["10.0.0.0/16", "100.64.0.0/16"]);
    let b = w.vpc(B, W2, &["192.168.0.0/16", "100.64.128.0/20"]);
    let c = w.vpc(B, W2, &["10.1.0.0/16", "100.65.0.0/16"]);
    let p = w.request(A, E1, &a, &b, B, W2).unwrap();
    assert_eq!(p.status.code, S::Failed);
    assert!(p.status.message.contains("overlapping"));
    assert_eq!(
        w.request(A, E1, &a, &c, B, W2).unwrap().status.code,
        S::PendingAcceptance
    );
    // Reverse direction also overlaps via the secondary block.
    let d = w.vpc(B, E1, &["100.64.255.240/28"]);
    assert_eq!(
        w.request(B, E1, &d, &a, A, E1).unwrap().status.code,
        S::Failed
    );
}

#[test]
fn missing_or_mismatched_peer_fails() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    for (peer, owner, region) in [
        ("vpc-0000000000000dead", B, W2), // no such VPC
        (b.as_str(), C, W2),              // wrong owner
        (b.as_str(), B, E1),              // wrong region
    ] {
        let p = w.request(A, E1, &a, peer, owner, region).unwrap();
        assert_eq!(p.status.code, S::Failed, "{peer} {owner} {region}");
        assert_eq!(w.seen(owner, region, &p.vpc_peering_connection_id), None);
    }
    assert_eq!(
        w.request(A, E1, &a, &b, B, W2).unwrap().status.code,
        S::PendingAcceptance
    );
}

#[test]
fn create_input_errors() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    let cases = [
        ("vpc-1", b.as_str(), B, W2, "InvalidVpcID.Malformed"),
        (a.as_str(), "vpc-xyz", B, W2, "InvalidVpcID.Malformed"),
        (a.as_str(), b.as_str(), "12", W2, "InvalidParameterValue"),
        (a.as_str(), b.as_str(), B, "moon-1", "InvalidParameterValue"),
        (a.as_str(), a.as_str(), A, E1, "InvalidParameterValue"),
        (b.as_str(), a.as_str(), A, E1, "InvalidVpcID.NotFound"), // not A's VPC
    ];
    for (vpc, peer, owner, region, code) in cases {
        let before = w.state.clone();
        let e = w.request(A, E1, vpc, peer, owner, region).unwrap_err();
        assert_eq!(e.code(), code, "{vpc} {peer} {owner} {region}");
        assert_eq!(w.state, before);
    }
}

#[test]
fn defaults_are_caller_account_and_region() {
    let mut w = World::new();
    let a = w.vpc(A, E1, &["10.0.0.0/16"]);
    let a2 = w.vpc(A, E1, &["10.1.0.0/16"]);
    let call = w.call(A, E1);
    let req = crate::control::peering::CreatePeering {
        vpc_id: a.clone(),
        peer_vpc_id: a2.clone(),
        ..Default::default()
    };
    let p = w
        .state
        .create_vpc_peering_connection(&call, &mut w.ids, &req)
        .unwrap();
    assert_eq!(p.status.code, S::PendingAcceptance);
    assert_eq!(p.accepter_vpc_info.owner_id, A);
    assert_eq!(p.accepter_vpc_info.region, E1);
    // Same account owns both sides: it can accept its own request.
    w.state
        .accept_vpc_peering_connection(&call, &p.vpc_peering_connection_id)
        .unwrap();
}

#[test]
fn one_live_peering_per_pair() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    let p = w
        .request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let dup = "VpcPeeringConnectionAlreadyExists";
    assert_eq!(w.request(A, E1, &a, &b, B, W2).unwrap_err().code(), dup);
    assert_eq!(w.request(B, W2, &b, &a, A, E1).unwrap_err().code(), dup);
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &p)
        .unwrap();
    assert_eq!(w.request(B, W2, &b, &a, A, E1).unwrap_err().code(), dup);
    w.state
        .delete_vpc_peering_connection(&w.call(B, W2), &p)
        .unwrap();
    assert_eq!(
        w.request(B, W2, &b, &a, A, E1).unwrap().status.code,
        S::PendingAcceptance
    );
}

#[test]
fn expiry_is_lazy_and_exact() {
    let mut w = World::new();
    let pcx = reach(&mut w, W2, Reach::Pending);
    let d = &w
        .state
        .describe_vpc_peering_connections(&w.call(A, E1), &[], &[])
        .unwrap()[0];
    assert_eq!(d.expiration_time, Some(T0 + 7 * DAY));
    w.clock.advance(7 * DAY - 1);
    assert_eq!(w.seen(B, W2, &pcx), Some(S::PendingAcceptance));
    w.clock.advance(1);
    assert_eq!(w.seen(A, E1, &pcx), Some(S::Expired));
    assert_eq!(w.seen(B, W2, &pcx), Some(S::Expired));
    // Expired: kept two days for both sides.
    w.clock.advance(2 * DAY - 1);
    assert_eq!(w.seen(A, E1, &pcx), Some(S::Expired));
    w.clock.advance(1);
    assert_eq!(w.seen(A, E1, &pcx), None);
    assert_eq!(w.seen(B, W2, &pcx), None);
}

/// (state, requester retention, accepter retention)
#[test]
fn retention_per_viewer() {
    let cases = [
        (Reach::Failed, 2 * HOUR, 0),
        (Reach::Rejected, 2 * DAY, 2 * HOUR),
        (Reach::DeletedWhilePending, 2 * HOUR, 2 * DAY), // requester deleted
        (Reach::DeletedWhileActive, 2 * HOUR, 2 * DAY),  // requester deleted
    ];
    for (state, req_keep, acc_keep) in cases {
        for (viewer, region, keep) in [(A, E1, req_keep), (B, W2, acc_keep)] {
            let mut w = World::new();
            let pcx = reach(&mut w, W2, state);
            if keep > 0 {
                w.clock.advance(keep - 1);
                assert!(
                    w.seen(viewer, region, &pcx).is_some(),
                    "{state:?} {viewer} before"
                );
                w.clock.advance(1);
            }
            assert_eq!(
                w.seen(viewer, region, &pcx),
                None,
                "{state:?} {viewer} after"
            );
        }
    }
    // Deleted by the accepter: the accepter keeps it 2 h, the requester 2 d.
    let mut w = World::new();
    let pcx = reach(&mut w, W2, Reach::Active);
    w.state
        .delete_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    w.clock.advance(2 * HOUR);
    assert_eq!(w.seen(B, W2, &pcx), None);
    assert_eq!(w.seen(A, E1, &pcx), Some(S::Deleted));
    w.clock.advance(2 * DAY - 2 * HOUR);
    assert_eq!(w.seen(A, E1, &pcx), None);
    assert_eq!(w.state.purge_peerings(w.now()), 1);
    assert!(w.state.peering(&pcx).is_none());
}

#[test]
fn purge_keeps_what_someone_can_still_see() {
    let mut w = World::new();
    let pcx = reach(&mut w, W2, Reach::Rejected);
    w.clock.advance(2 * DAY - 1);
    assert_eq!(w.state.purge_peerings(w.now()), 0);
    w.clock.advance(1);
    assert_eq!(w.state.purge_peerings(w.now()), 1);
    assert!(w.state.peering(&pcx).is_none());
}

#[test]
fn outstanding_request_quota() {
    let mut w = World::with_limits(Limits {
        outstanding_requests_per_account: 2,
        ..Limits::default()
    });
    let a = w.vpc(A, E1, &["10.0.0.0/16"]);
    let peers: Vec<String> = (1..=4)
        .map(|i| w.vpc(B, E1, &[&format!("10.{i}.0.0/16")]))
        .collect();
    let p1 = w
        .request(A, E1, &a, &peers[0], B, E1)
        .unwrap()
        .vpc_peering_connection_id;
    w.request(A, E1, &a, &peers[1], B, E1).unwrap();
    let code = "OutstandingVpcPeeringConnectionLimitExceeded";
    assert_eq!(
        w.request(A, E1, &a, &peers[2], B, E1).unwrap_err().code(),
        code
    );
    // Another account's quota is separate.
    let b0 = peers[3].clone();
    w.request(B, E1, &b0, &a, A, E1).unwrap();
    // Accepting frees a slot; expiry frees all.
    w.state
        .accept_vpc_peering_connection(&w.call(B, E1), &p1)
        .unwrap();
    w.request(A, E1, &a, &peers[2], B, E1).unwrap();
    assert_eq!(
        w.request(A, E1, &a, &peers[3], B, E1).unwrap_err().code(),
        code
    );
    w.clock.advance(7 * DAY);
    w.request(A, E1, &a, &peers[1], B, E1).unwrap();
}

#[test]
fn active_per_vpc_quota() {
    let mut w = World::with_limits(Limits {
        active_peerings_per_vpc: 2,
        ..Limits::default()
    });
    let hub = w.vpc(A, E1, &["10.0.0.0/16"]);
    let spokes: Vec<String> = (1..=3)
        .map(|i| w.vpc(B, E1, &[&format!("10.{i}.0.0/16")]))
        .collect();
    let acc = w.call(B, E1);
    let mut ids = vec![];
    for s in &spokes {
        ids.push(
            w.request(A, E1, &hub, s, B, E1)
                .unwrap()
                .vpc_peering_connection_id,
        );
    }
    w.state
        .accept_vpc_peering_connection(&acc, &ids[0])
        .unwrap();
    w.state
        .accept_vpc_peering_connection(&acc, &ids[1])
        .unwrap();
    let code = "ActiveVpcPeeringConnectionPerVpcLimitExceeded";
    assert_eq!(
        refused(&mut w, |s, _| s
            .accept_vpc_peering_connection(&acc, &ids[2])),
        code
    );
    // A new request from the full VPC is refused too; from the spoke it is
    // accepted but cannot be activated.
    let extra = w.vpc(B, E1, &["10.9.0.0/16"]);
    assert_eq!(
        w.request(A, E1, &hub, &extra, B, E1).unwrap_err().code(),
        code
    );
    w.state
        .delete_vpc_peering_connection(&w.call(A, E1), &ids[0])
        .unwrap();
    w.state
        .accept_vpc_peering_connection(&acc, &ids[2])
        .unwrap();
}

#[test]
fn deleting_a_vpc_deletes_its_peerings() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    let c = w.vpc(B, W2, &["10.2.0.0/16"]);
    let active = w
        .request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    w.state
        .accept_vpc_peering_connection(&w.call(B, W2), &active)
        .unwrap();
    let pending = w
        .request(A, E1, &a, &c, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    w.state.delete_vpc(&w.call(A, E1), &a).unwrap();
    assert_eq!(w.status(&active), S::Deleted);
    assert_eq!(w.status(&pending), S::Deleted);
    let p = w.state.peering(&active).unwrap();
    assert_eq!(p.ended_by, Some(crate::control::peering::Side::Requester));
    // The other side still sees it (2 days), with the snapshot of A's blocks.
    let d = w
        .state
        .describe_vpc_peering_connections(&w.call(B, W2), &[active], &[])
        .unwrap();
    assert_eq!(
        d[0].requester_vpc_info.cidr_block.as_deref(),
        Some("10.0.0.0/16")
    );
}

#[test]
fn cidr_association_cannot_overlap_a_peer() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    let pcx = w
        .request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let call = w.call(A, E1);
    assert_eq!(
        refused(&mut w, |s, _| s.associate_vpc_cidr_block(
            &call,
            &a,
            "10.1.16.0/20"
        )),
        "CidrConflict"
    );
    w.state
        .reject_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    w.state
        .associate_vpc_cidr_block(&call, &a, "10.1.16.0/20")
        .unwrap();
}

#[test]
fn describe_filters() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, E1);
    let c = w.vpc(A, E1, &["10.2.0.0/16"]);
    let p1 = w
        .request(A, E1, &a, &b, B, E1)
        .unwrap()
        .vpc_peering_connection_id;
    let p2 = w
        .request(A, E1, &a, &c, A, E1)
        .unwrap()
        .vpc_peering_connection_id;
    w.state
        .accept_vpc_peering_connection(&w.call(A, E1), &p2)
        .unwrap();
    let call = w.call(A, E1);
    let ids = |filters: &[Filter]| -> Vec<String> {
        let r = w
            .state
            .describe_vpc_peering_connections(&call, &[], filters)
            .unwrap();
        r.into_iter().map(|p| p.vpc_peering_connection_id).collect()
    };
    assert_eq!(ids(&[]).len(), 2);
    assert_eq!(
        ids(&[Filter::new("status-code", &["active"])]),
        vec![p2.clone()]
    );
    assert_eq!(
        ids(&[Filter::new(
            "status-code",
            &["active", "pending-acceptance"]
        )])
        .len(),
        2
    );
    assert_eq!(
        ids(&[Filter::new("accepter-vpc-info.owner-id", &[B])]),
        vec![p1.clone()]
    );
    assert_eq!(
        ids(&[Filter::new("accepter-vpc-info.vpc-id", &[&c])]),
        vec![p2.clone()]
    );
    assert_eq!(
        ids(&[Filter::new("requester-vpc-info.vpc-id", &[&a])]).len(),
        2
    );
    assert_eq!(
        ids(&[Filter::new("requester-vpc-info.owner-id", &[B])]).len(),
        0
    );
    assert_eq!(
        ids(&[Filter::new("vpc-peering-connection-id", &[&p1])]),
        vec![p1.clone()]
    );
    assert!(ids(&[
        Filter::new("vpc-peering-connection-id", &[&p1]),
        Filter::new("status-code", &["active"])
    ])
    .is_empty());
    for bad in [
        Filter::new("tag:x", &["y"]),
        Filter::new("status-code", &[]),
    ] {
        let e = w
            .state
            .describe_vpc_peering_connections(&call, &[], &[bad])
            .unwrap_err();
        assert_eq!(e.code(), "InvalidParameterValue");
    }
    let e = w
        .state
        .describe_vpc_peering_connections(&call, &["pcx-x".into()], &[])
        .unwrap_err();
    assert_eq!(e.code(), "InvalidVpcPeeringConnectionId.Malformed");
}

#[test]
fn describe_json_shape() {
    let mut w = World::new();
    let (a, b) = two_vpcs(&mut w, W2);
    let pcx = w
        .request(A, E1, &a, &b, B, W2)
        .unwrap()
        .vpc_peering_connection_id;
    let pending = serde_json::to_value(
        &w.state
            .describe_vpc_peering_connections(&w.call(B, W2), &[], &[])
            .unwrap()[0],
    )
    .unwrap();
    assert_eq!(pending["VpcPeeringConnectionId"], pcx.as_str());
    assert_eq!(pending["Status"]["Code"], "pending-acceptance");
    assert_eq!(
        pending["Status"]["Message"],
        format!("Pending acceptance by {B}")
    );
    assert_eq!(pending["ExpirationTime"], T0 + 7 * DAY);
    assert_eq!(
        pending["RequesterVpcInfo"]["CidrBlockSet"][0]["CidrBlock"],
        "10.0.0.0/16"
    );
    assert!(
        pending["AccepterVpcInfo"].get("CidrBlock").is_none(),
        "accepter blocks hidden until accepted"
    );
    let active = w
        .state
        .accept_vpc_peering_connection(&w.call(B, W2), &pcx)
        .unwrap();
    let v = serde_json::to_value(&active).unwrap();
    assert_eq!(v["Status"]["Code"], "active");
    assert!(v.get("ExpirationTime").is_none());
    assert_eq!(v["AccepterVpcInfo"]["CidrBlock"], "10.1.0.0/16");
    assert_eq!(v["AccepterVpcInfo"]["Region"], W2);
    assert_eq!(v["AccepterVpcInfo"]["OwnerId"], B);
    assert_eq!(
        v["RequesterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"],
        false
    );
}
