//! `peering-pktgen` end to end in network namespaces: the live-frames
//! generator in one namespace, the sink in another, over a veth pair and
//! through a gateway's XDP path. What is checked is counting, never speed:
//! everything offered was built by the generator, the sink saw most of it
//! and never more. The tables go to stderr (`-- --nocapture` shows them).

use std::{net::Ipv4Addr, time::Duration};

use peering_tests::lab::{eth0, udp_plan, veth, IntraRegionLab, Netns};
use peering_userspace::pktgen::{Plan, Report, Run, Sizes, Stop};

/// Two namespaces over a veth pair, 198.18.0.1/30 and .2 on `eth0`.
fn pair() -> (Netns, Netns) {
    let (a, b) = (Netns::new("pga"), Netns::new("pgb"));
    veth(&a, "eth0", &b, "eth0");
    a.exec_ok(&["ip", "addr", "add", "198.18.0.1/30", "dev", "eth0"]);
    b.exec_ok(&["ip", "addr", "add", "198.18.0.2/30", "dev", "eth0"]);
    (a, b)
}

fn plan(
    src: &Netns,
    next_hop_mac: &str,
    ips: (Ipv4Addr, Ipv4Addr),
    sizes: Sizes,
    flows: u32,
) -> Plan {
    udp_plan(src, next_hop_mac, ips, sizes, flows).unwrap()
}

/// Received within (half of offered, offered]: a sink that counted
/// nothing, or counted frames nobody sent, fails.
fn check(r: &Report) {
    eprintln!("{}", r.table());
    let got = r.received_packets.expect("a sink ran");
    assert!(r.offered_packets > 0, "nothing offered");
    assert_eq!(r.failed, 0);
    assert!(got <= r.offered_packets, "received more than offered");
    assert!(
        got * 2 > r.offered_packets,
        "received {got} of {}",
        r.offered_packets
    );
    assert!(r.received_bytes.unwrap() <= r.offered_bytes);
}

const DIRECT: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));

#[test]
fn a_counted_run_over_a_veth_pair_offers_exactly_its_count() {
    let (a, b) = pair();
    let run = Run {
        out: eth0(&a),
        sink: Some(eth0(&b)),
        plan: plan(&a, &b.mac("eth0"), DIRECT, Sizes::Fixed(64), 1),
        stop: Stop::Frames(300_000),
        cpus: vec![0],
        batch: 64,
    };
    let r = run.execute().unwrap();
    assert_eq!(r.offered_packets, 300_000);
    assert_eq!(r.offered_bytes, 300_000 * 64);
    check(&r);
}

#[test]
fn a_timed_imix_run_over_ten_thousand_flows_ends_on_time() {
    let (a, b) = pair();
    let run = Run {
        out: eth0(&a),
        sink: Some(eth0(&b)),
        plan: plan(&a, &b.mac("eth0"), DIRECT, Sizes::Imix, 10_000),
        stop: Stop::After(Duration::from_millis(500)),
        cpus: vec![0],
        batch: 64,
    };
    let r = run.execute().unwrap();
    // A bound on stopping, not on speed: a missed signal would run on
    // for u32::MAX frames.
    assert!(r.seconds < 10.0, "stopped after {} s", r.seconds);
    check(&r);
}

#[test]
fn through_a_gateway_the_sink_counts_what_xdp_forwarded() {
    // The XDP path: the sink is an XDP program, and what the TC path hands
    // over with bpf_redirect_peer enters the host past XDP.
    let lab = IntraRegionLab::xdp(false);
    lab.peer_routes();
    let hosts = (Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10));
    let run = Run {
        out: eth0(&lab.a),
        sink: Some(eth0(&lab.b)),
        plan: plan(&lab.a, &lab.gw.mac("vpc-a"), hosts, Sizes::Fixed(64), 1000),
        stop: Stop::Frames(200_000),
        cpus: vec![0],
        batch: 64,
    };
    let r = run.execute().unwrap();
    check(&r);
    let fwd = lab.agent().stat("fwd_local");
    assert!(
        fwd >= r.received_packets.unwrap(),
        "the gateway forwarded {fwd}"
    );
}
