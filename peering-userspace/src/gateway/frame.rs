//! The few header operations the tunnel does on Ethernet frames and inner
//! IPv4 packets: find the packet in a frame the XDP program handed over,
//! check an opened packet, and frame it for its VPC port; and, for the
//! AF_XDP underlay, write and read the outer Ethernet/IPv4/UDP headers.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    ops::Range,
};

use peering_common::{ETH_P_8021Q, ETH_P_IPV4};

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;

/// The IPv4 packet inside an Ethernet frame (one optional 802.1Q tag), or
/// None if the frame carries something else.
pub fn ipv4_in_frame(frame: &[u8]) -> Option<&[u8]> {
    let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    let l3 = match ethertype {
        ETH_P_IPV4 => ETH_LEN,
        ETH_P_8021Q => {
            let inner = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
            if inner != ETH_P_IPV4 {
                return None;
            }
            ETH_LEN + VLAN_LEN
        }
        _ => return None,
    };
    let packet = frame.get(l3..)?;
    let total = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    // Ethernet pads short frames: the IP total length says where it ends.
    packet.get(..total)
}

/// Source and destination of a well-formed IPv4 packet (version 4, a sane
/// header length, total length equal to the buffer).
pub fn addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || packet.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total != packet.len() {
        return None;
    }
    let src: [u8; 4] = packet[12..16].try_into().ok()?;
    let dst: [u8; 4] = packet[16..20].try_into().ok()?;
    Some((src.into(), dst.into()))
}

/// First outer UDP source port for flow entropy: the dynamic range
/// (RFC 6335), as VXLAN senders do (RFC 7348, section 5).
pub const FLOW_PORT_BASE: u16 = 49152;

/// The outer UDP source port for an inner IPv4 `packet`: the same for every
/// packet of a flow (addresses, protocol and, for TCP and UDP, ports), and
/// spread over `FLOW_PORT_BASE..=65535` across flows, so the receiving
/// gateway's NIC (RSS) spreads flows over its queues and tunnel workers
/// while each flow stays on one and keeps its order. Receivers ignore the
/// source port. Not a secret: a host chooses its own flows' queue at most.
pub fn flow_port(packet: &[u8]) -> u16 {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let Some(first) = packet.first() else {
        return FLOW_PORT_BASE;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    let proto = packet.get(9).copied().unwrap_or(0);
    let unfragmented = packet
        .get(6..8)
        .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & (IP_MF | IP_OFFSET_MASK) == 0);
    let addrs = packet.get(12..20).unwrap_or(&[]);
    let ports = match proto {
        TCP | UDP if unfragmented => packet.get(ihl..ihl + 4).unwrap_or(&[]),
        _ => &[],
    };
    // FNV-1a (a public-domain hash): cheap, and mixes every byte in.
    let mut h: u32 = 0x811c_9dc5;
    for &b in addrs.iter().chain(ports).chain(&[proto]) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    FLOW_PORT_BASE | ((h ^ (h >> 16)) as u16 & !FLOW_PORT_BASE)
}

