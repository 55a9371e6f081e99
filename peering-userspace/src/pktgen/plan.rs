//! What to send, as plain data: frame sizes, flows, rate. Validated here
//! and turned into the [`GenConfig`] the generator program reads; the
//! functions [`size_of_frame`] and [`flow_of_frame`] restate what the
//! program does per frame, so tests can check the program against them.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use anyhow::{bail, ensure, Result};
use peering_common::pktgen::{GenConfig, MAX_FRAME, MIN_FRAME, SIZE_SLOTS};

/// The RFC 2544 benchmarking range (198.18.0.0/15, RFC 2544 appendix C.2.2
/// and RFC 6890): the default addresses.
pub const DEFAULT_SRC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const DEFAULT_DST_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The discard service (RFC 863): nothing listens there on a sink host.
pub const DEFAULT_DST_PORT: u16 = 9;
/// First source port: the first port above the well-known range.
pub const DEFAULT_SRC_PORT: u16 = 1024;

/// The simple IMIX: 7 × 64, 4 × 576, 1 × 1500-byte frames, interleaved so
/// large frames never come in a run (mean 354.3 bytes).
pub const IMIX: [u16; 12] = [64, 64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 576];

/// Frame sizes: lengths of the Ethernet frame without FCS, as XDP sees it
/// (a "64-byte" frame is 68 bytes on a wire with its FCS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sizes {
    Fixed(u16),
    Imix,
}

impl Sizes {
    /// The repeating pattern of sizes.
    pub fn pattern(&self) -> Vec<u16> {
        match self {
            Sizes::Fixed(s) => vec![*s],
            Sizes::Imix => IMIX.to_vec(),
        }
    }

    /// The largest frame: the size every live frame starts from.
    pub fn max(&self) -> u16 {
        self.pattern().into_iter().max().unwrap_or(MIN_FRAME)
    }

    /// Mean frame length.
    pub fn mean(&self) -> f64 {
        let p = self.pattern();
        p.iter().map(|&s| s as f64).sum::<f64>() / p.len() as f64
    }
}

impl FromStr for Sizes {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(Sizes::Imix);
        }
        let n: u16 = s
            .parse()
            .map_err(|_| anyhow::anyhow!("size {s:?}: a frame length in bytes or \"imix\""))?;
        ensure!(
            (MIN_FRAME..=MAX_FRAME).contains(&n),
            "size {n}: frames are {MIN_FRAME}..={MAX_FRAME} bytes (Ethernet without FCS)"
        );
        Ok(Sizes::Fixed(n))
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sizes::Fixed(s) => write!(f, "{s}"),
            Sizes::Imix => f.write_str("imix"),
        }
    }
}

/// Flows: `flows` distinct (source address, source port) pairs; addresses
/// `src_ip ..+ src_ips` vary fastest, then ports from `src_port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flows {
    pub flows: u32,
    pub src_ip: Ipv4Addr,
    pub src_ips: u32,
    pub src_port: u16,
}

/// The most flows a run takes (ports × addresses; the brief's 10,000 fits).
pub const MAX_FLOWS: u32 = 1 << 20;

impl Flows {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=MAX_FLOWS).contains(&self.flows),
            "flows: 1..={MAX_FLOWS}, got {}",
            self.flows
        );
        ensure!(
            (1..=self.flows).contains(&self.src_ips),
            "source addresses: 1..=flows ({}), got {}",
            self.flows,
            self.src_ips
        );
        let last_ip = u32::from(self.src_ip) as u64 + self.src_ips as u64 - 1;
        ensure!(
            last_ip <= u32::MAX as u64,
            "source addresses run past 255.255.255.255"
        );
        let ports = self.flows.div_ceil(self.src_ips);
        let last_port = self.src_port as u32 + ports - 1;
        ensure!(
            last_port <= u16::MAX as u32,
            "{} flows over {} source address(es) need source ports {}..={last_port}: \
             more addresses or a lower first port",
            self.flows,
            self.src_ips,
            self.src_port
        );
        Ok(())
    }

    /// The ranges that vary, for reports: (last address, last port).
    pub fn last(&self) -> (Ipv4Addr, u16) {
        let ips = self.src_ips.min(self.flows);
        let last_ip = Ipv4Addr::from(u32::from(self.src_ip) + ips - 1);
        let last_port = self.src_port + (self.flows.div_ceil(self.src_ips) - 1) as u16;
        (last_ip, last_port)
    }
}

/// Everything the generator program needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    pub sizes: Sizes,
    pub flows: Flows,
    /// Frames per second over all generator CPUs; 0 for full speed.
    pub rate_pps: u64,
}

impl Plan {
    /// The program's configuration when `cpus` CPUs generate (the rate
    /// limit is kept per CPU).
    pub fn config(&self, cpus: usize) -> Result<GenConfig> {
        self.flows.validate()?;
        ensure!(cpus >= 1, "at least one generator CPU");
        let pattern = self.sizes.pattern();
        if pattern.len() > SIZE_SLOTS {
            bail!("size pattern longer than {SIZE_SLOTS}");
        }
        let mut sizes = [0u16; SIZE_SLOTS];
        sizes[..pattern.len()].copy_from_slice(&pattern);
        Ok(GenConfig {
            dst_mac: self.dst_mac,
            src_mac: self.src_mac,
            src_ip: self.flows.src_ip.octets(),
            dst_ip: self.dst_ip.octets(),
            src_port: self.flows.src_port,
            dst_port: self.dst_port,
            src_ips: self.flows.src_ips,
            flows: self.flows.flows,
            size_period: pattern.len() as u32,
            sizes,
            _pad: 0,
            ns_per_frame: ns_per_frame(self.rate_pps, cpus),
        })
    }
}

