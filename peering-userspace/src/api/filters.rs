//! EC2-style `Filters` for DescribeVpcs, DescribeSubnets and
//! DescribeRouteTables, applied to the model's descriptions. (Peering
//! filters are the model's own.) Values of one filter are OR-ed, filters are
//! AND-ed; an unknown name or an empty value list is InvalidParameterValue.

use crate::control::error::ApiError;
use crate::control::peering_describe::Filter;
use crate::control::route_table::{RouteState, RouteTableDescription};
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
