//! Peering operations: create, accept, reject, delete, modify options, and
//! the effects of VPC deletion. Authorization and quota rules live here; the
//! state machine itself is in [`crate::control::peering`].

use crate::control::account::{AccountId, Call};
use crate::control::cidr;
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{self, IdSource, Kind};
use crate::control::peering::{
    CreatePeering, ModifyPeeringOptions, Peering, PeeringSide, PeeringStatus, Side, MAX_RETENTION,
};
use crate::control::peering_describe::VpcPeeringConnection;
use crate::control::state::State;
use crate::control::vpc::Vpc;

impl State {
    /// CreateVpcPeeringConnection. Input errors and quota violations are
    /// refused; a request that names no matching VPC or overlapping blocks is
    /// created in the `failed` state, as AWS does.
    pub fn create_vpc_peering_connection(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        req: &CreatePeering,
    ) -> Result<VpcPeeringConnection, ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, &req.vpc_id)?;
        ids::check_id(Kind::Vpc, &req.peer_vpc_id)?;
        let peer_owner = match &req.peer_owner_id {
            Some(o) => AccountId::parse(o)?,
            None => call.account.clone(),
        };
        let peer_region = req
            .peer_region
            .clone()
            .unwrap_or_else(|| call.region.clone());
        self.config.check_region(&peer_region)?;
        if req.peer_vpc_id == req.vpc_id {
            return Err(ApiError::invalid("A VPC cannot be peered with itself"));
        }
        self.check_request_quotas(call, vpc)?;
        self.check_no_live_peering(&req.vpc_id, &req.peer_vpc_id, call.now)?;
        let peer = self
            .vpcs
            .get(&req.peer_vpc_id)
            .filter(|p| p.owner == peer_owner && p.region == peer_region);
        let failure = match peer {
            None => Some("Failed due to incorrect VPC-ID, Account ID or region.".to_owned()),
            Some(p) if cidr::any_overlap(&vpc.cidrs, &p.cidrs) => {
                Some("Failed due to overlapping CIDR range.".to_owned())
            }
            Some(_) => None,
        };
        let accepter = PeeringSide {
            owner: peer_owner,
            vpc_id: req.peer_vpc_id.clone(),
            region: peer_region,
            cidrs: peer.map(|p| p.cidrs.clone()).unwrap_or_default(),
            allow_dns_resolution_from_remote_vpc: false,
        };
        let requester = side_of(vpc);
        let id = self.new_id(Kind::Peering, ids)?;
        let dp_id = self.take_dp_ids(1)?;
        let p = Peering::requested(id.clone(), dp_id, requester, accepter, failure, call.now);
        self.peerings.insert(id.clone(), p);
        Ok(self.describe_peering(&self.peerings[&id], call.now))
    }

    fn check_request_quotas(&self, call: &Call, vpc: &Vpc) -> Result<(), ApiError> {
        let limits = &self.config.limits;
        let outstanding = self
            .peerings
            .values()
            .filter(|p| p.requester.owner == call.account)
            .filter(|p| p.status_at(call.now) == PeeringStatus::PendingAcceptance)
            .count();
        if outstanding >= limits.outstanding_requests_per_account {
            return Err(ApiError::new(
                ErrorCode::OutstandingVpcPeeringConnectionLimitExceeded,
                format!(
                    "You have reached the limit of {} outstanding VPC peering connection requests",
                    limits.outstanding_requests_per_account
                ),
            ));
        }
        self.check_active_quota(&vpc.id, call.now)
    }

    fn check_active_quota(&self, vpc_id: &str, now: u64) -> Result<(), ApiError> {
        let limit = self.config.limits.active_peerings_per_vpc;
        let active = self
            .peerings
            .values()
            .filter(|p| p.side_of_vpc(vpc_id).is_some())
            .filter(|p| p.status_at(now) == PeeringStatus::Active)
            .count();
        if active >= limit {
            return Err(ApiError::new(
                ErrorCode::ActiveVpcPeeringConnectionPerVpcLimitExceeded,
                format!("The VPC '{vpc_id}' has reached its limit of {limit} active peering connections"),
            ));
        }
        Ok(())
    }

    /// One pending or active peering per VPC pair, in either direction.
    fn check_no_live_peering(&self, a: &str, b: &str, now: u64) -> Result<(), ApiError> {
        let existing = self.peerings.values().find(|p| {
            !p.status_at(now).is_terminal()
                && p.side_of_vpc(a).is_some()
                && p.side_of_vpc(b).is_some()
        });
        match existing {
            Some(p) => Err(ApiError::new(
                ErrorCode::VpcPeeringConnectionAlreadyExists,
                format!(
                    "A VPC peering connection ('{}') already exists between {a} and {b}",
                    p.id
                ),
            )),
            None => Ok(()),
        }
    }

    /// The peering `id` if the caller can see it, else NotFound.
    pub(crate) fn visible_peering(&self, call: &Call, id: &str) -> Result<&Peering, ApiError> {
        ids::check_id(Kind::Peering, id)?;
        self.peerings
            .get(id)
            .filter(|p| p.visible_to(&call.account, &call.region, call.now))
            .ok_or_else(|| ApiError::pcx_not_found(id))
    }

    /// AcceptVpcPeeringConnection: accepter owner, in the accepter region.
    pub fn accept_vpc_peering_connection(
        &mut self,
        call: &Call,
        pcx_id: &str,
    ) -> Result<VpcPeeringConnection, ApiError> {
        self.check_call(call)?;
        let p = self.visible_peering(call, pcx_id)?;
        require_side(p, Side::Accepter, call, "accept")?;
        require_pending(p, call.now, "accept")?;
        self.check_active_quota(&p.requester.vpc_id, call.now)?;
        self.check_active_quota(&p.accepter.vpc_id, call.now)?;
        let req_cidrs = self.vpcs.get(&p.requester.vpc_id).map(|v| v.cidrs.clone());
        let acc_cidrs = self.vpcs.get(&p.accepter.vpc_id).map(|v| v.cidrs.clone());
        let p = self.peerings.get_mut(pcx_id).expect("visible above");
        p.requester.cidrs = req_cidrs.unwrap_or_default();
        p.accepter.cidrs = acc_cidrs.unwrap_or_default();
        p.record(PeeringStatus::Provisioning, call.now);
        p.record(PeeringStatus::Active, call.now);
        Ok(self.describe_peering(&self.peerings[pcx_id], call.now))
    }

    /// RejectVpcPeeringConnection: accepter owner, in the accepter region.
    pub fn reject_vpc_peering_connection(
        &mut self,
        call: &Call,
        pcx_id: &str,
    ) -> Result<(), ApiError> {
        self.check_call(call)?;
        let p = self.visible_peering(call, pcx_id)?;
        require_side(p, Side::Accepter, call, "reject")?;
        require_pending(p, call.now, "reject")?;
        let p = self.peerings.get_mut(pcx_id).expect("visible above");
        p.record(PeeringStatus::Rejected, call.now);
        p.ended_at = Some(call.now);
        p.ended_by = Some(Side::Accepter);
        Ok(())
    }

    /// DeleteVpcPeeringConnection: a pending request only by its requester
    /// (the accepter rejects instead: UnauthorizedOperation), an active one
    /// by either owner in its own region.
    pub fn delete_vpc_peering_connection(
        &mut self,
        call: &Call,
        pcx_id: &str,
    ) -> Result<(), ApiError> {
        self.check_call(call)?;
        let p = self.visible_peering(call, pcx_id)?;
        let by = match p.status_at(call.now) {
            PeeringStatus::PendingAcceptance => {
                require_side(p, Side::Requester, call, "delete a pending")?;
                Side::Requester
            }
            PeeringStatus::Active if p.caller_is(Side::Requester, &call.account, &call.region) => {
                Side::Requester
            }
            PeeringStatus::Active => Side::Accepter,
            s => return Err(bad_transition(pcx_id, s, "delete")),
        };
        self.peerings
            .get_mut(pcx_id)
            .expect("visible above")
            .delete(by, call.now);
        Ok(())
    }

    /// ModifyVpcPeeringConnectionOptions: only on an active peering
    /// (OperationNotPermitted otherwise); each side's option only by that
    /// side's owner in its region (UnauthorizedOperation otherwise).
    pub fn modify_vpc_peering_connection_options(
        &mut self,
        call: &Call,
        pcx_id: &str,
        opts: &ModifyPeeringOptions,
    ) -> Result<(), ApiError> {
        self.check_call(call)?;
        let p = self.visible_peering(call, pcx_id)?;
        if p.status_at(call.now) != PeeringStatus::Active {
            return Err(ApiError::new(
                ErrorCode::OperationNotPermitted,
                format!("Peering options of '{pcx_id}' can only be modified while it is active"),
            ));
        }
        let changes = [
            (
                Side::Requester,
                opts.requester_allow_dns_resolution_from_remote_vpc,
            ),
            (
                Side::Accepter,
                opts.accepter_allow_dns_resolution_from_remote_vpc,
            ),
        ];
        for (side, value) in changes {
            if value.is_some() {
                require_side(p, side, call, "modify the options of")?;
            }
        }
        let p = self.peerings.get_mut(pcx_id).expect("visible above");
        for (side, value) in changes {
            if let Some(v) = value {
                p.side_mut(side).allow_dns_resolution_from_remote_vpc = v;
            }
        }
        Ok(())
    }

    /// The VPCs that `vpc_id` has a pending or active peering with.
    pub(crate) fn live_peer_vpcs(&self, vpc_id: &str, now: u64) -> Vec<&Vpc> {
        self.peerings
            .values()
            .filter(|p| !p.status_at(now).is_terminal())
            .filter_map(|p| match p.side_of_vpc(vpc_id)? {
                Side::Requester => self.vpcs.get(&p.accepter.vpc_id),
                Side::Accepter => self.vpcs.get(&p.requester.vpc_id),
            })
            .collect()
    }

    /// Deleting a VPC deletes its pending and active peerings, on behalf of
    /// the deleted VPC's side.
    pub(crate) fn end_peerings_of_deleted_vpc(&mut self, vpc_id: &str, now: u64) {
        let ending: Vec<(String, Side)> = self
            .peerings
            .values()
            .filter(|p| !p.status_at(now).is_terminal())
            .filter_map(|p| Some((p.id.clone(), p.side_of_vpc(vpc_id)?)))
            .collect();
        for (id, side) in ending {
            if let Some(p) = self.peerings.get_mut(&id) {
                p.delete(side, now);
            }
        }
    }

    /// Forgets terminal peerings that no viewer can see any more. Routes that
    /// still name them stay, as blackholes. Returns how many were removed.
    pub fn purge_peerings(&mut self, now: u64) -> usize {
        let before = self.peerings.len();
        self.peerings.retain(|_, p| {
            p.ended_at(now)
                .is_none_or(|t| now < t.saturating_add(MAX_RETENTION))
        });
        before - self.peerings.len()
    }
}

