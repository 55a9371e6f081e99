//! The tunnel's AF_XDP transmit path on the underlay, against a real
//! kernel: frames built by `XdpUnderlay` leave a veth and must arrive at an
//! ordinary UDP socket on the other end (so the outer headers are right),
//! and datagrams it cannot carry are sent back to the socket path or
//! counted. Needs root; everything lives in namespaces made for the test.
//!
//! ```text
//! tx: ul0 198.18.0.1/24 ---- ul1 198.18.0.2/24 :rx (UDP socket on 51900)
//! ```

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::Duration,
};

use peering_tests::lab::{veth, Netns};
use peering_userspace::{
    dataplane::Dataplane,
    gateway::{
        xdp_underlay::{Transmit, XdpUnderlay},
        xsk::TX_FRAMES,
        Link,
    },
    sys,
};

const PORT: u16 = 51900;
const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), PORT);
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), PORT);
const MTU: usize = 1600;

/// Runs `f` on a thread inside `ns`.
fn within<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::enter_netns(&ns.name).expect("enter the namespace");
            f()
        })
        .join()
        .expect("thread in namespace")
    })
}

/// A stand-in for the AEAD: "seals" by copying `bytes`.
fn seal_bytes(bytes: Vec<u8>) -> impl FnOnce(&mut [u8]) -> Result<usize, &'static str> {
    move |buf: &mut [u8]| {
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

#[test]
fn frames_reach_a_udp_socket_and_the_rest_goes_back_to_the_socket_path() {
    let (tx, rx) = (Netns::new("xu-tx"), Netns::new("xu-rx"));
    veth(&tx, "ul0", &rx, "ul1");
    for (ns, dev, addr) in [(&tx, "ul0", "198.18.0.1/24"), (&rx, "ul1", "198.18.0.2/24")] {
        ns.exec_ok(&["ip", "link", "set", dev, "mtu", "1600"]);
        ns.exec_ok(&["ip", "addr", "add", addr, "dev", dev]);
    }
    let link = Link {
        src_mac: sys::parse_mac(&tx.mac("ul0")).unwrap(),
        dst_mac: sys::parse_mac(&rx.mac("ul1")).unwrap(),
    };
    let socket = within(&rx, || UdpSocket::bind(PEER).expect("bind in rx"));
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    within(&tx, || {
        let mut dp = Dataplane::load(None).expect("load the XDP object");
        let ifindex = sys::ifindex("ul0").unwrap();
        let mut ul = XdpUnderlay::open(ifindex, LOCAL, MTU, &[0], dp.maps.xsks_mut())
            .expect("AF_XDP on ul0");

        // No next hop yet: the socket path.
        let t = ul.transmit(PEER, PORT, seal_bytes(b"never".to_vec()));
        assert_eq!(t, Transmit::UseSocket);
        assert_eq!(ul.counters.tx_socket_no_next_hop, 1);
        // A next hop through another interface is not used either.
        ul.set_links([(*PEER.ip(), ifindex + 100, link)]);
        assert_eq!(
            ul.transmit(PEER, PORT, seal_bytes(b"never".to_vec())),
            Transmit::UseSocket
        );

        ul.set_links([(*PEER.ip(), ifindex, link)]);
        for payload in [b"first sealed datagram".to_vec(), vec![0xa5; 1500 + 44]] {
            assert_eq!(
                ul.transmit(PEER, PORT, seal_bytes(payload)),
                Transmit::Staged
            );
        }
        // Over the underlay MTU (1600 - 28 bytes of IPv4 and UDP headers).
        let too_big = vec![0u8; MTU - 28 + 1];
        assert_eq!(
            ul.transmit(PEER, PORT, seal_bytes(too_big)),
            Transmit::TooBig
        );
        assert_eq!(
            ul.transmit(PEER, PORT, |_| Err::<usize, _>("no key")),
            Transmit::Failed("no key")
        );
        ul.flush();
        for _ in 0..20 {
            ul.maintain();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ul.counters.tx_af_xdp, 2);
        assert_eq!(ul.counters.tx_mtu_drops, 1);
    });

    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).expect("first datagram");
    assert_eq!(&buf[..n], b"first sealed datagram");
    assert_eq!(from, std::net::SocketAddr::V4(LOCAL));
    let (n, _) = socket.recv_from(&mut buf).expect("full-size datagram");
    assert_eq!(n, 1500 + 44);
    assert!(buf[..n].iter().all(|b| *b == 0xa5));
    socket.set_nonblocking(true).unwrap();
    assert!(socket.recv_from(&mut buf).is_err(), "nothing else arrived");
}

/// Every way a transmit can end (staged and sent, too big, seal failed)
/// returns its frame to the free list: three times the TX half of the UMEM
/// go through without the ring ever running dry, and once the completions
/// are in, every frame is free again.
#[test]
fn no_transmit_outcome_loses_a_frame() {
    let (tx, rx) = (Netns::new("xl-tx"), Netns::new("xl-rx"));
    veth(&tx, "ul0", &rx, "ul1");
    for (ns, dev, addr) in [(&tx, "ul0", "198.18.0.1/24"), (&rx, "ul1", "198.18.0.2/24")] {
        ns.exec_ok(&["ip", "link", "set", dev, "mtu", "1600"]);
        ns.exec_ok(&["ip", "addr", "add", addr, "dev", dev]);
    }
    let link = Link {
        src_mac: sys::parse_mac(&tx.mac("ul0")).unwrap(),
        dst_mac: sys::parse_mac(&rx.mac("ul1")).unwrap(),
    };
    within(&tx, || {
        let mut dp = Dataplane::load(None).expect("load the XDP object");
        let ifindex = sys::ifindex("ul0").unwrap();
        let mut ul = XdpUnderlay::open(ifindex, LOCAL, MTU, &[0], dp.maps.xsks_mut())
            .expect("AF_XDP on ul0");
        ul.set_links([(*PEER.ip(), ifindex, link)]);
        let free = |ul: &mut XdpUnderlay| ul.sockets().next().unwrap().tx_frames_free();
        assert_eq!(free(&mut ul), TX_FRAMES);
        for round in 0..3 * TX_FRAMES / 64 {
            for _ in 0..64 {
                let t = ul.transmit(PEER, PORT, seal_bytes(vec![7; 100]));
                assert_eq!(t, Transmit::Staged, "round {round}");
            }
            let too_big = vec![0u8; MTU];
            assert_eq!(
                ul.transmit(PEER, PORT, seal_bytes(too_big)),
                Transmit::TooBig
            );
            let failed = ul.transmit(PEER, PORT, |_| Err::<usize, _>("no key"));
            assert_eq!(failed, Transmit::Failed("no key"));
            ul.flush();
            ul.maintain();
        }
        let all_back = (0..200).any(|_| {
            ul.maintain();
            std::thread::sleep(Duration::from_millis(5));
            free(&mut ul) == TX_FRAMES
        });
        let c = ul.sockets().next().unwrap().counters;
        assert!(all_back, "free {} of {TX_FRAMES}", free(&mut ul));
        assert_eq!(c.tx_ring_full, 0, "{c:?}");
        assert_eq!(c.tx_invalid, 0, "{c:?}");
        assert_eq!(ul.counters.tx_af_xdp, (3 * TX_FRAMES) as u64);
    });
}
