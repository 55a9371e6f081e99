//! Private DNS names as AmazonProvidedDNS gives them, sans-IO.
//!
//! An address `a.b.c.d` of a VPC in region R is named `ip-a-b-c-d` under
//! R's private zone: `ec2.internal` in us-east-1, `R.compute.internal`
//! elsewhere (AWS, "Amazon EC2 instance hostname types"). Its reverse name
//! is `d.c.b.a.in-addr.arpa` (RFC 1035, 3.5). Names are compared without
//! regard to ASCII case (RFC 4343); labels come in as raw bytes, so a label
//! holding a dot or any other byte is simply not one of ours.

use std::net::Ipv4Addr;

/// The one region whose private zone is not `REGION.compute.internal`.
pub const US_EAST_1: &str = "us-east-1";

/// What a query name is, as far as the resolver cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind<'a> {
    /// `ip-a-b-c-d` in the private zone of `region` (the label as sent).
    Private { ip: Ipv4Addr, region: &'a [u8] },
    /// Under a private suffix (`ec2.internal`, `compute.internal`) but not
    /// a name that can exist there.
    PrivateOther,
    /// `d.c.b.a.in-addr.arpa`.
    Reverse(Ipv4Addr),
    /// Anything else: not ours, and we do not recurse.
    Other,
}

fn is(label: &[u8], text: &str) -> bool {
    label.eq_ignore_ascii_case(text.as_bytes())
}

/// Classifies a query name given as its labels (no root label).
pub fn classify<'a>(labels: &[&'a [u8]]) -> NameKind<'a> {
    match labels {
        [host @ .., a, b] if is(a, "ec2") && is(b, "internal") => {
            private(host, US_EAST_1.as_bytes())
        }
        [host @ .., r, a, b] if is(a, "compute") && is(b, "internal") => {
            if is(r, US_EAST_1) {
                // us-east-1's names live under ec2.internal only.
                NameKind::PrivateOther
            } else {
                private(host, r)
            }
        }
        [.., a, b] if is(a, "compute") && is(b, "internal") => NameKind::PrivateOther,
        [d, c, b, a, x, y] if is(x, "in-addr") && is(y, "arpa") => {
            match (octet(a), octet(b), octet(c), octet(d)) {
                (Some(a), Some(b), Some(c), Some(d)) => {
                    NameKind::Reverse(Ipv4Addr::new(a, b, c, d))
                }
                _ => NameKind::Other,
            }
        }
        _ => NameKind::Other,
    }
}

fn private<'a>(host: &[&[u8]], region: &'a [u8]) -> NameKind<'a> {
    match host {
        [label] => match host_ip(label) {
            Some(ip) => NameKind::Private { ip, region },
            None => NameKind::PrivateOther,
        },
        _ => NameKind::PrivateOther,
    }
}

/// `ip-a-b-c-d` → a.b.c.d, in canonical decimal only (one spelling per
/// address: no leading zeros, no signs).
pub fn host_ip(label: &[u8]) -> Option<Ipv4Addr> {
    if label.len() < 3 || !is(&label[..3], "ip-") {
        return None;
    }
    let mut parts = label[3..].split(|b| *b == b'-');
    let mut o = [0u8; 4];
    for slot in &mut o {
        *slot = octet(parts.next()?)?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(o))
}

/// One decimal octet, canonical: "0".."255", no leading zero.
fn octet(s: &[u8]) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    u8::try_from(v).ok()
}

/// The private zone of `region`, without the trailing dot.
pub fn zone(region: &str) -> String {
    if region == US_EAST_1 {
        "ec2.internal".to_owned()
    } else {
        format!("{region}.compute.internal")
    }
}

/// The private name of `ip` in `region`, fully qualified.
pub fn private_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}.{}.", zone(region))
}

