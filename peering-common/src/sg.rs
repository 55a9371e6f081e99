//! Security groups as the VPC programs see them: the compiled maps' keys
//! and values, their limits, and the one rule matcher both the programs
//! and the agent's tests run (`rule_matches`), so the kernel and the
//! host-side check of the compiler cannot drift apart.
//!
//! The agent compiles the region's groups and interfaces
//! (`peering-userspace/src/dataplane/sg.rs`) into:
//! - [`maps::SG_ADDRS`](crate::maps::SG_ADDRS): an LPM trie from an IPv4
//!   prefix to an [`SgAddr`]: a /32 per network interface, and each VPC
//!   block for the VPC's default group (addresses with no interface);
//! - [`maps::SG_POLICIES`](crate::maps::SG_POLICIES): policy id → the union
//!   of the rules of one distinct set of groups in one direction
//!   ([`SgPolicy`]); interfaces with the same groups share a policy;
//! - [`maps::SG_RULE_STATS`](crate::maps::SG_RULE_STATS): per-CPU hit
//!   counters, one slot per rule;
//! - [`maps::SG_CONFIG`](crate::maps::SG_CONFIG): the switch (enforcement
//!   is on only once the agent has programmed policies).

/// AWS's default quota: security groups per network interface.
pub const MAX_SG_GROUPS: usize = 5;
/// AWS's default quota: inbound (and, separately, outbound) rules per
/// security group.
pub const MAX_SG_RULES_PER_GROUP: usize = 60;
/// Rules of one policy: every rule of the most groups an interface can
/// have. The programs scan at most this many per direction of a new flow.
pub const MAX_POLICY_RULES: usize = MAX_SG_GROUPS * MAX_SG_RULES_PER_GROUP;
/// Entries of [`crate::maps::SG_ADDRS`]: interfaces plus VPC blocks.
pub const MAX_SG_ADDRS: u32 = 1 << 18;
/// Entries of [`crate::maps::SG_POLICIES`]: distinct (group set,
/// direction) pairs, twice over so a replacement set fits beside the old.
/// Allocated on use (`BPF_F_NO_PREALLOC`): a policy is 7 KiB.
pub const MAX_SG_POLICIES: u32 = 8192;
/// Slots of [`crate::maps::SG_RULE_STATS`]; slot 0 is never handed out.
pub const MAX_SG_RULE_COUNTERS: u32 = 1 << 16;
/// Entries of [`crate::maps::SG_CONFIG`].
pub const SG_CONFIG_LEN: u32 = 1;
/// [`crate::maps::SG_CONFIG`] slot 0: 1 when security groups are enforced.
pub const SG_ENFORCING: u32 = 1;

/// Value of [`crate::maps::SG_ADDRS`]: who an address is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgAddr {
    pub vpc: u32,
    /// Key in [`crate::maps::SG_POLICIES`] of the rules traffic to this
    /// address must match (0: none, nothing is allowed in).
    pub ingress_policy: u32,
    /// The same for traffic from this address.
    pub egress_policy: u32,
    /// Used entries of `groups`.
    pub n_groups: u32,
    /// Group dataplane ids the address is a member of, for rules that name
    /// a group as their peer.
    pub groups: [u32; MAX_SG_GROUPS],
}

/// [`SgRule::flags`]: the peer is the group `SgRule::group`, not a CIDR.
pub const SG_RULE_PEER_GROUP: u8 = 1;

/// One compiled rule. Ranges are inclusive; for TCP and UDP over the
/// destination port, for ICMP over `type << 8 | code`; a rule that does
/// not look above IP spans `0..=0xffff`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgRule {
    /// IP protocol number; 0 matches every protocol (AWS's `-1`).
    pub proto: u8,
    pub flags: u8,
    pub _pad: u16,
    pub lo: u16,
    pub hi: u16,
    /// CIDR peer: network and netmask in wire order.
    pub peer_addr: [u8; 4],
    pub peer_mask: [u8; 4],
    /// Group peer: its dataplane id.
    pub group: u32,
    /// Slot in [`crate::maps::SG_RULE_STATS`]; 0 = uncounted.
    pub counter: u32,
}

/// Value of [`crate::maps::SG_POLICIES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgPolicy {
    /// Used entries of `rules`.
    pub n_rules: u32,
    pub _pad: u32,
    pub rules: [SgRule; MAX_POLICY_RULES],
}

impl SgPolicy {
    pub const EMPTY: Self = Self {
        n_rules: 0,
        _pad: 0,
        rules: [SgRule::ZERO; MAX_POLICY_RULES],
    };
}

