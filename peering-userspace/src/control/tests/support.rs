//! Test fixtures: a world with a fake clock and sequential ids.

use crate::control::account::{AccountId, Call};
use crate::control::clock::{Clock, FakeClock};
use crate::control::config::{Config, Limits};
use crate::control::error::ApiError;
use crate::control::ids::SequentialIds;
use crate::control::peering::{CreatePeering, PeeringStatus};
use crate::control::peering_describe::VpcPeeringConnection;
use crate::control::state::State;
use crate::control::subnet::CreateSubnet;

pub const A: &str = "111111111111";
pub const B: &str = "222222222222";
pub const C: &str = "333333333333";
pub const E1: &str = "us-east-1";
pub const W2: &str = "us-west-2";
pub const T0: u64 = 1_700_000_000;

pub fn acct(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

pub struct World {
    pub state: State,
    pub ids: SequentialIds,
    pub clock: FakeClock,
}

impl World {
    pub fn new() -> Self {
        World::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        World {
            state: State::new(Config {
                limits,
                ..Config::default()
            }),
            ids: SequentialIds(0),
            clock: FakeClock::new(T0),
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub fn call(&self, account: &str, region: &str) -> Call {
        Call::new(acct(account), region, &self.clock)
    }

    pub fn vpc(&mut self, account: &str, region: &str, cidrs: &[&str]) -> String {
        let call = self.call(account, region);
        let v = self
            .state
            .create_vpc(&call, &mut self.ids, cidrs[0])
            .unwrap();
        for c in &cidrs[1..] {
            self.state
                .associate_vpc_cidr_block(&call, &v.vpc_id, c)
                .unwrap();
        }
        v.vpc_id
    }

    pub fn subnet(
        &mut self,
        account: &str,
        region: &str,
        vpc: &str,
        cidr: &str,
        ifname: &str,
    ) -> String {
        let call = self.call(account, region);
        let req = CreateSubnet {
            vpc_id: vpc.into(),
            cidr_block: cidr.into(),
            interface: ifname.into(),
            vlan: None,
        };
        self.state
            .create_subnet(&call, &mut self.ids, &req)
            .unwrap()
            .subnet_id
    }

    /// Requests a peering from `(account, region, vpc)` to `peer`, owned by
    /// `peer_owner` in `peer_region`.
    pub fn request(
        &mut self,
        account: &str,
        region: &str,
        vpc: &str,
        peer: &str,
        peer_owner: &str,
        peer_region: &str,
    ) -> Result<VpcPeeringConnection, ApiError> {
        let call = self.call(account, region);
        let req = CreatePeering {
            vpc_id: vpc.into(),
            peer_vpc_id: peer.into(),
            peer_owner_id: Some(peer_owner.into()),
            peer_region: Some(peer_region.into()),
        };
        self.state
            .create_vpc_peering_connection(&call, &mut self.ids, &req)
    }

    /// The effective stored status of a peering (no visibility rules).
    pub fn status(&self, pcx: &str) -> PeeringStatus {
        self.state.peering(pcx).unwrap().status_at(self.now())
    }

    /// The status `account` sees in `region`, None if invisible.
    pub fn seen(&self, account: &str, region: &str, pcx: &str) -> Option<PeeringStatus> {
        let call = self.call(account, region);
        self.state
            .describe_vpc_peering_connections(&call, &[pcx.to_owned()], &[])
            .ok()
            .map(|v| v[0].status.code)
    }
}

/// Runs an operation that must fail, checks that it changed nothing, and
/// returns the AWS error code.
pub fn refused<T: std::fmt::Debug>(
    w: &mut World,
    op: impl FnOnce(&mut State, &mut SequentialIds) -> Result<T, ApiError>,
) -> &'static str {
    let before = w.state.clone();
    let err = op(&mut w.state, &mut w.ids).expect_err("operation should be refused");
    assert_eq!(
        w.state, before,
        "a refused operation changed the state ({err})"
    );
    err.code()
}

/// A standard two-account intra-region setup: A's VPC 10.0/16 and B's VPC
/// 10.1/16 in us-east-1. Returns (vpc_a, vpc_b).
pub fn two_vpcs(w: &mut World, b_region: &str) -> (String, String) {
    let a = w.vpc(A, E1, &["10.0.0.0/16"]);
    let b = w.vpc(B, b_region, &["10.1.0.0/16"]);
    (a, b)
}
