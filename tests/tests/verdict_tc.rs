//! BPF_PROG_TEST_RUN verdicts for the TC program (`peering_vpc_tc`) on
//! socket buffers, and for the tunnel entry's XDP program
//! (`peering_tun_entry`). The same world as the XDP verdict tests; each
//! case checks the verdict, the bytes and the counter that names it.
//!
//! What BPF_PROG_TEST_RUN cannot show: the redirect target (both
//! `bpf_redirect` and `bpf_redirect_peer` only record it and return
//! TC_ACT_REDIRECT) and the skb's VLAN metadata (neither settable on the
//! way in nor reported on the way out).

use std::net::Ipv4Addr;

use aya::maps::{Array, LpmTrie, MapData, RingBuf};
use etherparse::IpNumber;
use peering_common::{
    scoped_prefix_len, FibEntry, ScopedAddr, Stat, FIB_F_PEER_REDIRECT, INTER_REGION_MTU,
    PROG_VPC_TC,
};
use peering_tests::{
    frame::{checksum_ok, parse, Frame, HOST_A},
    verdict::{Harness, LO, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP},
    world::*,
};
use peering_userspace::hosts::parse_request;

const PLAIN: (u32, u32) = (0, 0);

/// Points TUN_ENTRY at loopback (any ifindex but 0 means "set up"; the
/// test run does not carry the redirect out).
fn set_tun_entry(h: &Harness, ifindex: u32) {
    let map = h.prog_map(PROG_VPC_TC, "TUN_ENTRY");
    let mut a: Array<MapData, u32> = Array::try_from(map).unwrap();
    a.set(0, ifindex, 0).unwrap();
}

/// A TCP segment (data offset 5) from A's host to `dst`.
fn tcp(dst: [u8; 4], total_len: usize) -> Frame {
    let mut f = Frame::udp(A_HOST, dst, total_len).proto(IpNumber::TCP);
    f.payload[12] = 0x50;
    f
}

fn stamped_mac(pcx: u32) -> [u8; 6] {
    let b = pcx.to_ne_bytes();
    [b[0], b[1], b[2], b[3], 0, 0]
}

#[test]
fn local_peer_is_forwarded_with_rewritten_macs_ttl_and_checksum() {
    let h = harness();
    let sent = Frame::udp(A_HOST, B_HOST, 100).ttl(64);
    let out = h.run_tc(LO, &sent.bytes(), PLAIN);
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_forwarded_to_b(&h, &out.frame, &sent);
}

#[test]
fn peer_redirect_flag_and_plain_redirect_both_forward() {
    let h = harness();
    let sent = Frame::udp(A_HOST, B_HOST, 100).bytes();
    let plain = h.run_tc(LO, &sent, PLAIN);
    // The agent sets the flag for veth ports; here on VPC B's subnet entry.
    let mut fib: LpmTrie<MapData, ScopedAddr, FibEntry> =
        LpmTrie::try_from(h.prog_map(PROG_VPC_TC, "FIB")).unwrap();
    let key =
        aya::maps::lpm_trie::Key::new(scoped_prefix_len(24), ScopedAddr::new(RTB_A, [10, 2, 0, 0]));
    let mut e = fib.get(&key, 0).expect("the compiled entry of 10.2.0.0/24");
    assert_eq!(e.flags, 0, "loopback is no veth: no flag");
    e.flags = FIB_F_PEER_REDIRECT;
    fib.insert(&key, e, 0).unwrap();
    let peer = h.run_tc(LO, &sent, PLAIN);
    assert_eq!(
        (plain.verdict, peer.verdict),
        (TC_ACT_REDIRECT, TC_ACT_REDIRECT)
    );
    assert_eq!(plain.frame, peer.frame, "the same rewrite either way");
    assert_eq!(h.packets(Stat::FwdLocal), 2);
}

