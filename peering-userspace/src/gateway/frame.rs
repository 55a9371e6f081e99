//! The few header operations the tunnel does on Ethernet frames and inner
//! IPv4 packets: find the packet in a frame the XDP program handed over,
//! check an opened packet, and frame it for its VPC port.

use std::net::Ipv4Addr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
