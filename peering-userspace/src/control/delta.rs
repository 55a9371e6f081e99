//! Changes to a region's dataplane view, so an agent applies what changed
//! instead of re-reading (and re-programming) its whole region.
//!
//! A [`RegionView`] is a set of entries, each with a [`ViewKey`]; a
//! [`RegionDelta`] takes a view from one revision to a later one by
//! upserting and removing entries. [`RegionView::diff`] computes the delta
//! between two full views (how an agent resynchronises after a gap without
//! re-programming what did not change); a controller computes deltas from
//! the objects a commit touched instead, at a cost that grows with the
//! change, not with the region.

use crate::control::sg_view::{InterfaceView, SecurityGroupView};
use crate::control::view::{PeeringView, RegionView, RouteView, SubnetView, VpcView};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Identifies one entry of a region view. The view's lists are sorted by
/// it ([`crate::control::view::region_view`] sorts them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ViewKey {
    Vpc {
        dp_id: u32,
    },
    Subnet {
        subnet_id: String,
    },
    Route {
        route_table_dp_id: u32,
        destination: Ipv4Net,
    },
    /// An intra-region peering appears twice, once per local VPC.
    Peering {
        dp_id: u32,
        local_vpc_dp_id: u32,
    },
    SecurityGroup {
        dp_id: u32,
    },
    Interface {
        eni_id: String,
    },
}

/// One entry of a region view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewEntry {
    Vpc(VpcView),
    Subnet(SubnetView),
    Route(RouteView),
    Peering(PeeringView),
    SecurityGroup(SecurityGroupView),
    Interface(InterfaceView),
}

impl ViewEntry {
    pub fn key(&self) -> ViewKey {
        match self {
            ViewEntry::Vpc(v) => v.key(),
            ViewEntry::Subnet(s) => s.key(),
            ViewEntry::Route(r) => r.key(),
            ViewEntry::Peering(p) => p.key(),
            ViewEntry::SecurityGroup(g) => sg_key(g),
            ViewEntry::Interface(n) => interface_key(n),
        }
    }
}

impl VpcView {
    pub fn key(&self) -> ViewKey {
        ViewKey::Vpc { dp_id: self.dp_id }
    }
}

impl SubnetView {
    pub fn key(&self) -> ViewKey {
        ViewKey::Subnet {
            subnet_id: self.subnet_id.clone(),
        }
    }
}

impl RouteView {
    pub fn key(&self) -> ViewKey {
        ViewKey::Route {
            route_table_dp_id: self.route_table_dp_id,
            destination: self.destination,
        }
    }
}

impl PeeringView {
    pub fn key(&self) -> ViewKey {
        ViewKey::Peering {
            dp_id: self.dp_id,
            local_vpc_dp_id: self.local_vpc_dp_id,
        }
    }
}

// `SecurityGroupView` and `InterfaceView` are defined in `sg_view.rs` (the
// dataplane contract); their keys are functions here.
pub fn sg_key(g: &SecurityGroupView) -> ViewKey {
    ViewKey::SecurityGroup { dp_id: g.dp_id }
}

pub fn interface_key(n: &InterfaceView) -> ViewKey {
    ViewKey::Interface {
        eni_id: n.eni_id.clone(),
    }
}

/// What turns the view of `region` at revision `from` into its view at
/// `revision`. Upserts replace an entry with the same key or add it;
/// removals name entries that are gone. A key is in at most one of the two
/// lists. A delta may be empty (the revision moved, the region did not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDelta {
    pub region: String,
    pub from: u64,
    pub revision: u64,
    pub upserts: Vec<ViewEntry>,
    pub removals: Vec<ViewKey>,
}

impl RegionDelta {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }

    /// Number of entries the delta changes.
    pub fn len(&self) -> usize {
        self.upserts.len() + self.removals.len()
    }
}

/// Why a delta does not apply to a view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta for region {delta} applied to the view of {view}")]
    Region { view: String, delta: String },
    #[error("delta from revision {from} applied to a view at revision {view}")]
    Revision { view: u64, from: u64 },
    #[error("delta goes back from revision {from} to {to}")]
    Backwards { from: u64, to: u64 },
}