#[test]
fn spoofed_source_blackhole_and_ttl_are_counted_drops() {
    let h = harness();
    let run = |f: Frame| h.run_tc(LO, &f.bytes(), PLAIN).verdict;
    assert_eq!(run(Frame::udp(B_HOST, B_HOST, 60)), TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropSpoofedSource), 1);
    assert_eq!(run(Frame::udp(A_HOST, B_BLACKHOLED, 60)), TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropBlackhole), 1);
    for ttl in [0u8, 1] {
        assert_eq!(run(Frame::udp(A_HOST, B_HOST, 60).ttl(ttl)), TC_ACT_SHOT);
    }
    assert_eq!(h.packets(Stat::DropTtlExceeded), 2);
    assert_eq!(run(Frame::udp(A_HOST, OUTSIDE_PEER, 60)), TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropDstOutsidePeer), 1);
    assert_eq!(run(Frame::udp(A_HOST, B_HOST, 60).ttl(2)), TC_ACT_REDIRECT);
    assert_eq!(h.packets(Stat::FwdLocal), 1);
}

#[test]
fn bad_header_checksum_is_dropped() {
    let h = harness();
    let mut bytes = Frame::udp(A_HOST, B_HOST, 60).bytes();
    bytes[14 + 10] ^= 0x01;
    assert_eq!(h.run_tc(LO, &bytes, PLAIN).verdict, TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropBadChecksum), 1);
    assert_eq!(h.packets(Stat::FwdLocal), 0);
}

#[test]
fn route_miss_non_ipv4_and_unknown_ports_pass_to_the_kernel() {
    let mut h = harness();
    let out = h.run_tc(LO, &Frame::udp(A_HOST, GATEWAY_A, 60).bytes(), PLAIN);
    assert_eq!(out.verdict, TC_ACT_OK);
    assert_eq!(h.packets(Stat::PassNoRoute), 1);
    // ARP; and a tag left in the data (the stack untags the outer one
    // before TC, so this would be a second tag).
    let mut arp = Frame::udp(A_HOST, B_HOST, 60).bytes();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let tagged = Frame::udp(A_HOST, B_HOST, 60).vlan(VLAN_B).bytes();
    for f in [&arp, &tagged] {
        assert_eq!(h.run_tc(LO, f, PLAIN).verdict, TC_ACT_OK);
    }
    assert_eq!(h.packets(Stat::PassNotVpc), 2);
    h.dp.maps.remove_iface(LO, 0).unwrap();
    let out = h.run_tc(LO, &Frame::udp(A_HOST, B_HOST, 60).bytes(), PLAIN);
    assert_eq!(
        out.verdict, TC_ACT_OK,
        "a port the dataplane does not serve"
    );
    assert_eq!(h.packets(Stat::PassNotVpc), 3);
    assert_eq!(h.packets(Stat::FwdLocal), 0);
}

#[test]
fn a_host_without_a_mac_is_dropped_and_reported() {
    let mut h = harness();
    let mut ring: RingBuf<MapData> = h.dp.resolve_requests().unwrap();
    let out = h.run_tc(LO, &Frame::udp(A_HOST, B_HOST_NO_NEIGH, 60).bytes(), PLAIN);
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropNoNeighbour), 1);
    let r = ring.next().expect("a resolution request");
    assert_eq!(
        parse_request(&r).unwrap(),
        (LO, Ipv4Addr::from(B_HOST_NO_NEIGH))
    );
}

#[test]
fn remote_peer_is_stamped_and_sent_to_the_tunnel_entry() {
    let h = harness();
    set_tun_entry(&h, LO);
    let sent = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize).df(true);
    let out = h.run_tc(LO, &sent.bytes(), PLAIN);
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let p = parse(&out.frame);
    assert_eq!(p.dst_mac, stamped_mac(PCX_REMOTE), "peering id in the MAC");
    assert_eq!(p.src_mac, HOST_A, "source MAC untouched");
    assert_eq!(p.ip.time_to_live, 63);
    assert!(checksum_ok(&p.ip_bytes));
    assert_eq!(p.payload, sent.payload);
    assert_eq!(h.packets(Stat::FwdRemote), 1);
}

#[test]
fn remote_peer_without_a_tunnel_entry_is_a_counted_drop() {
    let h = harness();
    let out = h.run_tc(LO, &Frame::udp(A_HOST, REMOTE_HOST, 100).bytes(), PLAIN);
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropNoXsk), 1);
    assert_eq!(h.packets(Stat::FwdRemote), 0);
}

