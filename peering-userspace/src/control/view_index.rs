//! Per-region view deltas at a cost that grows with the change, not with
//! the deployment: sans-IO.
//!
//! Every entry of a region view belongs to exactly one VPC: its VPC entry,
//! its subnets, the routes of its route tables and the peering entries
//! where it is the local side. [`ViewIndex`] keeps, per VPC, the entries it
//! contributes (and which subnets, route tables and peerings refer to it).
//! For a write, given the objects it touched ([`Changes`]: previous values,
//! new ones in the [`State`]), it works out which VPCs' entries may differ,
//! recomputes only those, and returns per region what changed. A write
//! that only changed routes of existing tables recomputes those tables'
//! routes alone.
//!
//! Which VPCs a change affects (the entries of VPC v depend on v, its
//! subnets, its route tables and routes, the peerings v is a side of, and
//! the peer VPCs of those peerings):
//! - a VPC: itself and the VPCs on the other side of its peerings (their
//!   routes and peering entries show its CIDRs and dataplane id);
//! - a subnet or route table (routes included): its VPC (before and after);
//! - a peering: the VPCs of both sides (their routes through it, their
//!   peering entries, and their groups' rules referencing the other side's
//!   groups, valid only while the peering is active);
//! - a security group: its VPC (before and after), and the VPCs of the
//!   groups whose rules reference it (a deleted group makes them stale);
//! - a network interface: its VPC (before and after).
//!
//! The config and the dataplane-id counter appear in no view.
//!
//! Views are computed at time 0: an active peering stays active whatever
//! the time (only pending requests expire), so the view does not depend on
//! when it is computed.

use crate::control::delta::{ViewEntry, ViewKey};
use crate::control::peering::{PeeringStatus, Side};
use crate::control::sg_region::{default_group_dp_id, group_view, interface_view};
use crate::control::state::{Changes, State};
use crate::control::view::{peering_view, subnet_view, table_routes, VpcView};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Entries by key, each with its region.
pub type Entries = BTreeMap<ViewKey, (String, ViewEntry)>;

/// What changed in one region: the new entry, or None for a removal.
pub type RegionChanges = BTreeMap<ViewKey, Option<ViewEntry>>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ViewIndex {
    owned: HashMap<String, Entries>,
    subnets_of: HashMap<String, BTreeSet<String>>,
    tables_of: HashMap<String, BTreeSet<String>>,
    peerings_of: HashMap<String, BTreeSet<String>>,
    groups_of: HashMap<String, BTreeSet<String>>,
    interfaces_of: HashMap<String, BTreeSet<String>>,
    /// Group id → the groups with a rule referencing it.
    referrers: HashMap<String, BTreeSet<String>>,
}

fn link(index: &mut HashMap<String, BTreeSet<String>>, vpc: &str, id: &str, on: bool) {
    if on {
        index
            .entry(vpc.to_owned())
            .or_default()
            .insert(id.to_owned());
    } else if let Some(set) = index.get_mut(vpc) {
        set.remove(id);
        if set.is_empty() {
            index.remove(vpc);
        }
    }
}

impl ViewIndex {
    /// The index of a whole state (O(state), once per snapshot).
    pub fn new(state: &State) -> Self {
        let mut index = ViewIndex::default();
        for s in state.subnets() {
            link(&mut index.subnets_of, &s.vpc_id, &s.id, true);
        }
        for t in state.route_tables() {
            link(&mut index.tables_of, &t.vpc_id, &t.id, true);
        }
        for p in state.peerings() {
            for side in [&p.requester, &p.accepter] {
                link(&mut index.peerings_of, &side.vpc_id, &p.id, true);
            }
        }
        for g in state.security_groups() {
            link(&mut index.groups_of, &g.vpc_id, &g.id, true);
            for r in g.rules().filter_map(|r| r.group_ref()) {
                link(&mut index.referrers, r, &g.id, true);
            }
        }
        for n in state.network_interfaces() {
            link(&mut index.interfaces_of, &n.vpc_id, &n.id, true);
        }
        let vpcs: Vec<String> = state.vpcs().map(|v| v.id.clone()).collect();
        for v in vpcs {
            let entries = index.entries_of(state, &v);
            if !entries.is_empty() {
                index.owned.insert(v, entries);
            }
        }
        index
    }

