//! Incremental reconciliation: the region view the agent holds, what it
//! programmed from it, and for each change of the view (a
//! [`RegionDelta`]) or of the kernel's neighbours, a [`Plan`] that touches
//! only the map entries that depend on the change.
//!
//! A route upsert or removal is one route entry; a VPC change is that VPC's
//! CIDR entries; a subnet change recomputes the entries of its port (and of
//! ports whose AF_XDP slots moved). Nothing here dumps a map: what the maps
//! hold is taken to be what was planned, and a full reconciliation
//! ([`Programmed::full`], a map dump and [`reconcile::plan`]) repairs any
//! drift at start-up, after a resync, and periodically.
//!
//! Pure: interface names are resolved through the caller's function, and
//! only for names not seen before (see [`Programmed::reprobe`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;
use peering_common::EgressPort;

use super::reconcile::{self, Desired, Neighbour, Plan, Port};
use super::{RouteTarget, Snapshot};
use crate::control::delta::{DeltaError, RegionDelta, ViewKey};
use crate::control::view::{RegionView, SubnetView};

/// How the caller resolves an interface name (None: not on this gateway).
pub type Resolve<'a> = &'a dyn Fn(&str) -> Option<Port>;

/// The view held, and the dataplane state programmed from it.
#[derive(Clone, Debug)]
pub struct Programmed {
    view: RegionView,
    desired: Desired,
    /// Interface resolutions, by name (None: not found when last probed).
    ports: BTreeMap<String, Option<Port>>,
    /// The kernel's neighbours as last observed (the last entry wins).
    kernel: BTreeMap<(u32, Ipv4Addr), [u8; 6]>,
}

/// What one change asks of the dataplane and the tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub plan: Plan,
    /// Something the tunnel table is built from changed: peerings, subnet
    /// entries or neighbours.
    pub tunnel: bool,
    /// The AF_XDP slots of the ports changed.
    pub slots: bool,
    /// The set of interfaces to attach, or the router addresses, changed.
    pub ports: bool,
    /// Something the security-group policies are compiled from changed:
    /// a group, an interface or a VPC (its blocks, its default group).
    pub security_groups: bool,
}

impl Step {
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty() && !self.tunnel && !self.slots && !self.ports && !self.security_groups
    }
}

/// What changed keys of a delta reach.
#[derive(Default)]
struct Reach {
    routes: BTreeSet<(u32, Ipv4Net)>,
    vpcs: BTreeSet<u32>,
    subnets: BTreeSet<(u32, Ipv4Net)>,
    names: BTreeSet<String>,
    peerings: bool,
    security_groups: bool,
}

impl Reach {
    fn subnet(&mut self, s: &SubnetView) {
        self.subnets.insert((s.vpc_dp_id, s.cidr.trunc()));
        self.names.insert(s.interface.clone());
    }
}

impl Programmed {
    /// A full reconciliation against what the maps hold (`actual`, a dump):
    /// today's desired state and the plan to reach it. Every interface is
    /// resolved anew.
    pub fn full(
        view: RegionView,
        resolve: Resolve,
        kernel: &[Neighbour],
        actual: &Snapshot,
    ) -> (Self, Plan, Vec<String>) {
        let mut ports = BTreeMap::new();
        for s in &view.subnets {
            if !ports.contains_key(&s.interface) {
                ports.insert(s.interface.clone(), resolve(&s.interface));
            }
        }
        let lookup = |name: &str| ports.get(name).copied().flatten();
        let (desired, warnings) = reconcile::desired(&view, &lookup, kernel, actual);
        let plan = reconcile::plan(&desired, actual);
        let kernel = kernel.iter().map(|(i, a, m)| ((*i, *a), *m)).collect();
        let programmed = Programmed {
            view,
            desired,
            ports,
            kernel,
        };
        (programmed, plan, warnings)
    }

