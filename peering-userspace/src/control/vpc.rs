//! VPCs and their IPv4 CIDR blocks.

use crate::control::account::{AccountId, Call};
use crate::control::cidr;
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{IdSource, Kind};
use crate::control::route_table::RouteTable;
use crate::control::state::State;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A VPC. `cidrs[0]` is the primary block, the rest are secondary blocks in
/// association order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub dp_id: u32,
    pub owner: AccountId,
    pub region: String,
    pub cidrs: Vec<Ipv4Net>,
    pub main_route_table_id: String,
    /// The VPC's default security group (None only in a store written
    /// before security groups existed, until the first write adopts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group_id: Option<String>,
}

impl Vpc {
    pub fn primary_cidr(&self) -> Ipv4Net {
        self.cidrs[0]
    }
}

/// DescribeVpcs output element, shaped like the EC2 JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcDescription {
    pub vpc_id: String,
    pub owner_id: String,
    pub cidr_block: String,
    pub cidr_block_association_set: Vec<CidrBlock>,
    pub state: String,
}

/// `{"CidrBlock": "10.0.0.0/16"}`, used by VPC and peering descriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrBlock {
    pub cidr_block: String,
}

pub(crate) fn cidr_block_set(cidrs: &[Ipv4Net]) -> Vec<CidrBlock> {
    cidrs
        .iter()
        .map(|c| CidrBlock {
            cidr_block: c.to_string(),
        })
        .collect()
}

impl From<&Vpc> for VpcDescription {
    fn from(v: &Vpc) -> Self {
        VpcDescription {
            vpc_id: v.id.clone(),
            owner_id: v.owner.to_string(),
            cidr_block: v.primary_cidr().to_string(),
            cidr_block_association_set: cidr_block_set(&v.cidrs),
            state: "available".into(),
        }
    }
}

impl State {
    /// CreateVpc: a VPC with `cidr_block` as primary block and its main
    /// route table, in the call's region, owned by the caller.
    pub fn create_vpc(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        cidr_block: &str,
    ) -> Result<VpcDescription, ApiError> {
        self.check_call(call)?;
        let cidr = cidr::parse_vpc_block(cidr_block)?;
        let vpc_id = self.new_id(Kind::Vpc, ids)?;
        let rtb_id = self.new_id(Kind::RouteTable, ids)?;
        // VPC, main table, default group and its two rules.
        let group =
            self.default_group(ids, &vpc_id, &call.account, self.next_dp_id.wrapping_add(2))?;
        let first = self.take_dp_ids(5)?;
        let vpc = Vpc {
            id: vpc_id.clone(),
            dp_id: first,
            owner: call.account.clone(),
            region: call.region.clone(),
            cidrs: vec![cidr],
            main_route_table_id: rtb_id.clone(),
            default_group_id: Some(group.id.clone()),
        };
        self.security_groups.insert(group.id.clone(), group);
        let out = VpcDescription::from(&vpc);
        self.route_tables.insert(
            rtb_id.clone(),
            RouteTable::new(rtb_id, first + 1, vpc_id.clone()),
        );
        self.vpcs.insert(vpc_id, vpc);
        Ok(out)
    }