    /// The entries VPC `vpc_id` contributes in `state`.
    fn entries_of(&self, state: &State, vpc_id: &str) -> Entries {
        let mut out = Entries::new();
        let Some(v) = state.vpc(vpc_id) else {
            return out;
        };
        let region = v.region.as_str();
        let mut add = |region: &str, e: ViewEntry| {
            out.insert(e.key(), (region.to_owned(), e));
        };
        add(
            region,
            ViewEntry::Vpc(VpcView {
                vpc_id: v.id.clone(),
                dp_id: v.dp_id,
                cidrs: v.cidrs.clone(),
                default_group_dp_id: default_group_dp_id(state, vpc_id),
            }),
        );
        let ids = |index: &HashMap<String, BTreeSet<String>>| {
            index
                .get(vpc_id)
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        };
        for id in ids(&self.subnets_of) {
            if let Some(sv) = state.subnet(&id).and_then(|s| subnet_view(state, s)) {
                add(region, ViewEntry::Subnet(sv));
            }
        }
        for id in ids(&self.tables_of) {
            if let Some(t) = state.route_table(&id) {
                for r in table_routes(state, t, region, 0) {
                    add(region, ViewEntry::Route(r));
                }
            }
        }
        for id in ids(&self.peerings_of) {
            let Some(p) = state.peering(&id) else {
                continue;
            };
            if p.status_at(0) != PeeringStatus::Active {
                continue;
            }
            for side in [Side::Requester, Side::Accepter] {
                let local = p.side(side);
                if local.vpc_id != vpc_id {
                    continue;
                }
                if let Some(pv) = peering_view(state, p, side, &local.region) {
                    add(&local.region, ViewEntry::Peering(pv));
                }
            }
        }
        let peered = |a: &str, b: &str| self.peered(state, a, b);
        for id in ids(&self.groups_of) {
            if let Some(gv) = state
                .security_group(&id)
                .and_then(|g| group_view(state, g, &peered))
            {
                add(region, ViewEntry::SecurityGroup(gv));
            }
        }
        for id in ids(&self.interfaces_of) {
            if let Some(nv) = state
                .network_interface(&id)
                .and_then(|n| interface_view(state, n))
            {
                add(region, ViewEntry::Interface(nv));
            }
        }
        out
    }

    /// Whether VPCs `a` and `b` are sides of an active intra-region
    /// peering (found through `a`'s peerings).
    fn peered(&self, state: &State, a: &str, b: &str) -> bool {
        self.peerings_of.get(a).into_iter().flatten().any(|id| {
            state.peering(id).is_some_and(|p| {
                p.status_at(0) == PeeringStatus::Active
                    && !p.is_inter_region()
                    && p.side_of_vpc(a).is_some()
                    && p.side_of_vpc(b).is_some()
            })
        })
    }

    /// The VPCs whose entries `changes` may have changed.
    fn affected(&self, state: &State, changes: &Changes) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (id, prev) in &changes.vpcs {
            out.insert(id.clone());
            let _ = prev;
            for pcx in self.peerings_of.get(id).into_iter().flatten() {
                if let Some(p) = state.peering(pcx) {
                    out.insert(p.requester.vpc_id.clone());
                    out.insert(p.accepter.vpc_id.clone());
                }
            }
        }
        for (id, prev) in &changes.subnets {
            out.extend(prev.iter().map(|s| s.vpc_id.clone()));
            out.extend(state.subnet(id).map(|s| s.vpc_id.clone()));
        }
        for (id, prev) in &changes.route_tables {
            out.extend(prev.iter().map(|t| t.vpc_id.clone()));
            out.extend(state.route_table(id).map(|t| t.vpc_id.clone()));
        }
        for (id, prev) in &changes.peerings {
            for p in prev.iter().chain(state.peering(id)) {
                out.insert(p.requester.vpc_id.clone());
                out.insert(p.accepter.vpc_id.clone());
            }
        }
        for (id, prev) in &changes.security_groups {
            out.extend(prev.iter().map(|g| g.vpc_id.clone()));
            out.extend(state.security_group(id).map(|g| g.vpc_id.clone()));
            for r in self.referrers.get(id).into_iter().flatten() {
                out.extend(state.security_group(r).map(|g| g.vpc_id.clone()));
            }
        }
        for (id, prev) in &changes.network_interfaces {
            out.extend(prev.iter().map(|n| n.vpc_id.clone()));
            out.extend(state.network_interface(id).map(|n| n.vpc_id.clone()));
        }
        out
    }

    fn relink(&mut self, state: &State, changes: &Changes) {
        for (id, prev) in &changes.subnets {
            if let Some(s) = prev {
                link(&mut self.subnets_of, &s.vpc_id, id, false);
            }
            if let Some(s) = state.subnet(id) {
                link(&mut self.subnets_of, &s.vpc_id, id, true);
            }
        }
        for (id, prev) in &changes.route_tables {
            if let Some(t) = prev {
                link(&mut self.tables_of, &t.vpc_id, id, false);
            }
            if let Some(t) = state.route_table(id) {
                link(&mut self.tables_of, &t.vpc_id, id, true);
            }
        }
        for (id, prev) in &changes.peerings {
            if let Some(p) = prev {
                for side in [&p.requester, &p.accepter] {
                    link(&mut self.peerings_of, &side.vpc_id, id, false);
                }
            }
            if let Some(p) = state.peering(id) {
                for side in [&p.requester, &p.accepter] {
                    link(&mut self.peerings_of, &side.vpc_id, id, true);
                }
            }
        }
        for (id, prev) in &changes.security_groups {
            if let Some(g) = prev {
                link(&mut self.groups_of, &g.vpc_id, id, false);
                for r in g.rules().filter_map(|r| r.group_ref()) {
                    link(&mut self.referrers, r, id, false);
                }
            }
            if let Some(g) = state.security_group(id) {
                link(&mut self.groups_of, &g.vpc_id, id, true);
                for r in g.rules().filter_map(|r| r.group_ref()) {
                    link(&mut self.referrers, r, id, true);
                }
            }
        }
        for (id, prev) in &changes.network_interfaces {
            if let Some(n) = prev {
                link(&mut self.interfaces_of, &n.vpc_id, id, false);
            }
            if let Some(n) = state.network_interface(id) {
                link(&mut self.interfaces_of, &n.vpc_id, id, true);
            }
        }
    }

    /// Takes the index from the state before `changes` to `state` (after
    /// them) and returns, per region, the entries that changed.
    pub fn update(&mut self, state: &State, changes: &Changes) -> BTreeMap<String, RegionChanges> {
        if let Some(out) = self.update_routes(state, changes) {
            return out;
        }
        // Affected VPCs are looked up before and after relinking: a peering
        // that was deleted is found through the previous values.
        let mut affected = self.affected(state, changes);
        self.relink(state, changes);
        affected.extend(self.affected(state, changes));
        let mut old = Entries::new();
        let mut new = Entries::new();
        for vpc in &affected {
            if let Some(entries) = self.owned.remove(vpc) {
                old.extend(entries);
            }
            let entries = self.entries_of(state, vpc);
            new.extend(entries.iter().map(|(k, e)| (k.clone(), e.clone())));
            if !entries.is_empty() {
                self.owned.insert(vpc.clone(), entries);
            }
        }
        let mut out: BTreeMap<String, RegionChanges> = BTreeMap::new();
        for (key, (region, entry)) in &new {
            if old.get(key) != Some(&(region.clone(), entry.clone())) {
                out.entry(region.clone())
                    .or_default()
                    .insert(key.clone(), Some(entry.clone()));
            }
        }
        for (key, (region, _)) in &old {
            let moved = new.get(key).is_some_and(|(r, _)| r != region);
            if !new.contains_key(key) || moved {
                out.entry(region.clone())
                    .or_default()
                    .insert(key.clone(), None);
            }
        }
        out
    }
}