impl RegionView {
    /// Every entry with its key, in key order.
    pub fn entries(&self) -> BTreeMap<ViewKey, ViewEntry> {
        let vpcs = self.vpcs.iter().cloned().map(ViewEntry::Vpc);
        let subnets = self.subnets.iter().cloned().map(ViewEntry::Subnet);
        let routes = self.routes.iter().cloned().map(ViewEntry::Route);
        let peerings = self.peerings.iter().cloned().map(ViewEntry::Peering);
        let groups = self
            .security_groups
            .iter()
            .cloned()
            .map(ViewEntry::SecurityGroup);
        let interfaces = self.interfaces.iter().cloned().map(ViewEntry::Interface);
        vpcs.chain(subnets)
            .chain(routes)
            .chain(peerings)
            .chain(groups)
            .chain(interfaces)
            .map(|e| (e.key(), e))
            .collect()
    }

    /// The delta that turns `self` into `newer` (same region).
    pub fn diff(&self, newer: &RegionView) -> RegionDelta {
        let old = self.entries();
        let new = newer.entries();
        let upserts = new
            .iter()
            .filter(|(k, e)| old.get(*k) != Some(*e))
            .map(|(_, e)| e.clone())
            .collect();
        let removals = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        RegionDelta {
            region: newer.region.clone(),
            from: self.revision,
            revision: newer.revision,
            upserts,
            removals,
        }
    }

    /// Applies `delta`, which must start at this view's revision. Each list
    /// stays sorted by key; the cost is a binary search and a move per
    /// changed entry.
    pub fn apply(&mut self, delta: &RegionDelta) -> Result<(), DeltaError> {
        if delta.region != self.region {
            return Err(DeltaError::Region {
                view: self.region.clone(),
                delta: delta.region.clone(),
            });
        }
        if delta.from != self.revision {
            return Err(DeltaError::Revision {
                view: self.revision,
                from: delta.from,
            });
        }
        if delta.revision < delta.from {
            return Err(DeltaError::Backwards {
                from: delta.from,
                to: delta.revision,
            });
        }
        for key in &delta.removals {
            match key {
                ViewKey::Vpc { .. } => remove(&mut self.vpcs, key, VpcView::key),
                ViewKey::Subnet { .. } => remove(&mut self.subnets, key, SubnetView::key),
                ViewKey::Route { .. } => remove(&mut self.routes, key, RouteView::key),
                ViewKey::Peering { .. } => remove(&mut self.peerings, key, PeeringView::key),
                ViewKey::SecurityGroup { .. } => remove(&mut self.security_groups, key, sg_key),
                ViewKey::Interface { .. } => remove(&mut self.interfaces, key, interface_key),
            }
        }
        for entry in &delta.upserts {
            match entry {
                ViewEntry::Vpc(v) => upsert(&mut self.vpcs, v, VpcView::key),
                ViewEntry::Subnet(s) => upsert(&mut self.subnets, s, SubnetView::key),
                ViewEntry::Route(r) => upsert(&mut self.routes, r, RouteView::key),
                ViewEntry::Peering(p) => upsert(&mut self.peerings, p, PeeringView::key),
                ViewEntry::SecurityGroup(g) => upsert(&mut self.security_groups, g, sg_key),
                ViewEntry::Interface(n) => upsert(&mut self.interfaces, n, interface_key),
            }
        }
        self.revision = delta.revision;
        Ok(())
    }

    /// Sorts every list by [`ViewKey`], the order [`RegionView::apply`]
    /// keeps.
    pub fn sort(&mut self) {
        self.vpcs.sort_by_key(VpcView::key);
        self.subnets.sort_by_key(SubnetView::key);
        self.routes.sort_by_key(RouteView::key);
        self.peerings.sort_by_key(PeeringView::key);
        self.security_groups.sort_by_key(sg_key);
        self.interfaces.sort_by_key(interface_key);
    }
}

fn remove<T>(list: &mut Vec<T>, key: &ViewKey, key_of: fn(&T) -> ViewKey) {
    if let Ok(i) = list.binary_search_by(|e| key_of(e).cmp(key)) {
        list.remove(i);
    }
}

