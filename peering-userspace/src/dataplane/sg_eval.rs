//! Two evaluators of security groups for a new flow, for tests:
//! [`reference`], the semantics written naively over the view types (a
//! linear scan of every group's rules), and [`compiled`], what the VPC
//! programs do with the compiled maps (the longest prefix in `SG_ADDRS`,
//! then the policy's rules through `peering_common::rule_matches`, the
//! very function the kernel runs). The compiler is right when they agree.

use std::net::Ipv4Addr;

use peering_common::{rule_matches, SgAddr, SgMatch, MAX_SG_GROUPS};

use super::sg::{CompiledSg, VpcGroups};
use crate::control::sg_view::{InterfaceView, SecurityGroupView, SgPeer, SgProtocol, SgRuleView};

/// A packet as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Destination port (TCP, UDP) or `(type, code)` (ICMP); `None` for a
    /// non-first fragment, which carries neither.
    pub dport: Option<u16>,
    pub icmp: Option<(u8, u8)>,
}

/// The verdict on a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    DenyEgress,
    DenyIngress,
}

/// The region's security groups as the view types say them.
pub struct Region<'a> {
    pub vpcs: &'a [VpcGroups],
    pub groups: &'a [SecurityGroupView],
    pub interfaces: &'a [InterfaceView],
}

/// The semantics: an address's groups are its interface's, else its VPC's
/// default group, else it has none (not this region's: unenforced). A
/// flow is allowed when some egress rule of a source group allows the
/// destination and (intra-region) some ingress rule of a destination
/// group allows the source.
pub fn reference(r: &Region, p: &Probe, intra: bool) -> Verdict {
    let src = groups_of(r, p.src);
    let dst = groups_of(r, p.dst);
    if let Some(sg) = &src {
        let peer = (p.dst, dst.as_deref().unwrap_or(&[]));
        if !any_allows(r, sg, |g| &g.egress, p, peer) {
            return Verdict::DenyEgress;
        }
    }
    if let (true, Some(dg)) = (intra, &dst) {
        let peer = (p.src, src.as_deref().unwrap_or(&[]));
        if !any_allows(r, dg, |g| &g.ingress, p, peer) {
            return Verdict::DenyIngress;
        }
    }
    Verdict::Allow
}

fn groups_of(r: &Region, a: Ipv4Addr) -> Option<Vec<u32>> {
    if let Some(i) = r.interfaces.iter().find(|i| i.address == a) {
        return Some(i.group_dp_ids.clone());
    }
    let v = r
        .vpcs
        .iter()
        .find(|v| v.cidrs.iter().any(|c| c.contains(&a)))?;
    Some(vec![v.default_group_dp_id])
}

fn any_allows(
    r: &Region,
    groups: &[u32],
    dir: impl Fn(&SecurityGroupView) -> &Vec<SgRuleView>,
    p: &Probe,
    (peer, peer_groups): (Ipv4Addr, &[u32]),
) -> bool {
    r.groups
        .iter()
        .filter(|g| groups.contains(&g.dp_id))
        .flat_map(|g| dir(g).iter())
        .any(|rule| proto_allows(&rule.protocol, p) && peer_allows(&rule.peer, peer, peer_groups))
}

fn proto_allows(proto: &SgProtocol, p: &Probe) -> bool {
    let in_range = |from: u16, to: u16| match p.dport {
        Some(d) => from <= d && d <= to,
        None => from == 0 && to == 0xffff,
    };
    match *proto {
        SgProtocol::All => true,
        SgProtocol::Tcp { from_port, to_port } => p.proto == 6 && in_range(from_port, to_port),
        SgProtocol::Udp { from_port, to_port } => p.proto == 17 && in_range(from_port, to_port),
        SgProtocol::Icmp { icmp_type, code } => {
            let known = p.dport.is_some();
            p.proto == 1
                && match (icmp_type, p.icmp) {
                    (None, _) => true,
                    (Some(_), _) if !known => false,
                    (Some(t), Some((pt, pc))) => t == pt && code.is_none_or(|c| c == pc),
                    (Some(_), None) => false,
                }
        }
        SgProtocol::Other(n) => p.proto == n,
    }
}

fn peer_allows(peer: &SgPeer, addr: Ipv4Addr, groups: &[u32]) -> bool {
    match peer {
        SgPeer::Cidr(net) => net.contains(&addr),
        SgPeer::Group { group_dp_id } => groups.contains(group_dp_id),
    }
}

/// What the kernel decides with the compiled maps.
pub fn compiled(c: &CompiledSg, p: &Probe, intra: bool) -> Verdict {
    let m = probe_match(p);
    let src = lookup(c, p.src);
    let dst = lookup(c, p.dst);
    if let Some(s) = src {
        if !policy_allows(c, s.egress_policy, &m, p.dst, dst) {
            return Verdict::DenyEgress;
        }
    }
    if let (true, Some(d)) = (intra, dst) {
        if !policy_allows(c, d.ingress_policy, &m, p.src, src) {
            return Verdict::DenyIngress;
        }
    }
    Verdict::Allow
}

/// The match fields the program reads from the packet.
pub fn probe_match(p: &Probe) -> SgMatch {
    let value = match (p.dport, p.icmp) {
        (None, _) => None,
        (Some(_), Some((t, c))) => Some((t as u16) << 8 | c as u16),
        (Some(d), None) => Some(d),
    };
    SgMatch {
        proto: p.proto,
        value: value.unwrap_or(0),
        value_known: value.is_some(),
    }
}

/// The longest prefix holding `a`, as the LPM trie answers.
fn lookup(c: &CompiledSg, a: Ipv4Addr) -> Option<&SgAddr> {
    c.addrs
        .iter()
        .filter(|(net, _)| net.contains(&a))
        .max_by_key(|(net, _)| net.prefix_len())
        .map(|(_, v)| v)
}

fn policy_allows(
    c: &CompiledSg,
    id: u32,
    m: &SgMatch,
    peer: Ipv4Addr,
    peer_addr: Option<&SgAddr>,
) -> bool {
    let Some(rules) = id.checked_sub(1).and_then(|i| c.policies.get(i as usize)) else {
        return false;
    };
    let (groups, n) = match peer_addr {
        Some(a) => (a.groups, a.n_groups),
        None => ([0; MAX_SG_GROUPS], 0),
    };
    rules
        .iter()
        .any(|r| rule_matches(r, m, peer.octets(), &groups, n))
}