impl ViewIndex {
    /// A write that changed only the routes of route tables that existed
    /// before and after it (CreateRoute, ReplaceRoute, DeleteRoute): only
    /// those tables' route entries are recomputed, not every entry of
    /// their VPC (up to 200 tables of routes). None: any other change,
    /// for [`ViewIndex::update`] to handle; nothing is touched then.
    fn update_routes(
        &mut self,
        state: &State,
        changes: &Changes,
    ) -> Option<BTreeMap<String, RegionChanges>> {
        if !(changes.vpcs.is_empty()
            && changes.subnets.is_empty()
            && changes.peerings.is_empty()
            && changes.security_groups.is_empty()
            && changes.network_interfaces.is_empty())
        {
            return None;
        }
        let mut tables = Vec::new();
        for (id, prev) in &changes.route_tables {
            let (prev, now) = (prev.as_ref()?, state.route_table(id)?);
            if prev.vpc_id != now.vpc_id || prev.dp_id != now.dp_id {
                return None;
            }
            let region = state.vpc(&now.vpc_id)?.region.as_str();
            self.owned.get(&now.vpc_id)?;
            tables.push((prev, now, region));
        }
        let mut out: BTreeMap<String, RegionChanges> = BTreeMap::new();
        for (prev, now, region) in tables {
            let owned = self.owned.get_mut(&now.vpc_id).expect("checked above");
            let mut old = Entries::new();
            for r in prev.routes.values() {
                let key = ViewKey::Route {
                    route_table_dp_id: prev.dp_id,
                    destination: r.destination,
                };
                if let Some(e) = owned.remove(&key) {
                    old.insert(key, e);
                }
            }
            let changed = out.entry(region.to_owned()).or_default();
            for r in table_routes(state, now, region, 0) {
                let entry = (region.to_owned(), ViewEntry::Route(r));
                let key = entry.1.key();
                if old.remove(&key).as_ref() != Some(&entry) {
                    changed.insert(key.clone(), Some(entry.1.clone()));
                }
                owned.insert(key, entry);
            }
            for key in old.into_keys() {
                changed.insert(key, None);
            }
        }
        out.retain(|_, c| !c.is_empty());
        Some(out)
    }
}

