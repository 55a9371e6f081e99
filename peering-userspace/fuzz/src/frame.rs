//! The gateway's Ethernet/IPv4/UDP handling (`gateway::frame`), which both
//! the VPC ports and the AF_XDP underlay (`xdp_underlay::receive`) use on
//! frames from the wire: what it returns lies inside the frame and is
//! consistent with the headers, and what it writes it reads back.

use std::net::{Ipv4Addr, SocketAddrV4};

use peering_userspace::gateway::frame::{
    addresses, ipv4_in_frame, udp_payload, write_frame, write_outer, Outer, OUTER_LEN,
};

/// One's complement sum of 16-bit words, folded (as RFC 1071).
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    assert!(
        start + inner.len() <= outer.len(),
        "slice outside the frame"
    );
    start
}

pub fn check(data: &[u8]) {
    parse(data);
    round_trips(data);
}

/// Parsers over arbitrary bytes.
fn parse(data: &[u8]) {
    if let Some(packet) = ipv4_in_frame(data) {
        let start = offset_in(data, packet);
        assert!(start == 14 || start == 18);
        let total = u16::from_be_bytes([data[start + 2], data[start + 3]]);
        assert_eq!(usize::from(total), packet.len(), "cut at the total length");
        if let Some((src, dst)) = addresses(packet) {
            assert_eq!(packet[0] >> 4, 4);
            assert_eq!(
                src,
                Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15])
            );
            assert_eq!(
                dst,
                Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19])
            );
        }
    }
    if let Some((src, range)) = udp_payload(data) {
        let ihl = usize::from(data[14] & 0x0f) * 4;
        assert!(range.start == 14 + ihl + 8 && range.start <= range.end);
        assert!(range.end <= data.len());
        assert_eq!(
            ones_sum(&data[14..14 + ihl]),
            0xffff,
            "header checksum verified"
        );
        assert_eq!(src.ip().octets(), [data[26], data[27], data[28], data[29]]);
    }
    let _ = addresses(data);
}

/// Writers read back by the parsers, with addresses and lengths taken
/// from the input.
fn round_trips(data: &[u8]) {
    let Some((head, rest)) = data.split_at_checked(20) else {
        return;
    };
    let mac = |i: usize| -> [u8; 6] { head[i..i + 6].try_into().expect("6 bytes") };
    let addr = |i: usize| {
        let ip = Ipv4Addr::new(head[i], head[i + 1], head[i + 2], head[i + 3]);
        SocketAddrV4::new(ip, u16::from_be_bytes([head[i + 4], head[i + 5]]))
    };
    let outer = Outer {
        dst_mac: mac(0),
        src_mac: mac(6),
        src: addr(12),
        dst: addr(14),
    };
    let mut buf = vec![0u8; OUTER_LEN + rest.len() + 8];
    buf[OUTER_LEN..OUTER_LEN + rest.len()].copy_from_slice(rest);
    let ip_id = u16::from_be_bytes([head[12], head[13]]);
    let len = write_outer(&mut buf, &outer, ip_id, rest.len());
    if len == 0 {
        assert!(rest.len() + 28 > usize::from(u16::MAX));
    } else {
        let (src, range) = udp_payload(&buf[..len]).expect("written outer frame parses");
        assert_eq!(src, outer.src);
        assert_eq!(&buf[range], rest);
    }

    // An IPv4 packet whose total length matches, framed with or without a
    // tag, is found again.
    if rest.len() < 20 || rest.len() > usize::from(u16::MAX) {
        return;
    }
    let mut packet = rest.to_vec();
    packet[2..4].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    let vlan = u16::from_be_bytes([head[18], head[19]]);
    let mut frame = vec![0u8; packet.len() + 18];
    let n = write_frame(&mut frame, mac(0), mac(6), vlan, &packet);
    assert_eq!(n, packet.len() + if vlan == 0 { 14 } else { 18 });
    assert_eq!(ipv4_in_frame(&frame[..n]), Some(&packet[..]));
    assert_eq!(
        write_frame(&mut frame[..n - 1], mac(0), mac(6), vlan, &packet),
        0
    );
}