impl SgRule {
    pub const ZERO: Self = Self {
        proto: 0,
        flags: 0,
        _pad: 0,
        lo: 0,
        hi: 0,
        peer_addr: [0; 4],
        peer_mask: [0; 4],
        group: 0,
        counter: 0,
    };
}

/// What a rule looks at in a packet: its protocol, the value ranges are
/// over (destination port, or ICMP `type << 8 | code`), and whether that
/// value is known (a non-first fragment carries no L4 header: only rules
/// spanning every value match it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgMatch {
    pub proto: u8,
    pub value: u16,
    pub value_known: bool,
}

/// True when `rule` allows a packet described by `m` whose other end (the
/// destination for an egress rule, the source for an ingress rule) is
/// `peer`, a member of the first `n_groups` of `groups`.
///
/// The one piece of matching logic: the programs call it per rule, the
/// agent's randomized test runs it over compiled policies against a naive
/// scan of the view types.
#[inline(always)]
pub fn rule_matches(
    rule: &SgRule,
    m: &SgMatch,
    peer: [u8; 4],
    groups: &[u32; MAX_SG_GROUPS],
    n_groups: u32,
) -> bool {
    if rule.proto != 0 && rule.proto != m.proto {
        return false;
    }
    let full = rule.lo == 0 && rule.hi == 0xffff;
    let in_range = m.value_known && rule.lo <= m.value && m.value <= rule.hi;
    if !(full || in_range) {
        return false;
    }
    if rule.flags & SG_RULE_PEER_GROUP == 0 {
        let mask = u32::from_ne_bytes(rule.peer_mask);
        return u32::from_ne_bytes(peer) & mask == u32::from_ne_bytes(rule.peer_addr);
    }
    in_groups(rule.group, groups, n_groups)
}

/// Membership in the first `n` groups, unrolled (five compares).
#[inline(always)]
fn in_groups(group: u32, groups: &[u32; MAX_SG_GROUPS], n: u32) -> bool {
    let mut i = 0;
    while i < MAX_SG_GROUPS {
        if (i as u32) < n && groups[i] == group {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(a: [u8; 4], m: [u8; 4]) -> SgRule {
        SgRule {
            proto: 6,
            lo: 22,
            hi: 22,
            peer_addr: a,
            peer_mask: m,
            counter: 1,
            ..SgRule::ZERO
        }
    }

    const TCP22: SgMatch = SgMatch {
        proto: 6,
        value: 22,
        value_known: true,
    };

    #[test]
    fn protocol_range_and_cidr_must_all_match() {
        let r = cidr([10, 1, 0, 0], [255, 255, 0, 0]);
        let g = [0; MAX_SG_GROUPS];
        assert!(rule_matches(&r, &TCP22, [10, 1, 2, 3], &g, 0));
        assert!(!rule_matches(&r, &TCP22, [10, 2, 2, 3], &g, 0));
        let udp = SgMatch { proto: 17, ..TCP22 };
        assert!(!rule_matches(&r, &udp, [10, 1, 2, 3], &g, 0));
        for (v, ok) in [(21, false), (22, true), (23, false)] {
            let m = SgMatch { value: v, ..TCP22 };
            assert_eq!(rule_matches(&r, &m, [10, 1, 2, 3], &g, 0), ok, "{v}");
        }
    }

    #[test]
    fn unknown_values_match_only_full_ranges() {
        let mut r = cidr([0; 4], [0; 4]);
        let frag = SgMatch {
            value_known: false,
            value: 0,
            ..TCP22
        };
        let g = [0; MAX_SG_GROUPS];
        assert!(!rule_matches(&r, &frag, [1, 2, 3, 4], &g, 0));
        (r.lo, r.hi) = (0, 0xffff);
        assert!(rule_matches(&r, &frag, [1, 2, 3, 4], &g, 0));
        r.proto = 0;
        let gre = SgMatch { proto: 47, ..frag };
        assert!(rule_matches(&r, &gre, [1, 2, 3, 4], &g, 0));
    }

    #[test]
    fn group_peers_match_only_the_used_groups() {
        let r = SgRule {
            flags: SG_RULE_PEER_GROUP,
            group: 7,
            hi: 0xffff,
            ..SgRule::ZERO
        };
        let g = [1, 2, 3, 4, 7];
        assert!(rule_matches(&r, &TCP22, [9; 4], &g, 5));
        assert!(!rule_matches(&r, &TCP22, [9; 4], &g, 4));
        assert!(!rule_matches(&r, &TCP22, [9; 4], &[0; 5], 0));
    }
}