/// RFC 1918 space, whose reverse names never leave the VPC (AmazonProvidedDNS
/// answers them itself rather than recursing).
pub fn is_private(ip: Ipv4Addr) -> bool {
    ip.is_private()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<&[u8]> {
        name.trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::as_bytes)
            .collect()
    }

    fn kind(name: &str) -> NameKind<'_> {
        classify(&labels(name))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn us_east_1_names_live_under_ec2_internal() {
        assert_eq!(
            kind("ip-10-1-0-10.ec2.internal"),
            NameKind::Private {
                ip: ip("10.1.0.10"),
                region: b"us-east-1"
            }
        );
        assert_eq!(
            kind("IP-10-1-0-10.EC2.Internal."),
            NameKind::Private {
                ip: ip("10.1.0.10"),
                region: b"us-east-1"
            }
        );
        assert_eq!(
            kind("ip-10-1-0-10.us-east-1.compute.internal"),
            NameKind::PrivateOther
        );
    }

    #[test]
    fn other_regions_live_under_region_compute_internal() {
        assert_eq!(
            kind("ip-10-2-0-10.us-west-2.compute.internal"),
            NameKind::Private {
                ip: ip("10.2.0.10"),
                region: b"us-west-2"
            }
        );
        assert_eq!(
            kind("ip-10-2-0-10.US-WEST-2.compute.INTERNAL"),
            NameKind::Private {
                ip: ip("10.2.0.10"),
                region: b"US-WEST-2"
            }
        );
    }

    #[test]
    fn names_under_the_private_suffixes_that_cannot_exist() {
        for n in [
            "ec2.internal",
            "compute.internal",
            "us-west-2.compute.internal",
            "x.ip-10-1-0-10.ec2.internal",
            "ip-10-1-0.ec2.internal",
            "ip-10-1-0-10-5.ec2.internal",
            "ip-10-1-0-256.ec2.internal",
            "ip-10-01-0-10.ec2.internal",
            "ip-10-+1-0-10.ec2.internal",
            "ip-10--0-10.ec2.internal",
            "ip10-1-0-10.ec2.internal",
            "host.ec2.internal",
            "ip-10-2-0-10.x.y.compute.internal",
        ] {
            assert_eq!(kind(n), NameKind::PrivateOther, "{n}");
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            kind("10.0.1.10.in-addr.arpa"),
            NameKind::Reverse(ip("10.1.0.10"))
        );
        assert_eq!(
            kind("10.0.1.10.IN-ADDR.ARPA."),
            NameKind::Reverse(ip("10.1.0.10"))
        );
        for n in [
            "0.1.10.in-addr.arpa",
            "10.0.1.010.in-addr.arpa",
            "x.0.1.10.in-addr.arpa",
            "1.10.0.1.10.in-addr.arpa",
            "in-addr.arpa",
        ] {
            assert_eq!(kind(n), NameKind::Other, "{n}");
        }
    }

    #[test]
    fn other_names() {
        for n in [
            "example.com",
            "",
            "internal",
            "ec2.internal.example.com",
            "ip-10-1-0-10.ec2.internal.evil",
        ] {
            assert_eq!(kind(n), NameKind::Other, "{n}");
        }
    }

    #[test]
    fn a_label_holding_a_dot_is_not_a_suffix() {
        // One label "ec2.internal" (an escaped dot), not two.
        let l: [&[u8]; 2] = [b"ip-10-1-0-10", b"ec2.internal"];
        assert_eq!(classify(&l), NameKind::Other);
    }

    #[test]
    fn names_round_trip() {
        for (addr, region) in [("10.1.0.10", "us-east-1"), ("172.16.5.1", "eu-west-1")] {
            let name = private_name(ip(addr), region);
            let l = labels(&name);
            match classify(&l) {
                NameKind::Private { ip: got, region: r } => {
                    assert_eq!(got, ip(addr));
                    assert_eq!(r, region.as_bytes());
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(
            private_name(ip("10.1.0.10"), "us-east-1"),
            "ip-10-1-0-10.ec2.internal."
        );
        assert_eq!(
            private_name(ip("10.2.0.10"), "us-west-2"),
            "ip-10-2-0-10.us-west-2.compute.internal."
        );
    }

    #[test]
    fn every_octet_parses_and_only_canonically() {
        for v in 0..=255u32 {
            let s = v.to_string();
            assert_eq!(octet(s.as_bytes()), Some(v as u8));
            assert_eq!(octet(format!("0{s}").as_bytes()), None);
        }
        assert_eq!(octet(b"256"), None);
        assert_eq!(octet(b"1000"), None);
        assert_eq!(octet(b""), None);
    }
}
