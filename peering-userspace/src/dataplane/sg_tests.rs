use super::*;
use crate::dataplane::sg_eval::{self, Probe, Region, Verdict};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::net::Ipv4Addr;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn rule(dp_id: u32, protocol: SgProtocol, peer: SgPeer) -> SgRuleView {
    SgRuleView {
        rule_id: format!("sgr-{dp_id}"),
        dp_id,
        protocol,
        peer,
    }
}

fn group(
    dp_id: u32,
    vpc: u32,
    ingress: Vec<SgRuleView>,
    egress: Vec<SgRuleView>,
) -> SecurityGroupView {
    SecurityGroupView {
        group_id: format!("sg-{dp_id}"),
        dp_id,
        vpc_dp_id: vpc,
        ingress,
        egress,
    }
}

fn eni(n: u32, vpc: u32, addr: [u8; 4], groups: &[u32]) -> InterfaceView {
    InterfaceView {
        eni_id: format!("eni-{n}"),
        vpc_dp_id: vpc,
        address: Ipv4Addr::from(addr),
        group_dp_ids: groups.to_vec(),
    }
}

fn vpc(id: u32, default: u32, cidr: &str) -> VpcGroups {
    VpcGroups {
        vpc_dp_id: id,
        default_group_dp_id: default,
        cidrs: vec![net(cidr)],
    }
}

const ALL_OUT: SgPeer = SgPeer::Cidr(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0));

/// AWS's default group: all traffic from its own members, all egress.
fn default_group(dp_id: u32, vpc: u32, base: u32) -> SecurityGroupView {
    let self_ref = SgPeer::Group { group_dp_id: dp_id };
    group(
        dp_id,
        vpc,
        vec![rule(base, SgProtocol::All, self_ref)],
        vec![rule(base + 1, SgProtocol::All, ALL_OUT)],
    )
}

#[test]
fn interfaces_get_a_32_and_blocks_the_default_group() {
    let groups = [default_group(1, 10, 100), default_group(2, 10, 200)];
    let vpcs = [vpc(10, 1, "10.1.0.0/16")];
    let ifs = [eni(1, 10, [10, 1, 0, 5], &[2])];
    let c = compile(&vpcs, &groups, &ifs, &BTreeMap::new()).unwrap();
    assert_eq!(c.addrs.len(), 2);
    let host = c.addrs[&net("10.1.0.5/32")];
    let block = c.addrs[&net("10.1.0.0/16")];
    assert_eq!((host.vpc, host.n_groups, host.groups[0]), (10, 1, 2));
    assert_eq!((block.n_groups, block.groups[0]), (1, 1));
    // Two group sets, two directions: four policies of one rule each.
    assert_eq!(c.policies.len(), 4);
    assert!(c.policies.iter().all(|p| p.len() == 1));
    let slots: BTreeSet<u32> = c.counters.values().copied().collect();
    assert_eq!(slots, BTreeSet::from([1, 2, 3, 4]));
}

#[test]
fn interfaces_with_the_same_groups_share_policies() {
    let groups = [default_group(1, 10, 100), default_group(2, 10, 200)];
    let vpcs = [vpc(10, 1, "10.1.0.0/16")];
    let ifs = [
        eni(1, 10, [10, 1, 0, 5], &[2, 1]),
        eni(2, 10, [10, 1, 0, 6], &[1, 2, 2]),
    ];
    let c = compile(&vpcs, &groups, &ifs, &BTreeMap::new()).unwrap();
    let (a, b) = (c.addrs[&net("10.1.0.5/32")], c.addrs[&net("10.1.0.6/32")]);
    assert_eq!(
        (a.ingress_policy, a.egress_policy),
        (b.ingress_policy, b.egress_policy)
    );
    assert_eq!(a.n_groups, 2, "duplicates collapse");
    assert_eq!(
        c.policies[a.ingress_policy as usize - 1].len(),
        2,
        "the union"
    );
    // Their set and the default group's: two sets, four policies.
    assert_eq!(c.policies.len(), 4);
}

