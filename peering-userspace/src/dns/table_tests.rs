use super::*;
use crate::control::view::{PeeringView, RegionView, VpcView};
use crate::dns::name::private_name;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn vpc(dp_id: u32, cidrs: &[&str]) -> VpcView {
    VpcView {
        vpc_id: format!("vpc-{dp_id:017x}"),
        dp_id,
        cidrs: cidrs.iter().map(|c| net(c)).collect(),
        default_group_dp_id: 0,
    }
}

fn peering(dp_id: u32, local: u32, region: &str, remote: &[&str], allows: bool) -> PeeringView {
    PeeringView {
        pcx_id: format!("pcx-{dp_id:017x}"),
        dp_id,
        local_vpc_dp_id: local,
        remote_region: region.into(),
        remote_vpc_cidrs: remote.iter().map(|c| net(c)).collect(),
        local_vpc_cidrs: vec![],
        remote_allows_dns: allows,
    }
}

/// us-east-1: VPC 1 (10.1/16 + 10.11/16), VPC 2 (10.2/16), VPC 3
/// (10.3/16, unpeered). 1–2 peered in region, 2's owner allowing DNS
/// (so 1 sees 2), 1's not. 1 peered with 10.5/16 in us-west-2 (allowing),
/// 2 with 10.6/16 in eu-west-1 (not allowing).
fn view() -> RegionView {
    let mut v = RegionView {
        revision: 1,
        region: "us-east-1".into(),
        security_groups: vec![],
        interfaces: vec![],
        vpcs: vec![
            vpc(1, &["10.1.0.0/16", "10.11.0.0/16"]),
            vpc(2, &["10.2.0.0/16"]),
            vpc(3, &["10.3.0.0/16"]),
        ],
        subnets: vec![],
        routes: vec![],
        peerings: vec![
            peering(10, 1, "us-east-1", &["10.2.0.0/16"], true),
            peering(10, 2, "us-east-1", &["10.1.0.0/16", "10.11.0.0/16"], false),
            peering(11, 1, "us-west-2", &["10.5.0.0/16"], true),
            peering(12, 2, "eu-west-1", &["10.6.0.0/16"], false),
        ],
    };
    v.sort();
    v
}

fn labels(name: &str) -> Vec<&[u8]> {
    name.trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::as_bytes)
        .collect()
}

fn ask<'t>(t: &'t DnsTable, src: &str, dst: &str, name: &str, q: QType) -> Decision<'t> {
    t.decide(ip(src), ip(dst), &labels(name), q)
}

#[test]
fn resolver_addresses_are_base_plus_two_of_the_primary_block() {
    let t = DnsTable::new(&view());
    assert_eq!(
        t.resolver_addrs(),
        vec![ip("10.1.0.2"), ip("10.2.0.2"), ip("10.3.0.2")]
    );
    assert_eq!(resolver_addr(net("172.31.0.0/16")), ip("172.31.0.2"));
    assert_eq!(resolver_addr(net("10.0.16.0/20")), ip("10.0.16.2"));
}

#[test]
fn decisions() {
    use Decision::*;
    let t = DnsTable::new(&view());
    let e = "us-east-1";
    let cases: &[(&str, &str, &str, QType, Decision)] = &[
        // Own VPC, both blocks, any case.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A,
            A(ip("10.1.0.10")),
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "IP-10-11-3-4.EC2.INTERNAL.",
            QType::A,
            A(ip("10.11.3.4")),
        ),
        (
            "10.11.0.9",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A,
            A(ip("10.1.0.10")),
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::Any,
            A(ip("10.1.0.10")),
        ),
        // The name exists, the type does not.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::Other,
            NoData,
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::Ptr,
            NoData,
        ),
        // Own address, wrong zone: us-east-1 names live under ec2.internal.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.us-east-1.compute.internal",
            QType::A,
            NxDomain,
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.us-west-2.compute.internal",
            QType::A,
            NxDomain,
        ),
        // Peer in region whose owner allowed: visible from 1.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-2-0-10.ec2.internal",
            QType::A,
            A(ip("10.2.0.10")),
        ),
        // ...but 1's owner did not allow: 2 does not see 1.
        (
            "10.2.0.10",
            "10.2.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A,
            NxDomain,
        ),
        (
            "10.2.0.10",
            "10.2.0.2",
            "ip-10-11-0-10.ec2.internal",
            QType::A,
            NxDomain,
        ),
        // Unpeered VPC: never, either way.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-3-0-10.ec2.internal",
            QType::A,
            NxDomain,
        ),
        (
            "10.3.0.10",
            "10.3.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A,
            NxDomain,
        ),
        // Cross region, allowed: the remote region's zone only.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-5-1-1.us-west-2.compute.internal",
            QType::A,
            A(ip("10.5.1.1")),
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-5-1-1.ec2.internal",
            QType::A,
            NxDomain,
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-5-1-1.eu-west-1.compute.internal",
            QType::A,
            NxDomain,
        ),
        // Cross region, not allowed.
        (
            "10.2.0.10",
            "10.2.0.2",
            "ip-10-6-1-1.eu-west-1.compute.internal",
            QType::A,
            NxDomain,
        ),
        // Addresses in no VPC.
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-192-168-1-1.ec2.internal",
            QType::A,
            NxDomain,
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "foo.ec2.internal",
            QType::A,
            NxDomain,
        ),
        ("10.1.0.10", "10.1.0.2", "ec2.internal", QType::A, NxDomain),
        // Not ours: refused, whoever asks.
        ("10.1.0.10", "10.1.0.2", "example.com", QType::A, Refused),
        (
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal.example.com",
            QType::A,
            Refused,
        ),
        // The querier asks another VPC's resolver, or is in no VPC here.
        (
            "10.1.0.10",
            "10.2.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A,
            Refused,
        ),
        (
            "10.5.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A,
            Refused,
        ),
        (
            "10.9.0.10",
            "10.9.0.2",
            "ip-10-9-0-10.ec2.internal",
            QType::A,
            Refused,
        ),
        // Reverse names under the same rules.
        (
            "10.1.0.10",
            "10.1.0.2",
            "10.0.1.10.in-addr.arpa",
            QType::Ptr,
            Ptr {
                ip: ip("10.1.0.10"),
                region: e,
            },
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "1.1.5.10.in-addr.arpa",
            QType::Ptr,
            Ptr {
                ip: ip("10.5.1.1"),
                region: "us-west-2",
            },
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "10.0.1.10.in-addr.arpa",
            QType::A,
            NoData,
        ),
        (
            "10.2.0.10",
            "10.2.0.2",
            "10.0.1.10.in-addr.arpa",
            QType::Ptr,
            NxDomain,
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "10.0.3.10.in-addr.arpa",
            QType::Ptr,
            NxDomain,
        ),
        (
            "10.1.0.10",
            "10.1.0.2",
            "8.8.8.8.in-addr.arpa",
            QType::Ptr,
            Refused,
        ),
    ];
    for (src, dst, name, q, want) in cases {
        assert_eq!(
            ask(&t, src, dst, name, *q),
            *want,
            "{src} -> {dst}: {name} {q:?}"
        );
    }
}

