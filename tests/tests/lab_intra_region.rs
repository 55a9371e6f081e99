//! End to end in network namespaces: two VPCs of one region behind a
//! gateway namespace whose kernel does not forward. Whatever crosses was
//! forwarded by XDP, and the counters say so.

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

#[test]
fn ping_and_tcp_cross_through_xdp_only() {
    let r = region();
    let ag = r.agent();
    peer_routes(&r);
    assert!(r.a.ping("10.2.0.10", 5), "A reaches B");
    assert!(r.b.ping("10.1.0.10", 5), "B reaches A");
    let fwd = ag.stat("fwd_local");
    assert!(
        fwd >= 20,
        "requests and replies both ways were forwarded by XDP: {fwd}"
    );

    // A TCP transfer of 20 MB.
    let server = peering_tests::teardown::spawn(
        r.b.cmd(&["iperf3", "-s", "-1", "-B", "10.2.0.10"])
            .stdout(std::process::Stdio::null()),
    )
    .expect("iperf3 server");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Bounded: a broken path must fail the test, not hang it.
    let client =
        r.a.cmd(&[
            "timeout",
            "60",
            "iperf3",
            "-c",
            "10.2.0.10",
            "-n",
            "20M",
            "-J",
        ])
        .output();
    drop(server);
    let out = String::from_utf8_lossy(&client.expect("iperf3 client").stdout).into_owned();
    assert!(out.contains("\"sum_received\""), "iperf3 finished: {out}");
    let after = ag.stat("fwd_local");
    assert!(
        after > fwd + 10_000,
        "TCP segments forwarded by XDP: {fwd} -> {after}"
    );
    assert_eq!(ag.stat("drop_no_neighbour"), 0);
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
    // Detaching stops XDP forwarding (and the gateway kernel won't forward).
    ag.ok(&["detach", "--iface", "vpc-a"]);
    assert!(!r.a.ping("10.2.0.10", 2));
}

/// Jumbo frames within a region: with MTU 9000 on every link, an 8972-byte
/// ping (9000-byte packets, DF set) crosses through XDP (multi-buffer).
#[test]
fn jumbo_frames_cross_intra_region() {
    let r = region();
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
    assert!(fwd >= 6, "requests and replies forwarded by XDP: {fwd}");
}
