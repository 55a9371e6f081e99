//! Resource identifiers: `<prefix>-` followed by 17 lowercase hex digits, the
//! long-id format EC2 uses since 2018
//! (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html).
//!
//! Ids come from an injected [`IdSource`] so the model stays deterministic in
//! tests; production uses [`RngIds::from_os`].

use crate::control::error::{ApiError, ErrorCode};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Number of hex digits after the prefix.
pub const ID_HEX_LEN: usize = 17;
/// 17 hex digits carry 68 bits.
const ID_MASK: u128 = (1u128 << (4 * ID_HEX_LEN)) - 1;

/// The kinds of resources that carry ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vpc,
    Subnet,
    RouteTable,
    RouteTableAssociation,
    Peering,
    SecurityGroup,
    SecurityGroupRule,
    NetworkInterface,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "rtb",
            Kind::RouteTableAssociation => "rtbassoc",
            Kind::Peering => "pcx",
            Kind::SecurityGroup => "sg",
            Kind::SecurityGroupRule => "sgr",
            Kind::NetworkInterface => "eni",
        }
    }

    fn malformed_code(self) -> ErrorCode {
        match self {
            Kind::Vpc => ErrorCode::VpcIdMalformed,
            Kind::Subnet => ErrorCode::SubnetIdMalformed,
            Kind::RouteTable => ErrorCode::RouteTableIdMalformed,
            Kind::RouteTableAssociation => ErrorCode::AssociationIdMalformed,
            Kind::Peering => ErrorCode::VpcPeeringConnectionIdMalformed,
            Kind::SecurityGroup => ErrorCode::GroupIdMalformed,
            Kind::SecurityGroupRule => ErrorCode::SecurityGroupRuleIdMalformed,
            Kind::NetworkInterface => ErrorCode::NetworkInterfaceIdMalformed,
        }
    }
}

/// Supplies the random part of new ids. Only the low 68 bits are used.
pub trait IdSource {
    fn next_bits(&mut self) -> u128;
}

/// Ids drawn from a random number generator.
#[derive(Debug, Clone)]
pub struct RngIds<R = StdRng>(pub R);

impl RngIds<StdRng> {
    /// Deterministic ids for tests.
    pub fn seeded(seed: u64) -> Self {
        RngIds(StdRng::seed_from_u64(seed))
    }

    /// Unpredictable ids for production (seeded from the OS).
    pub fn from_os() -> Self {
        RngIds(StdRng::from_os_rng())
    }
}

impl<R: RngCore> IdSource for RngIds<R> {
    fn next_bits(&mut self) -> u128 {
        let hi = u128::from(self.0.next_u64());
        let lo = u128::from(self.0.next_u64());
        (hi << 64) | lo
    }
}

/// Ids counting up from a start value: readable test output.
#[derive(Debug, Clone)]
pub struct SequentialIds(pub u128);

impl IdSource for SequentialIds {
    fn next_bits(&mut self) -> u128 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

/// Formats an id of `kind` from random bits.
pub fn format_id(kind: Kind, bits: u128) -> String {
    format!(
        "{}-{:0width$x}",
        kind.prefix(),
        bits & ID_MASK,
        width = ID_HEX_LEN
    )
}

/// Checks that `s` is a well-formed id of `kind`, returning the kind's
/// `*.Malformed` error otherwise.
pub fn check_id(kind: Kind, s: &str) -> Result<(), ApiError> {
    let ok = s
        .strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == ID_HEX_LEN
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            kind.malformed_code(),
            format!("Invalid id: \"{s}\" (expecting \"{}-...\")", kind.prefix()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_check_roundtrip() {
        let mut ids = RngIds::seeded(7);
        for kind in [
            Kind::Vpc,
            Kind::Subnet,
            Kind::RouteTable,
            Kind::RouteTableAssociation,
            Kind::Peering,
            Kind::SecurityGroup,
            Kind::SecurityGroupRule,
            Kind::NetworkInterface,
        ] {
            let id = format_id(kind, ids.next_bits());
            assert_eq!(id.len(), kind.prefix().len() + 1 + ID_HEX_LEN);
            check_id(kind, &id).unwrap();
        }
        assert_eq!(format_id(Kind::Vpc, 1), "vpc-00000000000000001");
        assert_eq!(format_id(Kind::Vpc, u128::MAX), "vpc-fffffffffffffffff");
    }

    #[test]
    fn seeded_ids_are_deterministic() {
        let a: Vec<u128> = (0..4)
            .map({
                let mut s = RngIds::seeded(1);
                move |_| s.next_bits()
            })
            .collect();
        let mut s = RngIds::seeded(1);
        let b: Vec<u128> = (0..4).map(|_| s.next_bits()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_ids() {
        for bad in [
            "",
            "vpc-",
            "vpc-0000000000000000",
            "vpc-000000000000000000",
            "vpc-0000000000000000G",
            "vpc-0000000000000000A",
            "VPC-00000000000000001",
            "vpc_00000000000000001",
            "subnet-00000000000000001",
            "vpc-0000000000000000é",
        ] {
            assert_eq!(
                check_id(Kind::Vpc, bad).unwrap_err().code(),
                "InvalidVpcID.Malformed"
            );
        }
        assert_eq!(
            check_id(Kind::Peering, "pcx-1").unwrap_err().code(),
            "InvalidVpcPeeringConnectionId.Malformed"
        );
        assert_eq!(
            check_id(Kind::Subnet, "vpc-00000000000000001")
                .unwrap_err()
                .code(),
            "InvalidSubnetID.Malformed"
        );
    }
}
