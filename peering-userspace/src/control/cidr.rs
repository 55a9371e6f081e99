//! IPv4 CIDR parsing and the size rules of VPC and subnet blocks.

use crate::control::error::{ApiError, ErrorCode};
use ipnet::Ipv4Net;

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

/// Parses a VPC block (size /16../28, else `InvalidVpc.Range`).
pub fn parse_vpc_block(s: &str) -> Result<Ipv4Net, ApiError> {
    parse_sized(s, ErrorCode::InvalidVpcRange)
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
