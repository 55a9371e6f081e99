//! DescribeVpcPeeringConnections: AWS-shaped output and filters.

use crate::control::account::Call;
use crate::control::error::ApiError;
use crate::control::peering::{Peering, PeeringSide, PeeringStatus, Side};
use crate::control::state::State;
use crate::control::vpc::{cidr_block_set, CidrBlock};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcPeeringConnection {
    pub vpc_peering_connection_id: String,
    pub status: StatusInfo,
    pub requester_vpc_info: VpcInfo,
    pub accepter_vpc_info: VpcInfo,
    /// Unix seconds; present while the request is pending acceptance.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expiration_time: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusInfo {
    pub code: PeeringStatus,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcInfo {
    pub owner_id: String,
    pub vpc_id: String,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cidr_block: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cidr_block_set: Vec<CidrBlock>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub peering_options: Option<PeeringOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeeringOptions {
    pub allow_dns_resolution_from_remote_vpc: bool,
}

/// An EC2-style filter: values of one filter are OR-ed, filters are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: &str, values: &[&str]) -> Self {
        Filter {
            name: name.to_owned(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }
}

/// Filter names DescribeVpcPeeringConnections supports.
pub const PEERING_FILTERS: [&str; 6] = [
    "status-code",
    "requester-vpc-info.vpc-id",
    "accepter-vpc-info.vpc-id",
    "requester-vpc-info.owner-id",
    "accepter-vpc-info.owner-id",
    "vpc-peering-connection-id",
];

fn check_filters(filters: &[Filter]) -> Result<(), ApiError> {
    for f in filters {
        if !PEERING_FILTERS.contains(&f.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "The filter '{}' is invalid (supported: {})",
                f.name,
                PEERING_FILTERS.join(", ")
            )));
        }
        if f.values.is_empty() {
            return Err(ApiError::invalid(format!(
                "The filter '{}' needs at least one value",
                f.name
            )));
        }
    }
    Ok(())
}

fn filter_matches(f: &Filter, p: &Peering, now: u64) -> bool {
    let field: &str = match f.name.as_str() {
        "status-code" => p.status_at(now).as_str(),
        "requester-vpc-info.vpc-id" => &p.requester.vpc_id,
        "accepter-vpc-info.vpc-id" => &p.accepter.vpc_id,
        "requester-vpc-info.owner-id" => p.requester.owner.as_str(),
        "accepter-vpc-info.owner-id" => p.accepter.owner.as_str(),
        "vpc-peering-connection-id" => &p.id,
        _ => return false,
    };
    f.values.iter().any(|v| v == field)
}

impl State {
    /// DescribeVpcPeeringConnections: the peerings the caller is party to in
    /// the call's region, within their retention time. Naming an invisible
    /// id is InvalidVpcPeeringConnectionID.NotFound.
    pub fn describe_vpc_peering_connections(
        &self,
        call: &Call,
        pcx_ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<VpcPeeringConnection>, ApiError> {
        self.check_call(call)?;
        check_filters(filters)?;
        let candidates: Vec<&Peering> = if pcx_ids.is_empty() {
            self.peerings
                .values()
                .filter(|p| p.visible_to(&call.account, &call.region, call.now))
                .collect()
        } else {
            pcx_ids
                .iter()
                .map(|id| self.visible_peering(call, id))
                .collect::<Result<_, _>>()?
        };
        Ok(candidates
            .into_iter()
            .filter(|p| filters.iter().all(|f| filter_matches(f, p, call.now)))
            .map(|p| self.describe_peering(p, call.now))
            .collect())
    }

    pub(crate) fn describe_peering(&self, p: &Peering, now: u64) -> VpcPeeringConnection {
        let status = p.status_at(now);
        VpcPeeringConnection {
            vpc_peering_connection_id: p.id.clone(),
            status: StatusInfo {
                code: status,
                message: status_message(p, status),
            },
            requester_vpc_info: self.vpc_info(p, Side::Requester, status),
            accepter_vpc_info: self.vpc_info(p, Side::Accepter, status),
            expiration_time: (status == PeeringStatus::PendingAcceptance).then_some(p.expires_at),
        }
    }

    /// Live blocks while the VPC exists, else the snapshot.
    pub(crate) fn side_cidrs(&self, side: &PeeringSide) -> Vec<Ipv4Net> {
        match self.vpcs.get(&side.vpc_id) {
            Some(v) if v.owner == side.owner && v.region == side.region => v.cidrs.clone(),
            _ => side.cidrs.clone(),
        }
    }

    /// The accepter's blocks and both sides' options are only shown once the
    /// accepter has agreed to the peering, as in AWS.
    fn vpc_info(&self, p: &Peering, side: Side, status: PeeringStatus) -> VpcInfo {
        let s = p.side(side);
        let show_cidrs = side == Side::Requester || p.was_active();
        let cidrs = if show_cidrs {
            self.side_cidrs(s)
        } else {
            vec![]
        };
        VpcInfo {
            owner_id: s.owner.to_string(),
            vpc_id: s.vpc_id.clone(),
            region: s.region.clone(),
            cidr_block: cidrs.first().map(|c| c.to_string()),
            cidr_block_set: cidr_block_set(&cidrs),
            peering_options: (status == PeeringStatus::Active).then_some(PeeringOptions {
                allow_dns_resolution_from_remote_vpc: s.allow_dns_resolution_from_remote_vpc,
            }),
        }
    }
}

fn status_message(p: &Peering, status: PeeringStatus) -> String {
    match status {
        PeeringStatus::InitiatingRequest => format!("Initiating request to {}", p.accepter.owner),
        PeeringStatus::PendingAcceptance => format!("Pending acceptance by {}", p.accepter.owner),
        PeeringStatus::Provisioning => "Provisioning".into(),
        PeeringStatus::Active => "Active".into(),
        PeeringStatus::Deleting => "Deleting".into(),
        PeeringStatus::Deleted => match p.ended_by {
            Some(side) => format!("Deleted by {}", p.side(side).owner),
            None => "Deleted".into(),
        },
        PeeringStatus::Rejected => format!("Rejected by {}", p.accepter.owner),
        PeeringStatus::Failed => p.failure.clone().unwrap_or_else(|| "Failed".into()),
        PeeringStatus::Expired => "Expired".into(),
    }
}
