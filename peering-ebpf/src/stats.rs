//! Per-CPU counters: one slot per verdict reason, one per route, one per
//! security-group rule.

use peering_common::Stat;

use crate::{ROUTE_STATS, SG_RULE_STATS, STATS};

#[inline(always)]
pub fn count(stat: Stat, bytes: u64) {
    bump(STATS.get_ptr_mut(stat as u32), bytes);
}

#[inline(always)]
pub fn count_route(slot: u32, bytes: u64) {
    if slot != 0 {
        bump(ROUTE_STATS.get_ptr_mut(slot), bytes);
    }
}

#[inline(always)]
pub fn count_sg_rule(slot: u32, bytes: u64) {
    if slot != 0 {
        bump(SG_RULE_STATS.get_ptr_mut(slot), bytes);
    }
}

#[inline(always)]
fn bump(slot: Option<*mut peering_common::Counter>, bytes: u64) {
    if let Some(c) = slot {
        // Per-CPU slot: no other writer can race with us.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
