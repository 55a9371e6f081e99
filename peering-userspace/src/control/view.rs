//! The dataplane view: everything a region's agent needs to program its
//! host, flattened and keyed by numeric dataplane ids.

use crate::control::peering::{Peering, PeeringStatus, Side};
use crate::control::route_table::RouteTable;
use crate::control::sg_region::{default_group_dp_id, group_view, interface_view};
use crate::control::sg_view::{InterfaceView, SecurityGroupView};
use crate::control::state::State;
use crate::control::subnet::Subnet;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionView {
    pub revision: u64,
    pub region: String,
    pub vpcs: Vec<VpcView>,
    pub subnets: Vec<SubnetView>,
    pub routes: Vec<RouteView>,
    pub peerings: Vec<PeeringView>,
    /// The region's security groups, with only their valid rules.
    #[serde(default)]
    pub security_groups: Vec<SecurityGroupView>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcView {
    pub vpc_id: String,
    pub dp_id: u32,
    pub cidrs: Vec<Ipv4Net>,
    /// The group of every address of the VPC without an interface record
    /// (0: none, a VPC of an old store not yet adopted).
    #[serde(default)]
    pub default_group_dp_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetView {
    pub subnet_id: String,
    pub vpc_dp_id: u32,
    pub cidr: Ipv4Net,
    pub interface: String,
    /// 0 = untagged.
    pub vlan: u16,
    pub gateway_ip: Ipv4Addr,
    pub route_table_dp_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub route_table_dp_id: u32,
    pub destination: Ipv4Net,
    pub target: RouteTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteTarget {
    /// The peer VPC is in this region.
    LocalPeer {
        pcx_id: String,
        pcx_dp_id: u32,
        peer_vpc_dp_id: u32,
    },
    /// The peer VPC is in `remote_region`.
    RemotePeer {
        pcx_id: String,
        pcx_dp_id: u32,
        remote_region: String,
        peer_vpc_cidrs: Vec<Ipv4Net>,
    },
    /// The peering is not active (pending, deleted, expired, gone...).
    Blackhole { pcx_id: String },
}

/// An active peering with a VPC of this region. An intra-region peering
/// appears twice, once from each VPC (`local_vpc_dp_id` differs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringView {
    pub pcx_id: String,
    pub dp_id: u32,
    pub local_vpc_dp_id: u32,
    pub remote_region: String,
    pub remote_vpc_cidrs: Vec<Ipv4Net>,
    pub local_vpc_cidrs: Vec<Ipv4Net>,
    /// The REMOTE side's `AllowDnsResolutionFromRemoteVpc`: its owner lets
    /// hosts of the local VPC resolve the remote VPC's private names (AWS:
    /// "the DNS hostnames of instances in the specified VPC resolve to
    /// private IP addresses when queried from instances in the peer VPC").
    #[serde(default)]
    pub remote_allows_dns: bool,
}

/// What the agent of `region` must program, at `now` (which decides whether
/// peerings are active). Lists are sorted by [`crate::control::delta::ViewKey`],
/// so equal states give equal views.
pub fn region_view(state: &State, region: &str, now: u64) -> RegionView {
    let in_region = |vpc_id: &str| state.vpc(vpc_id).is_some_and(|v| v.region == region);
    let vpcs = state
        .vpcs()
        .filter(|v| v.region == region)
        .map(|v| VpcView {
            vpc_id: v.id.clone(),
            dp_id: v.dp_id,
            cidrs: v.cidrs.clone(),
            default_group_dp_id: default_group_dp_id(state, &v.id),
        })
        .collect();
    let subnets = state
        .subnets()
        .filter(|s| in_region(&s.vpc_id))
        .filter_map(|s| subnet_view(state, s))
        .collect();
    let routes = state
        .route_tables()
        .filter(|t| in_region(&t.vpc_id))
        .flat_map(|t| table_routes(state, t, region, now))
        .collect();
    let peerings = state
        .peerings()
        .filter(|p| p.status_at(now) == PeeringStatus::Active)
        .flat_map(|p| [Side::Requester, Side::Accepter].map(|s| peering_view(state, p, s, region)))
        .flatten()
        .collect();
    // VPC pairs of this region's active peerings (rules referencing a peer
    // VPC's group are valid over them).
    let pairs: std::collections::HashSet<(&str, &str)> = state
        .peerings()
        .filter(|p| p.status_at(now) == PeeringStatus::Active && !p.is_inter_region())
        .filter(|p| p.requester.region == region)
        .flat_map(|p| {
            let (a, b) = (p.requester.vpc_id.as_str(), p.accepter.vpc_id.as_str());
            [(a, b), (b, a)]
        })
        .collect();
    let peered = |a: &str, b: &str| pairs.contains(&(a, b));
    let security_groups = state
        .security_groups()
        .filter(|g| in_region(&g.vpc_id))
        .filter_map(|g| group_view(state, g, &peered))
        .collect();
    let interfaces = state
        .network_interfaces()
        .filter(|n| in_region(&n.vpc_id))
        .filter_map(|n| interface_view(state, n))
        .collect();
    let mut view = RegionView {
        revision: state.revision,
        region: region.to_owned(),
        vpcs,
        subnets,
        routes,
        peerings,
        security_groups,
        interfaces,
    };
    view.sort();
    view
}

/// The view entry of one subnet (None while its route table is missing).
pub(crate) fn subnet_view(state: &State, s: &Subnet) -> Option<SubnetView> {
    let rtb = state.route_table(state.effective_route_table(s)?)?;
    Some(SubnetView {
        subnet_id: s.id.clone(),
        vpc_dp_id: state.vpc(&s.vpc_id)?.dp_id,
        cidr: s.cidr,
        interface: s.interface.clone(),
        vlan: s.vlan,
        gateway_ip: s.gateway_ip(),
        route_table_dp_id: rtb.dp_id,
    })
}

/// The view entries of one route table's routes, seen from `region`.
pub(crate) fn table_routes<'a>(
    state: &'a State,
    t: &'a RouteTable,
    region: &'a str,
    now: u64,
) -> impl Iterator<Item = RouteView> + 'a {
    t.routes.values().map(move |r| RouteView {
        route_table_dp_id: t.dp_id,
        destination: r.destination,
        target: route_target(state, &t.vpc_id, &r.pcx_id, region, now),
    })
}

