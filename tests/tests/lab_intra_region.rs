//! End to end in network namespaces: two VPCs of one region behind a
//! gateway namespace whose kernel does not forward. Whatever crosses was
//! forwarded by the dataplane (the TC program on these veth ports, or XDP
//! with `--port-path xdp`), and the counters say so.

use peering_tests::lab::IntraRegionLab;

fn region() -> IntraRegionLab {
    IntraRegionLab::new(false)
}

fn peer_routes(r: &IntraRegionLab) {
    r.peer_routes();
}

#[test]
fn nothing_crosses_without_routes() {
    let r = region();
    assert!(!r.a.ping("10.2.0.10", 2));
    assert_eq!(r.agent().stat("fwd_local"), 0);
    // The gateway itself still answers: misses pass to its kernel.
    assert!(r.a.ping("10.1.0.1", 1));
    assert!(r.agent().stat("pass_no_route") > 0);
}

/// Pings both ways, then a 20 MB iperf3 TCP transfer from A to B; returns
/// how many packets the dataplane forwarded during the transfer.
fn ping_and_tcp_cross(r: &IntraRegionLab) -> u64 {
    let ag = r.agent();
    peer_routes(r);
    assert!(r.a.ping("10.2.0.10", 5), "A reaches B");
    assert!(r.b.ping("10.1.0.10", 5), "B reaches A");
    let fwd = ag.stat("fwd_local");
    assert!(
        fwd >= 20,
        "requests and replies both ways were forwarded: {fwd}"
    );
    // Bounded: a broken path fails the test (iperf3 reports an error or
    // is killed), it does not hang it.
    let v =
        peering_tests::lab::iperf3(&r.a, &r.b, "10.2.0.10", &["-n", "20M"]).expect("iperf3 report");
    // The sender counts what the receiver acknowledged; the receiver's
    // own count stops at its last interval.
    let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(v["error"].is_null(), "iperf3: {v}");
    assert!(
        sent >= 20 << 20 && received > 0,
        "iperf3 carried 20 MiB: {v}"
    );
    assert_eq!(ag.stat("drop_no_neighbour"), 0);
    ag.stat("fwd_local") - fwd
}

/// The hosts keep their veths' offloads on (TSO, GSO, TX checksum): the TC
/// path takes GSO packets with partial checksums as they are.
#[test]
fn ping_and_tcp_cross_through_tc_with_host_offloads_on() {
    let r = region();
    let ag = r.agent();
    for port in ["vpc-a", "vpc-b"] {
        assert_eq!(ag.port_path(port).as_deref(), Some("tc"), "{port}");
    }
    for host in [&r.a, &r.b] {
        let k = host.exec_ok(&["ethtool", "-k", "eth0"]);
        assert!(k.contains("tx-checksumming: on"), "{k}");
        assert!(k.contains("tcp-segmentation-offload: on"), "{k}");
    }
    let fwd = ping_and_tcp_cross(&r);
    // GSO packets count once each: far fewer than 20 MiB of segments.
    assert!(fwd > 100, "TCP forwarded by the TC program: {fwd}");
}

/// `--port-path xdp` keeps the XDP path on veths, hosts' TX checksum
/// offload off (an XDP redirect would carry partial checksums).
#[test]
fn ping_and_tcp_cross_through_xdp_on_request() {
    let r = IntraRegionLab::xdp(false);
    let ag = r.agent();
    for port in ["vpc-a", "vpc-b"] {
        assert_eq!(ag.port_path(port).as_deref(), Some("xdp"), "{port}");
    }
    let fwd = ping_and_tcp_cross(&r);
    assert!(fwd > 10_000, "TCP segments forwarded by XDP: {fwd}");
}

#[test]
fn removing_or_blackholing_a_route_stops_traffic() {
    let r = region();
    let ag = r.agent();
    peer_routes(&r);
    assert!(r.a.ping("10.2.0.10", 2));

    ag.ok(&[
        "route",
        "set",
        "--table",
        "1",
        "--dst",
        "10.2.0.0/16",
        "--blackhole",
    ]);
    assert!(!r.a.ping("10.2.0.10", 2), "blackholed");
    assert!(ag.stat("drop_blackhole") >= 2);

    ag.ok(&["route", "del", "--table", "1", "--dst", "10.2.0.0/16"]);
    assert!(!r.a.ping("10.2.0.10", 2), "no route");

    peer_routes(&r);
    assert!(r.a.ping("10.2.0.10", 2), "restored");
}

