//! The forwarding table the XDP program reads (map `FIB`): routes compiled
//! with the peer VPCs' subnets and blocks, so that one longest-prefix
//! lookup per packet answers what a route lookup, then a lookup in the
//! peer's subnets, then a check against the peer's blocks answered before,
//! and yields the egress port directly.
//!
//! For a route table T the FIB holds an entry for each prefix of
//!
//! ```text
//! C(T) = routes of T
//!      ∪ { r ∩ x : r a local-peer route of T, x a subnet or block of r's peer }
//! ```
//!
//! (two prefixes meet in the longer one when they nest, else not at all),
//! and the entry of P says what the two-stage lookup says for all of P:
//! the longest route R ⊇ P; for a local peer V, the longest subnet of V
//! containing P (forward through its port), else a block of V containing P
//! (no subnet), else "outside the peer". An address `a` then gets from its
//! longest match P in C(T) what the two-stage lookup gives it: its longest
//! route R_a is in C(T), so P ⊆ R_a, and no route between them contains P,
//! so R is R_a; its longest subnet S_a (or block) of V meets R_a in a
//! member of C(T) containing `a`, so P lies in S_a too and S_a is P's
//! longest subnet. (`tests::compiled_lookups_match_the_two_stage_lookup`
//! checks it against a linear scan.)
//!
//! A change only touches the entries inside one region per route it
//! reaches: a route's own prefix, or the intersection of a changed subnet
//! or block with each local route to its VPC. [`FibModel`] computes the
//! region's entries before and after the change and returns the
//! difference, sets before deletions (make before break). Pure: the
//! caller writes the map.
//!
//! A Forward entry whose egress port is a veth carries
//! [`FIB_F_PEER_REDIRECT`]: the TC program then hands the packet straight
//! to the host's namespace (`bpf_redirect_peer`). The caller says which
//! ports are veths ([`FibModel::set_peer_redirect`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::Ipv4Net;
use peering_common::{EgressPort, FibAction, FibEntry, FIB_F_PEER_REDIRECT};

use super::RouteTarget;

/// (route table, destination prefix) of a FIB entry.
pub type FibKey = (u32, Ipv4Net);

/// One write of the FIB map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibWrite {
    Set(FibKey, FibEntry),
    Del(FibKey),
}

/// The control state the FIB is compiled from.
#[derive(Clone, Debug, Default)]
pub struct FibModel {
    /// (table, destination) → target and counter slot.
    routes: HashMap<FibKey, (RouteTarget, u32)>,
    /// The same routes in order, for the routes inside a prefix.
    route_order: BTreeSet<FibKey>,
    /// Per table, how many routes have each prefix length: lookups walk
    /// only the lengths in use.
    route_lens: HashMap<u32, [u32; 33]>,
    /// Local-peer routes by peer: (peer VPC, table, destination).
    by_peer: BTreeSet<(u32, u32, Ipv4Net)>,
    subnets: BTreeMap<(u32, Ipv4Net), EgressPort>,
    blocks: BTreeSet<(u32, Ipv4Net)>,
    /// Ports (ifindex) that are veths: Forward entries to them carry
    /// [`FIB_F_PEER_REDIRECT`].
    peer_redirect: BTreeSet<u32>,
}

/// The prefixes of `p`, longest first, `p` included.
fn ancestors(p: Ipv4Net) -> impl Iterator<Item = Ipv4Net> {
    (0..=p.prefix_len())
        .rev()
        .map(move |l| Ipv4Net::new(p.addr(), l).expect("l <= 32").trunc())
}

/// Bounds of the ordered keys of `scope` whose address lies in `q`.
fn span(scope: u32, q: Ipv4Net) -> std::ops::RangeInclusive<(u32, Ipv4Net)> {
    let lo = Ipv4Net::new(q.network(), 0).expect("len 0");
    let hi = Ipv4Net::new(q.broadcast(), 32).expect("len 32");
    (scope, lo)..=(scope, hi)
}

/// The keys of `scope` in `set` that lie inside `q`.
fn inside<'a, V: 'a>(
    set: impl Iterator<Item = (&'a (u32, Ipv4Net), V)> + 'a,
    q: Ipv4Net,
) -> impl Iterator<Item = (Ipv4Net, V)> + 'a {
    set.filter(move |((_, p), _)| p.prefix_len() >= q.prefix_len() && q.contains(p))
        .map(|((_, p), v)| (*p, v))
}

/// The intersection of two prefixes: the longer one when they nest.
fn meet(a: Ipv4Net, b: Ipv4Net) -> Option<Ipv4Net> {
    if a.contains(&b) {
        Some(b)
    } else if b.contains(&a) {
        Some(a)
    } else {
        None
    }
}