pub(crate) fn other(side: Side) -> Side {
    match side {
        Side::Requester => Side::Accepter,
        Side::Accepter => Side::Requester,
    }
}

pub(crate) fn route_target(
    state: &State,
    vpc_id: &str,
    pcx_id: &str,
    region: &str,
    now: u64,
) -> RouteTarget {
    let blackhole = || RouteTarget::Blackhole {
        pcx_id: pcx_id.to_owned(),
    };
    let Some(p) = state.peering(pcx_id) else {
        return blackhole();
    };
    let Some(side) = p.side_of_vpc(vpc_id) else {
        return blackhole();
    };
    if p.status_at(now) != PeeringStatus::Active {
        return blackhole();
    }
    let peer = p.side(other(side));
    if peer.region == region {
        match state.vpc(&peer.vpc_id) {
            Some(v) => RouteTarget::LocalPeer {
                pcx_id: p.id.clone(),
                pcx_dp_id: p.dp_id,
                peer_vpc_dp_id: v.dp_id,
            },
            None => blackhole(),
        }
    } else {
        RouteTarget::RemotePeer {
            pcx_id: p.id.clone(),
            pcx_dp_id: p.dp_id,
            remote_region: peer.region.clone(),
            peer_vpc_cidrs: state.side_cidrs(peer),
        }
    }
}

pub(crate) fn peering_view(
    state: &State,
    p: &Peering,
    side: Side,
    region: &str,
) -> Option<PeeringView> {
    let local = p.side(side);
    if local.region != region {
        return None;
    }
    let remote = p.side(other(side));
    Some(PeeringView {
        pcx_id: p.id.clone(),
        dp_id: p.dp_id,
        local_vpc_dp_id: state.vpc(&local.vpc_id)?.dp_id,
        remote_region: remote.region.clone(),
        remote_vpc_cidrs: state.side_cidrs(remote),
        local_vpc_cidrs: state.side_cidrs(local),
        remote_allows_dns: remote.allow_dns_resolution_from_remote_vpc,
    })
}
