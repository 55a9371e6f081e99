//! BPF_PROG_TEST_RUN verdicts for parsing: every truncation point, VLAN
//! tags, IPv4 options and fragments, bad headers, and what passes untouched.

use peering_common::Stat;
use peering_tests::{
    frame::{checksum_ok, parse, Frame, GW_B, HOST_B},
    verdict::{LO, XDP_DROP, XDP_PASS, XDP_REDIRECT},
    world::*,
};

/// The kernel hands XDP no frame shorter than an Ethernet header (and
/// BPF_PROG_TEST_RUN refuses one), so cuts start at 14 bytes: inside the
/// VLAN tag, the IPv4 header, and the payload its total length promises.
#[test]
fn truncated_at_every_header_boundary_is_dropped_as_malformed() {
    let h = harness();
    let mut expected = 0;
    for tagged in [false, true] {
        let f = Frame::udp(A_HOST, B_HOST, 60);
        let full = if tagged { f.vlan(VLAN_B) } else { f }.bytes();
        for len in 14..full.len() {
            let out = h.run(LO, &full[..len]);
            assert_eq!(out.verdict, XDP_DROP, "tagged {tagged}, cut at {len}");
            expected += 1;
        }
        // One byte more than needed is fine (link-layer padding).
        let mut padded = full.clone();
        padded.push(0);
        let src_ok = !tagged; // on VLAN 100 a source in A is spoofed
        let out = h.run(LO, &padded);
        let want = if src_ok { XDP_REDIRECT } else { XDP_DROP };
        assert_eq!(out.verdict, want, "padded frame, tagged {tagged}");
    }
    assert_eq!(h.packets(Stat::DropMalformed), expected);
}

#[test]
fn non_ipv4_passes_untouched() {
    let h = harness();
    let mut arp = Frame::udp(A_HOST, B_HOST, 60).bytes();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut ipv6 = Frame::udp(A_HOST, B_HOST, 60).bytes();
    ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let mut tagged_arp = Frame::udp(A_HOST, B_HOST, 60).vlan(VLAN_B).bytes();
    tagged_arp[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
    for f in [&arp, &ipv6, &tagged_arp] {
        let out = h.run(LO, f);
        assert_eq!(out.verdict, XDP_PASS);
        assert_eq!(&out.frame, f, "bytes untouched");
    }
    assert_eq!(h.packets(Stat::PassNotVpc), 3);
}

#[test]
fn unconfigured_interface_or_vlan_passes() {
    let h = harness();
    let f = Frame::udp(A_HOST, B_HOST, 60);
    let unknown_vlan = f.clone().vlan(999).bytes();
    let out = h.run(LO, &unknown_vlan);
    assert_eq!(out.verdict, XDP_PASS);
    assert_eq!(out.frame, unknown_vlan);
    assert_eq!(h.packets(Stat::PassNotVpc), 1);
}

#[test]
fn vlan_tagged_ingress_is_routed_by_its_vlan() {
    let h = harness();
    // On VLAN 100 the frame belongs to VPC B: a source in A is spoofed there.
    let out = h.run(LO, &Frame::udp(A_HOST, B_HOST, 60).vlan(VLAN_B).bytes());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropSpoofedSource), 1);
}

#[test]
fn egress_vlan_is_pushed_towards_a_tagged_port() {
    let h = harness();
    let f = Frame::udp(A_HOST, B_HOST_TAGGED, 100);
    let out = h.run(LO, &f.bytes());
    assert_eq!(out.verdict, XDP_REDIRECT);
    assert_eq!(out.frame.len(), f.bytes().len() + 4);
    let p = parse(&out.frame);
    assert_eq!(p.vlan, Some(VLAN_B2));
    assert_eq!(p.dst_mac, HOST_B2);
    assert_eq!(p.src_mac, GW_B);
    assert!(checksum_ok(&p.ip_bytes));
    assert_eq!(p.payload, f.payload);
}