#[test]
fn protocols_compile_to_ranges() {
    let p = |protocol| compile_rule("sg", &rule(1, protocol, ALL_OUT), 9).unwrap();
    let r = p(SgProtocol::Tcp {
        from_port: 80,
        to_port: 443,
    });
    assert_eq!((r.proto, r.lo, r.hi, r.counter), (6, 80, 443, 9));
    let r = p(SgProtocol::Udp {
        from_port: 53,
        to_port: 53,
    });
    assert_eq!((r.proto, r.lo, r.hi), (17, 53, 53));
    let r = p(SgProtocol::All);
    assert_eq!((r.proto, r.lo, r.hi), (0, 0, 0xffff));
    let r = p(SgProtocol::Other(47));
    assert_eq!((r.proto, r.lo, r.hi), (47, 0, 0xffff));
    let icmp = |t, c| {
        p(SgProtocol::Icmp {
            icmp_type: t,
            code: c,
        })
    };
    assert_eq!((icmp(None, None).lo, icmp(None, None).hi), (0, 0xffff));
    assert_eq!(
        (icmp(None, Some(4)).lo, icmp(None, Some(4)).hi),
        (0, 0xffff)
    );
    assert_eq!(
        (icmp(Some(3), None).lo, icmp(Some(3), None).hi),
        (0x300, 0x3ff)
    );
    assert_eq!(
        (icmp(Some(3), Some(4)).lo, icmp(Some(3), Some(4)).hi),
        (0x304, 0x304)
    );
    let r = compile_rule(
        "sg",
        &rule(1, SgProtocol::All, SgPeer::Cidr(net("10.2.3.0/24"))),
        1,
    )
    .unwrap();
    assert_eq!(
        (r.peer_addr, r.peer_mask, r.flags),
        ([10, 2, 3, 0], [255, 255, 255, 0], 0)
    );
    let g = compile_rule(
        "sg",
        &rule(1, SgProtocol::All, SgPeer::Group { group_dp_id: 7 }),
        1,
    )
    .unwrap();
    assert_eq!((g.flags, g.group), (SG_RULE_PEER_GROUP, 7));
}

#[test]
fn bad_rules_are_refused_by_name() {
    let e = compile_rule(
        "sg-1",
        &rule(
            5,
            SgProtocol::Tcp {
                from_port: 9,
                to_port: 8,
            },
            ALL_OUT,
        ),
        1,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule sgr-5 of sg-1: port range 9-8 is reversed"
    );
    let e = compile_rule("sg-1", &rule(5, SgProtocol::Other(0), ALL_OUT), 1).unwrap_err();
    assert!(matches!(e, SgCompileError::BadProtocol { .. }));
}

#[test]
fn over_limit_input_is_refused_whole() {
    let vpcs = [vpc(10, 1, "10.1.0.0/16")];
    let mut groups: Vec<_> = (1..=6).map(|g| default_group(g, 10, g * 100)).collect();
    let six = [eni(1, 10, [10, 1, 0, 5], &[1, 2, 3, 4, 5, 6])];
    let e = compile(&vpcs, &groups, &six, &BTreeMap::new()).unwrap_err();
    assert_eq!(
        e,
        SgCompileError::TooManyGroups {
            eni: "eni-1".into(),
            n: 6
        }
    );
    let none = [eni(1, 10, [10, 1, 0, 5], &[])];
    let e = compile(&vpcs, &groups, &none, &BTreeMap::new()).unwrap_err();
    assert!(matches!(e, SgCompileError::NoGroup { .. }));
    let unknown = [eni(1, 10, [10, 1, 0, 5], &[99])];
    let e = compile(&vpcs, &groups, &unknown, &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().contains("unknown security group 99"), "{e}");
    let e = compile(
        &[vpc(10, 42, "10.1.0.0/16")],
        &groups,
        &[],
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        SgCompileError::UnknownDefaultGroup {
            group_dp_id: 42,
            ..
        }
    ));
    let twice = [
        eni(1, 10, [10, 1, 0, 5], &[1]),
        eni(2, 10, [10, 1, 0, 5], &[2]),
    ];
    let e = compile(&vpcs, &groups, &twice, &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().contains("claimed by eni-1 and eni-2"), "{e}");
    // Sixty rules a direction fit; sixty-one do not.
    let many = |n: u32| {
        (0..n)
            .map(|i| rule(1000 + i, SgProtocol::All, ALL_OUT))
            .collect()
    };
    groups[0].egress = many(60);
    let five = [eni(1, 10, [10, 1, 0, 5], &[1, 2, 3, 4, 5])];
    compile(&vpcs, &groups, &five, &BTreeMap::new()).unwrap();
    groups[0].egress = many(61);
    let e = compile(&vpcs, &groups, &five, &BTreeMap::new()).unwrap_err();
    assert!(matches!(
        e,
        SgCompileError::TooManyRules {
            n: 61,
            dir: Direction::Egress,
            ..
        }
    ));
}

