//! Route tables, their peering routes, subnet associations and longest
//! prefix match.
//!
//! Only routes to peering connections are stored. The `local` route (the
//! VPC's blocks) is implicit: describe reports it, nobody can edit it, and
//! stored routes are kept strictly less specific than it, so an address
//! inside the VPC always resolves locally.

use crate::control::account::Call;
use crate::control::cidr;
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{self, IdSource, Kind};
use crate::control::peering::PeeringStatus;
use crate::control::state::State;
use crate::control::subnet::Association;
use crate::control::vpc::Vpc;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A route to a peering connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: Ipv4Net,
    pub pcx_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub dp_id: u32,
    pub vpc_id: String,
    /// Keyed by destination: one route per destination, and longest prefix
    /// match becomes at most 33 exact lookups.
    pub routes: BTreeMap<Ipv4Net, Route>,
}

impl RouteTable {
    pub(crate) fn new(id: String, dp_id: u32, vpc_id: String) -> Self {
        RouteTable {
            id,
            dp_id,
            vpc_id,
            routes: BTreeMap::new(),
        }
    }

    /// Longest prefix match over the stored (peering) routes.
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&Route> {
        (0..=32u8).rev().find_map(|len| {
            let key = Ipv4Net::new(addr, len)
                .expect("prefix length <= 32")
                .trunc();
            self.routes.get(&key)
        })
    }
}