#[test]
fn an_empty_view_refuses_everything() {
    let t = DnsTable::new(&RegionView {
        revision: 0,
        region: "us-east-1".into(),
        security_groups: vec![],
        interfaces: vec![],
        vpcs: vec![],
        subnets: vec![],
        routes: vec![],
        peerings: vec![],
    });
    assert!(t.resolver_addrs().is_empty());
    assert_eq!(
        ask(
            &t,
            "10.1.0.10",
            "10.1.0.2",
            "ip-10-1-0-10.ec2.internal",
            QType::A
        ),
        Decision::Refused
    );
}

/// The rule, read straight off the view: `ip` named in `region` resolves
/// for `src` when both lie in one VPC of this region and the zone is this
/// region's, or `ip` lies in the remote blocks of a peering of `src`'s VPC
/// whose remote side allows it and the zone is the remote region's.
fn oracle(v: &RegionView, src: Ipv4Addr, ip: Ipv4Addr, region: &str) -> bool {
    let Some(q) = v
        .vpcs
        .iter()
        .find(|x| x.cidrs.iter().any(|c| c.contains(&src)))
    else {
        return false;
    };
    let own = region == v.region && q.cidrs.iter().any(|c| c.contains(&ip));
    own || v.peerings.iter().any(|p| {
        p.local_vpc_dp_id == q.dp_id
            && p.remote_allows_dns
            && p.remote_region == region
            && p.remote_vpc_cidrs.iter().any(|c| c.contains(&ip))
    })
}

#[test]
fn random_questions_match_the_rule_read_off_the_view() {
    const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
    let addr =
        |rng: &mut StdRng| Ipv4Addr::new(10, rng.random_range(0..8), 0, rng.random_range(0..4));
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let here = REGIONS[rng.random_range(0..3)];
        let mut v = RegionView {
            revision: 1,
            region: here.into(),
            security_groups: vec![],
            interfaces: vec![],
            vpcs: (0..4u32)
                .map(|i| VpcView {
                    vpc_id: format!("vpc-{i}"),
                    dp_id: i + 1,
                    cidrs: vec![Ipv4Net::new(Ipv4Addr::new(10, i as u8, 0, 0), 16).unwrap()],
                    default_group_dp_id: 0,
                })
                .collect(),
            subnets: vec![],
            routes: vec![],
            peerings: vec![],
        };
        for n in 0..rng.random_range(0..8u32) {
            let local = rng.random_range(1..=4);
            let remote = rng.random_range(0..8u8);
            let region = REGIONS[rng.random_range(0..3)];
            v.peerings.push(PeeringView {
                pcx_id: format!("pcx-{n}"),
                dp_id: n,
                local_vpc_dp_id: local,
                remote_region: region.into(),
                remote_vpc_cidrs: vec![Ipv4Net::new(Ipv4Addr::new(10, remote, 0, 0), 16).unwrap()],
                local_vpc_cidrs: vec![],
                remote_allows_dns: rng.random_bool(0.5),
            });
        }
        v.sort();
        let t = DnsTable::new(&v);
        for _ in 0..200 {
            let src = addr(&mut rng);
            let target = addr(&mut rng);
            let region = REGIONS[rng.random_range(0..3)];
            let dst = Ipv4Addr::new(10, src.octets()[1], 0, 2);
            let name = private_name(target, region);
            let got = t.decide(src, dst, &labels(&name), QType::A);
            let want = if src.octets()[1] >= 4 {
                Decision::Refused
            } else if oracle(&v, src, target, region) {
                Decision::A(target)
            } else {
                Decision::NxDomain
            };
            assert_eq!(got, want, "seed {seed}: {src} asks {name}");
        }
    }
}