#[test]
fn the_largest_policy_fills_the_bound() {
    let vpcs = [vpc(10, 1, "10.1.0.0/16")];
    let groups: Vec<_> = (1..=5)
        .map(|g| {
            let rules = (0..60)
                .map(|i| rule(g * 1000 + i, SgProtocol::All, ALL_OUT))
                .collect();
            group(g, 10, rules, vec![])
        })
        .collect();
    let ifs = [eni(1, 10, [10, 1, 0, 5], &[1, 2, 3, 4, 5])];
    let c = compile(&vpcs, &groups, &ifs, &BTreeMap::new()).unwrap();
    let a = c.addrs[&net("10.1.0.5/32")];
    assert_eq!(
        c.policies[a.ingress_policy as usize - 1].len(),
        MAX_POLICY_RULES
    );
    assert_eq!(c.counters.len(), 300);
}

#[test]
fn counter_slots_survive_recompilation() {
    let vpcs = [vpc(10, 1, "10.1.0.0/16")];
    let mut groups = vec![default_group(1, 10, 100)];
    let first = compile(&vpcs, &groups, &[], &BTreeMap::new()).unwrap();
    assert_eq!(first.counters, BTreeMap::from([(100, 1), (101, 2)]));
    // Rule 100 goes, 102 comes: 101 keeps slot 2, 102 takes the freed 1.
    groups[0].ingress = vec![rule(102, SgProtocol::All, ALL_OUT)];
    let second = compile(&vpcs, &groups, &[], &first.counters).unwrap();
    assert_eq!(second.counters, BTreeMap::from([(101, 2), (102, 1)]));
}

// The randomized check: compiled maps, evaluated as the kernel does,
// against the naive scan of the views.

fn random_protocol(rng: &mut StdRng) -> SgProtocol {
    let port = |rng: &mut StdRng| [0, 1, 22, 80, 443, 1024, 65535][rng.random_range(0..7)];
    match rng.random_range(0..6) {
        0 => SgProtocol::All,
        1 | 2 => {
            let (a, b) = (port(rng), port(rng));
            let (from_port, to_port) = (a.min(b), a.max(b));
            if rng.random_bool(0.5) {
                SgProtocol::Tcp { from_port, to_port }
            } else {
                SgProtocol::Udp { from_port, to_port }
            }
        }
        3 | 4 => SgProtocol::Icmp {
            icmp_type: [None, Some(0), Some(3), Some(8)][rng.random_range(0..4)],
            code: [None, Some(0), Some(4)][rng.random_range(0..3)],
        },
        _ => SgProtocol::Other([47, 50, 132][rng.random_range(0..3)]),
    }
}

fn random_addr(rng: &mut StdRng) -> Ipv4Addr {
    // Two VPCs' blocks, a little outside, few hosts so they collide.
    let b = [1u8, 2, 9][rng.random_range(0..3)];
    Ipv4Addr::new(10, b, rng.random_range(0..2), rng.random_range(1..6))
}

fn random_peer(rng: &mut StdRng, n_groups: u32) -> SgPeer {
    if rng.random_bool(0.4) {
        return SgPeer::Group {
            group_dp_id: rng.random_range(1..=n_groups + 1),
        };
    }
    let len = [0u8, 8, 16, 24, 31, 32][rng.random_range(0..6)];
    SgPeer::Cidr(Ipv4Net::new(random_addr(rng), len).unwrap().trunc())
}

