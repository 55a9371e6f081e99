//! Throughput across regions (`cargo xtask bench`): the two-region lab of
//! the tests, A (us-east-1) peered with C (us-west-2) and B peered with C
//! inside us-west-2, then iperf3 TCP and a 64-byte UDP flood through the
//! sealed tunnel and, for comparison, through the intra-region XDP path.
//! The lab is built twice, once per underlay path of the tunnel (AF_XDP on
//! the underlay interfaces, then the UDP socket alone).
//! Figures depend on the machine and its load; compare the ratios.

use std::time::Duration;

use peering_tests::{
    control_lab::eventually,
    inter_region::InterRegionLab,
    lab::{self, Netns},
};
use serde_json::Value;

const SECS: &str = "5";

fn iperf3(from: &Netns, to: &Netns, dst: &str, extra: &[&str]) -> Value {
    let mut args = vec!["-t", SECS];
    args.extend(extra);
    lab::iperf3(from, to, dst, &args).expect("iperf3 JSON")
}

fn tcp(from: &Netns, to: &Netns, dst: &str) -> f64 {
    let v = iperf3(from, to, dst, &[]);
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

/// 64-byte IP packets (36 bytes of UDP payload), unlimited rate: packets
/// per second offered and received.
fn udp64(from: &Netns, to: &Netns, dst: &str) -> (f64, f64) {
    let v = iperf3(from, to, dst, &["-u", "-b", "0", "-l", "36"]);
    let secs: f64 = SECS.parse().unwrap_or(1.0);
    let sum = &v["end"]["sum"];
    let sent = sum["packets"].as_f64().unwrap_or(0.0);
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    (sent / secs, (sent - lost) / secs)
}

/// One lab with the agents' underlay path set to `underlay_io`; prints a
/// row per measured path (the intra-region one only when `intra`).
fn measure(underlay_io: &'static str, intra: bool) {
    let lab = InterRegionLab::with_underlay_io(false, &[], underlay_io);
    lab.peer_a_c_and_b_c();
    let ready = || lab.a.ping("10.3.0.10", 1) && lab.b.ping("10.3.0.10", 1);
    assert!(eventually(Duration::from_secs(10), ready), "lab not ready");
    let inter = format!("inter-region A -> C (tunnel, {underlay_io})");
    let mut paths = vec![(inter, &lab.a)];
    if intra {
        paths.push(("intra-region B -> C (XDP redirect)".into(), &lab.b));
    }
    for (name, from) in paths {
        let gbps = tcp(from, &lab.c, "10.3.0.10") / 1e9;
        let (sent, recv) = udp64(from, &lab.c, "10.3.0.10");
        peering_tests::say!(
            "{name:<44} {gbps:>12.2} {:>16.0} {:>16.0}",
            sent / 1e3,
            recv / 1e3
        );
    }
    for (gw, g) in [("us-east-1", &lab.gw1), ("us-west-2", &lab.gw2)] {
        let s = g.tunnel_stats();
        let u = s.underlay;
        let drops: std::collections::BTreeMap<_, _> =
            s.drops.iter().filter(|(_, n)| **n > 0).collect();
        peering_tests::say!(
            "  {gw}: underlay sent af_xdp {} socket {}, received af_xdp {} socket {}; drops {:?}",
            u.tx_af_xdp,
            u.tx_socket,
            u.rx_af_xdp,
            u.rx_socket,
            drops
        );
    }
}

fn main() {
    peering_tests::say!("two-region lab, iperf3 for {SECS} s per case, AES-256-GCM");
    peering_tests::say!(
        "{:<44} {:>12} {:>16} {:>16}",
        "path",
        "TCP Gbit/s",
        "64 B sent kpps",
        "64 B recv kpps"
    );
    measure("af-xdp", true);
    measure("socket", false);
}