#[test]
fn oversized_with_df_gets_fragmentation_needed_quoting_20_data_bytes() {
    let h = harness();
    set_tun_entry(&h, LO);
    for opts in [&[][..], &[1u8; 40][..]] {
        let sent = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize + 1)
            .df(true)
            .options(opts);
        let out = h.run_tc(LO, &sent.bytes(), PLAIN);
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "back out of the port");
        assert_frag_needed(&out.frame, &sent, None, 20);
    }
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), 2);
    assert_eq!(h.packets(Stat::FwdRemote), 0);
}

#[test]
fn oversized_without_df_is_dropped() {
    let h = harness();
    set_tun_entry(&h, LO);
    let f = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize + 1).df(false);
    assert_eq!(h.run_tc(LO, &f.bytes(), PLAIN).verdict, TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropMtuExceeded), 1);
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), 0);
}

#[test]
fn gso_packets_are_judged_by_their_segments() {
    let h = harness();
    set_tun_entry(&h, LO);
    // A 3000-byte TCP super-packet in 1460-byte segments: each segment is
    // 1460 + 20 + 20 = 1500 bytes, within the MTU, though the packet is not.
    let big = tcp(REMOTE_HOST, 3000).df(true);
    let out = h.run_tc(LO, &big.bytes(), (1460, 3));
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(parse(&out.frame).dst_mac, stamped_mac(PCX_REMOTE));
    assert_eq!(out.frame.len(), big.bytes().len(), "not cut, not copied");
    // UDP segmentation: 1472 + 20 + 8 = 1500.
    let udp = Frame::udp(A_HOST, REMOTE_HOST, 3000).df(true);
    assert_eq!(
        h.run_tc(LO, &udp.bytes(), (1472, 3)).verdict,
        TC_ACT_REDIRECT
    );
    assert_eq!(h.packets(Stat::FwdRemote), 2);
    // A GSO packet to a local peer is forwarded whatever its size.
    let local = tcp(B_HOST, 3000).df(true);
    assert_eq!(
        h.run_tc(LO, &local.bytes(), (8000, 1)).verdict,
        TC_ACT_REDIRECT
    );
    assert_eq!(h.packets(Stat::FwdLocal), 1);
}

#[test]
fn gso_segments_over_the_mtu_get_fragmentation_needed() {
    let h = harness();
    set_tun_entry(&h, LO);
    // Segments of 1461 + 20 + 20 = 1501 bytes in a packet of only 1400.
    let sent = tcp(REMOTE_HOST, 1400).df(true);
    let out = h.run_tc(LO, &sent.bytes(), (1461, 1));
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_frag_needed(&out.frame, &sent, None, 20);
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), 1);
    // UDP: 1473 + 20 + 8 = 1501.
    let sent = Frame::udp(A_HOST, REMOTE_HOST, 3000).df(true);
    let out = h.run_tc(LO, &sent.bytes(), (1473, 3));
    assert_frag_needed(&out.frame, &sent, None, 20);
    // Without DF: dropped.
    let no_df = tcp(REMOTE_HOST, 3000).df(false);
    assert_eq!(h.run_tc(LO, &no_df.bytes(), (1461, 3)).verdict, TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropMtuExceeded), 1);
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), 2);
    assert_eq!(h.packets(Stat::FwdRemote), 0);
}

#[test]
fn tunnel_entry_moves_the_peering_id_into_the_metadata() {
    let h = harness();
    let f = Frame::udp(A_HOST, REMOTE_HOST, 100).macs(HOST_A, stamped_mac(PCX_REMOTE));
    let out = h.run_tun_entry(&f.bytes());
    // No AF_XDP socket in the test: the counted drop of a missing socket.
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(
        out.meta,
        PCX_REMOTE.to_ne_bytes(),
        "peering id in XDP metadata"
    );
    assert_eq!(h.packets(Stat::DropNoXsk), 1);
    // Anything but IPv4 is not a stamped packet.
    let mut arp = f.bytes();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(h.run_tun_entry(&arp).verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropMalformed), 1);
    assert_eq!(h.packets(Stat::FwdRemote), 0, "the TC program counts those");
}