fn random_region(rng: &mut StdRng) -> (Vec<VpcGroups>, Vec<SecurityGroupView>, Vec<InterfaceView>) {
    let n_groups = rng.random_range(2..8u32);
    let mut next_rule = 1;
    let mut rules = |rng: &mut StdRng| -> Vec<SgRuleView> {
        (0..rng.random_range(0..6))
            .map(|_| {
                next_rule += 1;
                rule(next_rule, random_protocol(rng), random_peer(rng, n_groups))
            })
            .collect()
    };
    let groups: Vec<_> = (1..=n_groups)
        .map(|g| group(g, 1 + g % 2, rules(rng), rules(rng)))
        .collect();
    let vpcs = vec![vpc(1, 2, "10.1.0.0/16"), vpc(2, 1, "10.2.0.0/16")];
    let mut ifs = Vec::new();
    let mut taken = BTreeSet::new();
    for n in 0..rng.random_range(0..8) {
        let a = random_addr(rng);
        if !taken.insert(a) {
            continue;
        }
        let k = rng.random_range(1..=MAX_SG_GROUPS.min(n_groups as usize));
        let gs: Vec<u32> = (0..k).map(|_| rng.random_range(1..=n_groups)).collect();
        ifs.push(eni(n, 1 + u32::from(a.octets()[1] == 2), a.octets(), &gs));
    }
    (vpcs, groups, ifs)
}

fn random_probe(rng: &mut StdRng) -> Probe {
    let proto = [1u8, 6, 17, 47, 50][rng.random_range(0..5)];
    let fragment = rng.random_bool(0.1);
    let icmp = (proto == 1).then(|| {
        (
            [0u8, 3, 8, 11][rng.random_range(0..4)],
            [0u8, 1, 4][rng.random_range(0..3)],
        )
    });
    let dport = match proto {
        6 | 17 => Some([0, 1, 21, 22, 23, 80, 443, 444, 1024, 65535][rng.random_range(0..10)]),
        1 => icmp.map(|(t, c)| (t as u16) << 8 | c as u16),
        _ => Some(0),
    };
    Probe {
        proto,
        src: random_addr(rng),
        dst: random_addr(rng),
        dport: if fragment { None } else { dport },
        icmp,
    }
}

#[test]
fn compiled_policies_agree_with_a_linear_scan_of_the_views() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut seen = BTreeMap::new();
    for _ in 0..300 {
        let (vpcs, groups, ifs) = random_region(&mut rng);
        let c = compile(&vpcs, &groups, &ifs, &BTreeMap::new()).unwrap();
        let region = Region {
            vpcs: &vpcs,
            groups: &groups,
            interfaces: &ifs,
        };
        for _ in 0..200 {
            let p = random_probe(&mut rng);
            for intra in [true, false] {
                let want = sg_eval::reference(&region, &p, intra);
                assert_eq!(
                    sg_eval::compiled(&c, &p, intra),
                    want,
                    "{p:?} intra {intra}"
                );
                *seen.entry(format!("{want:?}")).or_insert(0) += 1;
            }
        }
    }
    // The random worlds exercise every verdict.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n > 1000), "{seen:?}");
}

#[test]
fn the_reference_reads_groups_of_interfaces_then_default_groups() {
    let groups = [
        default_group(1, 10, 100),
        group(
            2,
            10,
            vec![],
            vec![rule(
                300,
                SgProtocol::Tcp {
                    from_port: 22,
                    to_port: 22,
                },
                ALL_OUT,
            )],
        ),
    ];
    let vpcs = [vpc(10, 1, "10.1.0.0/16")];
    let ifs = [eni(1, 10, [10, 1, 0, 5], &[2])];
    let region = Region {
        vpcs: &vpcs,
        groups: &groups,
        interfaces: &ifs,
    };
    let ssh = |src: [u8; 4], dst: [u8; 4], port| Probe {
        proto: 6,
        src: src.into(),
        dst: dst.into(),
        dport: Some(port),
        icmp: None,
    };
    // The interface's group allows SSH out only; the other default host
    // takes anything from members of the default group only.
    let c = compile(&vpcs, &groups, &ifs, &BTreeMap::new()).unwrap();
    for (p, want) in [
        (ssh([10, 1, 0, 5], [10, 1, 0, 6], 22), Verdict::DenyIngress),
        (ssh([10, 1, 0, 5], [10, 1, 0, 6], 23), Verdict::DenyEgress),
        (ssh([10, 1, 0, 7], [10, 1, 0, 6], 80), Verdict::Allow),
        (ssh([10, 1, 0, 6], [10, 1, 0, 5], 22), Verdict::DenyIngress),
        (ssh([10, 1, 0, 6], [10, 9, 0, 5], 22), Verdict::Allow),
    ] {
        assert_eq!(sg_eval::reference(&region, &p, true), want, "{p:?}");
        assert_eq!(sg_eval::compiled(&c, &p, true), want, "{p:?}");
    }
}