    pub fn view(&self) -> &RegionView {
        &self.view
    }

    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// Applies a delta of the view. Refused (nothing changes) when it does
    /// not start at the held revision.
    pub fn apply(&mut self, delta: &RegionDelta, resolve: Resolve) -> Result<Step, DeltaError> {
        let mut reach = Reach::default();
        let keys = delta.upserts.iter().map(|e| e.key());
        for key in keys.chain(delta.removals.iter().cloned()) {
            self.reach_old(&key, &mut reach);
        }
        for entry in &delta.upserts {
            if let crate::control::delta::ViewEntry::Subnet(s) = entry {
                reach.subnet(s);
            }
        }
        self.view.apply(delta)?;
        for name in &reach.names {
            if !self.ports.contains_key(name) {
                self.ports.insert(name.clone(), resolve(name));
            }
        }
        let mut step = Step {
            tunnel: reach.peerings,
            security_groups: reach.security_groups,
            ..Step::default()
        };
        for (table, net) in &reach.routes {
            self.route(*table, *net, &mut step.plan);
        }
        for vpc in &reach.vpcs {
            self.vpc(*vpc, &mut step.plan);
        }
        if !reach.names.is_empty() {
            self.subnets(&reach.names, &reach.subnets, BTreeSet::new(), &mut step);
        }
        Ok(step)
    }

    /// Adopts a full view received after a gap, as the delta from the held
    /// one.
    pub fn replace(&mut self, view: &RegionView, resolve: Resolve) -> Result<Step, DeltaError> {
        let delta = self.view.diff(view);
        self.apply(&delta, resolve)
    }

    /// Resolves again the names that were not found (an interface created
    /// after its subnet), and applies what changed.
    pub fn reprobe(&mut self, resolve: Resolve) -> Step {
        let missing: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        let mut names = BTreeSet::new();
        for name in missing {
            if let Some(p) = resolve(&name) {
                self.ports.insert(name.clone(), Some(p));
                names.insert(name);
            }
        }
        let mut step = Step::default();
        if names.is_empty() {
            return step;
        }
        let keys = self
            .view
            .subnets
            .iter()
            .filter(|s| names.contains(&s.interface))
            .map(|s| (s.vpc_dp_id, s.cidr.trunc()))
            .collect();
        self.subnets(&names, &keys, BTreeSet::new(), &mut step);
        step
    }

    /// Takes the kernel's neighbours: new or changed ones inside a subnet
    /// of their port are programmed; ones the kernel forgot stay while
    /// their subnet exists (as in a full reconciliation).
    pub fn kernel(&mut self, kernel: &[Neighbour]) -> Step {
        let now: BTreeMap<_, _> = kernel.iter().map(|(i, a, m)| ((*i, *a), *m)).collect();
        let mut step = Step::default();
        if now == self.kernel {
            return step;
        }
        let moved: Vec<(u32, Ipv4Addr)> = now
            .iter()
            .filter(|(k, m)| self.kernel.get(*k) != Some(*m))
            .map(|(k, _)| *k)
            .collect();
        self.kernel = now;
        let nets = self.nets_by_port();
        for key in moved {
            let inside = in_nets(&nets, key.0, key.1);
            let want = if inside { self.kernel.get(&key) } else { None };
            if let Some(mac) = want {
                let plan = &mut step.plan;
                put(
                    &mut self.desired.neighbours,
                    key,
                    Some(*mac),
                    &mut plan.set_neighbours,
                    &mut plan.del_neighbours,
                );
            }
        }
        step.tunnel = !step.plan.is_empty();
        step
    }

    fn reach_old(&self, key: &ViewKey, reach: &mut Reach) {
        match key {
            ViewKey::Vpc { dp_id } => {
                reach.vpcs.insert(*dp_id);
                reach.security_groups = true;
            }
            ViewKey::Route {
                route_table_dp_id,
                destination,
            } => {
                reach
                    .routes
                    .insert((*route_table_dp_id, destination.trunc()));
            }
            ViewKey::Subnet { .. } => {
                let subnets = &self.view.subnets;
                if let Ok(i) = subnets.binary_search_by(|s| s.key().cmp(key)) {
                    reach.subnet(&subnets[i]);
                }
            }
            ViewKey::Peering { .. } => reach.peerings = true,
            // No forwarding state: the agent recompiles the policies.
            ViewKey::SecurityGroup { .. } | ViewKey::Interface { .. } => {
                reach.security_groups = true;
            }
        }
    }

    fn port_of(&self, name: &str) -> Option<Port> {
        self.ports.get(name).copied().flatten()
    }

