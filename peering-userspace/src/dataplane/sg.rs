//! The security-group compiler: the region's groups and interfaces (the
//! view types of `control::sg_view`) turned into the contents of the maps
//! the VPC programs read (`SG_ADDRS`, `SG_POLICIES`, rule counter slots;
//! see `peering_common::sg`). Pure: [`compile`] returns what to write,
//! `Maps::program_security_groups` writes it.
//!
//! - Every interface address gets a /32 [`SgAddr`]; every block of a VPC
//!   gets one for the VPC's default group (an address with no interface).
//! - A policy is the union of the rules of one set of groups in one
//!   direction; addresses with the same groups share it (one per distinct
//!   set and direction), so the kernel scans one list of at most
//!   [`MAX_POLICY_RULES`] per direction of a new flow.
//! - Each rule gets a counter slot, kept across compilations while the
//!   rule lives (pass the previous [`CompiledSg::counters`] back in).
//!
//! Over-limit input is refused whole with an error naming the culprit;
//! nothing is half-compiled.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use peering_common::{
    SgAddr, SgRule, MAX_POLICY_RULES, MAX_SG_ADDRS, MAX_SG_GROUPS, MAX_SG_POLICIES,
    MAX_SG_RULES_PER_GROUP, MAX_SG_RULE_COUNTERS, SG_RULE_PEER_GROUP,
};
use thiserror::Error;

use crate::control::sg_view::{InterfaceView, SecurityGroupView, SgPeer, SgProtocol, SgRuleView};

/// What the compiler needs of a VPC: its blocks and its default group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcGroups {
    pub vpc_dp_id: u32,
    pub default_group_dp_id: u32,
    pub cidrs: Vec<Ipv4Net>,
}

