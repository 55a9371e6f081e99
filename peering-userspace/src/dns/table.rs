//! Who may resolve what: the region's VPCs and peerings as the resolver
//! needs them, and the decision for one question. Sans-IO.
//!
//! A querier is known by its source address: VPC blocks never overlap
//! within a region and the dataplane's source check has vouched for the
//! address. It asks its own VPC's resolver (the primary block's base + 2,
//! as AmazonProvidedDNS); a question sent to another VPC's resolver
//! address is refused. A private name resolves for the querier when its
//! address lies in the querier's own VPC (and the name carries this
//! region's zone), or in a peer VPC whose owner enabled
//! `AllowDnsResolutionFromRemoteVpc` on its side of an active peering (and
//! the name carries the peer's region's zone). Any other private name is
//! NXDOMAIN, exactly as a name that exists nowhere: the answer tells
//! nothing about other VPCs. Names outside the private zones are REFUSED
//! (no recursion).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::name::{classify, is_private, NameKind};
use crate::control::view::RegionView;

/// The query types the resolver tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    A,
    Ptr,
    /// QTYPE * (255).
    Any,
    Other,
}

/// What to answer one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'t> {
    /// NOERROR with this address.
    A(Ipv4Addr),
    /// NOERROR with the private name of this address in `region`.
    Ptr {
        ip: Ipv4Addr,
        region: &'t str,
    },
    /// NOERROR, no record of the asked type (the name exists).
    NoData,
    NxDomain,
    Refused,
}

/// One VPC of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vpc {
    cidrs: Vec<Ipv4Net>,
    /// Peer VPCs whose names this VPC's hosts may resolve.
    visible_peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    region: String,
    cidrs: Vec<Ipv4Net>,
}

/// The resolver's view of a region, built once per view change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsTable {
    region: String,
    /// Resolver address → the VPC it serves (one hash lookup per query).
    by_resolver: HashMap<Ipv4Addr, Vpc>,
}

/// The resolver address of a VPC whose primary block is `primary`:
/// the block's base + 2 (AWS: "the reserved IP address at the base of the
/// VPC IPv4 network range plus two").
pub fn resolver_addr(primary: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(primary.network()).wrapping_add(2))
}

impl DnsTable {
    pub fn new(view: &RegionView) -> Self {
        let mut by_dp = HashMap::new();
        for v in &view.vpcs {
            let Some(primary) = v.cidrs.first() else {
                continue;
            };
            let vpc = Vpc {
                cidrs: v.cidrs.clone(),
                visible_peers: Vec::new(),
            };
            by_dp.insert(v.dp_id, (resolver_addr(*primary), vpc));
        }
        for p in view.peerings.iter().filter(|p| p.remote_allows_dns) {
            if let Some((_, vpc)) = by_dp.get_mut(&p.local_vpc_dp_id) {
                vpc.visible_peers.push(Peer {
                    region: p.remote_region.clone(),
                    cidrs: p.remote_vpc_cidrs.clone(),
                });
            }
        }
        DnsTable {
            region: view.region.clone(),
            by_resolver: by_dp.into_values().collect(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The addresses the resolver must answer at, sorted.
    pub fn resolver_addrs(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self.by_resolver.keys().copied().collect();
        out.sort();
        out
    }

    /// The answer to `labels` (the query name, no root label) of type
    /// `qtype`, asked by `src` of resolver address `dst`. Costs one hash
    /// lookup and a scan of the querier's VPC blocks and DNS-visible peers
    /// (bounded by the AWS quotas: 5 blocks, 125 peerings per VPC).
    pub fn decide(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        labels: &[&[u8]],
        qtype: QType,
    ) -> Decision<'_> {
        let Some(vpc) = self.by_resolver.get(&dst) else {
            return Decision::Refused;
        };
        if !vpc.cidrs.iter().any(|c| c.contains(&src)) {
            return Decision::Refused;
        }
        match classify(labels) {
            NameKind::Private { ip, region } if self.visible(vpc, ip, region) => match qtype {
                QType::A | QType::Any => Decision::A(ip),
                _ => Decision::NoData,
            },
            NameKind::Private { .. } => Decision::NxDomain,
            NameKind::PrivateOther => Decision::NxDomain,
            NameKind::Reverse(ip) => match self.owner_region(vpc, ip) {
                Some(region) => match qtype {
                    QType::Ptr | QType::Any => Decision::Ptr { ip, region },
                    _ => Decision::NoData,
                },
                None if is_private(ip) => Decision::NxDomain,
                None => Decision::Refused,
            },
            NameKind::Other => Decision::Refused,
        }
    }

    /// Whether a querier of `vpc` may resolve the name of `ip` in the zone
    /// of `region`.
    fn visible(&self, vpc: &Vpc, ip: Ipv4Addr, region: &[u8]) -> bool {
        let own = region.eq_ignore_ascii_case(self.region.as_bytes())
            && vpc.cidrs.iter().any(|c| c.contains(&ip));
        own || vpc.visible_peers.iter().any(|p| {
            region.eq_ignore_ascii_case(p.region.as_bytes())
                && p.cidrs.iter().any(|c| c.contains(&ip))
        })
    }

    /// The region whose zone names `ip` for a querier of `vpc`: its own,
    /// or a DNS-visible peer's; None when the querier may not see it.
    fn owner_region<'t>(&'t self, vpc: &'t Vpc, ip: Ipv4Addr) -> Option<&'t str> {
        if vpc.cidrs.iter().any(|c| c.contains(&ip)) {
            return Some(&self.region);
        }
        vpc.visible_peers
            .iter()
            .find(|p| p.cidrs.iter().any(|c| c.contains(&ip)))
            .map(|p| p.region.as_str())
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
