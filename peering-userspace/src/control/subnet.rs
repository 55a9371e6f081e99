//! Subnets: a block of a VPC bound to a gateway interface (and VLAN) on the
//! region's dataplane host.

use crate::control::account::Call;
use crate::control::cidr;
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{IdSource, Kind};
use crate::control::state::State;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes
/// (include/uapi/linux/if.h).
pub const MAX_IFNAME_LEN: usize = 15;
/// 802.1Q VLAN ids: 0 and 4095 are reserved (IEEE 802.1Q, 9.6).
pub const MAX_VLAN_ID: u16 = 4094;

/// An explicit association of a subnet with a (non-main) route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    pub id: String,
    pub route_table_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    pub interface: String,
    /// 0 means untagged.
    pub vlan: u16,
    /// None: the subnet uses its VPC's main route table.
    pub association: Option<Association>,
}

impl Subnet {
    /// The VPC router address: the network address + 1, which AWS reserves
    /// for the router in every subnet
    /// (https://docs.aws.amazon.com/vpc/latest/userguide/subnet-sizing.html).
    pub fn gateway_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + 1)
    }
}

/// CreateSubnet input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSubnet {
    pub vpc_id: String,
    pub cidr_block: String,
    pub interface: String,
    /// None (or absent) = untagged.
    pub vlan: Option<u16>,
}

/// DescribeSubnets output element (EC2 fields plus the dataplane binding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubnetDescription {
    pub subnet_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub cidr_block: String,
    pub interface: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vlan: Option<u16>,
    pub gateway_ip: String,
    pub state: String,
}

/// Linux's `dev_valid_name` rules: 1..=15 bytes, not "." or "..", and no
/// '/', ':' or whitespace. We additionally refuse control and non-ASCII
/// characters, which Linux tolerates but no operator means.
pub fn check_interface_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid interface name '{name}': 1-{MAX_IFNAME_LEN} printable ASCII characters, no '/', ':' or spaces"
        )))
    }
}

fn check_vlan(vlan: Option<u16>) -> Result<u16, ApiError> {
    match vlan {
        None => Ok(0),
        Some(v) if (1..=MAX_VLAN_ID).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::invalid(format!(
            "Invalid VLAN id {v}: must be 1-{MAX_VLAN_ID}"
        ))),
    }
}

impl State {
    /// CreateSubnet. The block must lie inside one of the VPC's blocks and
    /// not overlap sibling subnets. An (interface, VLAN) pair is one L2
    /// segment on the region's host, so it may carry subnets of one VPC only:
    /// the dataplane identifies the VPC of a packet by where it arrives.
    pub fn create_subnet(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        req: &CreateSubnet,
    ) -> Result<SubnetDescription, ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, &req.vpc_id)?;
        let net = cidr::parse_subnet_block(&req.cidr_block)?;
        check_interface_name(&req.interface)?;
        let vlan = check_vlan(req.vlan)?;
        if !vpc.cidrs.iter().any(|b| b.contains(&net)) {
            return Err(ApiError::new(
                ErrorCode::InvalidSubnetRange,
                format!("The CIDR '{net}' is invalid for VPC '{}'", vpc.id),
            ));
        }
        for s in self.subnets.values() {
            if s.vpc_id == vpc.id && cidr::overlaps(&s.cidr, &net) {
                return Err(ApiError::new(
                    ErrorCode::InvalidSubnetConflict,
                    format!("The CIDR '{net}' conflicts with subnet '{}'", s.id),
                ));
            }
            if s.vpc_id != vpc.id
                && s.interface == req.interface
                && s.vlan == vlan
                && self
                    .vpcs
                    .get(&s.vpc_id)
                    .is_some_and(|o| o.region == vpc.region)
            {
                return Err(ApiError::invalid(format!(
                    "Interface '{}' VLAN {vlan} is already bound to another VPC",
                    req.interface
                )));
            }
        }
        let subnet = Subnet {
            id: self.new_id(Kind::Subnet, ids)?,
            vpc_id: vpc.id.clone(),
            cidr: net,
            interface: req.interface.clone(),
            vlan,
            association: None,
        };
        let out = self.describe_subnet(&subnet);
        self.subnets.insert(subnet.id.clone(), subnet);
        Ok(out)
    }

    /// DeleteSubnet (its route table association goes with it).
    pub fn delete_subnet(&mut self, call: &Call, subnet_id: &str) -> Result<(), ApiError> {
        self.check_call(call)?;
        self.owned_subnet(call, subnet_id)?;
        if let Some(n) = self
            .network_interfaces
            .values()
            .find(|n| n.subnet_id == subnet_id)
        {
            return Err(ApiError::new(
                ErrorCode::DependencyViolation,
                format!(
                    "The subnet '{subnet_id}' has dependencies and cannot be deleted ('{}')",
                    n.id
                ),
            ));
        }
        self.subnets.remove(subnet_id);
        Ok(())
    }

    /// DescribeSubnets: the caller's subnets in the call's region.
    pub fn describe_subnets(
        &self,
        call: &Call,
        subnet_ids: &[String],
    ) -> Result<Vec<SubnetDescription>, ApiError> {
        self.check_call(call)?;
        if subnet_ids.is_empty() {
            return Ok(self
                .subnets
                .values()
                .filter(|s| self.owned_vpc(call, &s.vpc_id).is_ok())
                .map(|s| self.describe_subnet(s))
                .collect());
        }
        subnet_ids
            .iter()
            .map(|id| self.owned_subnet(call, id).map(|s| self.describe_subnet(s)))
            .collect()
    }

    fn describe_subnet(&self, s: &Subnet) -> SubnetDescription {
        SubnetDescription {
            subnet_id: s.id.clone(),
            vpc_id: s.vpc_id.clone(),
            owner_id: self
                .vpcs
                .get(&s.vpc_id)
                .map(|v| v.owner.to_string())
                .unwrap_or_default(),
            cidr_block: s.cidr.to_string(),
            interface: s.interface.clone(),
            vlan: (s.vlan != 0).then_some(s.vlan),
            gateway_ip: s.gateway_ip().to_string(),
            state: "available".into(),
        }
    }

    /// The route table a subnet uses: its explicit association, else the
    /// VPC's main table.
    pub fn effective_route_table<'a>(&'a self, subnet: &'a Subnet) -> Option<&'a str> {
        match &subnet.association {
            Some(a) => Some(a.route_table_id.as_str()),
            None => self
                .vpcs
                .get(&subnet.vpc_id)
                .map(|v| v.main_route_table_id.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for good in ["eth0", "veth-a.10", "a", "123456789012345", "br_0"] {
            check_interface_name(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "eth/0",
            "eth:0",
            "eth 0",
            "eth\t0",
            "é",
        ] {
            assert_eq!(
                check_interface_name(bad).unwrap_err().code(),
                "InvalidParameterValue",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn vlans() {
        assert_eq!(check_vlan(None).unwrap(), 0);
        assert_eq!(check_vlan(Some(1)).unwrap(), 1);
        assert_eq!(check_vlan(Some(4094)).unwrap(), 4094);
        assert!(check_vlan(Some(0)).is_err());
        assert!(check_vlan(Some(4095)).is_err());
    }

    #[test]
    fn gateway_is_network_plus_one() {
        let s = Subnet {
            id: "subnet-x".into(),
            vpc_id: "vpc-x".into(),
            cidr: "10.1.2.16/28".parse().unwrap(),
            interface: "eth0".into(),
            vlan: 0,
            association: None,
        };
        assert_eq!(s.gateway_ip(), Ipv4Addr::new(10, 1, 2, 17));
    }
}