#[test]
fn tagged_to_tagged_rewrites_the_vlan_id_and_keeps_priority() {
    let mut h = harness();
    // A VPC A subnet on VLAN 300 with priority bits set on ingress.
    let a = iface_a(RTB_A);
    h.dp.maps.set_iface(LO, 300, a).unwrap();
    let mut bytes = Frame::udp(A_HOST, B_HOST_TAGGED, 80).vlan(300).bytes();
    bytes[14] |= 0xa0; // PCP 5
    let out = h.run(LO, &bytes);
    assert_eq!(out.verdict, XDP_REDIRECT);
    assert_eq!(out.frame.len(), bytes.len());
    let tci = u16::from_be_bytes([out.frame[14], out.frame[15]]);
    assert_eq!(tci, 0xa000 | VLAN_B2);
}

#[test]
fn ipv4_options_are_forwarded_with_a_valid_checksum() {
    let h = harness();
    for opts in [
        &[1u8, 1, 1, 1][..],
        &[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        &[1; 40],
    ] {
        let f = Frame::udp(A_HOST, B_HOST, 60).options(opts);
        let out = h.run(LO, &f.bytes());
        assert_eq!(out.verdict, XDP_REDIRECT, "{} option bytes", opts.len());
        let p = parse(&out.frame);
        assert_eq!(p.ip_bytes.len(), 20 + opts.len());
        assert!(checksum_ok(&p.ip_bytes));
        assert_eq!(p.ip.time_to_live, 63);
        assert_eq!(p.dst_mac, HOST_B);
    }
}

#[test]
fn fragments_are_routed_like_any_packet() {
    let h = harness();
    for (offset, more) in [(0u16, true), (185, true), (370, false)] {
        let f = Frame::udp(A_HOST, B_HOST, 200).fragment(offset, more);
        let out = h.run(LO, &f.bytes());
        assert_eq!(out.verdict, XDP_REDIRECT, "offset {offset}");
        let p = parse(&out.frame);
        assert_eq!(u16::from(p.ip.fragment_offset), offset);
        assert_eq!(p.ip.more_fragments, more);
        assert!(checksum_ok(&p.ip_bytes));
    }
}

#[test]
fn bad_headers_are_dropped() {
    let h = harness();
    let good = Frame::udp(A_HOST, B_HOST, 60).bytes();
    let mut bad_csum = good.clone();
    bad_csum[14 + 10] ^= 0x01;
    let mut version6 = good.clone();
    version6[14] = 0x65;
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    let mut total_too_long = good.clone();
    total_too_long[14 + 2..14 + 4].copy_from_slice(&61u16.to_be_bytes());
    let mut total_below_ihl = good.clone();
    total_below_ihl[14 + 2..14 + 4].copy_from_slice(&19u16.to_be_bytes());
    let mut ihl_past_end = Frame::udp(A_HOST, B_HOST, 28).bytes();
    ihl_past_end[14] = 0x4f; // 60-byte header in a 28-byte packet
    for f in [
        &bad_csum,
        &version6,
        &ihl4,
        &total_too_long,
        &total_below_ihl,
        &ihl_past_end,
    ] {
        assert_eq!(h.run(LO, f).verdict, XDP_DROP);
    }
    // A wrong checksum is its own reason; the rest are malformed.
    assert_eq!(h.packets(Stat::DropBadChecksum), 1);
    assert_eq!(h.packets(Stat::DropMalformed), 5);
    let bytes = h.stat(Stat::DropBadChecksum).bytes;
    assert_eq!(bytes, good.len() as u64);
}

#[test]
fn counters_sum_bytes_per_reason() {
    let h = harness();
    let f = Frame::udp(A_HOST, B_HOST, 100).bytes();
    for _ in 0..3 {
        assert_eq!(h.run(LO, &f).verdict, XDP_REDIRECT);
    }
    let c = h.stat(Stat::FwdLocal);
    assert_eq!((c.packets, c.bytes), (3, 3 * f.len() as u64));
    let total: u64 =
        h.dp.maps
            .stats()
            .unwrap()
            .iter()
            .map(|(_, c)| c.packets)
            .sum();
    assert_eq!(total, 3, "exactly one reason per packet");
}
