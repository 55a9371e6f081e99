//! Inter-region peering end to end: two gateway namespaces joined by an
//! underlay link, an agent process per region with the tunnel on, VPCs
//! driven through `peerctl` only (see `peering_tests::inter_region`).

use std::time::Duration;

use peering_tests::{
    control_lab::eventually,
    inter_region::{udp_of, Capture, InterRegionLab, REGION_1, REGION_2},
    lab::unique,
};

const TUNNEL_PORT: u16 = 51900;

fn verbose() -> bool {
    std::env::var_os("PEERING_TEST_VERBOSE").is_some()
}

/// A and C cross only once the peering is accepted and both sides route;
/// then ping and an iperf3 TCP transfer cross, sealed: the underlay carries
/// nothing but UDP to the tunnel port, and a marker sent in a TCP payload
/// never shows in it.
#[test]
fn peering_across_regions_carries_sealed_traffic_only() {
    let lab = InterRegionLab::new(verbose(), &[]);
    let v = lab.vpcs();
    lab.wait_for_keys();
    let cp = &lab.cp;
    let pcx = cp.request_peering(&lab.acct_a, REGION_1, &v.a, &v.c, &lab.acct_c.id, REGION_2);
    cp.create_route(&lab.acct_a, REGION_1, &v.rtb_a, "10.3.0.0/16", &pcx);
    std::thread::sleep(Duration::from_millis(800));
    assert!(!lab.a.ping("10.3.0.10", 1), "nothing crosses before accept");

    cp.peering_action(&lab.acct_c, REGION_2, "accept-vpc-peering-connection", &pcx);
    std::thread::sleep(Duration::from_millis(800));
    assert!(!lab.a.ping("10.3.0.10", 1), "C has no route back yet");

    cp.create_route(&lab.acct_c, REGION_2, &v.rtb_c, "10.1.0.0/16", &pcx);
    assert!(
        eventually(Duration::from_secs(5), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C after accept and routes"
    );
    assert!(lab.c.ping("10.1.0.10", 3), "C reaches A");

    let file = std::env::temp_dir().join(unique("underlay.pcap"));
    let capture = Capture::start(&lab.gw1.ns, "underlay", &file);
    let marker = format!("peering-marker-{}", unique("m"));
    send_tcp_marker(&lab, &marker);
    let throughput = iperf3(&lab);
    let frames = capture.finish();
    let _ = std::fs::remove_file(&file);
    assert!(
        throughput > 1e6,
        "iperf3 across regions: {throughput} bit/s"
    );
    assert!(frames.len() > 100, "captured {} frames", frames.len());
    for f in &frames {
        let Some((proto, sport, dport, _)) = udp_of(f) else {
            // ARP between the gateways is all else that may cross.
            assert_eq!(&f[12..14], &[0x08, 0x06], "non-IPv4 frame {f:02x?}");
            continue;
        };
        assert_eq!(proto, 17, "only UDP on the underlay");
        assert!(
            sport == TUNNEL_PORT && dport == TUNNEL_PORT,
            "ports {sport} -> {dport}"
        );
    }
    let needle = marker.as_bytes();
    let leaked = frames
        .iter()
        .any(|f| f.windows(needle.len()).any(|w| w == needle));
    assert!(!leaked, "the marker appears in clear on the underlay");

    let s1 = lab.gw1.tunnel_stats();
    let s2 = lab.gw2.tunnel_stats();
    let p1 = s1.peerings.get(&pcx).copied().unwrap_or_default();
    let p2 = s2.peerings.get(&pcx).copied().unwrap_or_default();
    assert!(p1.sealed > 1000 && p1.opened > 100, "gw1 {pcx}: {p1:?}");
    assert!(p2.sealed > 100 && p2.opened > 1000, "gw2 {pcx}: {p2:?}");
    let g2 = s1.gateways.get(REGION_2).copied().unwrap_or_default();
    assert_eq!(
        g2.auth_failures + g2.replays + g2.unknown_epoch,
        0,
        "{g2:?}"
    );
}

/// Sends `marker` over TCP from A to C (python3 on both ends).
fn send_tcp_marker(lab: &InterRegionLab, marker: &str) {
    let server = "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);\
                  s.bind(('10.3.0.10',7001));s.listen(1);s.settimeout(10);c,_=s.accept();print(c.recv(4096).decode())";
    let srv = lab
        .c
        .cmd(&["python3", "-c", server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start marker server");
    std::thread::sleep(Duration::from_millis(400));
    let client = format!(
        "import socket;s=socket.create_connection(('10.3.0.10',7001),timeout=5);s.sendall(b'{marker}');s.close()"
    );
    lab.a.exec_ok(&["python3", "-c", &client]);
    let out = srv.wait_with_output().expect("marker server");
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(got.contains(marker), "the marker crossed: {got:?}");
}

/// Runs iperf3 TCP from A to C for two seconds; returns bit/s received.
fn iperf3(lab: &InterRegionLab) -> f64 {
    let mut server = lab
        .c
        .cmd(&["iperf3", "-s", "-1", "-B", "10.3.0.10"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let out = lab
        .a
        .exec_ok(&["iperf3", "-c", "10.3.0.10", "-t", "2", "-J"]);
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}
