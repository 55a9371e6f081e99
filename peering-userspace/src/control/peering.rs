//! VPC peering connections: the lifecycle state machine, quotas and
//! authorization, after
//! https://docs.aws.amazon.com/vpc/latest/peering/vpc-peering-basics.html#vpc-peering-lifecycle
//!
//! ```text
//! initiating-request ─┬─> pending-acceptance ─┬─> provisioning ─> active ─┬─> (deleting) ─> deleted
//!                     └─> failed              ├─> rejected                 │
//!                                             ├─> expired (lazy, 7 days)   │
//!                                             └─> deleted <────────────────┘
//! ```
//! Transitional states (initiating-request, provisioning, deleting) are
//! instantaneous here but recorded in `history`. Expiry is evaluated lazily:
//! the stored status stays `pending-acceptance` and [`Peering::status_at`]
//! reports `expired` once the deadline has passed.

use crate::control::account::AccountId;
use crate::control::clock::{DAY, HOUR};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// An unaccepted request expires after one week.
pub const PENDING_EXPIRY: u64 = 7 * DAY;
/// Retention of terminal states, from the lifecycle page above.
pub const FAILED_RETENTION: u64 = 2 * HOUR;
pub const EXPIRED_RETENTION: u64 = 2 * DAY;
pub const REJECTED_RETENTION_REQUESTER: u64 = 2 * DAY;
pub const REJECTED_RETENTION_ACCEPTER: u64 = 2 * HOUR;
pub const DELETED_RETENTION_DELETER: u64 = 2 * HOUR;
pub const DELETED_RETENTION_OTHER: u64 = 2 * DAY;
/// The longest of the retentions: after it nobody sees the peering.
pub const MAX_RETENTION: u64 = 2 * DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeeringStatus {
    InitiatingRequest,
    PendingAcceptance,
    Provisioning,
    Active,
    Deleting,
    Deleted,
    Rejected,
    Failed,
    Expired,
}

impl PeeringStatus {
    pub const ALL: [PeeringStatus; 9] = [
        PeeringStatus::InitiatingRequest,
        PeeringStatus::PendingAcceptance,
        PeeringStatus::Provisioning,
        PeeringStatus::Active,
        PeeringStatus::Deleting,
        PeeringStatus::Deleted,
        PeeringStatus::Rejected,
        PeeringStatus::Failed,
        PeeringStatus::Expired,
    ];

    /// The AWS status code string, e.g. `pending-acceptance`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeeringStatus::InitiatingRequest => "initiating-request",
            PeeringStatus::PendingAcceptance => "pending-acceptance",
            PeeringStatus::Provisioning => "provisioning",
            PeeringStatus::Active => "active",
            PeeringStatus::Deleting => "deleting",
            PeeringStatus::Deleted => "deleted",
            PeeringStatus::Rejected => "rejected",
            PeeringStatus::Failed => "failed",
            PeeringStatus::Expired => "expired",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PeeringStatus::Deleted
                | PeeringStatus::Rejected
                | PeeringStatus::Failed
                | PeeringStatus::Expired
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Requester,
    Accepter,
}

/// One end of a peering. `cidrs` is a snapshot refreshed at creation and
/// acceptance; live VPC blocks are preferred while the VPC exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringSide {
    pub owner: AccountId,
    pub vpc_id: String,
    pub region: String,
    pub cidrs: Vec<Ipv4Net>,
    pub allow_dns_resolution_from_remote_vpc: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub status: PeeringStatus,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peering {
    pub id: String,
    pub dp_id: u32,
    pub requester: PeeringSide,
    pub accepter: PeeringSide,
    /// Stored status; use [`Peering::status_at`] for the effective one.
    pub status: PeeringStatus,
    pub history: Vec<Transition>,
    pub created_at: u64,
    pub expires_at: u64,
    pub ended_at: Option<u64>,
    pub ended_by: Option<Side>,
    pub failure: Option<String>,
}

impl Peering {
    /// A new request: `initiating-request`, then `failed` if `failure` is
    /// set, else `pending-acceptance` until `now + PENDING_EXPIRY`.
    pub(crate) fn requested(
        id: String,
        dp_id: u32,
        requester: PeeringSide,
        accepter: PeeringSide,
        failure: Option<String>,
        now: u64,
    ) -> Self {
        let mut p = Peering {
            id,
            dp_id,
            requester,
            accepter,
            status: PeeringStatus::InitiatingRequest,
            history: vec![],
            created_at: now,
            expires_at: now.saturating_add(PENDING_EXPIRY),
            ended_at: None,
            ended_by: None,
            failure: None,
        };
        p.record(PeeringStatus::InitiatingRequest, now);
        if failure.is_some() {
            p.record(PeeringStatus::Failed, now);
            p.ended_at = Some(now);
            p.failure = failure;
        } else {
            p.record(PeeringStatus::PendingAcceptance, now);
        }
        p
    }