/// Writes an Ethernet header (with a tag if `vlan` is not 0) followed by
/// `packet` into `buf`; returns the frame length, or 0 if it does not fit.
pub fn write_frame(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], vlan: u16, packet: &[u8]) -> usize {
    let l2 = if vlan == 0 {
        ETH_LEN
    } else {
        ETH_LEN + VLAN_LEN
    };
    let total = l2 + packet.len();
    let Some(out) = buf.get_mut(..total) else {
        return 0;
    };
    out[0..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&src);
    if vlan == 0 {
        out[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
    } else {
        out[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        out[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
        out[16..18].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
    }
    out[l2..].copy_from_slice(packet);
    total
}

/// Outer Ethernet + IPv4 (no options) + UDP headers of a tunnel frame.
pub const OUTER_LEN: usize = ETH_LEN + 20 + 8;
const IPPROTO_UDP: u8 = 17;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
const IP_OFFSET_MASK: u16 = 0x1fff;
/// TTL of outer packets, as the kernel's default.
const OUTER_TTL: u8 = 64;

/// Addresses of an outer tunnel frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// Writes the outer headers for a `payload_len`-byte datagram into
/// `buf[..OUTER_LEN]` (the payload is already at `buf[OUTER_LEN..]`):
/// DF set, the given IP id, UDP checksum 0 ("none", RFC 768; the payload
/// is authenticated by the AEAD and the addresses by the IPv4 checksum).
/// Returns the frame length, or 0 if it does not fit in `buf` or in an
/// IPv4 total length.
pub fn write_outer(buf: &mut [u8], outer: &Outer, ip_id: u16, payload_len: usize) -> usize {
    let frame_len = OUTER_LEN + payload_len;
    let Ok(ip_len) = u16::try_from(frame_len - ETH_LEN) else {
        return 0;
    };
    if buf.len() < frame_len {
        return 0;
    }
    buf[0..6].copy_from_slice(&outer.dst_mac);
    buf[6..12].copy_from_slice(&outer.src_mac);
    buf[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
    let ip = &mut buf[ETH_LEN..ETH_LEN + 20];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
    ip[6..8].copy_from_slice(&IP_DF.to_be_bytes());
    ip[8] = OUTER_TTL;
    ip[9] = IPPROTO_UDP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&outer.src.ip().octets());
    ip[16..20].copy_from_slice(&outer.dst.ip().octets());
    let sum = !ones_sum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut buf[ETH_LEN + 20..OUTER_LEN];
    udp[0..2].copy_from_slice(&outer.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&outer.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    udp[6..8].fill(0);
    frame_len
}

/// The UDP payload of an outer tunnel frame and its source, if the frame
/// is an untagged, unfragmented IPv4 UDP datagram whose headers are
/// consistent (version, header length and checksum, lengths within the
/// frame; Ethernet padding is cut by the lengths).
pub fn udp_payload(frame: &[u8]) -> Option<(SocketAddrV4, Range<usize>)> {
    if u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?) != ETH_P_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_LEN..)?;
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || ip.len() < ihl || ones_sum(&ip[..ihl]) != 0xffff {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if ip[9] != IPPROTO_UDP || frag & (IP_MF | IP_OFFSET_MASK) != 0 || total > ip.len() {
        return None;
    }
    let udp = ip.get(ihl..total)?;
    let udp_len = usize::from(u16::from_be_bytes(udp.get(4..6)?.try_into().ok()?));
    if udp_len < 8 || udp_len > udp.len() {
        return None;
    }
    let src: [u8; 4] = ip[12..16].try_into().ok()?;
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let start = ETH_LEN + ihl + 8;
    Some((
        SocketAddrV4::new(src.into(), sport),
        start..ETH_LEN + ihl + udp_len,
    ))
}

/// One's complement sum of big-endian 16-bit words, folded (`bytes` of
/// even length). A valid IPv4 header sums to 0xffff.
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = packet(40);
        p[9] = 6;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn flow_port_is_per_flow_and_in_the_dynamic_range() {
        let a = tcp([10, 1, 0, 10], [10, 3, 0, 10], 40000, 5201);
        let mut same = a.clone();
        same[30] = 0xff; // payload and other header bytes do not count
        assert_eq!(flow_port(&a), flow_port(&same));
        let ports: std::collections::HashSet<u16> = (0..64)
            .map(|i| flow_port(&tcp([10, 1, 0, 10], [10, 3, 0, 10], 40000 + i, 5201)))
            .collect();
        assert!(
            ports.len() > 32,
            "{} distinct ports of 64 flows",
            ports.len()
        );
        assert!(ports.iter().all(|p| *p >= FLOW_PORT_BASE));
        // A fragment's ports are not read: every fragment of a datagram
        // goes the same way.
        let mut frag = a.clone();
        frag[6] = 0x20;
        let mut frag2 = tcp([10, 1, 0, 10], [10, 3, 0, 10], 1, 2);
        frag2[6] = 0x20;
        assert_eq!(flow_port(&frag), flow_port(&frag2));
        for short in [&[][..], &[0x45][..], &a[..10]] {
            assert!(flow_port(short) >= FLOW_PORT_BASE);
        }
    }

    fn packet(total: u16) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(total)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[12..16].copy_from_slice(&[10, 1, 0, 5]);
        p[16..20].copy_from_slice(&[10, 3, 0, 7]);
        p
    }

    #[test]
    fn frame_round_trip_untagged_and_tagged() {
        let p = packet(60);
        for vlan in [0, 42] {
            let mut buf = [0u8; 128];
            let n = write_frame(&mut buf, [1; 6], [2; 6], vlan, &p);
            assert_eq!(n, p.len() + if vlan == 0 { 14 } else { 18 });
            let inner = ipv4_in_frame(&buf[..n]).unwrap();
            assert_eq!(inner, &p[..]);
            assert_eq!(
                addresses(inner),
                Some(([10, 1, 0, 5].into(), [10, 3, 0, 7].into()))
            );
        }
    }

    #[test]
    fn padding_is_cut_and_bad_frames_refused() {
        let p = packet(28);
        let mut buf = [0u8; 60];
        write_frame(&mut buf, [1; 6], [2; 6], 0, &p);
        assert_eq!(ipv4_in_frame(&buf).unwrap().len(), 28);
        let mut arp = buf;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(ipv4_in_frame(&arp), None);
        assert_eq!(ipv4_in_frame(&buf[..13]), None);
        let mut long = p.clone();
        long[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(addresses(&long), None);
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert_eq!(addresses(&v6), None);
        let mut short_ihl = p.clone();
        short_ihl[0] = 0x44;
        assert_eq!(addresses(&short_ihl), None);
        assert_eq!(addresses(&[]), None);
    }

    #[test]
    fn write_frame_refuses_small_buffers() {
        let p = packet(60);
        let mut buf = [0u8; 70];
        assert_eq!(write_frame(&mut buf, [1; 6], [2; 6], 0, &p), 0);
    }

    fn outer() -> Outer {
        Outer {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "198.18.0.1:51900".parse().unwrap(),
            dst: "198.18.1.2:51900".parse().unwrap(),
        }
    }

    #[test]
    fn outer_headers_round_trip() {
        let mut buf = [0u8; 256];
        buf[OUTER_LEN..OUTER_LEN + 5].copy_from_slice(b"hello");
        let n = write_outer(&mut buf, &outer(), 7, 5);
        assert_eq!(n, OUTER_LEN + 5);
        let f = &buf[..n];
        assert_eq!(&f[0..6], &outer().dst_mac);
        assert_eq!(&f[6..12], &outer().src_mac);
        assert_eq!(f[14], 0x45);
        assert_eq!(
            u16::from_be_bytes([f[16], f[17]]),
            20 + 8 + 5,
            "total length"
        );
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 7, "IP id");
        assert_eq!(f[20] & 0x40, 0x40, "DF");
        assert_eq!(f[22], 64, "TTL");
        assert_eq!(ones_sum(&f[14..34]), 0xffff, "header checksum");
        let (src, range) = udp_payload(f).unwrap();
        assert_eq!(src, outer().src);
        assert_eq!(&f[range], b"hello");
        // Ethernet padding after the datagram is not payload.
        let mut padded = [0u8; 64];
        padded[..n].copy_from_slice(f);
        assert_eq!(&padded[udp_payload(&padded).unwrap().1], b"hello");
    }

    #[test]
    fn write_outer_refuses_what_does_not_fit() {
        let mut buf = [0u8; OUTER_LEN + 4];
        assert_eq!(write_outer(&mut buf, &outer(), 0, 5), 0);
        let mut big = vec![0u8; 70_000];
        assert_eq!(write_outer(&mut big, &outer(), 0, 65_600), 0);
    }

    #[test]
    fn udp_payload_refuses_inconsistent_frames() {
        let mut buf = [0u8; 128];
        let n = write_outer(&mut buf, &outer(), 1, 40);
        let good = buf[..n].to_vec();
        assert!(udp_payload(&good).is_some());
        let broken = |i: usize, v: u8| {
            let mut f = good.clone();
            f[i] = v;
            f
        };
        // Checksum, version, IHL, protocol, a fragment, an IP total length
        // beyond the frame, a UDP length beyond the IP payload or below 8.
        let cases = [
            broken(24, good[24] ^ 1),
            broken(14, 0x65),
            broken(14, 0x44),
            broken(23, 6),
            broken(17, 0xff),
            broken(38, 1),
            broken(39, 200),
            broken(39, 7),
        ];
        for (i, f) in cases.iter().enumerate() {
            assert_eq!(udp_payload(f), None, "case {i}");
        }
        // Fragments and protocol changes with a fixed-up checksum.
        for (i, v) in [(20usize, 0x20u8), (21, 0x01), (23, 6)] {
            let mut f = good.clone();
            f[i] |= v;
            if i == 23 {
                f[23] = 6;
            }
            f[24..26].fill(0);
            let sum = !ones_sum(&f[14..34]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
            assert_eq!(udp_payload(&f), None, "byte {i}");
        }
        assert_eq!(udp_payload(&good[..30]), None);
        let mut tagged = good.clone();
        tagged[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        assert_eq!(udp_payload(&tagged), None);
    }
}