/// One direction of a group's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The maps' contents. Policy ids here are 1-based indexes into
/// `policies`; the writer maps them onto ids free in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledSg {
    /// Prefix → who it is; /32s for interfaces, blocks for default groups.
    pub addrs: BTreeMap<Ipv4Net, SgAddr>,
    /// Policy `i + 1`: its rules.
    pub policies: Vec<Vec<SgRule>>,
    /// Rule dataplane id → counter slot (1-based).
    pub counters: BTreeMap<u32, u32>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SgCompileError {
    #[error("interface {eni} is in {n} security groups; at most {MAX_SG_GROUPS}")]
    TooManyGroups { eni: String, n: usize },
    #[error("interface {eni} is in no security group")]
    NoGroup { eni: String },
    #[error("interface {eni} names unknown security group {group_dp_id}")]
    UnknownGroup { eni: String, group_dp_id: u32 },
    #[error("VPC {vpc_dp_id} names unknown default security group {group_dp_id}")]
    UnknownDefaultGroup { vpc_dp_id: u32, group_dp_id: u32 },
    #[error("security group {group} has {n} {dir:?} rules; at most {MAX_SG_RULES_PER_GROUP}")]
    TooManyRules {
        group: String,
        dir: Direction,
        n: usize,
    },
    #[error("rule {rule} of {group}: port range {from}-{to} is reversed")]
    BadPortRange {
        group: String,
        rule: String,
        from: u16,
        to: u16,
    },
    #[error("rule {rule} of {group}: IP protocol 0 is not a protocol (use All)")]
    BadProtocol { group: String, rule: String },
    #[error("address {addr} is claimed by {first} and {second}")]
    DuplicateAddress {
        addr: Ipv4Net,
        first: String,
        second: String,
    },
    #[error("{what}: more than {max}")]
    TooMany { what: &'static str, max: u32 },
}

/// Compiles the region's security groups. `prev_counters` is the last
/// compilation's [`CompiledSg::counters`] (empty at first): rules still
/// present keep their slots, so their counts survive a recompilation.
///
/// An interface's groups must exist; a rule may name any group (one that
/// does not exist has no members and allows nothing).
pub fn compile(
    vpcs: &[VpcGroups],
    groups: &[SecurityGroupView],
    interfaces: &[InterfaceView],
    prev_counters: &BTreeMap<u32, u32>,
) -> Result<CompiledSg, SgCompileError> {
    let by_id: BTreeMap<u32, &SecurityGroupView> = groups.iter().map(|g| (g.dp_id, g)).collect();
    let counters = assign_counters(groups, prev_counters)?;
    let mut c = Compiler {
        by_id: &by_id,
        counters: &counters,
        policy_of: BTreeMap::new(),
        policies: Vec::new(),
    };
    let mut addrs: BTreeMap<Ipv4Net, (SgAddr, String)> = BTreeMap::new();
    for i in interfaces {
        let set = group_set(i)?;
        for g in &set {
            if !by_id.contains_key(g) {
                let (eni, group_dp_id) = (i.eni_id.clone(), *g);
                return Err(SgCompileError::UnknownGroup { eni, group_dp_id });
            }
        }
        let a = c.addr(i.vpc_dp_id, &set)?;
        let net = Ipv4Net::from(i.address);
        insert_addr(&mut addrs, net, a, &i.eni_id)?;
    }
    for v in vpcs {
        if !by_id.contains_key(&v.default_group_dp_id) {
            return Err(SgCompileError::UnknownDefaultGroup {
                vpc_dp_id: v.vpc_dp_id,
                group_dp_id: v.default_group_dp_id,
            });
        }
        let a = c.addr(v.vpc_dp_id, &BTreeSet::from([v.default_group_dp_id]))?;
        for net in &v.cidrs {
            insert_addr(&mut addrs, net.trunc(), a, &format!("VPC {}", v.vpc_dp_id))?;
        }
    }
    if addrs.len() > MAX_SG_ADDRS as usize {
        return Err(SgCompileError::TooMany {
            what: "security-group addresses (interfaces and VPC blocks)",
            max: MAX_SG_ADDRS,
        });
    }
    Ok(CompiledSg {
        addrs: addrs.into_iter().map(|(k, (a, _))| (k, a)).collect(),
        policies: c.policies,
        counters,
    })
}

fn group_set(i: &InterfaceView) -> Result<BTreeSet<u32>, SgCompileError> {
    let set: BTreeSet<u32> = i.group_dp_ids.iter().copied().collect();
    let eni = i.eni_id.clone();
    match set.len() {
        0 => Err(SgCompileError::NoGroup { eni }),
        n if n > MAX_SG_GROUPS => Err(SgCompileError::TooManyGroups { eni, n }),
        _ => Ok(set),
    }
}

fn insert_addr(
    addrs: &mut BTreeMap<Ipv4Net, (SgAddr, String)>,
    net: Ipv4Net,
    a: SgAddr,
    owner: &str,
) -> Result<(), SgCompileError> {
    if let Some((_, first)) = addrs.get(&net) {
        return Err(SgCompileError::DuplicateAddress {
            addr: net,
            first: first.clone(),
            second: owner.to_string(),
        });
    }
    addrs.insert(net, (a, owner.to_string()));
    Ok(())
}

/// Slots for every rule: the previous slot if it had one, else the lowest
/// free slot from 1.
fn assign_counters(
    groups: &[SecurityGroupView],
    prev: &BTreeMap<u32, u32>,
) -> Result<BTreeMap<u32, u32>, SgCompileError> {
    let rules: BTreeSet<u32> = groups
        .iter()
        .flat_map(|g| g.ingress.iter().chain(&g.egress))
        .map(|r| r.dp_id)
        .collect();
    let mut out: BTreeMap<u32, u32> = prev
        .iter()
        .filter(|(r, s)| rules.contains(r) && **s != 0 && **s < MAX_SG_RULE_COUNTERS)
        .map(|(r, s)| (*r, *s))
        .collect();
    let used: BTreeSet<u32> = out.values().copied().collect();
    let mut free = (1..MAX_SG_RULE_COUNTERS).filter(|s| !used.contains(s));
    for r in rules {
        if out.contains_key(&r) {
            continue;
        }
        let slot = free.next().ok_or(SgCompileError::TooMany {
            what: "security-group rules (counter slots)",
            max: MAX_SG_RULE_COUNTERS - 1,
        })?;
        out.insert(r, slot);
    }
    Ok(out)
}

struct Compiler<'a> {
    by_id: &'a BTreeMap<u32, &'a SecurityGroupView>,
    counters: &'a BTreeMap<u32, u32>,
    /// (direction, group set) → policy id.
    policy_of: BTreeMap<(Direction, BTreeSet<u32>), u32>,
    policies: Vec<Vec<SgRule>>,
}