    /// The effective status at `now` (applies lazy expiry).
    pub fn status_at(&self, now: u64) -> PeeringStatus {
        if self.status == PeeringStatus::PendingAcceptance && now >= self.expires_at {
            PeeringStatus::Expired
        } else {
            self.status
        }
    }

    /// When the peering reached its terminal state, if it has by `now`.
    pub fn ended_at(&self, now: u64) -> Option<u64> {
        match self.status_at(now) {
            PeeringStatus::Expired => Some(self.expires_at),
            _ => self.ended_at,
        }
    }

    pub fn side(&self, side: Side) -> &PeeringSide {
        match side {
            Side::Requester => &self.requester,
            Side::Accepter => &self.accepter,
        }
    }

    pub(crate) fn side_mut(&mut self, side: Side) -> &mut PeeringSide {
        match side {
            Side::Requester => &mut self.requester,
            Side::Accepter => &mut self.accepter,
        }
    }

    pub fn side_of_vpc(&self, vpc_id: &str) -> Option<Side> {
        if self.requester.vpc_id == vpc_id {
            Some(Side::Requester)
        } else if self.accepter.vpc_id == vpc_id {
            Some(Side::Accepter)
        } else {
            None
        }
    }

    pub fn is_inter_region(&self) -> bool {
        self.requester.region != self.accepter.region
    }

    pub fn was_active(&self) -> bool {
        self.history
            .iter()
            .any(|t| t.status == PeeringStatus::Active)
    }

    /// Whether the caller acts as `side`: owner of that side, calling in that
    /// side's region.
    pub fn caller_is(&self, side: Side, account: &AccountId, region: &str) -> bool {
        let s = self.side(side);
        s.owner == *account && s.region == region
    }

    /// Whether `account` calling in `region` can see the peering at `now`.
    /// A failed request never reached the accepter, so only the requester
    /// sees it. Terminal peerings stay visible for their retention time,
    /// which depends on the viewer's side.
    pub fn visible_to(&self, account: &AccountId, region: &str, now: u64) -> bool {
        let status = self.status_at(now);
        let sides = [Side::Requester, Side::Accepter]
            .into_iter()
            .filter(|&s| self.caller_is(s, account, region))
            .filter(|&s| s == Side::Requester || status != PeeringStatus::Failed);
        let Some(ended) = self.ended_at(now) else {
            return sides.count() > 0;
        };
        sides
            .map(|s| self.retention_for(status, s))
            .max()
            .is_some_and(|keep| now < ended.saturating_add(keep))
    }

    fn retention_for(&self, status: PeeringStatus, viewer: Side) -> u64 {
        match status {
            PeeringStatus::Failed => FAILED_RETENTION,
            PeeringStatus::Expired => EXPIRED_RETENTION,
            PeeringStatus::Rejected if viewer == Side::Requester => REJECTED_RETENTION_REQUESTER,
            PeeringStatus::Rejected => REJECTED_RETENTION_ACCEPTER,
            PeeringStatus::Deleted if self.ended_by == Some(viewer) => DELETED_RETENTION_DELETER,
            PeeringStatus::Deleted => DELETED_RETENTION_OTHER,
            _ => u64::MAX,
        }
    }

    pub(crate) fn record(&mut self, status: PeeringStatus, now: u64) {
        self.status = status;
        self.history.push(Transition { status, at: now });
    }

    /// Moves a live peering to `deleted` by `by`, through `deleting` when it
    /// was active across regions (both regions must tear down).
    pub(crate) fn delete(&mut self, by: Side, now: u64) {
        if self.status == PeeringStatus::Active && self.is_inter_region() {
            self.record(PeeringStatus::Deleting, now);
        }
        self.record(PeeringStatus::Deleted, now);
        self.ended_at = Some(now);
        self.ended_by = Some(by);
    }
}

/// CreateVpcPeeringConnection input. `peer_owner_id` defaults to the caller,
/// `peer_region` to the call's region, as in AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePeering {
    pub vpc_id: String,
    pub peer_vpc_id: String,
    pub peer_owner_id: Option<String>,
    pub peer_region: Option<String>,
}

/// ModifyVpcPeeringConnectionOptions input: `None` leaves a side unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyPeeringOptions {
    pub requester_allow_dns_resolution_from_remote_vpc: Option<bool>,
    pub accepter_allow_dns_resolution_from_remote_vpc: Option<bool>,
}