impl FibModel {
    /// The model of what the record maps hold (no writes: see
    /// [`Self::repair`] for the FIB to match).
    pub fn load(
        routes: impl IntoIterator<Item = (u32, Ipv4Net, RouteTarget, u32)>,
        subnets: impl IntoIterator<Item = (u32, Ipv4Net, EgressPort)>,
        blocks: impl IntoIterator<Item = (u32, Ipv4Net)>,
    ) -> Self {
        let mut m = FibModel::default();
        for (t, dst, target, slot) in routes {
            m.link_route(t, dst.trunc(), target, slot);
        }
        m.subnets
            .extend(subnets.into_iter().map(|(v, n, p)| ((v, n.trunc()), p)));
        m.blocks
            .extend(blocks.into_iter().map(|(v, n)| (v, n.trunc())));
        m
    }

    /// The ports that are veths, whose Forward entries carry
    /// [`FIB_F_PEER_REDIRECT`]. Rare (a port appears), so the whole FIB is
    /// compared.
    pub fn set_peer_redirect(&mut self, ports: BTreeSet<u32>) -> Vec<FibWrite> {
        if ports == self.peer_redirect {
            return Vec::new();
        }
        let before = self.entries();
        self.peer_redirect = ports;
        diff(&before, &self.entries())
    }

    /// The ports [`Self::set_peer_redirect`] last named.
    pub fn peer_redirect(&self) -> &BTreeSet<u32> {
        &self.peer_redirect
    }

    pub fn set_route(
        &mut self,
        table: u32,
        dst: Ipv4Net,
        target: RouteTarget,
        slot: u32,
    ) -> Vec<FibWrite> {
        let dst = dst.trunc();
        self.change(vec![(table, dst)], |m| {
            m.link_route(table, dst, target, slot)
        })
    }

    pub fn remove_route(&mut self, table: u32, dst: Ipv4Net) -> Vec<FibWrite> {
        let dst = dst.trunc();
        self.change(vec![(table, dst)], |m| m.unlink_route(table, dst))
    }

    pub fn set_subnet(&mut self, vpc: u32, net: Ipv4Net, port: EgressPort) -> Vec<FibWrite> {
        let net = net.trunc();
        let regions = self.regions_of_peer(vpc, net);
        self.change(regions, |m| {
            m.subnets.insert((vpc, net), port);
        })
    }

    pub fn remove_subnet(&mut self, vpc: u32, net: Ipv4Net) -> Vec<FibWrite> {
        let net = net.trunc();
        let regions = self.regions_of_peer(vpc, net);
        self.change(regions, |m| {
            m.subnets.remove(&(vpc, net));
        })
    }

    pub fn add_block(&mut self, vpc: u32, net: Ipv4Net) -> Vec<FibWrite> {
        let net = net.trunc();
        let regions = self.regions_of_peer(vpc, net);
        self.change(regions, |m| {
            m.blocks.insert((vpc, net));
        })
    }

    pub fn remove_block(&mut self, vpc: u32, net: Ipv4Net) -> Vec<FibWrite> {
        let net = net.trunc();
        let regions = self.regions_of_peer(vpc, net);
        self.change(regions, |m| {
            m.blocks.remove(&(vpc, net));
        })
    }

    /// Every entry of the FIB.
    pub fn entries(&self) -> BTreeMap<FibKey, FibEntry> {
        let tables: BTreeSet<u32> = self.route_lens.keys().copied().collect();
        let all = Ipv4Net::default();
        let mut out = BTreeMap::new();
        for t in tables {
            out.extend(self.within(t, all).into_iter().map(|(p, e)| ((t, p), e)));
        }
        out
    }

    /// The writes that turn a FIB holding `have` into [`Self::entries`].
    pub fn repair(&self, have: &BTreeMap<FibKey, FibEntry>) -> Vec<FibWrite> {
        diff(have, &self.entries())
    }

    fn link_route(&mut self, table: u32, dst: Ipv4Net, target: RouteTarget, slot: u32) {
        self.unlink_route(table, dst);
        self.routes.insert((table, dst), (target, slot));
        self.route_order.insert((table, dst));
        self.route_lens.entry(table).or_insert([0; 33])[dst.prefix_len() as usize] += 1;
        if let RouteTarget::LocalPeer { peer_vpc } = target {
            self.by_peer.insert((peer_vpc, table, dst));
        }
    }

    fn unlink_route(&mut self, table: u32, dst: Ipv4Net) {
        let Some((target, _)) = self.routes.remove(&(table, dst)) else {
            return;
        };
        self.route_order.remove(&(table, dst));
        if let Some(lens) = self.route_lens.get_mut(&table) {
            lens[dst.prefix_len() as usize] -= 1;
            if lens.iter().all(|n| *n == 0) {
                self.route_lens.remove(&table);
            }
        }
        if let RouteTarget::LocalPeer { peer_vpc } = target {
            self.by_peer.remove(&(peer_vpc, table, dst));
        }
    }