fn upsert<T: Clone>(list: &mut Vec<T>, entry: &T, key_of: fn(&T) -> ViewKey) {
    let key = key_of(entry);
    match list.binary_search_by(|e| key_of(e).cmp(&key)) {
        Ok(i) => list[i] = entry.clone(),
        Err(i) => list.insert(i, entry.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::view::RouteTarget;
    use std::net::Ipv4Addr;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn route(table: u32, dest: &str, pcx: &str) -> RouteView {
        RouteView {
            route_table_dp_id: table,
            destination: net(dest),
            target: RouteTarget::Blackhole {
                pcx_id: pcx.to_owned(),
            },
        }
    }

    fn view(revision: u64, routes: Vec<RouteView>, vpcs: Vec<u32>) -> RegionView {
        let mut v = RegionView {
            revision,
            region: "us-east-1".into(),
            vpcs: vpcs
                .into_iter()
                .map(|dp_id| VpcView {
                    vpc_id: format!("vpc-{dp_id:017x}"),
                    dp_id,
                    cidrs: vec![net("10.1.0.0/16")],
                    default_group_dp_id: 0,
                })
                .collect(),
            subnets: vec![SubnetView {
                subnet_id: "subnet-1".into(),
                vpc_dp_id: 1,
                cidr: net("10.1.1.0/24"),
                interface: "eth1".into(),
                vlan: 0,
                gateway_ip: Ipv4Addr::new(10, 1, 1, 1),
                route_table_dp_id: 2,
            }],
            routes,
            peerings: vec![],
            security_groups: vec![],
            interfaces: vec![],
        };
        v.sort();
        v
    }

    #[test]
    fn diff_then_apply_gives_the_newer_view() {
        let old = view(
            3,
            vec![
                route(2, "10.2.0.0/16", "pcx-a"),
                route(2, "10.3.0.0/16", "pcx-a"),
            ],
            vec![1, 5],
        );
        let new = view(
            9,
            vec![
                route(2, "10.2.0.0/16", "pcx-b"),
                route(4, "10.3.0.0/16", "pcx-a"),
                route(2, "10.9.0.0/16", "pcx-a"),
            ],
            vec![5, 7],
        );
        let delta = old.diff(&new);
        assert_eq!((delta.from, delta.revision), (3, 9));
        // pcx-a → pcx-b, 10.9 added, table 4 added; 10.3 in table 2 gone,
        // VPC 7 added and VPC 1 gone. The subnet did not change.
        assert_eq!(delta.upserts.len(), 4);
        assert_eq!(delta.removals.len(), 2);
        let mut applied = old.clone();
        applied.apply(&delta).unwrap();
        assert_eq!(applied, new);
        // And back: the reverse delta restores the old view.
        let mut back = new.clone();
        let mut reverse = new.diff(&old);
        reverse.revision = 9;
        back.apply(&reverse).unwrap();
        back.revision = 3;
        assert_eq!(back, old);
    }

    #[test]
    fn equal_views_give_an_empty_delta() {
        let v = view(4, vec![route(2, "10.2.0.0/16", "pcx-a")], vec![1]);
        let mut later = v.clone();
        later.revision = 6;
        let delta = v.diff(&later);
        assert!(delta.is_empty());
        assert_eq!(delta.len(), 0);
        let mut applied = v.clone();
        applied.apply(&delta).unwrap();
        assert_eq!(applied, later);
    }

    #[test]
    fn mismatched_deltas_are_refused_and_change_nothing() {
        let v = view(4, vec![], vec![1]);
        let mut other = v.clone();
        let mut delta = v.diff(&view(5, vec![], vec![2]));
        delta.from = 3;
        assert_eq!(
            other.apply(&delta),
            Err(DeltaError::Revision { view: 4, from: 3 })
        );
        delta.from = 4;
        delta.region = "eu-west-1".into();
        assert!(matches!(
            other.apply(&delta),
            Err(DeltaError::Region { .. })
        ));
        delta.region = "us-east-1".into();
        delta.revision = 2;
        assert!(matches!(
            other.apply(&delta),
            Err(DeltaError::Backwards { .. })
        ));
        assert_eq!(other, v);
    }

    #[test]
    fn removing_a_missing_key_is_harmless() {
        let mut v = view(1, vec![], vec![1]);
        let delta = RegionDelta {
            region: "us-east-1".into(),
            from: 1,
            revision: 2,
            upserts: vec![],
            removals: vec![ViewKey::Route {
                route_table_dp_id: 9,
                destination: net("10.9.0.0/16"),
            }],
        };
        v.apply(&delta).unwrap();
        assert_eq!(v.revision, 2);
        assert_eq!(v.vpcs.len(), 1);
    }

    #[test]
    fn keys_order_routes_by_table_then_destination() {
        let v = view(
            1,
            vec![
                route(4, "10.1.0.0/16", "p"),
                route(2, "10.9.0.0/16", "p"),
                route(2, "10.2.0.0/16", "p"),
            ],
            vec![],
        );
        let order: Vec<_> = v
            .routes
            .iter()
            .map(|r| (r.route_table_dp_id, r.destination.to_string()))
            .collect();
        assert_eq!(
            order,
            [
                (2, "10.2.0.0/16".to_string()),
                (2, "10.9.0.0/16".to_string()),
                (4, "10.1.0.0/16".to_string())
            ]
        );
    }
}