fn side_of(vpc: &Vpc) -> PeeringSide {
    PeeringSide {
        owner: vpc.owner.clone(),
        vpc_id: vpc.id.clone(),
        region: vpc.region.clone(),
        cidrs: vpc.cidrs.clone(),
        allow_dns_resolution_from_remote_vpc: false,
    }
}

/// The caller must act as `side`. Owning that side but calling from the
/// wrong region is OperationNotPermitted (AWS: accept "in the accepter
/// Region"); not owning it is UnauthorizedOperation.
fn require_side(p: &Peering, side: Side, call: &Call, action: &str) -> Result<(), ApiError> {
    let s = p.side(side);
    if p.caller_is(side, &call.account, &call.region) {
        Ok(())
    } else if s.owner == call.account {
        Err(ApiError::new(
            ErrorCode::OperationNotPermitted,
            format!("To {action} '{}' call in region {}", p.id, s.region),
        ))
    } else {
        Err(ApiError::new(
            ErrorCode::UnauthorizedOperation,
            format!(
                "You are not authorized to {action} peering connection '{}'",
                p.id
            ),
        ))
    }
}

fn require_pending(p: &Peering, now: u64, action: &str) -> Result<(), ApiError> {
    match p.status_at(now) {
        PeeringStatus::PendingAcceptance => Ok(()),
        s => Err(bad_transition(&p.id, s, action)),
    }
}

fn bad_transition(id: &str, s: PeeringStatus, action: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidStateTransition,
        format!(
            "Cannot {action} VPC peering connection '{id}' in state {}",
            s.as_str()
        ),
    )
}