    /// Where a change of `vpc`'s subnet or block `net` can alter entries:
    /// its intersection with each local route to `vpc`.
    fn regions_of_peer(&self, vpc: u32, net: Ipv4Net) -> Vec<FibKey> {
        let lo = (vpc, 0, Ipv4Net::default());
        let hi = (
            vpc,
            u32::MAX,
            Ipv4Net::new([255; 4].into(), 32).expect("/32"),
        );
        self.by_peer
            .range(lo..=hi)
            .filter_map(|(_, t, r)| Some((*t, meet(*r, net)?)))
            .collect()
    }

    /// Applies `f`, returning the writes for the entries in `regions`.
    fn change(&mut self, regions: Vec<FibKey>, f: impl FnOnce(&mut Self)) -> Vec<FibWrite> {
        let before = self.collect(&regions);
        f(self);
        let after = self.collect(&regions);
        diff(&before, &after)
    }

    fn collect(&self, regions: &[FibKey]) -> BTreeMap<FibKey, FibEntry> {
        let mut out = BTreeMap::new();
        for (t, q) in regions {
            out.extend(self.within(*t, *q).into_iter().map(|(p, e)| ((*t, p), e)));
        }
        out
    }

    /// The entries of table `t` inside `q`: the members of C(t) there.
    fn within(&self, t: u32, q: Ipv4Net) -> BTreeMap<Ipv4Net, FibEntry> {
        let mut cands = BTreeSet::new();
        let routes = self.route_order.range(span(t, q)).map(|k| (k, ()));
        for (r, ()) in inside(routes, q) {
            cands.insert(r);
            if let Some((RouteTarget::LocalPeer { peer_vpc }, _)) = self.routes.get(&(t, r)) {
                self.peer_prefixes_inside(*peer_vpc, r, &mut cands);
            }
        }
        // Local routes strictly containing q meet the peer's prefixes in q.
        for a in self.route_ancestors(t, q).filter(|a| *a != q) {
            if let Some((RouteTarget::LocalPeer { peer_vpc }, _)) = self.routes.get(&(t, a)) {
                self.peer_prefixes_inside(*peer_vpc, q, &mut cands);
            }
        }
        cands
            .into_iter()
            .filter_map(|p| Some((p, self.eval(t, p)?)))
            .collect()
    }

    fn peer_prefixes_inside(&self, vpc: u32, r: Ipv4Net, out: &mut BTreeSet<Ipv4Net>) {
        out.extend(inside(self.subnets.range(span(vpc, r)), r).map(|(p, _)| p));
        let blocks = self.blocks.range(span(vpc, r)).map(|k| (k, ()));
        out.extend(inside(blocks, r).map(|(p, ())| p));
    }

    /// The prefixes of `p` (longest first) at lengths table `t` uses.
    fn route_ancestors(&self, t: u32, p: Ipv4Net) -> impl Iterator<Item = Ipv4Net> + '_ {
        let lens = self.route_lens.get(&t);
        ancestors(p).filter(move |a| lens.is_some_and(|l| l[a.prefix_len() as usize] > 0))
    }

    /// What the two-stage lookup says for every address of `p`.
    fn eval(&self, t: u32, p: Ipv4Net) -> Option<FibEntry> {
        let (target, counter) = self
            .route_ancestors(t, p)
            .find_map(|a| self.routes.get(&(t, a)))?;
        let mut e = FibEntry {
            action: 0,
            counter: *counter,
            target: 0,
            vlan: 0,
            src_mac: [0; 6],
            flags: 0,
        };
        let action = match *target {
            RouteTarget::Blackhole => FibAction::Blackhole,
            RouteTarget::RemotePeer { pcx } => {
                e.target = pcx;
                FibAction::RemotePeer
            }
            RouteTarget::LocalPeer { peer_vpc: v } => {
                match ancestors(p).find_map(|a| self.subnets.get(&(v, a))) {
                    Some(port) => {
                        e.target = port.ifindex;
                        e.vlan = port.vlan;
                        e.src_mac = port.src_mac;
                        if self.peer_redirect.contains(&port.ifindex) {
                            e.flags = FIB_F_PEER_REDIRECT;
                        }
                        FibAction::Forward
                    }
                    None if ancestors(p).any(|a| self.blocks.contains(&(v, a))) => {
                        FibAction::NoSubnet
                    }
                    None => FibAction::OutsidePeer,
                }
            }
        };
        e.action = action as u32;
        Some(e)
    }
}

/// Sets for entries `after` adds or changes, then deletions of the ones it
/// lacks.
fn diff(before: &BTreeMap<FibKey, FibEntry>, after: &BTreeMap<FibKey, FibEntry>) -> Vec<FibWrite> {
    let sets = after
        .iter()
        .filter(|(k, e)| before.get(*k) != Some(*e))
        .map(|(k, e)| FibWrite::Set(*k, *e));
    let dels = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(|k| FibWrite::Del(*k));
    sets.chain(dels).collect()
}

#[cfg(test)]
#[path = "fib_tests.rs"]
mod tests;
