//! BPF_PROG_TEST_RUN verdicts of the underlay program: tunnel datagrams to
//! this gateway go to the tunnel's AF_XDP socket, everything else to the
//! kernel, and a missing socket means the kernel (the UDP socket) too.

use etherparse::IpNumber;
use peering_common::{Stat, UNDERLAY_XSK_BASE};
use peering_tests::{
    frame::Frame,
    verdict::{Harness, LO, XDP_PASS, XDP_REDIRECT},
};
use peering_userspace::{gateway::xsk::XskPort, tunnel::TUNNEL_UDP_PORT};

const LOCAL: [u8; 4] = [198, 18, 0, 2];
const REMOTE: [u8; 4] = [198, 18, 0, 1];

fn harness() -> Harness {
    let mut h = Harness::new();
    let endpoint = std::net::SocketAddrV4::new(LOCAL.into(), TUNNEL_UDP_PORT);
    h.dp.maps.set_underlay(LO, endpoint).unwrap();
    h
}

/// A UDP datagram from `REMOTE` to `dst`:`dport` of `total_len` bytes.
fn datagram(dst: [u8; 4], dport: u16, total_len: usize) -> Frame {
    let mut f = Frame::udp(REMOTE, dst, total_len).df(true);
    f.payload[0..2].copy_from_slice(&TUNNEL_UDP_PORT.to_be_bytes());
    f.payload[2..4].copy_from_slice(&dport.to_be_bytes());
    f
}

fn run(h: &Harness, frame: &[u8]) -> u32 {
    h.run_prog("peering_underlay", LO, frame, 1).0.verdict
}

#[test]
fn tunnel_datagrams_go_to_the_socket_of_their_queue() {
    let mut h = harness();
    let port = XskPort::bind(LO, 0).expect("AF_XDP socket on lo, queue 0");
    h.dp.maps
        .xsks_mut()
        .set(UNDERLAY_XSK_BASE, port.fd(), 0)
        .unwrap();
    for len in [28 + 44, 1572] {
        let f = datagram(LOCAL, TUNNEL_UDP_PORT, len);
        assert_eq!(run(&h, &f.bytes()), XDP_REDIRECT, "{len} bytes");
    }
    assert_eq!(h.packets(Stat::FwdTunnelRx), 2);
    assert_eq!(h.stat(Stat::FwdTunnelRx).bytes, 2 * 14 + 72 + 1572);
    assert_eq!(h.packets(Stat::PassUnderlay), 0);
}

#[test]
fn without_a_socket_tunnel_datagrams_go_to_the_kernel() {
    let h = harness();
    let f = datagram(LOCAL, TUNNEL_UDP_PORT, 200);
    assert_eq!(run(&h, &f.bytes()), XDP_PASS);
    assert_eq!(h.packets(Stat::PassUnderlay), 1);
    assert_eq!(h.packets(Stat::FwdTunnelRx), 0);
}

#[test]
fn everything_else_goes_to_the_kernel() {
    let h = harness();
    let mut arp = datagram(LOCAL, TUNNEL_UDP_PORT, 60).bytes();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut bad_checksum = datagram(LOCAL, TUNNEL_UDP_PORT, 200).bytes();
    bad_checksum[14 + 10] ^= 0xff;
    let tunnel = datagram(LOCAL, TUNNEL_UDP_PORT, 200).bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("other port", datagram(LOCAL, 53, 200).bytes()),
        (
            "other address",
            datagram([198, 18, 0, 9], TUNNEL_UDP_PORT, 200).bytes(),
        ),
        (
            "TCP",
            datagram(LOCAL, TUNNEL_UDP_PORT, 200)
                .proto(IpNumber::TCP)
                .bytes(),
        ),
        (
            "first fragment",
            datagram(LOCAL, TUNNEL_UDP_PORT, 200)
                .df(false)
                .fragment(0, true)
                .bytes(),
        ),
        (
            "later fragment",
            datagram(LOCAL, TUNNEL_UDP_PORT, 200)
                .df(false)
                .fragment(100, false)
                .bytes(),
        ),
        (
            "VLAN tagged",
            datagram(LOCAL, TUNNEL_UDP_PORT, 200).vlan(7).bytes(),
        ),
        ("ARP", arp),
        ("bad IPv4 checksum", bad_checksum),
        ("cut in the UDP header", tunnel[..14 + 20 + 4].to_vec()),
        ("cut in the IPv4 header", tunnel[..14 + 10].to_vec()),
    ];
    for (what, frame) in &cases {
        assert_eq!(run(&h, frame), XDP_PASS, "{what}");
    }
    assert_eq!(h.packets(Stat::PassUnderlay), cases.len() as u64);
    assert_eq!(h.packets(Stat::FwdTunnelRx), 0);
    for s in Stat::ALL.iter().filter(|s| s.is_drop()) {
        assert_eq!(h.packets(*s), 0, "{s:?}: the underlay program never drops");
    }
}

#[test]
fn an_interface_without_an_endpoint_is_left_alone() {
    let h = Harness::new();
    let f = datagram(LOCAL, TUNNEL_UDP_PORT, 200);
    assert_eq!(run(&h, &f.bytes()), XDP_PASS);
    assert_eq!(h.packets(Stat::PassUnderlay), 1);
}