    /// AssociateVpcCidrBlock: adds a secondary block. It must not overlap the
    /// VPC's blocks, nor (to keep peered address spaces disjoint, as AWS
    /// requires) the blocks of a VPC it is peered with or has a pending
    /// request with.
    pub fn associate_vpc_cidr_block(
        &mut self,
        call: &Call,
        vpc_id: &str,
        cidr_block: &str,
    ) -> Result<VpcDescription, ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, vpc_id)?;
        let cidr = cidr::parse_vpc_block(cidr_block)?;
        cidr::check_secondary(&vpc.primary_cidr(), &cidr)?;
        if vpc.cidrs.len() >= self.config.limits.cidr_blocks_per_vpc {
            return Err(ApiError::new(
                ErrorCode::CidrLimitExceeded,
                format!(
                    "This network '{vpc_id}' has met its maximum number of allowed CIDRs: {}",
                    self.config.limits.cidr_blocks_per_vpc
                ),
            ));
        }
        if let Some(c) = vpc.cidrs.iter().find(|c| cidr::overlaps(c, &cidr)) {
            return Err(ApiError::new(
                ErrorCode::CidrConflict,
                format!("The CIDR '{cidr}' conflicts with the VPC's block '{c}'"),
            ));
        }
        // A new block must not swallow an existing peering route: routes may
        // not be as specific as or more specific than the local route.
        if let Some(r) = self
            .route_tables
            .values()
            .filter(|t| t.vpc_id == vpc_id)
            .flat_map(|t| t.routes.values())
            .find(|r| cidr.contains(&r.destination))
        {
            return Err(ApiError::new(
                ErrorCode::CidrConflict,
                format!("The CIDR '{cidr}' covers the route to '{}'", r.destination),
            ));
        }
        for peer in self.live_peer_vpcs(vpc_id, call.now) {
            if cidr::any_overlap(&peer.cidrs, &[cidr]) {
                return Err(ApiError::new(
                    ErrorCode::CidrConflict,
                    format!("The CIDR '{cidr}' overlaps peered VPC '{}'", peer.id),
                ));
            }
        }
        let vpc = self.vpcs.get_mut(vpc_id).expect("checked above");
        vpc.cidrs.push(cidr);
        Ok(VpcDescription::from(&*vpc))
    }

    /// DisassociateVpcCidrBlock: removes a secondary block that no subnet
    /// uses. The primary block cannot be removed.
    pub fn disassociate_vpc_cidr_block(
        &mut self,
        call: &Call,
        vpc_id: &str,
        cidr_block: &str,
    ) -> Result<VpcDescription, ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, vpc_id)?;
        let cidr = cidr::parse(cidr_block)?;
        let pos = vpc.cidrs.iter().position(|c| *c == cidr).ok_or_else(|| {
            ApiError::invalid(format!(
                "The CIDR '{cidr}' is not associated with '{vpc_id}'"
            ))
        })?;
        if pos == 0 {
            return Err(ApiError::new(
                ErrorCode::OperationNotPermitted,
                format!("The primary CIDR '{cidr}' of '{vpc_id}' cannot be disassociated"),
            ));
        }
        if let Some(s) = self
            .subnets
            .values()
            .find(|s| s.vpc_id == vpc_id && cidr.contains(&s.cidr))
        {
            return Err(ApiError::new(
                ErrorCode::DependencyViolation,
                format!("The CIDR '{cidr}' is in use by subnet '{}'", s.id),
            ));
        }
        let vpc = self.vpcs.get_mut(vpc_id).expect("checked above");
        vpc.cidrs.remove(pos);
        Ok(VpcDescription::from(&*vpc))
    }

    /// DeleteVpc: refused while subnets, non-main route tables, network
    /// interfaces or non-default security groups remain
    /// (DependencyViolation, as AWS). Deletes the main route table and the
    /// default group, and marks the VPC's pending and active peerings
    /// deleted, as AWS does.
    pub fn delete_vpc(&mut self, call: &Call, vpc_id: &str) -> Result<(), ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, vpc_id)?;
        let main = vpc.main_route_table_id.clone();
        let default_group = vpc.default_group_id.clone();
        if let Some(s) = self.subnets.values().find(|s| s.vpc_id == vpc_id) {
            return Err(dependency(vpc_id, &s.id));
        }
        if let Some(t) = self
            .route_tables
            .values()
            .find(|t| t.vpc_id == vpc_id && t.id != main)
        {
            return Err(dependency(vpc_id, &t.id));
        }
        if let Some(n) = self
            .network_interfaces
            .values()
            .find(|n| n.vpc_id == vpc_id)
        {
            return Err(dependency(vpc_id, &n.id));
        }
        if let Some(g) = self
            .groups_of_vpc(vpc_id)
            .find(|g| Some(&g.id) != default_group.as_ref())
        {
            return Err(dependency(vpc_id, &g.id));
        }
        self.end_peerings_of_deleted_vpc(vpc_id, call.now);
        if let Some(g) = default_group {
            self.security_groups.remove(&g);
        }
        self.route_tables.remove(&main);
        self.vpcs.remove(vpc_id);
        Ok(())
    }

    /// DescribeVpcs: the caller's VPCs in the call's region; `vpc_ids`
    /// narrows the result, and naming an invisible VPC is an error.
    pub fn describe_vpcs(
        &self,
        call: &Call,
        vpc_ids: &[String],
    ) -> Result<Vec<VpcDescription>, ApiError> {
        self.check_call(call)?;
        if vpc_ids.is_empty() {
            return Ok(self
                .vpcs
                .values()
                .filter(|v| v.owner == call.account && v.region == call.region)
                .map(VpcDescription::from)
                .collect());
        }
        vpc_ids
            .iter()
            .map(|id| self.owned_vpc(call, id).map(VpcDescription::from))
            .collect()
    }
}

fn dependency(vpc_id: &str, dep: &str) -> ApiError {
    ApiError::new(
        ErrorCode::DependencyViolation,
        format!("The vpc '{vpc_id}' has dependencies and cannot be deleted ('{dep}')"),
    )
}
