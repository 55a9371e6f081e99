//! Writing compiled security groups ([`super::sg::CompiledSg`]) into the
//! maps, and reading their counters back.
//!
//! A replacement never shows the programs a half-written policy: the new
//! policies go in under ids no address uses yet, then the addresses are
//! switched to them (each `SG_ADDRS` update is atomic, and a hash map
//! update replaces a whole value), then addresses that are gone and the
//! old policies are removed. The switch goes on last, once everything it
//! guards is in place.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues};
use ipnet::Ipv4Net;
use peering_common::{Counter, CtEntry, CtKey, SgAddr, SgPolicy, MAX_SG_POLICIES, SG_ENFORCING};

use super::sg::{self, CompiledSg, VpcGroups};
use crate::control::sg_view::{InterfaceView, SecurityGroupView};

impl super::Maps {
    /// What the agent calls when the region view's security groups or
    /// interfaces change: compiles them (keeping rule counter slots) and
    /// replaces what the programs enforce. Over-limit input is refused
    /// before any map is touched. With no VPC, group or interface at all,
    /// enforcement is turned off.
    pub fn program_security_groups(
        &mut self,
        vpcs: &[VpcGroups],
        groups: &[SecurityGroupView],
        interfaces: &[InterfaceView],
    ) -> Result<()> {
        if vpcs.is_empty() && groups.is_empty() && interfaces.is_empty() {
            return self.sg.clear();
        }
        let compiled = sg::compile(vpcs, groups, interfaces, self.sg.slots())?;
        self.sg.program(&compiled)
    }
}

pub struct SgMaps {
    pub(super) addrs: LpmTrie<MapData, [u8; 4], SgAddr>,
    pub(super) policies: HashMap<MapData, u32, SgPolicy>,
    pub(super) rule_stats: PerCpuArray<MapData, Counter>,
    pub(super) config: Array<MapData, u32>,
    pub(super) conntrack: HashMap<MapData, CtKey, CtEntry>,
    /// Counter slots of the rules last written, rule dp id → slot.
    pub(super) slots: BTreeMap<u32, u32>,
}

fn key(net: Ipv4Net) -> Key<[u8; 4]> {
    let net = net.trunc();
    Key::new(net.prefix_len() as u32, net.network().octets())
}

impl SgMaps {
    /// Replaces the programmed security groups with `c` and turns
    /// enforcement on. Fresh counter slots are zeroed before any rule
    /// counts into them.
    pub fn program(&mut self, c: &CompiledSg) -> Result<()> {
        let live: BTreeSet<u32> = self.policies.keys().collect::<Result<_, _>>()?;
        let ids = fresh_ids(&live, c.policies.len())?;
        self.zero_new_slots(c)?;
        for (rules, id) in c.policies.iter().zip(&ids) {
            let mut p = SgPolicy::EMPTY;
            p.n_rules = rules.len() as u32;
            p.rules[..rules.len()].copy_from_slice(rules);
            self.policies
                .insert(id, p, 0)
                .with_context(|| format!("writing security-group policy {id}"))?;
        }
        let remap = |local: u32| local.checked_sub(1).map_or(0, |i| ids[i as usize]);
        for (net, a) in &c.addrs {
            let a = SgAddr {
                ingress_policy: remap(a.ingress_policy),
                egress_policy: remap(a.egress_policy),
                ..*a
            };
            self.addrs
                .insert(&key(*net), a, 0)
                .with_context(|| format!("writing security groups of {net}"))?;
        }
        let old: Vec<Key<[u8; 4]>> = self.addrs.keys().collect::<Result<_, _>>()?;
        for k in old {
            let net = Ipv4Net::new(k.data().into(), k.prefix_len() as u8)?;
            if !c.addrs.contains_key(&net) {
                self.addrs.remove(&k)?;
            }
        }
        for id in live {
            self.policies.remove(&id)?;
        }
        self.slots = c.counters.clone();
        self.config.set(0, SG_ENFORCING, 0)?;
        Ok(())
    }

    /// Turns enforcement off and empties the maps (a gateway with no
    /// security-group data forwards everything, as before).
    pub fn clear(&mut self) -> Result<()> {
        self.config.set(0, 0, 0)?;
        let addrs: Vec<Key<[u8; 4]>> = self.addrs.keys().collect::<Result<_, _>>()?;
        for k in addrs {
            self.addrs.remove(&k)?;
        }
        let ids: Vec<u32> = self.policies.keys().collect::<Result<_, _>>()?;
        for id in ids {
            self.policies.remove(&id)?;
        }
        self.slots.clear();
        Ok(())
    }

    fn zero_new_slots(&mut self, c: &CompiledSg) -> Result<()> {
        let old: BTreeSet<u32> = self.slots.values().copied().collect();
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        for slot in c.counters.values().filter(|s| !old.contains(s)) {
            let zeros = PerCpuValues::try_from(vec![Counter::default(); ncpus])?;
            self.rule_stats.set(*slot, zeros, 0)?;
        }
        Ok(())
    }

    /// The counter slots of the rules last programmed (pass them to the
    /// next `sg::compile` so counts survive).
    pub fn slots(&self) -> &BTreeMap<u32, u32> {
        &self.slots
    }

    /// Hits of the rule with dataplane id `rule`, summed over CPUs.
    pub fn rule_hits(&self, rule: u32) -> Result<Option<Counter>> {
        let Some(slot) = self.slots.get(&rule) else {
            return Ok(None);
        };
        let per_cpu = self.rule_stats.get(slot, 0)?;
        Ok(Some(per_cpu.iter().fold(Counter::default(), |a, c| {
            Counter {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            }
        })))
    }

    /// Tracked flows (for display and tests).
    pub fn flows(&self) -> Result<Vec<(CtKey, CtEntry)>> {
        Ok(self.conntrack.iter().collect::<Result<_, _>>()?)
    }

    /// The entry of the flow keyed `k`, if tracked.
    pub fn flow(&self, k: &CtKey) -> Result<Option<CtEntry>> {
        match self.conntrack.get(k, 0) {
            Ok(e) => Ok(Some(e)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Rewrites a tracked flow's entry (tests age entries with it).
    pub fn set_flow(&mut self, k: &CtKey, e: CtEntry) -> Result<()> {
        Ok(self.conntrack.insert(k, e, 0)?)
    }
}

/// `n` policy ids that no live policy uses, from 1 (0 means "none").
fn fresh_ids(live: &BTreeSet<u32>, n: usize) -> Result<Vec<u32>> {
    let ids: Vec<u32> = (1..=MAX_SG_POLICIES * 2)
        .filter(|i| !live.contains(i))
        .take(n)
        .collect();
    anyhow::ensure!(
        ids.len() == n && live.len() + n <= MAX_SG_POLICIES as usize,
        "{n} security-group policies do not fit beside the {} in use",
        live.len()
    );
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_skip_live_ones_and_zero() {
        let live = BTreeSet::from([1, 2, 4]);
        assert_eq!(fresh_ids(&live, 3).unwrap(), vec![3, 5, 6]);
        assert!(fresh_ids(&live, MAX_SG_POLICIES as usize).is_err());
    }
}
