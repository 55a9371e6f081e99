//! EC2-style `Filters` for DescribeVpcs, DescribeSubnets,
//! DescribeRouteTables, DescribeSecurityGroups, DescribeSecurityGroupRules
//! and DescribeNetworkInterfaces, applied to the model's descriptions. (Peering
//! filters are the model's own.) Values of one filter are OR-ed, filters are
//! AND-ed; an unknown name or an empty value list is InvalidParameterValue.

use crate::control::error::ApiError;
use crate::control::network_interface::NetworkInterfaceDescription;
use crate::control::peering_describe::Filter;
use crate::control::route_table::{RouteState, RouteTableDescription};
use crate::control::security_group::SecurityGroupDescription;
use crate::control::sg_rules::{IpPermission, SecurityGroupRuleDescription};
use crate::control::subnet::SubnetDescription;
use crate::control::vpc::VpcDescription;

pub const VPC_FILTERS: [&str; 5] = [
    "vpc-id",
    "owner-id",
    "cidr-block",
    "cidr-block-association.cidr-block",
    "state",
];

pub const SUBNET_FILTERS: [&str; 6] = [
    "subnet-id",
    "vpc-id",
    "owner-id",
    "cidr-block",
    "interface",
    "state",
];

pub const ROUTE_TABLE_FILTERS: [&str; 9] = [
    "route-table-id",
    "vpc-id",
    "owner-id",
    "association.main",
    "association.subnet-id",
    "association.route-table-association-id",
    "route.destination-cidr-block",
    "route.vpc-peering-connection-id",
    "route.state",
];

/// Keeps the items all `filters` match. `fields(item, name)` lists the
/// item's values for a (known) filter name.
pub fn apply<T>(
    items: Vec<T>,
    filters: &[Filter],
    known: &[&str],
    fields: fn(&T, &str) -> Vec<String>,
) -> Result<Vec<T>, ApiError> {
    for f in filters {
        if !known.contains(&f.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "The filter '{}' is invalid (supported: {})",
                f.name,
                known.join(", ")
            )));
        }
        if f.values.is_empty() {
            return Err(ApiError::invalid(format!(
                "The filter '{}' needs at least one value",
                f.name
            )));
        }
    }
    Ok(items
        .into_iter()
        .filter(|item| {
            filters.iter().all(|f| {
                let have = fields(item, &f.name);
                f.values.iter().any(|v| have.contains(v))
            })
        })
        .collect())
}

pub fn vpc_fields(v: &VpcDescription, name: &str) -> Vec<String> {
    match name {
        "vpc-id" => vec![v.vpc_id.clone()],
        "owner-id" => vec![v.owner_id.clone()],
        "cidr-block" => vec![v.cidr_block.clone()],
        "cidr-block-association.cidr-block" => v
            .cidr_block_association_set
            .iter()
            .map(|c| c.cidr_block.clone())
            .collect(),
        "state" => vec![v.state.clone()],
        _ => vec![],
    }
}

pub fn subnet_fields(s: &SubnetDescription, name: &str) -> Vec<String> {
    match name {
        "subnet-id" => vec![s.subnet_id.clone()],
        "vpc-id" => vec![s.vpc_id.clone()],
        "owner-id" => vec![s.owner_id.clone()],
        "cidr-block" => vec![s.cidr_block.clone()],
        "interface" => vec![s.interface.clone()],
        "state" => vec![s.state.clone()],
        _ => vec![],
    }
}

pub fn route_table_fields(t: &RouteTableDescription, name: &str) -> Vec<String> {
    match name {
        "route-table-id" => vec![t.route_table_id.clone()],
        "vpc-id" => vec![t.vpc_id.clone()],
        "owner-id" => vec![t.owner_id.clone()],
        "association.main" => t.associations.iter().map(|a| a.main.to_string()).collect(),
        "association.subnet-id" => t
            .associations
            .iter()
            .filter_map(|a| a.subnet_id.clone())
            .collect(),
        "association.route-table-association-id" => t
            .associations
            .iter()
            .filter_map(|a| a.route_table_association_id.clone())
            .collect(),
        "route.destination-cidr-block" => t
            .routes
            .iter()
            .map(|r| r.destination_cidr_block.clone())
            .collect(),
        "route.vpc-peering-connection-id" => t
            .routes
            .iter()
            .filter_map(|r| r.vpc_peering_connection_id.clone())
            .collect(),
        "route.state" => t
            .routes
            .iter()
            .map(|r| match r.state {
                RouteState::Active => "active".to_owned(),
                RouteState::Blackhole => "blackhole".to_owned(),
            })
            .collect(),
        _ => vec![],
    }
}

