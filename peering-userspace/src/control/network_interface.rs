//! Network interfaces (`eni-…`): an address of a subnet and the security
//! groups (1 to the quota, of the subnet's VPC) it is a member of.
//! CreateNetworkInterface, DeleteNetworkInterface,
//! DescribeNetworkInterfaces, ModifyNetworkInterfaceAttribute (groups).
//!
//! An address with no interface belongs to its VPC's default group (the
//! region view carries that group's id), so an interface is only needed to
//! put an address in other groups.

use crate::control::account::{AccountId, Call};
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{self, IdSource, Kind};
use crate::control::security_group::group_not_found;
use crate::control::state::State;
use crate::control::subnet::Subnet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Interface descriptions: up to 255 characters (EC2).
pub const MAX_DESCRIPTION: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub id: String,
    pub owner: AccountId,
    pub subnet_id: String,
    pub vpc_id: String,
    pub address: Ipv4Addr,
    /// Security group ids, in the order given.
    pub groups: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// CreateNetworkInterface input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateNetworkInterface {
    pub subnet_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip_address: Option<String>,
    /// Security group ids (EC2's `SecurityGroupId.N`); empty: the VPC's
    /// default group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// DescribeNetworkInterfaces output element, shaped like the EC2 JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterfaceDescription {
    pub network_interface_id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub description: String,
    pub private_ip_address: String,
    pub private_ip_addresses: Vec<PrivateIpAddress>,
    pub groups: Vec<GroupIdentifier>,
    pub interface_type: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrivateIpAddress {
    pub private_ip_address: String,
    pub primary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupIdentifier {
    pub group_id: String,
    pub group_name: String,
}

/// Whether `addr` is one of the five addresses AWS reserves in every
/// subnet: the network address, +1 (router), +2 (DNS), +3 (reserved for
/// future use) and the broadcast address
/// (https://docs.aws.amazon.com/vpc/latest/userguide/subnet-sizing.html).
pub fn is_reserved(subnet: &Subnet, addr: Ipv4Addr) -> bool {
    let (net, a) = (u32::from(subnet.cidr.network()), u32::from(addr));
    a.wrapping_sub(net) <= 3 || addr == subnet.cidr.broadcast()
}

impl State {
    /// CreateNetworkInterface: an interface in one of the caller's
    /// subnets, at `PrivateIpAddress` or else the lowest free address.
    pub fn create_network_interface(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        req: &CreateNetworkInterface,
    ) -> Result<NetworkInterfaceDescription, ApiError> {
        self.check_call(call)?;
        let subnet = self.owned_subnet(call, &req.subnet_id)?;
        let groups = if req.groups.is_empty() {
            let vpc = self.owned_vpc(call, &subnet.vpc_id)?;
            vec![vpc.default_group_id.clone().ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InternalError,
                    format!("VPC '{}' has no default security group yet", vpc.id),
                )
            })?]
        } else {
            self.check_interface_groups(call, &subnet.vpc_id, &req.groups)?
        };
        let description = req.description.clone().unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(ApiError::invalid(format!(
                "Invalid description: at most {MAX_DESCRIPTION} characters"
            )));
        }
        let address = match &req.private_ip_address {
            Some(a) => self.check_address(subnet, a)?,
            None => self.free_address(subnet)?,
        };
        let eni = NetworkInterface {
            id: self.new_id(Kind::NetworkInterface, ids)?,
            owner: call.account.clone(),
            subnet_id: subnet.id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            address,
            groups,
            description,
        };
        let out = self.describe_interface(&eni);
        self.network_interfaces.insert(eni.id.clone(), eni);
        Ok(out)
    }

    /// DeleteNetworkInterface.
    pub fn delete_network_interface(&mut self, call: &Call, eni_id: &str) -> Result<(), ApiError> {
        self.check_call(call)?;
        self.owned_interface(call, eni_id)?;
        self.network_interfaces.remove(eni_id);
        Ok(())
    }

    /// ModifyNetworkInterfaceAttribute with `Groups`: replaces the
    /// interface's groups (at least one, of its VPC).
    pub fn modify_network_interface_groups(
        &mut self,
        call: &Call,
        eni_id: &str,
        groups: &[String],
    ) -> Result<(), ApiError> {
        self.check_call(call)?;
        let eni = self.owned_interface(call, eni_id)?;
        if groups.is_empty() {
            return Err(ApiError::invalid(
                "ModifyNetworkInterfaceAttribute needs at least one security group",
            ));
        }
        let groups = self.check_interface_groups(call, &eni.vpc_id, groups)?;
        let eni = self
            .network_interfaces
            .get_mut(eni_id)
            .expect("checked above");
        eni.groups = groups;
        Ok(())
    }

    /// DescribeNetworkInterfaces: the caller's interfaces in the call's
    /// region, or those named.
    pub fn describe_network_interfaces(
        &self,
        call: &Call,
        eni_ids: &[String],
    ) -> Result<Vec<NetworkInterfaceDescription>, ApiError> {
        self.check_call(call)?;
        if !eni_ids.is_empty() {
            return eni_ids
                .iter()
                .map(|id| {
                    self.owned_interface(call, id)
                        .map(|n| self.describe_interface(n))
                })
                .collect();
        }
        Ok(self
            .network_interfaces
            .values()
            .filter(|n| self.owned_vpc(call, &n.vpc_id).is_ok())
            .map(|n| self.describe_interface(n))
            .collect())
    }

    pub fn network_interface(&self, id: &str) -> Option<&NetworkInterface> {
        self.network_interfaces.get(id)
    }

    pub fn network_interfaces(&self) -> impl Iterator<Item = &NetworkInterface> {
        self.network_interfaces.values()
    }

    fn describe_interface(&self, n: &NetworkInterface) -> NetworkInterfaceDescription {
        NetworkInterfaceDescription {
            network_interface_id: n.id.clone(),
            subnet_id: n.subnet_id.clone(),
            vpc_id: n.vpc_id.clone(),
            owner_id: n.owner.to_string(),
            description: n.description.clone(),
            private_ip_address: n.address.to_string(),
            private_ip_addresses: vec![PrivateIpAddress {
                private_ip_address: n.address.to_string(),
                primary: true,
            }],
            groups: n
                .groups
                .iter()
                .map(|g| GroupIdentifier {
                    group_id: g.clone(),
                    group_name: self
                        .security_groups
                        .get(g)
                        .map(|g| g.name.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            interface_type: "interface".into(),
            status: "available".into(),
        }
    }

    fn owned_interface(&self, call: &Call, id: &str) -> Result<&NetworkInterface, ApiError> {
        ids::check_id(Kind::NetworkInterface, id)?;
        self.network_interfaces
            .get(id)
            .filter(|n| n.owner == call.account && self.owned_vpc(call, &n.vpc_id).is_ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NetworkInterfaceNotFound,
                    format!("The networkInterface ID '{id}' does not exist"),
                )
            })
    }

    /// The groups of an interface of `vpc_id`: the caller's, of that VPC,
    /// within the quota (duplicates dropped, order kept).
    fn check_interface_groups(
        &self,
        call: &Call,
        vpc_id: &str,
        groups: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let mut seen = std::collections::HashSet::new();
        let out: Vec<String> = groups
            .iter()
            .filter(|g| seen.insert(g.as_str()))
            .cloned()
            .collect();
        let limit = self.config.limits.groups_per_interface;
        if out.len() > limit {
            return Err(ApiError::new(
                ErrorCode::SecurityGroupsPerInterfaceLimitExceeded,
                format!("You have exceeded the maximum number of security groups allowed per network interface ({limit})"),
            ));
        }
        for id in &out {
            let g = self.owned_group(call, id).map_err(|e| {
                if e.code == ErrorCode::GroupIdMalformed {
                    e
                } else {
                    group_not_found(id)
                }
            })?;
            if g.vpc_id != vpc_id {
                return Err(ApiError::new(
                    ErrorCode::GroupNotFound,
                    format!("You have specified two resources that belong to different networks ('{id}' is in '{}', the interface in '{vpc_id}').", g.vpc_id),
                ));
            }
        }
        Ok(out)
    }

    fn used_addresses(&self, subnet_id: &str) -> BTreeSet<Ipv4Addr> {
        self.network_interfaces
            .values()
            .filter(|n| n.subnet_id == subnet_id)
            .map(|n| n.address)
            .collect()
    }

    fn check_address(&self, subnet: &Subnet, a: &str) -> Result<Ipv4Addr, ApiError> {
        let addr: Ipv4Addr = a.parse().map_err(|_| {
            ApiError::invalid(format!(
                "Invalid value '{a}' for PrivateIpAddress: not an IPv4 address"
            ))
        })?;
        if !subnet.cidr.contains(&addr) {
            return Err(ApiError::invalid(format!(
                "Address {addr} does not fall within the subnet's address range ({})",
                subnet.cidr
            )));
        }
        if is_reserved(subnet, addr) {
            return Err(ApiError::invalid(format!(
                "Address {addr} is in subnet's reserved address range"
            )));
        }
        if self.used_addresses(&subnet.id).contains(&addr) {
            return Err(ApiError::new(
                ErrorCode::IpAddressInUse,
                format!("The specified address {addr} is already in use."),
            ));
        }
        Ok(addr)
    }

    fn free_address(&self, subnet: &Subnet) -> Result<Ipv4Addr, ApiError> {
        let used = self.used_addresses(&subnet.id);
        let (net, bcast) = (
            u32::from(subnet.cidr.network()),
            u32::from(subnet.cidr.broadcast()),
        );
        (net.saturating_add(4)..bcast)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InsufficientFreeAddressesInSubnet,
                    format!(
                        "There are not enough free addresses in subnet '{}' to satisfy the requested number of instances.",
                        subnet.id
                    ),
                )
            })
    }
}