    /// The route entry (table, net) as the view has it now: the last route
    /// of the table with that (truncated) destination, as in a full run.
    fn route(&mut self, table: u32, net: Ipv4Net, plan: &mut Plan) {
        let routes = &self.view.routes;
        let start = routes.partition_point(|r| r.route_table_dp_id < table);
        let want = routes[start..]
            .iter()
            .take_while(|r| r.route_table_dp_id == table)
            .filter(|r| r.destination.trunc() == net)
            .last()
            .map(|r| reconcile::route_target(&r.target));
        put::<_, RouteTarget>(
            &mut self.desired.routes,
            (table, net),
            want,
            &mut plan.set_routes,
            &mut plan.del_routes,
        );
    }

    /// The CIDR entries of VPC `vpc`.
    fn vpc(&mut self, vpc: u32, plan: &mut Plan) {
        let vpcs = &self.view.vpcs;
        let want: BTreeSet<(u32, Ipv4Net)> = match vpcs.binary_search_by_key(&vpc, |v| v.dp_id) {
            Ok(i) => vpcs[i].cidrs.iter().map(|c| (vpc, c.trunc())).collect(),
            Err(_) => BTreeSet::new(),
        };
        let have: BTreeSet<(u32, Ipv4Net)> = self
            .desired
            .vpc_cidrs
            .range((vpc, Ipv4Net::default())..)
            .take_while(|(v, _)| *v == vpc)
            .copied()
            .collect();
        for c in want.difference(&have) {
            plan.add_cidrs.push(*c);
            self.desired.vpc_cidrs.insert(*c);
        }
        for c in have.difference(&want) {
            plan.del_cidrs.push(*c);
            self.desired.vpc_cidrs.remove(c);
        }
    }

    /// Subnets with a port, in view order.
    fn resolved(&self) -> Vec<(&SubnetView, Port)> {
        let subnets = self.view.subnets.iter();
        subnets
            .filter_map(|s| Some((s, self.port_of(&s.interface)?)))
            .collect()
    }

    fn nets_by_port(&self) -> BTreeMap<u32, Vec<Ipv4Net>> {
        let mut nets: BTreeMap<u32, Vec<Ipv4Net>> = BTreeMap::new();
        for (s, p) in self.resolved() {
            nets.entry(p.ifindex).or_default().push(s.cidr);
        }
        nets
    }

    /// Recomputes what depends on the subnets of interfaces `names`: the
    /// subnet entries `keys`, and the interface entries, router addresses
    /// and neighbours of their ports and of every port whose AF_XDP slots
    /// moved (plus `extra` ports).
    fn subnets(
        &mut self,
        names: &BTreeSet<String>,
        keys: &BTreeSet<(u32, Ipv4Net)>,
        mut hit: BTreeSet<u32>,
        step: &mut Step,
    ) {
        let resolved = self.resolved();
        let slots = reconcile::xsk_slots(resolved.iter().map(|(_, p)| (p.ifindex, p.rx_queues)));
        let in_use: BTreeSet<String> = resolved.iter().map(|(s, _)| s.interface.clone()).collect();
        hit.extend(
            names
                .iter()
                .filter_map(|n| self.port_of(n))
                .map(|p| p.ifindex),
        );
        let old_slots = &self.desired.xsk_slots;
        let moved = slots.iter().filter(|(i, s)| old_slots.get(*i) != Some(*s));
        hit.extend(moved.map(|(i, _)| *i));
        hit.extend(old_slots.keys().filter(|i| !slots.contains_key(*i)));
        let mut subnet_want = Vec::new();
        for key in keys {
            let egress = resolved
                .iter()
                .rfind(|(s, _)| (s.vpc_dp_id, s.cidr.trunc()) == *key)
                .map(|(s, p)| EgressPort {
                    ifindex: p.ifindex,
                    vlan: s.vlan,
                    src_mac: p.mac,
                });
            subnet_want.push((*key, egress));
        }
        let mut port_want = Vec::new();
        for ifindex in &hit {
            let on: Vec<&SubnetView> = resolved
                .iter()
                .filter(|(_, p)| p.ifindex == *ifindex)
                .map(|(s, _)| *s)
                .collect();
            port_want.push((
                *ifindex,
                on.iter().map(|s| (*s).clone()).collect::<Vec<_>>(),
            ));
        }
        drop(resolved);
        step.slots = slots != self.desired.xsk_slots;
        self.desired.xsk_slots = slots;
        let plan = &mut step.plan;
        let mut tunnel = false;
        for (key, want) in subnet_want {
            tunnel |= put(
                &mut self.desired.subnets,
                key,
                want,
                &mut plan.set_subnets,
                &mut plan.del_subnets,
            );
        }
        let mut ports_changed = in_use != self.desired.ports;
        self.desired.ports = in_use;
        for (ifindex, on) in port_want {
            ports_changed |= self.port(ifindex, &on, plan);
            tunnel |= self.neighbours(ifindex, &on, plan);
        }
        step.tunnel |= tunnel;
        step.ports |= ports_changed;
    }