/// Credit one frame costs on each of `cpus` CPUs for `rate_pps` in total
/// (0: no limit; at least 1 ns, i.e. at most 1 G frames/s per CPU).
pub fn ns_per_frame(rate_pps: u64, cpus: usize) -> u64 {
    if rate_pps == 0 {
        return 0;
    }
    (1_000_000_000u64 * cpus as u64 / rate_pps).max(1)
}

/// The size of a CPU's frame number `seq`, as the program picks it.
pub fn size_of_frame(c: &GenConfig, seq: u64) -> u16 {
    c.sizes[(seq % c.size_period as u64) as usize % SIZE_SLOTS]
}

/// The source address and port of a CPU's frame number `seq`.
pub fn flow_of_frame(c: &GenConfig, seq: u64) -> (Ipv4Addr, u16) {
    let f = (seq % c.flows as u64) as u32;
    let ip = u32::from_be_bytes(c.src_ip).wrapping_add(f % c.src_ips);
    let port = c.src_port.wrapping_add((f / c.src_ips) as u16);
    (Ipv4Addr::from(ip), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(flows: u32, src_ips: u32, src_port: u16) -> Flows {
        Flows {
            flows,
            src_ip: Ipv4Addr::new(10, 1, 0, 10),
            src_ips,
            src_port,
        }
    }

    fn plan(f: Flows, sizes: Sizes) -> Plan {
        Plan {
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_ip: Ipv4Addr::new(10, 2, 0, 10),
            dst_port: DEFAULT_DST_PORT,
            sizes,
            flows: f,
            rate_pps: 0,
        }
    }

    #[test]
    fn sizes_parse_and_bound() {
        assert_eq!("64".parse::<Sizes>().unwrap(), Sizes::Fixed(64));
        assert_eq!("IMIX".parse::<Sizes>().unwrap(), Sizes::Imix);
        assert!("59".parse::<Sizes>().is_err());
        assert!("1515".parse::<Sizes>().is_err());
        assert!("big".parse::<Sizes>().is_err());
    }

    #[test]
    fn imix_is_7_4_1() {
        let count = |s| IMIX.iter().filter(|&&x| x == s).count();
        assert_eq!((count(64), count(576), count(1500)), (7, 4, 1));
        assert_eq!(Sizes::Imix.max(), 1500);
        assert!((Sizes::Imix.mean() - 354.333).abs() < 0.01);
    }

    #[test]
    fn flows_cover_exactly_the_range() {
        let c = plan(flows(10_000, 4, 2000), Sizes::Fixed(64))
            .config(1)
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        for seq in 0..20_000 {
            let (ip, port) = flow_of_frame(&c, seq);
            let o = ip.octets();
            assert!(o[..3] == [10, 1, 0] && (10..14).contains(&o[3]), "{ip}");
            assert!((2000..2000 + 2500).contains(&port), "{port}");
            seen.insert((ip, port));
        }
        assert_eq!(seen.len(), 10_000);
        assert_eq!(
            flows(10_000, 4, 2000).last(),
            (Ipv4Addr::new(10, 1, 0, 13), 4499)
        );
    }

    #[test]
    fn one_flow_never_varies() {
        let c = plan(flows(1, 1, 5000), Sizes::Fixed(64)).config(1).unwrap();
        for seq in [0, 1, 99, u64::MAX] {
            assert_eq!(flow_of_frame(&c, seq), (Ipv4Addr::new(10, 1, 0, 10), 5000));
        }
    }

    #[test]
    fn bad_flow_ranges_are_refused() {
        assert!(flows(0, 1, 1024).validate().is_err());
        assert!(flows(10, 11, 1024).validate().is_err());
        assert!(flows(10, 0, 1024).validate().is_err());
        assert!(flows(100, 1, 65500).validate().is_err());
        assert!(flows(100, 4, 65500).validate().is_ok());
        assert!(flows(MAX_FLOWS + 1, 1, 0).validate().is_err());
        let mut f = flows(4, 4, 1);
        f.src_ip = Ipv4Addr::new(255, 255, 255, 254);
        assert!(f.validate().is_err());
    }

    #[test]
    fn imix_pattern_repeats_in_the_config() {
        let c = plan(flows(1, 1, 1), Sizes::Imix).config(2).unwrap();
        assert_eq!(c.size_period, 12);
        for seq in 0..48u64 {
            assert_eq!(size_of_frame(&c, seq), IMIX[seq as usize % 12]);
        }
    }

    #[test]
    fn rate_is_split_over_cpus() {
        assert_eq!(ns_per_frame(0, 2), 0);
        assert_eq!(ns_per_frame(1_000_000, 1), 1000);
        assert_eq!(ns_per_frame(1_000_000, 2), 2000);
        assert_eq!(ns_per_frame(u64::MAX, 1), 1);
    }
}