/// Merges `later` into `earlier` (both for one region): the later value of
/// a key wins.
pub fn merge(earlier: &mut RegionChanges, later: &RegionChanges) {
    for (k, v) in later {
        earlier.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::account::{AccountId, Call};
    use crate::control::delta::RegionDelta;
    use crate::control::ids::SequentialIds;
    use crate::control::peering::{CreatePeering, ModifyPeeringOptions};
    use crate::control::subnet::CreateSubnet;
    use crate::control::view::{region_view, RegionView};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];
    const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];

    fn delta_of(region: &str, from: u64, to: u64, ch: Option<&RegionChanges>) -> RegionDelta {
        let mut d = RegionDelta {
            region: region.into(),
            from,
            revision: to,
            upserts: vec![],
            removals: vec![],
        };
        for (k, v) in ch.into_iter().flatten() {
            match v {
                Some(e) => d.upserts.push(e.clone()),
                None => d.removals.push(k.clone()),
            }
        }
        d
    }

    /// Picks a random existing id from `ids`, or a made-up one.
    fn pick(rng: &mut StdRng, ids: Vec<String>, fallback: &str) -> String {
        if ids.is_empty() || rng.random_bool(0.05) {
            return fallback.to_owned();
        }
        ids[rng.random_range(0..ids.len())].clone()
    }

    /// One random operation (most succeed; failures must change nothing).
    fn random_op(rng: &mut StdRng, s: &mut State, ids: &mut SequentialIds, now: u64) {
        let account = AccountId::parse(ACCOUNTS[rng.random_range(0..2)]).unwrap();
        let region = REGIONS[rng.random_range(0..2)];
        let call = Call::at(account.clone(), region, now);
        let vpcs: Vec<String> = s.vpcs().map(|v| v.id.clone()).collect();
        let vpc = pick(rng, vpcs.clone(), "vpc-00000000000000000");
        let cidr = |rng: &mut StdRng| format!("10.{}.0.0/16", rng.random_range(0..12));
        let _ = match rng.random_range(0..23) {
            0 | 1 => s.create_vpc(&call, ids, &cidr(rng)).map(|_| ()),
            2 => s.delete_vpc(&call, &vpc),
            3 => s
                .associate_vpc_cidr_block(
                    &call,
                    &vpc,
                    &format!("10.{}.0.0/16", rng.random_range(20..30)),
                )
                .map(|_| ()),
            4 => {
                let blocks: Vec<String> = s
                    .vpc(&vpc)
                    .map(|v| v.cidrs.iter().map(|c| c.to_string()).collect())
                    .unwrap_or_default();
                let b = pick(rng, blocks, "10.99.0.0/16");
                s.disassociate_vpc_cidr_block(&call, &vpc, &b).map(|_| ())
            }
            5 => {
                let sub = match s.vpc(&vpc) {
                    Some(v) => {
                        let o = v.cidrs[0].network().octets();
                        format!("{}.{}.{}.0/24", o[0], o[1], rng.random_range(0..4))
                    }
                    None => "10.0.1.0/24".to_owned(),
                };
                let req = CreateSubnet {
                    vpc_id: vpc.clone(),
                    cidr_block: sub,
                    interface: "eth1".into(),
                    vlan: None,
                };
                s.create_subnet(&call, ids, &req).map(|_| ())
            }
            6 => {
                let subs: Vec<String> = s.subnets().map(|x| x.id.clone()).collect();
                let id = pick(rng, subs, "subnet-00000000000000000");
                s.delete_subnet(&call, &id)
            }
            7 => s.create_route_table(&call, ids, &vpc).map(|_| ()),
            8 => {
                let t: Vec<String> = s.route_tables().map(|x| x.id.clone()).collect();
                let id = pick(rng, t, "rtb-00000000000000000");
                s.delete_route_table(&call, &id)
            }
            9 => {
                let t: Vec<String> = s.route_tables().map(|x| x.id.clone()).collect();
                let subs: Vec<String> = s.subnets().map(|x| x.id.clone()).collect();
                let (t, sub) = (pick(rng, t, "rtb-0"), pick(rng, subs, "subnet-0"));
                s.associate_route_table(&call, ids, &t, &sub).map(|_| ())
            }
            10 => {
                let assocs: Vec<String> = s
                    .subnets()
                    .filter_map(|x| x.association.as_ref().map(|a| a.id.clone()))
                    .collect();
                let a = pick(rng, assocs, "rtbassoc-0");
                s.disassociate_route_table(&call, &a)
            }
            11 | 12 => {
                let t: Vec<String> = s.route_tables().map(|x| x.id.clone()).collect();
                let p: Vec<String> = s.peerings().map(|x| x.id.clone()).collect();
                let (t, p) = (pick(rng, t, "rtb-0"), pick(rng, p, "pcx-00000000000000000"));
                let dest = cidr(rng);
                match rng.random_range(0..3) {
                    0 => s.create_route(&call, &t, &dest, &p),
                    1 => s.replace_route(&call, &t, &dest, &p),
                    _ => s.delete_route(&call, &t, &dest),
                }
            }
            13 => {
                let peer = pick(rng, vpcs, "vpc-0");
                let owner = s.vpc(&peer).map(|v| v.owner.to_string());
                let peer_region = s.vpc(&peer).map(|v| v.region.clone());
                let req = CreatePeering {
                    vpc_id: vpc.clone(),
                    peer_vpc_id: peer,
                    peer_owner_id: owner,
                    peer_region,
                };
                s.create_vpc_peering_connection(&call, ids, &req)
                    .map(|_| ())
            }
            14 => {
                let p: Vec<String> = s.peerings().map(|x| x.id.clone()).collect();
                let p = pick(rng, p, "pcx-0");
                // Accept as the accepter, in its region.
                match s
                    .peering(&p)
                    .map(|x| (x.accepter.owner.clone(), x.accepter.region.clone()))
                {
                    Some((o, r)) => s
                        .accept_vpc_peering_connection(&Call::at(o, r, now), &p)
                        .map(|_| ()),
                    None => Ok(()),
                }
            }
            16 => {
                // ModifyVpcPeeringConnectionOptions as one side's owner:
                // the peer's view entry carries the option.
                let p: Vec<String> = s.peerings().map(|x| x.id.clone()).collect();
                let p = pick(rng, p, "pcx-0");
                let requester = rng.random_bool(0.5);
                let on = Some(rng.random_bool(0.7));
                let side = s.peering(&p).map(|x| {
                    let side = if requester { &x.requester } else { &x.accepter };
                    (side.owner.clone(), side.region.clone())
                });
                let opts = ModifyPeeringOptions {
                    requester_allow_dns_resolution_from_remote_vpc: on.filter(|_| requester),
                    accepter_allow_dns_resolution_from_remote_vpc: on.filter(|_| !requester),
                };
                match side {
                    Some((o, r)) => {
                        s.modify_vpc_peering_connection_options(&Call::at(o, r, now), &p, &opts)
                    }
                    None => Ok(()),
                }
            }
            17..=22 => random_sg_op(rng, s, ids, &call),
            _ => {
                let p: Vec<String> = s.peerings().map(|x| x.id.clone()).collect();
                let p = pick(rng, p, "pcx-0");
                if rng.random_bool(0.5) {
                    s.delete_vpc_peering_connection(&call, &p).map(|_| ())
                } else {
                    s.reject_vpc_peering_connection(&call, &p).map(|_| ())
                }
            }
        };
    }

    /// One random security group or network interface operation.
    fn random_sg_op(
        rng: &mut StdRng,
        s: &mut State,
        ids: &mut SequentialIds,
        call: &Call,
    ) -> Result<(), crate::control::error::ApiError> {
        use crate::control::network_interface::CreateNetworkInterface;
        use crate::control::security_group::CreateSecurityGroup;
        use crate::control::sg_rules::{Direction, IpPermission, IpRange, UserIdGroupPair};
        let groups: Vec<String> = s.security_groups().map(|g| g.id.clone()).collect();
        let group = pick(rng, groups.clone(), "sg-00000000000000000");
        // Mostly act as the group's owner, in its region, so that rules
        // (and references to peer VPCs' groups) get made.
        let owner_call = s.security_group(&group).and_then(|g| {
            let region = s.vpc(&g.vpc_id)?.region.clone();
            Some(Call::at(g.owner.clone(), region, call.now))
        });
        let call = match owner_call {
            Some(c) if rng.random_bool(0.9) => c,
            _ => call.clone(),
        };
        let call = &call;
        let dir = if rng.random_bool(0.5) {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        match rng.random_range(0..8) {
            7 => {
                // Peer two VPCs of one region (references need it).
                let vpcs: Vec<(String, String, crate::control::account::AccountId)> = s
                    .vpcs()
                    .map(|v| (v.id.clone(), v.region.clone(), v.owner.clone()))
                    .collect();
                if vpcs.len() < 2 {
                    return Ok(());
                }
                let x = &vpcs[rng.random_range(0..vpcs.len())];
                let Some(y) = vpcs.iter().find(|y| y.1 == x.1 && y.0 != x.0) else {
                    return Ok(());
                };
                let req = CreatePeering {
                    vpc_id: x.0.clone(),
                    peer_vpc_id: y.0.clone(),
                    peer_owner_id: Some(y.2.to_string()),
                    peer_region: Some(y.1.clone()),
                };
                let by_x = Call::at(x.2.clone(), x.1.clone(), call.now);
                let pcx = s.create_vpc_peering_connection(&by_x, ids, &req)?;
                let by_y = Call::at(y.2.clone(), y.1.clone(), call.now);
                s.accept_vpc_peering_connection(&by_y, &pcx.vpc_peering_connection_id)
                    .map(|_| ())
            }
            0 => {
                let vpcs: Vec<String> = s.vpcs().map(|v| v.id.clone()).collect();
                let req = CreateSecurityGroup {
                    group_name: format!("g{}", rng.random_range(0..4)),
                    description: "d".into(),
                    vpc_id: pick(rng, vpcs, "vpc-0"),
                };
                s.create_security_group(call, ids, &req).map(|_| ())
            }
            1 => s.delete_security_group(call, &group),
            2 | 3 => {
                let mut p = IpPermission {
                    ip_protocol: "tcp".into(),
                    from_port: Some(rng.random_range(0..3)),
                    to_port: Some(3),
                    ..Default::default()
                };
                if rng.random_bool(0.3) {
                    p.ip_ranges.push(IpRange {
                        cidr_ip: format!("10.{}.0.0/16", rng.random_range(0..12)),
                        description: None,
                    });
                } else {
                    // Half the time a group of a VPC peered with the
                    // group's (references across peerings are the point).
                    let peer_groups: Vec<String> = s
                        .security_group(&group)
                        .map(|g| {
                            let peers: Vec<String> = s
                                .peerings()
                                .filter(|p| {
                                    p.status_at(0) == PeeringStatus::Active && !p.is_inter_region()
                                })
                                .filter_map(|p| {
                                    let side = p.side_of_vpc(&g.vpc_id)?;
                                    Some(p.side(crate::control::view::other(side)).vpc_id.clone())
                                })
                                .collect();
                            s.security_groups()
                                .filter(|t| peers.contains(&t.vpc_id))
                                .map(|t| t.id.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    let target = if !peer_groups.is_empty() && rng.random_bool(0.5) {
                        pick(rng, peer_groups, "sg-0")
                    } else {
                        pick(rng, groups, "sg-0")
                    };
                    let user = s.security_group(&target).map(|g| g.owner.to_string());
                    p.user_id_group_pairs.push(UserIdGroupPair {
                        group_id: Some(target),
                        user_id: user,
                        ..Default::default()
                    });
                }
                s.authorize_security_group(call, ids, dir, &group, &[p])
                    .map(|_| ())
            }
            4 => {
                let rules: Vec<String> = s
                    .security_group(&group)
                    .map(|g| match dir {
                        Direction::Ingress => g.ingress.iter().map(|r| r.id.clone()).collect(),
                        Direction::Egress => g.egress.iter().map(|r| r.id.clone()).collect(),
                    })
                    .unwrap_or_default();
                let rule = pick(rng, rules, "sgr-00000000000000000");
                s.revoke_security_group(call, dir, &group, &[], &[rule])
            }
            5 => {
                let subnets: Vec<String> = s.subnets().map(|x| x.id.clone()).collect();
                let subnet = pick(rng, subnets, "subnet-00000000000000000");
                let groups = if rng.random_bool(0.5) {
                    vec![]
                } else {
                    vec![group]
                };
                let req = CreateNetworkInterface {
                    subnet_id: subnet,
                    groups,
                    ..Default::default()
                };
                s.create_network_interface(call, ids, &req).map(|_| ())
            }
            _ => {
                let enis: Vec<String> = s.network_interfaces().map(|n| n.id.clone()).collect();
                let eni = pick(rng, enis, "eni-00000000000000000");
                if rng.random_bool(0.5) {
                    s.delete_network_interface(call, &eni)
                } else {
                    s.modify_network_interface_groups(call, &eni, &[group])
                }
            }
        }
    }

    /// For random operation sequences, every region's old view plus the
    /// delta equals the region's new view, and the index stays equal to
    /// one built from scratch.
    #[test]
    fn deltas_match_full_views_for_random_operations() {
        let (mut rules_seen, mut interfaces_seen, mut peer_refs_seen) = (0, 0, 0);
        for seed in 0..40u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut ids = SequentialIds(u128::from(seed) << 64);
            let mut state = State::new(crate::control::config::Config {
                regions: REGIONS.iter().map(|r| r.to_string()).collect(),
                ..Default::default()
            });
            let mut index = ViewIndex::new(&state);
            let mut views: Vec<RegionView> =
                REGIONS.iter().map(|r| region_view(&state, r, 0)).collect();
            for step in 0..150u64 {
                let (config, dp) = (state.config.clone(), state.next_dp_id());
                let now = 1_000 + step;
                random_op(&mut rng, &mut state, &mut ids, now);
                let changes = state.take_changes(config, dp);
                state.revision += 1;
                let deltas = index.update(&state, &changes);
                for (i, r) in REGIONS.iter().enumerate() {
                    let d = delta_of(r, views[i].revision, state.revision, deltas.get(*r));
                    views[i].apply(&d).unwrap();
                    assert_eq!(
                        views[i],
                        region_view(&state, r, now),
                        "seed {seed} step {step} region {r}"
                    );
                }
                peer_refs_seen += state
                    .security_groups()
                    .flat_map(|g| g.rules().map(move |r| (g, r)))
                    .filter(|(g, r)| {
                        r.group_ref()
                            .and_then(|t| state.security_group(t))
                            .is_some_and(|t| t.vpc_id != g.vpc_id)
                    })
                    .count();
            }
            assert_eq!(index, ViewIndex::new(&state), "seed {seed}");
            assert!(
                state.vpcs().count() > 2,
                "seed {seed}: the sequence did something"
            );
            rules_seen += state
                .security_groups()
                .flat_map(|g| g.rules())
                .filter(|r| r.group_ref().is_some())
                .count();
            interfaces_seen += state.network_interfaces().count();
        }
        // The sequences exercised references, peer references and interfaces.
        assert!(
            rules_seen > 0 && interfaces_seen > 0 && peer_refs_seen > 0,
            "{rules_seen} {interfaces_seen} {peer_refs_seen}"
        );
    }

    /// A route write recomputes its table alone, gives its one entry as
    /// the delta and leaves the index as one built from scratch; a new
    /// table takes the whole-VPC path.
    #[test]
    fn route_writes_recompute_their_table_alone() {
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let call = Call::at(AccountId::parse(ACCOUNTS[0]).unwrap(), "us-east-1", 5);
        let a = state.create_vpc(&call, &mut ids, "10.1.0.0/16").unwrap();
        let b = state.create_vpc(&call, &mut ids, "10.2.0.0/16").unwrap();
        let req = CreatePeering {
            vpc_id: a.vpc_id.clone(),
            peer_vpc_id: b.vpc_id.clone(),
            peer_owner_id: None,
            peer_region: None,
        };
        let pcx = state
            .create_vpc_peering_connection(&call, &mut ids, &req)
            .unwrap()
            .vpc_peering_connection_id;
        state.accept_vpc_peering_connection(&call, &pcx).unwrap();
        let rtb = state.vpc(&a.vpc_id).unwrap().main_route_table_id.clone();
        state.take_changes(state.config.clone(), state.next_dp_id());
        let mut index = ViewIndex::new(&state);
        let mut write = |state: &mut State, f: &dyn Fn(&mut State, &mut SequentialIds)| {
            let (config, dp) = (state.config.clone(), state.next_dp_id());
            f(state, &mut ids);
            let changes = state.take_changes(config, dp);
            let fast = index.clone().update_routes(state, &changes).is_some();
            let deltas = index.update(state, &changes);
            assert_eq!(index, ViewIndex::new(state));
            (fast, deltas)
        };
        let (fast, d) = write(&mut state, &|s, _| {
            s.create_route(&call, &rtb, "10.2.0.0/24", &pcx).unwrap()
        });
        assert!(fast);
        assert_eq!(d["us-east-1"].len(), 1, "{d:?}");
        let (fast, d) = write(&mut state, &|s, _| {
            s.delete_route(&call, &rtb, "10.2.0.0/24").unwrap()
        });
        assert!(fast);
        assert!(matches!(d["us-east-1"].values().next(), Some(None)));
        let (fast, _) = write(&mut state, &|s, ids| {
            s.create_route_table(&call, ids, &a.vpc_id).unwrap();
        });
        assert!(!fast, "a new table goes through the whole-VPC path");
    }

    /// References to a peer VPC's group leave the view when the peering
    /// ends or the group goes, and come back with a new active peering:
    /// each step's delta is the referencing group's entry.
    #[test]
    fn peering_state_changes_update_referencing_groups() {
        use crate::control::security_group::CreateSecurityGroup;
        use crate::control::sg_rules::{Direction, IpPermission, UserIdGroupPair};
        use crate::control::sg_view::SgPeer;
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let call = Call::at(AccountId::parse(ACCOUNTS[0]).unwrap(), "us-east-1", 5);
        let a = state
            .create_vpc(&call, &mut ids, "10.1.0.0/16")
            .unwrap()
            .vpc_id;
        let b = state
            .create_vpc(&call, &mut ids, "10.2.0.0/16")
            .unwrap()
            .vpc_id;
        let connect = |state: &mut State, ids: &mut SequentialIds| {
            let req = CreatePeering {
                vpc_id: a.clone(),
                peer_vpc_id: b.clone(),
                peer_owner_id: None,
                peer_region: None,
            };
            let pcx = state
                .create_vpc_peering_connection(&call, ids, &req)
                .unwrap()
                .vpc_peering_connection_id;
            state.accept_vpc_peering_connection(&call, &pcx).unwrap();
            pcx
        };
        let pcx = connect(&mut state, &mut ids);
        let group = |state: &mut State, ids: &mut SequentialIds, vpc: &str| {
            let req = CreateSecurityGroup {
                group_name: "g".into(),
                description: "g".into(),
                vpc_id: vpc.to_owned(),
            };
            state.create_security_group(&call, ids, &req).unwrap()
        };
        let ga = group(&mut state, &mut ids, &a);
        let gb = group(&mut state, &mut ids, &b);
        let perm = IpPermission {
            ip_protocol: "-1".into(),
            user_id_group_pairs: vec![UserIdGroupPair {
                group_id: Some(gb.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        state
            .authorize_security_group(&call, &mut ids, Direction::Ingress, &ga, &[perm])
            .unwrap();
        state.take_changes(state.config.clone(), state.next_dp_id());
        let mut index = ViewIndex::new(&state);
        let ga_dp = state.security_group(&ga).unwrap().dp_id;
        let gb_dp = state.security_group(&gb).unwrap().dp_id;
        let mut write = |state: &mut State, f: &dyn Fn(&mut State, &mut SequentialIds)| {
            let (config, dp) = (state.config.clone(), state.next_dp_id());
            f(state, &mut ids);
            let changes = state.take_changes(config, dp);
            let deltas = index.update(state, &changes);
            assert_eq!(index, ViewIndex::new(state));
            deltas
        };
        // The rule of `ga` as the delta shows it (None: no entry for `ga`).
        let ingress_of = |d: &BTreeMap<String, RegionChanges>| -> Option<Vec<SgPeer>> {
            let key = ViewKey::SecurityGroup { dp_id: ga_dp };
            match d.get("us-east-1")?.get(&key)? {
                Some(ViewEntry::SecurityGroup(g)) => {
                    Some(g.ingress.iter().map(|r| r.peer.clone()).collect())
                }
                _ => panic!("group entry removed"),
            }
        };
        let d = write(&mut state, &|s, _| {
            s.delete_vpc_peering_connection(&call, &pcx).unwrap();
        });
        assert_eq!(ingress_of(&d), Some(vec![]), "stale: out of the view");
        let d = write(&mut state, &|s, ids| {
            connect(s, ids);
        });
        assert_eq!(
            ingress_of(&d),
            Some(vec![SgPeer::Group { group_dp_id: gb_dp }]),
            "a new active peering makes it valid again"
        );
        let d = write(&mut state, &|s, _| {
            s.delete_security_group(&call, &gb).unwrap();
        });
        assert_eq!(ingress_of(&d), Some(vec![]), "the peer's group is gone");
        assert_eq!(
            d["us-east-1"].get(&ViewKey::SecurityGroup { dp_id: gb_dp }),
            Some(&None)
        );
    }

    /// Enabling AllowDnsResolutionFromRemoteVpc on one side upserts the
    /// peering entry of the OTHER side's VPC with `remote_allows_dns` set
    /// (its hosts may now resolve this side's names), and leaves this
    /// side's entry as it was.
    #[test]
    fn an_options_change_upserts_the_peer_entry() {
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let call = Call::at(AccountId::parse(ACCOUNTS[0]).unwrap(), "us-east-1", 5);
        let a = state.create_vpc(&call, &mut ids, "10.1.0.0/16").unwrap();
        let b = state.create_vpc(&call, &mut ids, "10.2.0.0/16").unwrap();
        let req = CreatePeering {
            vpc_id: a.vpc_id.clone(),
            peer_vpc_id: b.vpc_id.clone(),
            peer_owner_id: None,
            peer_region: None,
        };
        let pcx = state
            .create_vpc_peering_connection(&call, &mut ids, &req)
            .unwrap()
            .vpc_peering_connection_id;
        state.accept_vpc_peering_connection(&call, &pcx).unwrap();
        state.take_changes(state.config.clone(), state.next_dp_id());
        let mut index = ViewIndex::new(&state);
        let before = region_view(&state, "us-east-1", 5);
        let (config, dp) = (state.config.clone(), state.next_dp_id());
        let opts = ModifyPeeringOptions {
            requester_allow_dns_resolution_from_remote_vpc: Some(true),
            accepter_allow_dns_resolution_from_remote_vpc: None,
        };
        state
            .modify_vpc_peering_connection_options(&call, &pcx, &opts)
            .unwrap();
        let changes = state.take_changes(config, dp);
        state.revision += 1;
        let d = index.update(&state, &changes);
        let east = &d["us-east-1"];
        let (a_dp, b_dp) = (a_dp_id(&state, &a.vpc_id), a_dp_id(&state, &b.vpc_id));
        let upserted: Vec<(u32, bool)> = east
            .values()
            .filter_map(|e| match e {
                Some(ViewEntry::Peering(p)) => Some((p.local_vpc_dp_id, p.remote_allows_dns)),
                _ => None,
            })
            .collect();
        // B (accepter) may resolve A's names; A's own entry is unchanged.
        assert!(upserted.contains(&(b_dp, true)), "{east:?}");
        assert!(
            !upserted.iter().any(|(v, on)| *v == a_dp && *on),
            "{east:?}"
        );
        let mut view = before;
        let delta = delta_of("us-east-1", view.revision, state.revision, Some(east));
        view.apply(&delta).unwrap();
        assert_eq!(view, region_view(&state, "us-east-1", 5));
    }

    fn a_dp_id(state: &State, vpc: &str) -> u32 {
        state.vpc(vpc).unwrap().dp_id
    }

    #[test]
    fn unrelated_writes_touch_nothing_else() {
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let call = Call::at(AccountId::parse(ACCOUNTS[0]).unwrap(), "us-east-1", 5);
        for i in 0..50 {
            state
                .create_vpc(&call, &mut ids, &format!("10.{i}.0.0/16"))
                .unwrap();
        }
        state.take_changes(state.config.clone(), state.next_dp_id());
        let mut index = ViewIndex::new(&state);
        let (config, dp) = (state.config.clone(), state.next_dp_id());
        let v = state.create_vpc(&call, &mut ids, "10.200.0.0/16").unwrap();
        let changes = state.take_changes(config, dp);
        let deltas = index.update(&state, &changes);
        assert_eq!(deltas.len(), 1);
        let east = &deltas["us-east-1"];
        // The VPC and its default group.
        assert_eq!(east.len(), 2, "{east:?}");
        assert!(
            matches!(east.values().next(), Some(Some(ViewEntry::Vpc(x))) if x.vpc_id == v.vpc_id)
        );
        assert!(matches!(
            east.values().nth(1),
            Some(Some(ViewEntry::SecurityGroup(_)))
        ));
        // A write that changes no view (a pending request) gives no delta.
        let (config, dp) = (state.config.clone(), state.next_dp_id());
        let vpcs: Vec<String> = state.vpcs().take(2).map(|v| v.id.clone()).collect();
        let req = CreatePeering {
            vpc_id: vpcs[0].clone(),
            peer_vpc_id: vpcs[1].clone(),
            peer_owner_id: None,
            peer_region: None,
        };
        state
            .create_vpc_peering_connection(&call, &mut ids, &req)
            .unwrap();
        let changes = state.take_changes(config, dp);
        assert!(index.update(&state, &changes).is_empty());
    }
}
