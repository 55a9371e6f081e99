//! Crafting and checking test frames. Headers are built with etherparse so
//! the tests do not share any encoding code with the dataplane under test.

use etherparse::{IpNumber, Ipv4Header, Ipv4Options};

pub const HOST_A: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x05];
pub const GW_A: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
pub const HOST_B: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x05];
pub const GW_B: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];

/// A UDP-over-IPv4 frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub ip: Ipv4Header,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame from `src` to `dst` whose IPv4 total length is `total_len`.
    pub fn udp(src: [u8; 4], dst: [u8; 4], total_len: usize) -> Self {
        assert!(total_len >= 28, "room for IPv4 and UDP headers");
        let mut payload = vec![0u8; total_len - 20];
        payload[0..2].copy_from_slice(&4000u16.to_be_bytes());
        payload[2..4].copy_from_slice(&5000u16.to_be_bytes());
        payload[4..6].copy_from_slice(&((total_len - 20) as u16).to_be_bytes());
        for (i, b) in payload.iter_mut().enumerate().skip(8) {
            *b = i as u8;
        }
        let ip = Ipv4Header::new(0, 64, IpNumber::UDP, src, dst).expect("valid header");
        Self {
            dst_mac: GW_A,
            src_mac: HOST_A,
            vlan: None,
            ip,
            payload,
        }
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ip.time_to_live = ttl;
        self
    }

    pub fn df(mut self, df: bool) -> Self {
        self.ip.dont_fragment = df;
        self
    }

    pub fn proto(mut self, p: IpNumber) -> Self {
        self.ip.protocol = p;
        self
    }

    /// Fragment offset in 8-byte units, and the more-fragments flag.
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.ip.fragment_offset = offset.try_into().expect("13-bit offset");
        self.ip.more_fragments = more;
        self
    }

    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub fn options(mut self, opts: &[u8]) -> Self {
        self.ip.options = Ipv4Options::try_from(opts).expect("valid options length");
        self
    }

    /// Serialises with a correct header checksum and total length.
    pub fn bytes(&self) -> Vec<u8> {
        let mut ip = self.ip.clone();
        ip.set_payload_len(self.payload.len()).expect("fits");
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = Vec::with_capacity(18 + ip.header_len() + self.payload.len());
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        if let Some(v) = self.vlan {
            out.extend_from_slice(&0x8100u16.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        out.extend_from_slice(&ip.to_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// A frame as seen on the way out, split for assertions.
#[derive(Debug)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub ip: Ipv4Header,
    /// Everything after the IPv4 header, as far as total length says.
    pub payload: Vec<u8>,
    /// The raw IPv4 header bytes.
    pub ip_bytes: Vec<u8>,
}

pub fn parse(frame: &[u8]) -> Parsed {
    let mac = |r: std::ops::Range<usize>| -> [u8; 6] { frame[r].try_into().unwrap() };
    let (vlan, l3) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x8100 => (
            Some(u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff),
            18,
        ),
        0x0800 => (None, 14),
        other => panic!("unexpected ethertype {other:#06x}"),
    };
    let (ip, _) = Ipv4Header::from_slice(&frame[l3..]).expect("IPv4 header parses");
    let hl = ip.header_len();
    let end = l3 + ip.total_len as usize;
    assert!(end <= frame.len(), "total length within the frame");
    Parsed {
        dst_mac: mac(0..6),
        src_mac: mac(6..12),
        vlan,
        ip_bytes: frame[l3..l3 + hl].to_vec(),
        payload: frame[l3 + hl..end].to_vec(),
        ip,
    }
}

/// One's complement sum over `bytes`, folded; 0xffff means "verifies".
pub fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

pub fn checksum_ok(bytes: &[u8]) -> bool {
    ones_sum(bytes) == 0xffff
}
