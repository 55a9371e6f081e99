//! IPv4 CIDR parsing and the size rules of VPC and subnet blocks.

use crate::control::error::{ApiError, ErrorCode};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// VPC and subnet blocks must be between /16 and /28
/// (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html and
/// https://docs.aws.amazon.com/vpc/latest/userguide/subnet-sizing.html).
pub const MIN_BLOCK_PREFIX: u8 = 16;
pub const MAX_BLOCK_PREFIX: u8 = 28;

/// Parses `a.b.c.d/n` and requires the host bits to be zero, as EC2 does
/// ("10.0.0.1/16" is refused rather than silently truncated).
pub fn parse(s: &str) -> Result<Ipv4Net, ApiError> {
    let net: Ipv4Net = s.parse().map_err(|_| {
        ApiError::invalid(format!(
            "Value ({s}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if net != net.trunc() {
        return Err(ApiError::invalid(format!(
            "Value ({s}) for parameter cidrBlock is invalid. Host bits must be zero (did you mean {}?).",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Ranges no VPC block may overlap: "this network" (RFC 1122 §3.2.1.3),
/// loopback (RFC 1122), link-local (RFC 3927; also where AWS puts the
/// instance metadata and DNS addresses), multicast (RFC 5771) and the
/// reserved class E block with limited broadcast (RFC 1112 §4). EC2 refuses
/// such a block in CreateVpc and AssociateVpcCidrBlock with
/// `InvalidVpc.Range` "The CIDR '…' is invalid."
pub const RESERVED: [Ipv4Net; 5] = [
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4),
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// The private ranges of RFC 1918. AWS's "IPv4 CIDR block association
/// restrictions" (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html)
/// refuse a secondary block from one of them unless the primary block is
/// in the same one: a VPC stays in one private range, or in public space.
pub const RFC1918: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
];

/// Parses a VPC block: size /16../28 and outside [`RESERVED`], else
/// `InvalidVpc.Range`.
pub fn parse_vpc_block(s: &str) -> Result<Ipv4Net, ApiError> {
    let net = parse_sized(s, ErrorCode::InvalidVpcRange)?;
    if RESERVED.iter().any(|r| overlaps(r, &net)) {
        return Err(ApiError::new(
            ErrorCode::InvalidVpcRange,
            format!("The CIDR '{net}' is invalid."),
        ));
    }
    Ok(net)
}

/// The RFC 1918 range `net` lies in, if any (a VPC block is at most a /16,
/// so it is never larger than one of them).
fn private_range(net: &Ipv4Net) -> Option<Ipv4Net> {
    RFC1918.into_iter().find(|r| overlaps(r, net))
}

/// AWS's association restriction for a secondary block `net` of a VPC whose
/// primary block is `primary`: a block from an RFC 1918 range is allowed
/// only when the primary lies in the same range (`InvalidVpc.Range`).
pub fn check_secondary(primary: &Ipv4Net, net: &Ipv4Net) -> Result<(), ApiError> {
    match private_range(net) {
        Some(r) if private_range(primary) != Some(r) => Err(ApiError::new(
            ErrorCode::InvalidVpcRange,
            format!(
                "The CIDR '{net}' is restricted. Use a CIDR from the same private address range as the current VPC CIDR, or use a publicly-routable CIDR."
            ),
        )),
        _ => Ok(()),
    }
}

/// Parses a subnet block (size /16../28, else `InvalidSubnet.Range`).
pub fn parse_subnet_block(s: &str) -> Result<Ipv4Net, ApiError> {
    parse_sized(s, ErrorCode::InvalidSubnetRange)
}

fn parse_sized(s: &str, code: ErrorCode) -> Result<Ipv4Net, ApiError> {
    let net = parse(s)?;
    if !(MIN_BLOCK_PREFIX..=MAX_BLOCK_PREFIX).contains(&net.prefix_len()) {
        return Err(ApiError::new(
            code,
            format!(
                "The CIDR '{net}' is invalid: block sizes must be between /{MIN_BLOCK_PREFIX} and /{MAX_BLOCK_PREFIX}."
            ),
        ));
    }
    Ok(net)
}

/// Two prefixes overlap iff one contains the other's network address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether any block of `xs` overlaps any block of `ys`.
pub fn any_overlap(xs: &[Ipv4Net], ys: &[Ipv4Net]) -> bool {
    xs.iter().any(|x| ys.iter().any(|y| overlaps(x, y)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parse_rules() {
        assert_eq!(parse("10.0.0.0/16").unwrap(), n("10.0.0.0/16"));
        assert_eq!(parse("0.0.0.0/0").unwrap(), n("0.0.0.0/0"));
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.1/16",
            "::/0",
            "a/b",
            "10.0.0.0/16 ",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().code(),
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }

    #[test]
    fn block_sizes() {
        assert!(parse_vpc_block("10.0.0.0/16").is_ok());
        assert!(parse_vpc_block("10.0.0.0/28").is_ok());
        assert_eq!(
            parse_vpc_block("10.0.0.0/15").unwrap_err().code(),
            "InvalidVpc.Range"
        );
        assert_eq!(
            parse_vpc_block("10.0.0.0/29").unwrap_err().code(),
            "InvalidVpc.Range"
        );
        assert_eq!(
            parse_subnet_block("10.0.0.0/29").unwrap_err().code(),
            "InvalidSubnet.Range"
        );
        assert_eq!(
            parse_subnet_block("10.0.0.1/24").unwrap_err().code(),
            "InvalidParameterValue"
        );
    }

    /// Each reserved range is refused at its first and last /16..=/28 and
    /// by a block that contains its edge; the blocks just outside pass.
    #[test]
    fn reserved_ranges() {
        let refused = |s: &str| {
            let e = parse_vpc_block(s).unwrap_err();
            assert_eq!(e.code(), "InvalidVpc.Range", "{s}");
            assert_eq!(e.message, format!("The CIDR '{s}' is invalid."), "{s}");
        };
        for s in [
            "0.0.0.0/16",
            "0.255.255.240/28",
            "127.0.0.0/16",
            "127.255.0.0/16",
            "127.255.255.240/28",
            "169.254.0.0/16",
            "169.254.169.240/28",
            "169.254.255.240/28",
            "224.0.0.0/16",
            "239.255.255.240/28",
            "240.0.0.0/16",
            "255.255.255.240/28",
            "255.255.0.0/16",
        ] {
            refused(s);
        }
        for s in [
            "1.0.0.0/16",
            "1.0.0.0/28",
            "126.255.255.240/28",
            "128.0.0.0/16",
            "169.253.255.240/28",
            "169.255.0.0/16",
            "223.255.255.240/28",
            "223.255.0.0/16",
            "100.64.0.0/16",
            "198.19.0.0/16",
        ] {
            assert!(parse_vpc_block(s).is_ok(), "{s}");
        }
        // The whole reserved list, checked against a naive address test.
        for r in RESERVED {
            let first = parse_vpc_block(&Ipv4Net::new(r.network(), 28).unwrap().to_string());
            let last = Ipv4Net::new(r.broadcast(), 28).unwrap().trunc();
            assert!(
                first.is_err() && parse_vpc_block(&last.to_string()).is_err(),
                "{r}"
            );
        }
    }

    #[test]
    fn secondary_in_the_primary_private_range() {
        let ok = |p: &str, s: &str| check_secondary(&n(p), &n(s)).is_ok();
        assert!(ok("10.0.0.0/16", "10.1.0.0/16"));
        assert!(ok("10.0.0.0/16", "100.64.0.0/16"));
        assert!(ok("10.0.0.0/16", "198.19.0.0/16"));
        assert!(ok("172.31.0.0/16", "172.16.0.0/16"));
        assert!(ok("192.168.0.0/16", "192.168.255.240/28"));
        assert!(ok("100.64.0.0/16", "8.8.0.0/16"));
        for (p, s) in [
            ("10.0.0.0/16", "172.16.0.0/16"),
            ("10.0.0.0/16", "192.168.0.0/16"),
            ("172.16.0.0/16", "10.0.0.0/16"),
            ("172.16.0.0/16", "192.168.0.0/16"),
            ("192.168.0.0/16", "10.255.0.0/16"),
            ("192.168.0.0/16", "172.31.255.240/28"),
            ("8.8.0.0/16", "10.0.0.0/16"),
        ] {
            let e = check_secondary(&n(p), &n(s)).unwrap_err();
            assert_eq!(e.code(), "InvalidVpc.Range", "{p} + {s}");
            assert!(e
                .message
                .starts_with(&format!("The CIDR '{s}' is restricted.")));
        }
        // Just outside 172.16.0.0/12 is public space.
        assert!(ok("10.0.0.0/16", "172.15.255.240/28"));
        assert!(ok("10.0.0.0/16", "172.32.0.0/16"));
    }

    #[test]
    fn overlap() {
        assert!(overlaps(&n("10.0.0.0/16"), &n("10.0.5.0/24")));
        assert!(overlaps(&n("10.0.5.0/24"), &n("10.0.0.0/16")));
        assert!(overlaps(&n("10.0.0.0/16"), &n("10.0.0.0/16")));
        assert!(!overlaps(&n("10.0.0.0/16"), &n("10.1.0.0/16")));
        assert!(any_overlap(
            &[n("10.0.0.0/16"), n("172.16.0.0/16")],
            &[n("192.168.0.0/16"), n("172.16.8.0/24")]
        ));
        assert!(!any_overlap(&[n("10.0.0.0/16")], &[]));
    }
}
