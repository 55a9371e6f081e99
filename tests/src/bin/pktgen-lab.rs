//! `pktgen-lab`: `peering-pktgen` figures on two paths built here, 64-byte
//! frames (or `--size`), 1 and 10,000 flows, one generator CPU (CPU 0):
//! - `direct`: two namespaces over a veth pair (198.18.0.1 → 198.18.0.2),
//!   the sink on the far end;
//! - `gateway`: the intra-region lab (host A → gateway → host B), the
//!   gateway's `peering_vpc` forwarding in XDP, the sink on host B.
//!
//! Usage: `pktgen-lab [--secs S] [--size 64|1500|imix] [--json]` (root).
//! Namespaces are removed on exit, Ctrl-C included.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result};
use peering_tests::lab::{eth0, udp_plan, veth, IntraRegionLab, Netns};
use peering_userspace::pktgen::{Report, Run, Sizes, Stop};

struct Path<'a> {
    name: &'static str,
    from: &'a Netns,
    to: &'a Netns,
    next_hop_mac: String,
    ips: (Ipv4Addr, Ipv4Addr),
}

fn measure(p: &Path, sizes: &Sizes, flows: u32, secs: f64) -> Result<Report> {
    let plan = udp_plan(p.from, &p.next_hop_mac, p.ips, sizes.clone(), flows)?;
    Run {
        out: eth0(p.from),
        sink: Some(eth0(p.to)),
        plan,
        stop: Stop::After(Duration::from_secs_f64(secs)),
        cpus: vec![0],
        batch: 64,
    }
    .execute()
    .with_context(|| format!("{} path", p.name))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let secs: f64 = opt("--secs").map_or(Ok(2.0), |s| s.parse())?;
    let sizes: Sizes = opt("--size").map_or(Ok(Sizes::Fixed(64)), |s| s.parse())?;
    let json = args.iter().any(|a| a == "--json");

    let (a, b) = (Netns::new("pla"), Netns::new("plb"));
    veth(&a, "eth0", &b, "eth0");
    let lab = IntraRegionLab::new(false);
    lab.peer_routes();
    let paths = [
        Path {
            name: "direct",
            from: &a,
            to: &b,
            next_hop_mac: b.mac("eth0"),
            ips: (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)),
        },
        Path {
            name: "gateway",
            from: &lab.a,
            to: &lab.b,
            next_hop_mac: lab.gw.mac("vpc-a"),
            ips: (Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10)),
        },
    ];
    let mut rows = Vec::new();
    for p in &paths {
        for flows in [1, 10_000] {
            rows.push((p.name, measure(p, &sizes, flows, secs)?));
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(path, r)| serde_json::json!({ "path": path, "report": r }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "path", "size", "flows", "off Mpps", "rcv Mpps", "deliv %", "CPU ns/pkt", "gen ns/pkt"
    );
    for (path, r) in &rows {
        println!(
            "{:<8} {:>6} {:>6} {:>9.3} {:>9.3} {:>9.2} {:>11.1} {:>11.1}",
            path,
            r.size,
            r.flows,
            r.offered_mpps,
            r.received_mpps.unwrap_or(0.0),
            r.delivery.unwrap_or(0.0) * 100.0,
            r.cpu_ns_per_packet.unwrap_or(0.0),
            r.gen_ns_per_packet.unwrap_or(0.0)
        );
    }
    Ok(())
}