#[test]
fn a_source_outside_the_vpc_is_dropped() {
    let r = region();
    let ag = r.agent();
    peer_routes(&r);
    r.a.exec_ok(&["ip", "addr", "add", "10.9.9.9/32", "dev", "eth0"]);
    assert!(!r.a.ping_from(Some("10.9.9.9"), "10.2.0.10", 2));
    assert!(ag.stat("drop_spoofed_source") >= 2);
    assert!(r.a.ping_from(Some("10.1.0.10"), "10.2.0.10", 1));
}

#[test]
fn forwarding_survives_the_agent_and_a_restart_keeps_state() {
    let r = region();
    let ag = r.agent();
    peer_routes(&r);
    // No agent process runs between these commands: each one exited.
    assert!(r.a.ping("10.2.0.10", 2));
    let before = ag.stat("fwd_local");
    // A "restarted" agent re-attaches: it keeps the pinned attachment and
    // the maps rather than replacing them.
    let out = ag.ok(&["attach", "--iface", "vpc-a"]);
    assert!(out.contains("already attached"), "{out}");
    assert!(ag.stat("fwd_local") >= before, "counters kept");
    assert!(ag
        .ok(&["show"])
        .contains("route   table 1 10.2.0.0/16 -> local-peer vpc 2"));
    assert!(r.a.ping("10.2.0.10", 2));
    // Detaching stops forwarding (and the gateway kernel won't forward).
    ag.ok(&["detach", "--iface", "vpc-a"]);
    assert!(!r.a.ping("10.2.0.10", 2));
}

/// Jumbo frames within a region: with MTU 9000 on every link, an 8972-byte
/// ping (9000-byte packets, DF set) crosses, through TC and through XDP
/// (multi-buffer).
#[test]
fn jumbo_frames_cross_intra_region() {
    jumbo_frames_cross(region());
    jumbo_frames_cross(IntraRegionLab::xdp(false));
}

fn jumbo_frames_cross(r: IntraRegionLab) {
    peer_routes(&r);
    for (ns, dev) in [
        (&r.gw, "vpc-a"),
        (&r.gw, "vpc-b"),
        (&r.a, "eth0"),
        (&r.b, "eth0"),
    ] {
        ns.exec_ok(&["ip", "link", "set", dev, "mtu", "9000"]);
    }
    let before = r.agent().stat("fwd_local");
    let ping = r.a.exec_ok(&[
        "ping",
        "-n",
        "-q",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "8972",
        "10.2.0.10",
    ]);
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    let fwd = r.agent().stat("fwd_local") - before;
    assert!(fwd >= 6, "requests and replies forwarded: {fwd}");
}

/// iperf3 TCP, 1 stream for 5 s, A to B: bit/s received (0 when iperf3
/// failed or did not connect).
fn tcp_1_stream(r: &IntraRegionLab) -> f64 {
    let v = peering_tests::lab::iperf3(&r.a, &r.b, "10.2.0.10", &["-t", "5"]).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

/// Intra-region TCP, 1 stream, hosts' offloads on: the TC path, the XDP
/// path (`--port-path xdp`) and Linux forwarding, one after the other.
/// A measurement, not a check: `cargo test -p peering-tests --test
/// lab_intra_region -- --ignored --nocapture measure_port_paths`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_port_paths() {
    let r = region();
    peer_routes(&r);
    assert!(r.a.ping("10.2.0.10", 2));
    let tc = tcp_1_stream(&r);
    for port in ["vpc-a", "vpc-b"] {
        r.agent()
            .ok(&["attach", "--iface", port, "--port-path", "xdp"]);
    }
    let xdp = tcp_1_stream(&r);
    for port in ["vpc-a", "vpc-b"] {
        r.agent().ok(&["detach", "--iface", port]);
    }
    r.gw.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let linux = tcp_1_stream(&r);
    eprintln!(
        "TCP 1 stream, hosts' offloads on (Gbit/s): tc {:.3}, xdp {:.3}, linux forwarding {:.3}",
        tc / 1e9,
        xdp / 1e9,
        linux / 1e9
    );
}