/// The kind of route edit being validated, with its target.
#[derive(Clone, Copy)]
enum Edit<'a> {
    Create(&'a str),
    Replace(&'a str),
    Delete,
}

/// `active` if the route's peering is active, else `blackhole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    Active,
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteDescription {
    pub destination_cidr_block: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gateway_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vpc_peering_connection_id: Option<String>,
    pub state: RouteState,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssociationDescription {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route_table_association_id: Option<String>,
    pub route_table_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subnet_id: Option<String>,
    pub main: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTableDescription {
    pub route_table_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub routes: Vec<RouteDescription>,
    pub associations: Vec<AssociationDescription>,
}

impl State {
    /// The state of a route to `pcx_id` at `now`.
    pub fn route_state(&self, pcx_id: &str, now: u64) -> RouteState {
        match self.peerings.get(pcx_id) {
            Some(p) if p.status_at(now) == PeeringStatus::Active => RouteState::Active,
            _ => RouteState::Blackhole,
        }
    }

    /// CreateRouteTable: a non-main table for one of the caller's VPCs.
    pub fn create_route_table(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        vpc_id: &str,
    ) -> Result<RouteTableDescription, ApiError> {
        self.check_call(call)?;
        self.owned_vpc(call, vpc_id)?;
        let count = self
            .route_tables
            .values()
            .filter(|t| t.vpc_id == vpc_id)
            .count();
        if count >= self.config.limits.route_tables_per_vpc {
            return Err(ApiError::new(
                ErrorCode::RouteTableLimitExceeded,
                format!("The maximum number of route tables for '{vpc_id}' has been reached"),
            ));
        }
        let id = self.new_id(Kind::RouteTable, ids)?;
        let dp_id = self.take_dp_ids(1)?;
        self.route_tables.insert(
            id.clone(),
            RouteTable::new(id.clone(), dp_id, vpc_id.to_owned()),
        );
        Ok(self.describe_route_table(&self.route_tables[&id], call.now))
    }

    /// DeleteRouteTable: refused for the main table or while associated.
    pub fn delete_route_table(&mut self, call: &Call, rtb_id: &str) -> Result<(), ApiError> {
        self.check_call(call)?;
        let table = self.owned_route_table(call, rtb_id)?;
        let vpc = &self.vpcs[&table.vpc_id];
        let associated = self.subnets_explicitly_on(rtb_id).next().is_some();
        if vpc.main_route_table_id == rtb_id || associated {
            return Err(ApiError::new(
                ErrorCode::DependencyViolation,
                format!("The routeTable '{rtb_id}' has dependencies and cannot be deleted."),
            ));
        }
        self.route_tables.remove(rtb_id);
        Ok(())
    }

    /// AssociateRouteTable: binds a subnet of the same VPC to the table and
    /// returns the association id.
    pub fn associate_route_table(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        rtb_id: &str,
        subnet_id: &str,
    ) -> Result<String, ApiError> {
        self.check_call(call)?;
        let table = self.owned_route_table(call, rtb_id)?;
        let subnet = self.owned_subnet(call, subnet_id)?;
        if table.vpc_id != subnet.vpc_id {
            return Err(ApiError::invalid(format!(
                "Route table '{rtb_id}' and subnet '{subnet_id}' belong to different networks"
            )));
        }
        if let Some(a) = &subnet.association {
            return Err(ApiError::new(
                ErrorCode::ResourceAlreadyAssociated,
                format!("The subnet '{subnet_id}' is already associated ({})", a.id),
            ));
        }
        let id = self.new_id(Kind::RouteTableAssociation, ids)?;
        let subnet = self.subnets.get_mut(subnet_id).expect("checked above");
        subnet.association = Some(Association {
            id: id.clone(),
            route_table_id: rtb_id.to_owned(),
        });
        Ok(id)
    }

    /// DisassociateRouteTable: the subnet falls back to the main table.
    pub fn disassociate_route_table(
        &mut self,
        call: &Call,
        assoc_id: &str,
    ) -> Result<(), ApiError> {
        self.check_call(call)?;
        ids::check_id(Kind::RouteTableAssociation, assoc_id)?;
        let subnet_id = self
            .subnets
            .values()
            .find(|s| s.association.as_ref().is_some_and(|a| a.id == assoc_id))
            .filter(|s| self.owned_vpc(call, &s.vpc_id).is_ok())
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::AssociationNotFound,
                    format!("The association ID '{assoc_id}' does not exist"),
                )
            })?;
        self.subnets
            .get_mut(&subnet_id)
            .expect("found above")
            .association = None;
        Ok(())
    }

    /// CreateRoute to a peering connection.
    pub fn create_route(
        &mut self,
        call: &Call,
        rtb_id: &str,
        destination: &str,
        pcx_id: &str,
    ) -> Result<(), ApiError> {
        let (dest, _) = self.check_route(call, rtb_id, destination, Edit::Create(pcx_id))?;
        let table = &self.route_tables[rtb_id];
        if table.routes.contains_key(&dest) {
            return Err(ApiError::new(
                ErrorCode::RouteAlreadyExists,
                format!("The route identified by {dest} already exists."),
            ));
        }
        if table.routes.len() >= self.config.limits.routes_per_route_table {
            return Err(ApiError::new(
                ErrorCode::RouteLimitExceeded,
                format!("The maximum number of routes in '{rtb_id}' has been reached."),
            ));
        }
        self.put_route(rtb_id, dest, pcx_id);
        Ok(())
    }

    /// ReplaceRoute: points an existing destination at another peering.
    pub fn replace_route(
        &mut self,
        call: &Call,
        rtb_id: &str,
        destination: &str,
        pcx_id: &str,
    ) -> Result<(), ApiError> {
        let (dest, exists) = self.check_route(call, rtb_id, destination, Edit::Replace(pcx_id))?;
        if !exists {
            return Err(route_not_found(rtb_id, &dest));
        }
        self.put_route(rtb_id, dest, pcx_id);
        Ok(())
    }

    /// DeleteRoute.
    pub fn delete_route(
        &mut self,
        call: &Call,
        rtb_id: &str,
        destination: &str,
    ) -> Result<(), ApiError> {
        let (dest, exists) = self.check_route(call, rtb_id, destination, Edit::Delete)?;
        if !exists {
            return Err(route_not_found(rtb_id, &dest));
        }
        if let Some(t) = self.route_tables.get_mut(rtb_id) {
            t.routes.remove(&dest);
        }
        Ok(())
    }

    /// Validation shared by route edits (`pcx_id` is None for deletes);
    /// returns the parsed destination and whether a route with it exists.
    fn check_route(
        &self,
        call: &Call,
        rtb_id: &str,
        destination: &str,
        edit: Edit<'_>,
    ) -> Result<(Ipv4Net, bool), ApiError> {
        self.check_call(call)?;
        let table = self.owned_route_table(call, rtb_id)?;
        let dest = cidr::parse(destination)?;
        let vpc = &self.vpcs[&table.vpc_id];
        let exists = table.routes.contains_key(&dest);
        let pcx_id = match edit {
            Edit::Create(pcx_id) => pcx_id,
            _ if vpc.cidrs.contains(&dest) => {
                return Err(ApiError::invalid(format!(
                    "The local route {dest} cannot be replaced or deleted"
                )))
            }
            Edit::Replace(pcx_id) => pcx_id,
            Edit::Delete => return Ok((dest, exists)),
        };
        check_not_local(vpc, &dest)?;
        self.check_route_target(call, vpc, pcx_id)?;
        Ok((dest, exists))
    }

    /// A route may target a pending or active peering the VPC is party to.
    /// Terminal peerings are refused as not found: AWS rejects routes to
    /// connections that no longer exist.
    fn check_route_target(&self, call: &Call, vpc: &Vpc, pcx_id: &str) -> Result<(), ApiError> {
        ids::check_id(Kind::Peering, pcx_id)?;
        self.peerings
            .get(pcx_id)
            .filter(|p| p.side_of_vpc(&vpc.id).is_some())
            .filter(|p| !p.status_at(call.now).is_terminal())
            .ok_or_else(|| ApiError::pcx_not_found(pcx_id))?;
        Ok(())
    }

    fn put_route(&mut self, rtb_id: &str, destination: Ipv4Net, pcx_id: &str) {
        let route = Route {
            destination,
            pcx_id: pcx_id.to_owned(),
        };
        if let Some(t) = self.route_tables.get_mut(rtb_id) {
            t.routes.insert(destination, route);
        }
    }

    fn subnets_explicitly_on<'a>(&'a self, rtb_id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.subnets
            .values()
            .filter(move |s| {
                s.association
                    .as_ref()
                    .is_some_and(|a| a.route_table_id == rtb_id)
            })
            .map(|s| s.id.as_str())
    }

    /// DescribeRouteTables: the caller's tables in the call's region.
    pub fn describe_route_tables(
        &self,
        call: &Call,
        rtb_ids: &[String],
    ) -> Result<Vec<RouteTableDescription>, ApiError> {
        self.check_call(call)?;
        if rtb_ids.is_empty() {
            return Ok(self
                .route_tables
                .values()
                .filter(|t| self.owned_vpc(call, &t.vpc_id).is_ok())
                .map(|t| self.describe_route_table(t, call.now))
                .collect());
        }
        rtb_ids
            .iter()
            .map(|id| {
                self.owned_route_table(call, id)
                    .map(|t| self.describe_route_table(t, call.now))
            })
            .collect()
    }

    fn describe_route_table(&self, t: &RouteTable, now: u64) -> RouteTableDescription {
        let vpc = &self.vpcs[&t.vpc_id];
        let local = vpc.cidrs.iter().map(|c| RouteDescription {
            destination_cidr_block: c.to_string(),
            gateway_id: Some("local".into()),
            vpc_peering_connection_id: None,
            state: RouteState::Active,
            origin: "CreateRouteTable".into(),
        });
        let peering = t.routes.values().map(|r| RouteDescription {
            destination_cidr_block: r.destination.to_string(),
            gateway_id: None,
            vpc_peering_connection_id: Some(r.pcx_id.clone()),
            state: self.route_state(&r.pcx_id, now),
            origin: "CreateRoute".into(),
        });
        let main = (vpc.main_route_table_id == t.id).then(|| AssociationDescription {
            route_table_association_id: None,
            route_table_id: t.id.clone(),
            subnet_id: None,
            main: true,
        });
        let explicit = self.subnets.values().filter_map(|s| {
            let a = s
                .association
                .as_ref()
                .filter(|a| a.route_table_id == t.id)?;
            Some(AssociationDescription {
                route_table_association_id: Some(a.id.clone()),
                route_table_id: t.id.clone(),
                subnet_id: Some(s.id.clone()),
                main: false,
            })
        });
        RouteTableDescription {
            route_table_id: t.id.clone(),
            vpc_id: t.vpc_id.clone(),
            owner_id: vpc.owner.to_string(),
            routes: local.chain(peering).collect(),
            associations: main.into_iter().chain(explicit).collect(),
        }
    }
}

/// A destination equal to a VPC block collides with the local route; one
/// inside it would be more specific than local, which AWS allows only for
/// middlebox targets, never for peering connections.
fn check_not_local(vpc: &Vpc, dest: &Ipv4Net) -> Result<(), ApiError> {
    match vpc.cidrs.iter().find(|c| c.contains(dest)) {
        Some(c) if c == dest => Err(ApiError::new(
            ErrorCode::RouteAlreadyExists,
            format!("The route identified by {dest} already exists (local)."),
        )),
        Some(c) => Err(ApiError::invalid(format!(
            "The destination {dest} is more specific than the local route {c}"
        ))),
        None => Ok(()),
    }
}

fn route_not_found(rtb_id: &str, dest: &Ipv4Net) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route with destination-cidr-block {dest} in route table {rtb_id}"),
    )
}
