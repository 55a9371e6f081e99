//! Which per-route counter slot each installed route owns, kept in memory
//! beside the route map so that writing one route costs one map update
//! instead of a walk of every route (a walk is two syscalls per entry: at
//! 100,000 routes, a fifth of a second per route, and hours for a full
//! reconciliation of an empty map).
//!
//! Slots run from 1 to `capacity - 1`; slot 0 means "not counted" (the XDP
//! program skips it). When every slot is taken, further routes are still
//! installed, uncounted: forwarding never depends on a counter.

use std::collections::{BTreeSet, HashMap};

use ipnet::Ipv4Net;

/// A route as the maps key it: (route table, destination).
pub type RouteKey = (u32, Ipv4Net);

/// The slot a route write should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The route exists and keeps its slot (and counters).
    Kept(u32),
    /// A slot nobody uses: its counters must be zeroed before use.
    Fresh(u32),
    /// Every slot is taken: the route goes uncounted (slot 0).
    Uncounted,
}

impl Slot {
    pub fn number(self) -> u32 {
        match self {
            Slot::Kept(s) | Slot::Fresh(s) => s,
            Slot::Uncounted => 0,
        }
    }
}

#[derive(Debug)]
pub struct RouteSlots {
    capacity: u32,
    by_route: HashMap<RouteKey, u32>,
    used: BTreeSet<u32>,
    /// Where the search for a free slot starts: slots are handed out in
    /// turn, so a fill of an empty map never scans.
    next: u32,
}

impl RouteSlots {
    /// An index of `routes` (key and slot, as read from the map) with
    /// slots `1..capacity`. A slot two routes claim (a map written by
    /// hand) stays with the first; the second keeps it too until it is
    /// rewritten, which is harmless: they share counters.
    pub fn new(capacity: u32, routes: impl IntoIterator<Item = (RouteKey, u32)>) -> Self {
        let mut s = RouteSlots {
            capacity,
            by_route: HashMap::new(),
            used: BTreeSet::new(),
            next: 1,
        };
        for (key, slot) in routes {
            s.by_route.insert(key, slot);
            if slot != 0 && slot < capacity {
                s.used.insert(slot);
            }
        }
        s
    }

    /// The slot for a write of `key`; the caller records it with
    /// [`RouteSlots::installed`] once the map took the write.
    pub fn slot_for(&self, key: &RouteKey) -> Slot {
        match self.by_route.get(key) {
            Some(&slot) if slot != 0 => Slot::Kept(slot),
            _ => self.free().map_or(Slot::Uncounted, Slot::Fresh),
        }
    }

    /// `key` is in the map with `slot`.
    pub fn installed(&mut self, key: RouteKey, slot: Slot) {
        let n = slot.number();
        if let Some(old) = self.by_route.insert(key, n) {
            if old != n {
                self.used.remove(&old);
            }
        }
        if n != 0 {
            self.used.insert(n);
            self.next = if n + 1 >= self.capacity { 1 } else { n + 1 };
        }
    }

    /// `key` left the map; its slot is free again.
    pub fn removed(&mut self, key: &RouteKey) {
        if let Some(slot) = self.by_route.remove(key) {
            self.used.remove(&slot);
        }
    }

    #[cfg(test)]
    fn slot_of(&self, key: &RouteKey) -> Option<u32> {
        self.by_route.get(key).copied()
    }

