//! Valid examples for each target's corpus: real sealed datagrams, frames
//! the gateway writes, an API session that builds a peered pair of VPCs,
//! the CLI's documented shorthand. `cargo run --example seeds` writes them
//! to `corpus/TARGET/seed-NAME`.

use peering_userspace::gateway::frame::{write_frame, write_outer, Outer, OUTER_LEN};
use peering_userspace::tunnel::{wire::HEADER_LEN, INNER_MTU};

use crate::tunnel::{sealed, sender, SealInput};

/// (target, seed name, bytes).
pub type Seed = (&'static str, String, Vec<u8>);

pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    tunnel(&mut seeds);
    frames(&mut seeds);
    gateway_core(&mut seeds);
    api(&mut seeds);
    shorthand(&mut seeds);
    seeds
}

/// A UDP-over-IPv4 packet of `len` bytes (a well-formed inner packet).
fn ipv4_packet(len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| i as u8).collect();
    if len >= 28 {
        p[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 5, 10, 9, 0, 5,
        ]);
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }
    p
}

fn tunnel(seeds: &mut Vec<Seed>) {
    for (later, pad) in [(false, 0u16), (true, 0), (false, 64)] {
        let mut tx = sender(later, pad);
        for len in [0usize, 28, 84, 1400, INNER_MTU] {
            let d = sealed(&mut tx, 7, &ipv4_packet(len));
            let name = format!("e{}-pad{pad}-{len}", 1 + u8::from(later));
            seeds.push(("tunnel_open", name.clone(), d.clone()));
            if len == 84 {
                seeds.push(("tunnel_wire", name.clone(), d.clone()));
                let mut bad = d.clone();
                bad[0] = 2;
                seeds.push(("tunnel_open", format!("{name}-version2"), bad));
                let mut erased = d.clone();
                erased[4..8].copy_from_slice(&9u32.to_be_bytes());
                seeds.push(("tunnel_open", format!("{name}-epoch9"), erased));
                seeds.push((
                    "tunnel_open",
                    format!("{name}-cut"),
                    d[..HEADER_LEN + 5].to_vec(),
                ));
            }
        }
    }
    let inner_header = [0, 0, 0, 7, 0, 4, 0, 0, 1, 2, 3, 4, 0, 0];
    seeds.push(("tunnel_wire", "inner-header".into(), inner_header.to_vec()));
    for (i, (later, pad, len, how)) in [
        (false, 0, 84, 0),
        (true, 16, 28, 1),
        (false, 0, 1400, 2),
        (true, 0, 0, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let inner = ipv4_packet(len);
        let input = SealInput {
            later,
            pad_multiple: pad,
            pcx: 7,
            position: 3 + 17 * i as u16,
            mask: 0x10,
            how,
            inner: &inner,
        };
        seeds.push(("tunnel_seal", format!("seal-{i}-{len}"), input.encode()));
    }
}

fn frames(seeds: &mut Vec<Seed>) {
    let outer = Outer {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: "198.18.0.1:51900".parse().expect("addr"),
        dst: "198.18.1.2:51900".parse().expect("addr"),
    };
    for payload in [44usize, 128, 1544] {
        let mut buf = vec![0u8; OUTER_LEN + payload];
        let n = write_outer(&mut buf, &outer, 1, payload);
        seeds.push((
            "gateway_frame",
            format!("outer-{payload}"),
            buf[..n].to_vec(),
        ));
    }
    for vlan in [0u16, 100] {
        let p = ipv4_packet(60);
        let mut buf = vec![0u8; 100];
        let n = write_frame(
            &mut buf,
            [2, 0, 0, 0, 0xa, 5],
            [2, 0, 0, 0, 0xa, 1],
            vlan,
            &p,
        );
        seeds.push((
            "gateway_frame",
            format!("vpc-vlan{vlan}"),
            buf[..n].to_vec(),
        ));
    }
}

/// A session in the API target's line format (see `crate::api`).
const SESSION: &str = r#"0 us-east-1 CreateVpc {"CidrBlock":"10.1.0.0/16"}
1 us-west-2 CreateVpc {"CidrBlock":"10.2.0.0/16"}
0 us-east-1 AssociateVpcCidrBlock {"VpcId":"vpc-00000000000000001","CidrBlock":"10.3.0.0/16"}
0 us-east-1 CreateSubnet {"VpcId":"vpc-00000000000000001","CidrBlock":"10.1.0.0/24","Interface":"vpc-a","Vlan":100}
0 us-east-1 CreateRouteTable {"VpcId":"vpc-00000000000000001"}
0 us-east-1 CreateVpcPeeringConnection {"VpcId":"vpc-00000000000000001","PeerVpcId":"vpc-00000000000000003","PeerOwnerId":"222222222222","PeerRegion":"us-west-2"}
1 us-west-2 AcceptVpcPeeringConnection {"VpcPeeringConnectionId":"pcx-00000000000000007"}
0 us-east-1 CreateRoute {"RouteTableId":"rtb-00000000000000002","DestinationCidrBlock":"10.2.0.0/16","VpcPeeringConnectionId":"pcx-00000000000000007"}
0 us-east-1 DescribeVpcs {"Filters":[{"Name":"cidr-block","Values":["10.1.0.0/16"]}]}
0 us-east-1 DescribeSubnets {"Filters":[{"Name":"vpc-id","Values":["vpc-00000000000000001"]}]}
0 us-east-1 DescribeRouteTables {"Filters":[{"Name":"route.state","Values":["active"]}]}
1 us-west-2 DescribeVpcPeeringConnections {"Filters":[{"Name":"status-code","Values":["active"]}]}
0 us-east-1 ModifyVpcPeeringConnectionOptions {"VpcPeeringConnectionId":"pcx-00000000000000007","RequesterPeeringConnectionOptions":{"AllowDnsResolutionFromRemoteVpc":true}}
0 us-east-1 DeleteRoute {"RouteTableId":"rtb-00000000000000002","DestinationCidrBlock":"10.2.0.0/16"}
0 - DescribeRegions 
0 - GetCallerIdentity {}
"#;

fn api(seeds: &mut Vec<Seed>) {
    seeds.push(("api_request", "session".into(), SESSION.as_bytes().to_vec()));
    let refusals = "0 us-east-1 CreateVpc {\"CidrBlock\":5}\n\
                    0 us-east-1 CreateVpc [1]\n\
                    0 us-east-1 CreateVpc {\"CidrBlock\":\"10.0.0.0/8\",\"Bogus\":1}\n\
                    0 mars-1 CreateVpc {\"CidrBlock\":\"10.0.0.0/16\"}\n\
                    0 - CreateVpc {\"CidrBlock\":\"10.0.0.0/16\"}\n\
                    0 us-east-1 DescribeVpcs {\"Filters\":[{\"Name\":\"bogus\",\"Values\":[]}]}\n\
                    0 us-east-1 DeleteVpc {\"VpcId\":\"vpc-1\"}\n\
                    0 us-east-1 NoSuchAction {}\n";
    seeds.push((
        "api_request",
        "refusals".into(),
        refusals.as_bytes().to_vec(),
    ));
}

fn shorthand(seeds: &mut Vec<Seed>) {
    for (i, arg) in [
        "Name=status-code,Values=active,pending-acceptance",
        "Values=a,Name=vpc-id",
        "Name=vpc-id,Values=[a,b]",
        r#"[{"Name":"status-code","Values":["active"]}]"#,
        r#"{"Name":"status-code","Values":["active"]}"#,
        "AllowDnsResolutionFromRemoteVpc=true",
        r#"{"AllowDnsResolutionFromRemoteVpc":false}"#,
    ]
    .into_iter()
    .enumerate()
    {
        seeds.push(("cli_shorthand", format!("arg-{i}"), arg.as_bytes().to_vec()));
    }
}

/// Inner packets the east gateway seals (path byte 1): to the resolved
/// host, to an unresolved one, outside the peer; and a datagram sealed
/// under another key, offered from the underlay (path byte 0).
fn gateway_core(seeds: &mut Vec<Seed>) {
    let cases = [
        ("to-host", [10, 3, 0, 10]),
        ("to-unresolved", [10, 3, 0, 11]),
        ("outside-peer", [10, 4, 0, 10]),
    ];
    for (name, dst) in cases {
        let mut seed = vec![1u8];
        seed.extend(crate::gateway::packet([10, 1, 1, 10], dst, 32));
        seeds.push(("gateway_core", name.to_string(), seed));
    }
    let mut forged = vec![0u8];
    forged.extend(crate::gateway::sealed_example());
    seeds.push(("gateway_core", "other-key".to_string(), forged));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{target, TARGETS};
    use std::path::Path;

    #[test]
    fn every_seed_passes_its_target() {
        for (name, seed, bytes) in all() {
            let check = target(name).unwrap_or_else(|| panic!("no target {name}"));
            check(&bytes);
            assert!(!seed.is_empty());
        }
    }

    /// Everything kept in the repository, crash reproducers included once
    /// fixed, still passes.
    #[test]
    fn committed_corpus_and_artifacts_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, check) in TARGETS {
            for dir in ["corpus", "artifacts"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("corpus entry").path();
                    check(&std::fs::read(&path).expect("read corpus file"));
                }
            }
        }
    }

    #[test]
    fn sealed_seeds_open_and_the_session_succeeds() {
        let mut out = vec![0u8; 2048];
        let intact = all()
            .into_iter()
            .filter(|(t, n, _)| *t == "tunnel_open" && !n.ends_with(['2', '9', 't']))
            .inspect(|(_, n, d)| {
                let opened = crate::tunnel::receiver().open(d, &mut out);
                assert!(opened.is_ok(), "{n}: {opened:?}");
            })
            .count();
        assert_eq!(intact, 15);
        assert_eq!(
            crate::api::successes(SESSION.as_bytes()),
            SESSION.lines().count()
        );
    }
}