    /// The interface entries and router addresses of port `ifindex`, from
    /// its subnets `on`. True when the router addresses changed.
    fn port(&mut self, ifindex: u32, on: &[SubnetView], plan: &mut Plan) -> bool {
        let xsk_base = self
            .desired
            .xsk_slots
            .get(&ifindex)
            .map_or(0, |s| s.xsk_base);
        let mut want = BTreeMap::new();
        let mut routers = BTreeSet::new();
        for s in on {
            let info = super::iface_info(
                s.vpc_dp_id,
                s.route_table_dp_id,
                s.gateway_ip,
                s.cidr,
                xsk_base,
            );
            want.insert((ifindex, s.vlan), info);
            if s.vlan == 0 {
                routers.insert((ifindex, s.gateway_ip, s.cidr.prefix_len()));
            }
        }
        let have: Vec<(u32, u16)> = self
            .desired
            .ifaces
            .range((ifindex, 0)..=(ifindex, u16::MAX))
            .map(|(k, _)| *k)
            .collect();
        let keys: BTreeSet<(u32, u16)> = have.into_iter().chain(want.keys().copied()).collect();
        for key in keys {
            put(
                &mut self.desired.ifaces,
                key,
                want.get(&key).copied(),
                &mut plan.set_ifaces,
                &mut plan.del_ifaces,
            );
        }
        let all = Ipv4Addr::UNSPECIFIED;
        let range = (ifindex, all, 0)..=(ifindex, Ipv4Addr::BROADCAST, u8::MAX);
        let old: BTreeSet<_> = self.desired.router_addrs.range(range).copied().collect();
        if old == routers {
            return false;
        }
        for r in &old {
            self.desired.router_addrs.remove(r);
        }
        self.desired.router_addrs.extend(routers);
        true
    }

    /// The neighbour entries of port `ifindex`: programmed or kernel ones
    /// inside one of its subnets `on` (the kernel's MAC wins). True when
    /// an entry changed.
    fn neighbours(&mut self, ifindex: u32, on: &[SubnetView], plan: &mut Plan) -> bool {
        let range = (ifindex, Ipv4Addr::UNSPECIFIED)..=(ifindex, Ipv4Addr::BROADCAST);
        let programmed = self
            .desired
            .neighbours
            .range(range.clone())
            .map(|(k, _)| *k);
        let kernel = self.kernel.range(range).map(|(k, _)| *k);
        let keys: BTreeSet<(u32, Ipv4Addr)> = programmed.chain(kernel).collect();
        let mut changed = false;
        for key in keys {
            let inside = on.iter().any(|s| s.cidr.contains(&key.1));
            let want = match inside {
                true => self
                    .kernel
                    .get(&key)
                    .or(self.desired.neighbours.get(&key))
                    .copied(),
                false => None,
            };
            changed |= put(
                &mut self.desired.neighbours,
                key,
                want,
                &mut plan.set_neighbours,
                &mut plan.del_neighbours,
            );
        }
        changed
    }
}

fn in_nets(nets: &BTreeMap<u32, Vec<Ipv4Net>>, ifindex: u32, ip: Ipv4Addr) -> bool {
    nets.get(&ifindex)
        .is_some_and(|n| n.iter().any(|n| n.contains(&ip)))
}

/// Makes `have[key]` be `want`, noting the write in `set` or `del`. True
/// when something changed.
fn put<K: Ord + Clone, V: PartialEq + Clone>(
    have: &mut BTreeMap<K, V>,
    key: K,
    want: Option<V>,
    set: &mut Vec<(K, V)>,
    del: &mut Vec<K>,
) -> bool {
    match want {
        Some(v) if have.get(&key) != Some(&v) => {
            set.push((key.clone(), v.clone()));
            have.insert(key, v);
            true
        }
        None if have.remove(&key).is_some() => {
            del.push(key);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