impl Compiler<'_> {
    fn addr(&mut self, vpc: u32, set: &BTreeSet<u32>) -> Result<SgAddr, SgCompileError> {
        let mut groups = [0u32; MAX_SG_GROUPS];
        for (slot, g) in groups.iter_mut().zip(set) {
            *slot = *g;
        }
        Ok(SgAddr {
            vpc,
            ingress_policy: self.policy(Direction::Ingress, set)?,
            egress_policy: self.policy(Direction::Egress, set)?,
            n_groups: set.len() as u32,
            groups,
        })
    }

    fn policy(&mut self, dir: Direction, set: &BTreeSet<u32>) -> Result<u32, SgCompileError> {
        if let Some(id) = self.policy_of.get(&(dir, set.clone())) {
            return Ok(*id);
        }
        let mut rules = Vec::new();
        for g in set {
            let group = self.by_id[g];
            let list = match dir {
                Direction::Ingress => &group.ingress,
                Direction::Egress => &group.egress,
            };
            if list.len() > MAX_SG_RULES_PER_GROUP {
                let (group, n) = (group.group_id.clone(), list.len());
                return Err(SgCompileError::TooManyRules { group, dir, n });
            }
            for r in list {
                rules.push(compile_rule(&group.group_id, r, self.counters[&r.dp_id])?);
            }
        }
        // Five groups of at most sixty rules: never more than the bound.
        debug_assert!(rules.len() <= MAX_POLICY_RULES);
        // Half the map, so a replacement fits beside the live set.
        if self.policies.len() >= (MAX_SG_POLICIES / 2) as usize {
            return Err(SgCompileError::TooMany {
                what: "distinct security-group sets per direction",
                max: MAX_SG_POLICIES / 2,
            });
        }
        self.policies.push(rules);
        let id = self.policies.len() as u32;
        self.policy_of.insert((dir, set.clone()), id);
        Ok(id)
    }
}

/// One rule in the kernel's form (see [`SgRule`]).
pub fn compile_rule(group: &str, r: &SgRuleView, counter: u32) -> Result<SgRule, SgCompileError> {
    let bad_range = |from, to| SgCompileError::BadPortRange {
        group: group.to_string(),
        rule: r.rule_id.clone(),
        from,
        to,
    };
    let (proto, lo, hi) = match r.protocol {
        SgProtocol::All => (0, 0, 0xffff),
        SgProtocol::Tcp { from_port, to_port } | SgProtocol::Udp { from_port, to_port }
            if from_port > to_port =>
        {
            return Err(bad_range(from_port, to_port))
        }
        SgProtocol::Tcp { from_port, to_port } => (6, from_port, to_port),
        SgProtocol::Udp { from_port, to_port } => (17, from_port, to_port),
        SgProtocol::Icmp { icmp_type, code } => {
            let (lo, hi) = icmp_range(icmp_type, code);
            (1, lo, hi)
        }
        SgProtocol::Other(0) => {
            let (group, rule) = (group.to_string(), r.rule_id.clone());
            return Err(SgCompileError::BadProtocol { group, rule });
        }
        SgProtocol::Other(p) => (p, 0, 0xffff),
    };
    let mut rule = SgRule {
        proto,
        lo,
        hi,
        counter,
        ..SgRule::ZERO
    };
    match r.peer {
        SgPeer::Cidr(net) => {
            rule.peer_addr = net.network().octets();
            rule.peer_mask = net.netmask().octets();
        }
        SgPeer::Group { group_dp_id } => {
            rule.flags = SG_RULE_PEER_GROUP;
            rule.group = group_dp_id;
        }
    }
    Ok(rule)
}

/// ICMP rules range over `type << 8 | code`: any type, one type with any
/// code, or one type and code. A code without a type means any type (as
/// AWS's `-1` type does whatever the code).
fn icmp_range(icmp_type: Option<u8>, code: Option<u8>) -> (u16, u16) {
    match (icmp_type, code) {
        (None, _) => (0, 0xffff),
        (Some(t), None) => ((t as u16) << 8, (t as u16) << 8 | 0xff),
        (Some(t), Some(c)) => {
            let v = (t as u16) << 8 | c as u16;
            (v, v)
        }
    }
}

#[cfg(test)]
#[path = "sg_tests.rs"]
mod tests;
