//! Security groups, stateful, for packets crossing a peering: what both
//! VPC programs (XDP and TC) do after the FIB said Forward or Remote.
//!
//! Order: the switch (off until the agent programmed policies); the L4
//! header; the flow's conntrack entry (its own tuple, then reversed), which
//! admits a packet of a tracked flow without looking at rules; an ICMP
//! error, admitted only when it quotes a tracked flow; then, for a new
//! flow, the source's egress policy against the destination and,
//! intra-region, the destination's ingress policy against the source;
//! allowed, the flow is tracked. Inter-region, the sending gateway decides
//! egress only: ingress belongs to the receiving gateway, after decryption
//! (not done yet: the tunnel writes decrypted packets past this program).
//!
//! The state machine and the rule matcher are `peering_common`'s, shared
//! with the host tests; this module only finds the entries and acts.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_ktime_get_ns, bpf_loop},
    maps::lpm_trie::Key,
};
use peering_common::{
    conntrack::{self, CtState, Dir, Open, Step, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    rule_matches, CtEntry, CtKey, SgAddr, SgMatch, SgPolicy, Stat, MAX_POLICY_RULES, MAX_SG_GROUPS,
    SG_ENFORCING,
};

use crate::{
    packet::{ptr_at, Ipv4, Packet},
    stats, CONNTRACK, SG_ADDRS, SG_CONFIG, SG_POLICIES,
};

/// Bytes of the L4 header read: TCP up to its flags, 8 for UDP and ICMP.
const TCP_READ: usize = 14;
const L4_READ: usize = 8;
/// An ICMP error quotes the IPv4 header (20 bytes without options) and at
/// least 8 bytes of its data (RFC 792).
const QUOTE_MIN: usize = 20 + 8;

/// What the packet's L4 header says, read once.
struct L4 {
    key: CtKey,
    m: SgMatch,
    tcp_flags: u8,
    icmp_error: bool,
    /// A non-first fragment: no L4 header, no flow to find.
    fragment: bool,
}

/// Admits or drops a packet routed across a peering. `intra`: the
/// destination is a local peer (ingress is decided here too).
#[inline(always)]
pub fn admit<C: Packet>(
    ctx: &C,
    l3: usize,
    ip: &Ipv4,
    len: usize,
    intra: bool,
) -> Result<(), Stat> {
    if !enforcing() {
        return Ok(());
    }
    let l4 = parse_l4(ctx, l3, ip)?;
    let now = unsafe { bpf_ktime_get_ns() };
    if l4.fragment {
        return judge(ip, &l4, len, intra);
    }
    if tracked(&l4, now) {
        return Ok(());
    }
    if l4.icmp_error {
        return related(ctx, l3, ip, now);
    }
    let open = if intra {
        conntrack::open(l4.key.proto, l4.tcp_flags)
    } else {
        conntrack::open_toward_remote(l4.key.proto, l4.tcp_flags)
    };
    let state = match open {
        Open::Invalid => return Err(Stat::DropSgTcpInvalid),
        Open::Track(s) => Some(s),
        Open::Untracked => None,
    };
    judge(ip, &l4, len, intra)?;
    if let Some(s) = state {
        track(&l4.key, s, now);
    }
    Ok(())
}

#[inline(always)]
fn enforcing() -> bool {
    SG_CONFIG.get(0).copied().unwrap_or(0) == SG_ENFORCING
}

/// Reads ports (or ICMP type, code and identifier) and TCP flags. TC:
/// pulls the bytes read into the linear part, no more.
#[inline(always)]
fn parse_l4<C: Packet>(ctx: &C, l3: usize, ip: &Ipv4) -> Result<L4, Stat> {
    let at = l3 + (ip.ihl & 0x3c);
    let mut key = CtKey::new(ip.proto, ip.src, ip.dst, 0, 0);
    let mut m = SgMatch {
        proto: ip.proto,
        value: 0,
        value_known: true,
    };
    let (mut tcp_flags, mut icmp_error) = (0, false);
    let fragment = !ip.is_first_fragment();
    if fragment {
        m.value_known = false;
    } else if ip.proto == IPPROTO_TCP {
        ctx.pull(at + TCP_READ)?;
        let h: *const [u8; TCP_READ] = ptr_at(ctx, at)?;
        let h = unsafe { *h };
        key.sport = u16::from_be_bytes([h[0], h[1]]);
        key.dport = u16::from_be_bytes([h[2], h[3]]);
        m.value = key.dport;
        tcp_flags = h[13];
    } else if ip.proto == IPPROTO_UDP || ip.proto == IPPROTO_ICMP {
        ctx.pull(at + L4_READ)?;
        let h: *const [u8; L4_READ] = ptr_at(ctx, at)?;
        let h = unsafe { *h };
        if ip.proto == IPPROTO_UDP {
            key.sport = u16::from_be_bytes([h[0], h[1]]);
            key.dport = u16::from_be_bytes([h[2], h[3]]);
            m.value = key.dport;
        } else {
            m.value = u16::from_be_bytes([h[0], h[1]]);
            icmp_error = conntrack::icmp_is_error(h[0]);
            if conntrack::icmp_has_id(h[0]) {
                let id = u16::from_be_bytes([h[4], h[5]]);
                key = CtKey::icmp_query(ip.src, ip.dst, h[0], id);
            }
        }
    }
    Ok(L4 {
        key,
        m,
        tcp_flags,
        icmp_error,
        fragment,
    })
}

/// True when the packet belongs to a live tracked flow, whose entry it
/// then moves on. A stale entry (expired, or a closed flow a SYN reopens)
/// is removed: the packet is a new flow, and must not find it reversed.
#[inline(always)]
fn tracked(l4: &L4, now: u64) -> bool {
    let reversed = l4.key.reversed();
    let (entry, dir) = match CONNTRACK.get_ptr_mut(&l4.key) {
        Some(e) => (e, Dir::Orig),
        None => match CONNTRACK.get_ptr_mut(&reversed) {
            Some(e) => (e, Dir::Reply),
            None => return false,
        },
    };
    let e = unsafe { &mut *entry };
    let step = match CtState::from_u8(e.state) {
        Some(s) if !conntrack::expired(s, e.last_seen_ns, now) => {
            conntrack::step(s, dir, l4.tcp_flags)
        }
        _ => Step::Reopen,
    };
    match step {
        Step::Admit(next) => {
            e.state = next as u8;
            e.last_seen_ns = now;
            true
        }
        Step::Reopen => {
            let stale = if dir == Dir::Orig { &l4.key } else { &reversed };
            let _ = CONNTRACK.remove(stale);
            false
        }
    }
}

/// Starts tracking a flow. A full table evicts its least recently used
/// entry; a failed insert leaves the flow untracked (its next packet is
/// judged by the rules again), never a dropped packet.
#[inline(always)]
fn track(key: &CtKey, state: CtState, now: u64) {
    let entry = CtEntry {
        last_seen_ns: now,
        state: state as u8,
        _pad: [0; 7],
    };
    let _ = CONNTRACK.insert(key, &entry, 0);
}

/// An ICMP error is admitted when the packet it quotes belongs to a live
/// tracked flow (in either direction); it moves nothing on.
#[inline(always)]
fn related<C: Packet>(ctx: &C, l3: usize, ip: &Ipv4, now: u64) -> Result<(), Stat> {
    let inner = l3 + (ip.ihl & 0x3c) + 8;
    ctx.pull(inner + QUOTE_MIN)?;
    let h: *const [u8; 20] = ptr_at(ctx, inner)?;
    let h = unsafe { *h };
    let proto = h[9];
    let src = [h[12], h[13], h[14], h[15]];
    let dst = [h[16], h[17], h[18], h[19]];
    let at = inner + ((h[0] as usize & 0x0f) << 2 & 0x3c);
    ctx.pull(at + L4_READ)?;
    let l4: *const [u8; L4_READ] = ptr_at(ctx, at)?;
    let l4 = unsafe { *l4 };
    let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    let key = match proto {
        IPPROTO_TCP | IPPROTO_UDP => CtKey::new(proto, src, dst, port(0), port(2)),
        IPPROTO_ICMP if conntrack::icmp_has_id(l4[0]) => {
            CtKey::icmp_query(src, dst, l4[0], port(4))
        }
        _ => CtKey::new(proto, src, dst, 0, 0),
    };
    if live(&key, now) || live(&key.reversed(), now) {
        return Ok(());
    }
    Err(Stat::DropSgIcmpUnrelated)
}

#[inline(always)]
fn live(key: &CtKey, now: u64) -> bool {
    match CONNTRACK.get_ptr(key) {
        Some(e) => {
            let e = unsafe { &*e };
            match CtState::from_u8(e.state) {
                Some(s) => !conntrack::expired(s, e.last_seen_ns, now),
                None => false,
            }
        }
        None => false,
    }
}

/// The rules, for a packet of no tracked flow: egress of the source, then
/// (intra-region) ingress of the destination. An address the agent gave
/// no entry (no VPC of this region holds it) has no rules to apply.
#[inline(always)]
fn judge(ip: &Ipv4, l4: &L4, len: usize, intra: bool) -> Result<(), Stat> {
    let src = addr(ip.src);
    let dst = addr(ip.dst);
    if let Some(s) = src {
        let (groups, n) = groups_of(dst);
        if !allowed(s.egress_policy, &l4.m, ip.dst, &groups, n, len) {
            return Err(Stat::DropSgEgress);
        }
    }
    if intra {
        if let Some(d) = dst {
            let (groups, n) = groups_of(src);
            if !allowed(d.ingress_policy, &l4.m, ip.src, &groups, n, len) {
                return Err(Stat::DropSgIngress);
            }
        }
    }
    Ok(())
}

#[inline(always)]
fn addr<'a>(a: [u8; 4]) -> Option<&'a SgAddr> {
    SG_ADDRS.get(&Key::new(32, a))
}

#[inline(always)]
fn groups_of(a: Option<&SgAddr>) -> ([u32; MAX_SG_GROUPS], u32) {
    match a {
        Some(a) => (a.groups, a.n_groups),
        None => ([0; MAX_SG_GROUPS], 0),
    }
}

/// True when a rule of `policy` allows the packet with `peer` at the
/// other end; the first such rule's counter is bumped.
///
/// The rules are scanned with `bpf_loop`, whose callback the verifier
/// checks once: an open-coded loop over up to [`MAX_POLICY_RULES`] rules is
/// checked once per iteration and per path into it, which took both VPC
/// programs past the verifier's million-instruction budget (E2BIG).
/// Checking four rules per call (fewer calls) failed the same way: the
/// verifier walks a callback until its states converge, and four inlined
/// matchers multiply them; LLVM also derived the later indexes' bounds
/// from the first (`first | k`), which the verifier cannot follow.
#[inline(always)]
fn allowed(
    policy: u32,
    m: &SgMatch,
    peer: [u8; 4],
    groups: &[u32; MAX_SG_GROUPS],
    n_groups: u32,
    len: usize,
) -> bool {
    let Some(p) = SG_POLICIES.get_ptr(&policy) else {
        return false;
    };
    let n = unsafe { (*p).n_rules }.min(MAX_POLICY_RULES as u32);
    let mut scan = Scan {
        policy: p,
        groups: *groups,
        n_groups,
        m: *m,
        peer,
        counter: 0,
        found: 0,
    };
    let cb = scan_rule as *const () as *mut c_void;
    let ctx = &mut scan as *mut Scan as *mut c_void;
    unsafe { bpf_loop(n, cb, ctx, 0) };
    if scan.found == 0 {
        return false;
    }
    stats::count_sg_rule(scan.counter, len as u64);
    true
}

/// What [`scan_rule`] reads and answers, on the caller's stack.
struct Scan {
    policy: *const SgPolicy,
    groups: [u32; MAX_SG_GROUPS],
    n_groups: u32,
    m: SgMatch,
    peer: [u8; 4],
    counter: u32,
    found: u32,
}

/// `bpf_loop` callback: rule `i` of the scanned policy; 1 stops the loop.
extern "C" fn scan_rule(i: u64, ctx: *mut c_void) -> i64 {
    let s = unsafe { &mut *(ctx as *mut Scan) };
    let i = i as usize;
    if i >= MAX_POLICY_RULES {
        return 1;
    }
    let rule = unsafe { &(*s.policy).rules[i] };
    if rule_matches(rule, &s.m, s.peer, &s.groups, s.n_groups) {
        s.counter = rule.counter;
        s.found = 1;
        return 1;
    }
    0
}