pub const SECURITY_GROUP_FILTERS: [&str; 19] = [
    "group-id",
    "group-name",
    "vpc-id",
    "owner-id",
    "description",
    "ip-permission.cidr",
    "ip-permission.from-port",
    "ip-permission.to-port",
    "ip-permission.protocol",
    "ip-permission.group-id",
    "ip-permission.user-id",
    "ip-permission.description",
    "egress.ip-permission.cidr",
    "egress.ip-permission.from-port",
    "egress.ip-permission.to-port",
    "egress.ip-permission.protocol",
    "egress.ip-permission.group-id",
    "egress.ip-permission.user-id",
    "egress.ip-permission.description",
];

fn permission_fields(perms: &[IpPermission], name: &str) -> Vec<String> {
    let port = |p: Option<i32>| p.map(|p| p.to_string());
    perms
        .iter()
        .flat_map(|p| -> Vec<String> {
            match name {
                "cidr" => p.ip_ranges.iter().map(|r| r.cidr_ip.clone()).collect(),
                "from-port" => port(p.from_port).into_iter().collect(),
                "to-port" => port(p.to_port).into_iter().collect(),
                "protocol" => vec![p.ip_protocol.clone()],
                "group-id" => p
                    .user_id_group_pairs
                    .iter()
                    .filter_map(|g| g.group_id.clone())
                    .collect(),
                "user-id" => p
                    .user_id_group_pairs
                    .iter()
                    .filter_map(|g| g.user_id.clone())
                    .collect(),
                "description" => p
                    .ip_ranges
                    .iter()
                    .filter_map(|r| r.description.clone())
                    .chain(
                        p.user_id_group_pairs
                            .iter()
                            .filter_map(|g| g.description.clone()),
                    )
                    .collect(),
                _ => vec![],
            }
        })
        .collect()
}

pub fn security_group_fields(g: &SecurityGroupDescription, name: &str) -> Vec<String> {
    if let Some(rest) = name.strip_prefix("egress.ip-permission.") {
        return permission_fields(&g.ip_permissions_egress, rest);
    }
    if let Some(rest) = name.strip_prefix("ip-permission.") {
        return permission_fields(&g.ip_permissions, rest);
    }
    match name {
        "group-id" => vec![g.group_id.clone()],
        "group-name" => vec![g.group_name.clone()],
        "vpc-id" => vec![g.vpc_id.clone()],
        "owner-id" => vec![g.owner_id.clone()],
        "description" => vec![g.description.clone()],
        _ => vec![],
    }
}

pub const SECURITY_GROUP_RULE_FILTERS: [&str; 2] = ["group-id", "security-group-rule-id"];

pub fn security_group_rule_fields(r: &SecurityGroupRuleDescription, name: &str) -> Vec<String> {
    match name {
        "group-id" => vec![r.group_id.clone()],
        "security-group-rule-id" => vec![r.security_group_rule_id.clone()],
        _ => vec![],
    }
}

pub const NETWORK_INTERFACE_FILTERS: [&str; 10] = [
    "network-interface-id",
    "subnet-id",
    "vpc-id",
    "private-ip-address",
    "addresses.private-ip-address",
    "group-id",
    "group-name",
    "owner-id",
    "description",
    "status",
];

pub fn network_interface_fields(n: &NetworkInterfaceDescription, name: &str) -> Vec<String> {
    match name {
        "network-interface-id" => vec![n.network_interface_id.clone()],
        "subnet-id" => vec![n.subnet_id.clone()],
        "vpc-id" => vec![n.vpc_id.clone()],
        "private-ip-address" => vec![n.private_ip_address.clone()],
        "addresses.private-ip-address" => n
            .private_ip_addresses
            .iter()
            .map(|a| a.private_ip_address.clone())
            .collect(),
        "group-id" => n.groups.iter().map(|g| g.group_id.clone()).collect(),
        "group-name" => n.groups.iter().map(|g| g.group_name.clone()).collect(),
        "owner-id" => vec![n.owner_id.clone()],
        "description" => vec![n.description.clone()],
        "status" => vec![n.status.clone()],
        _ => vec![],
    }
}