    /// A free slot, searched from `next` round to it again.
    fn free(&self) -> Option<u32> {
        if self.used.len() as u64 >= u64::from(self.capacity.saturating_sub(1)) {
            return None;
        }
        (self.next..self.capacity)
            .chain(1..self.next)
            .find(|s| !self.used.contains(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(table: u32, net: &str) -> RouteKey {
        (table, net.parse().unwrap())
    }

    #[test]
    fn fresh_routes_take_slots_in_turn_and_rewrites_keep_theirs() {
        let mut s = RouteSlots::new(8, []);
        for (i, net) in ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"]
            .iter()
            .enumerate()
        {
            let slot = s.slot_for(&key(1, net));
            assert_eq!(slot, Slot::Fresh(i as u32 + 1));
            s.installed(key(1, net), slot);
        }
        assert_eq!(s.slot_for(&key(1, "10.1.0.0/16")), Slot::Kept(2));
        // The same destination in another table is another route.
        assert_eq!(s.slot_for(&key(2, "10.1.0.0/16")), Slot::Fresh(4));
    }

    #[test]
    fn full_counters_leave_routes_uncounted_until_one_is_freed() {
        // Capacity 4: slots 1, 2 and 3.
        let mut s = RouteSlots::new(4, []);
        for i in 0..5u8 {
            let k = key(1, &format!("10.{i}.0.0/16"));
            let slot = s.slot_for(&k);
            assert_eq!(slot.number(), if i < 3 { u32::from(i) + 1 } else { 0 });
            s.installed(k, slot);
        }
        // An uncounted route rewritten while still full stays uncounted.
        assert_eq!(s.slot_for(&key(1, "10.4.0.0/16")), Slot::Uncounted);
        s.removed(&key(1, "10.1.0.0/16"));
        assert_eq!(s.slot_for(&key(1, "10.4.0.0/16")), Slot::Fresh(2));
        s.installed(key(1, "10.4.0.0/16"), Slot::Fresh(2));
        assert_eq!(s.slot_for(&key(1, "10.9.0.0/16")), Slot::Uncounted);
        // Removing an uncounted route frees nothing.
        s.removed(&key(1, "10.3.0.0/16"));
        assert_eq!(s.slot_for(&key(1, "10.9.0.0/16")), Slot::Uncounted);
    }

    #[test]
    fn an_index_read_from_the_map_keeps_its_slots_and_skips_them() {
        let s = RouteSlots::new(
            8,
            [
                (key(1, "10.0.0.0/8"), 1),
                (key(1, "10.1.0.0/16"), 3),
                (key(2, "10.2.0.0/16"), 0),
                // Out of range (a map from a build with more slots).
                (key(3, "10.3.0.0/16"), 99),
            ],
        );
        assert_eq!(s.slot_for(&key(1, "10.1.0.0/16")), Slot::Kept(3));
        assert_eq!(s.slot_for(&key(9, "10.9.0.0/16")), Slot::Fresh(2));
        // A route without a slot gets one when rewritten.
        assert_eq!(s.slot_for(&key(2, "10.2.0.0/16")), Slot::Fresh(2));
    }

    #[test]
    fn against_a_naive_model_over_random_writes() {
        // Invariants against a plain map of what is installed: a rewrite
        // keeps its slot, no slot is used twice, a route goes uncounted
        // only when every slot is taken, the index agrees with the map.
        let cap = 16u32;
        let mut s = RouteSlots::new(cap, []);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut model: HashMap<RouteKey, u32> = HashMap::new();
        for _ in 0..5000 {
            let k = key(
                1 + (rand() % 3) as u32,
                &format!("10.{}.0.0/16", rand() % 12),
            );
            if rand() % 3 == 0 {
                s.removed(&k);
                model.remove(&k);
            } else {
                let slot = s.slot_for(&k);
                let in_use = model.values().filter(|&&v| v != 0).count();
                match model.get(&k).filter(|&&h| h != 0) {
                    Some(&had) => assert_eq!(slot, Slot::Kept(had)),
                    // Uncounted only when every slot is taken.
                    None if slot == Slot::Uncounted => assert_eq!(in_use, (cap - 1) as usize),
                    None => assert!(matches!(slot, Slot::Fresh(_))),
                }
                s.installed(k, slot);
                model.insert(k, slot.number());
            }
            let counted: Vec<u32> = model.values().copied().filter(|&v| v != 0).collect();
            let distinct: BTreeSet<u32> = counted.iter().copied().collect();
            assert_eq!(counted.len(), distinct.len(), "a slot used twice");
            assert!(counted.iter().all(|&v| v < cap));
            for (k, v) in &model {
                assert_eq!(s.slot_of(k), Some(*v));
            }
        }
    }
}
