//! API errors, modelled on the EC2 error codes
//! (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
//!
//! An error is a code (a closed enum, so callers can match on it) plus a
//! human-readable message. `code()` gives the exact AWS string that goes on
//! the wire; `http_status()` is a hint for the HTTP front end.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every error the control plane can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    VpcPeeringConnectionNotFound,
    VpcPeeringConnectionIdMalformed,
    VpcNotFound,
    VpcIdMalformed,
    SubnetNotFound,
    SubnetIdMalformed,
    RouteTableNotFound,
    RouteTableIdMalformed,
    AssociationNotFound,
    AssociationIdMalformed,
    RouteNotFound,
    RouteAlreadyExists,
    ResourceAlreadyAssociated,
    InvalidStateTransition,
    VpcPeeringConnectionAlreadyExists,
    ActiveVpcPeeringConnectionPerVpcLimitExceeded,
    OutstandingVpcPeeringConnectionLimitExceeded,
    CidrLimitExceeded,
    RouteTableLimitExceeded,
    RouteLimitExceeded,
    InvalidParameterValue,
    InvalidVpcRange,
    InvalidSubnetRange,
    InvalidSubnetConflict,
    CidrConflict,
    DependencyViolation,
    UnauthorizedOperation,
    /// The caller is allowed in principle, but not in this way: wrong region
    /// for the call, or the resource is not in a state where the option can be
    /// changed (used for ModifyVpcPeeringConnectionOptions on a non-active
    /// peering, as AWS does).
    OperationNotPermitted,
    /// Exhaustion of an internal counter; never expected in practice.
    InternalError,
    // ----- security groups and network interfaces (issue 12) -----
    GroupNotFound,
    GroupIdMalformed,
    GroupDuplicate,
    PermissionDuplicate,
    PermissionNotFound,
    PermissionMalformed,
    SecurityGroupRuleNotFound,
    SecurityGroupRuleIdMalformed,
    RulesPerSecurityGroupLimitExceeded,
    SecurityGroupLimitExceeded,
    SecurityGroupsPerInterfaceLimitExceeded,
    /// Deleting a VPC's default group (AWS's `CannotDelete`).
    CannotDelete,
    NetworkInterfaceNotFound,
    NetworkInterfaceIdMalformed,
    IpAddressInUse,
    InsufficientFreeAddressesInSubnet,
}

impl ErrorCode {
    /// The AWS error code string.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            VpcPeeringConnectionNotFound => "InvalidVpcPeeringConnectionID.NotFound",
            VpcPeeringConnectionIdMalformed => "InvalidVpcPeeringConnectionId.Malformed",
            VpcNotFound => "InvalidVpcID.NotFound",
            VpcIdMalformed => "InvalidVpcID.Malformed",
            SubnetNotFound => "InvalidSubnetID.NotFound",
            SubnetIdMalformed => "InvalidSubnetID.Malformed",
            RouteTableNotFound => "InvalidRouteTableID.NotFound",
            RouteTableIdMalformed => "InvalidRouteTableId.Malformed",
            AssociationNotFound => "InvalidAssociationID.NotFound",
            AssociationIdMalformed => "InvalidAssociationID.Malformed",
            RouteNotFound => "InvalidRoute.NotFound",
            RouteAlreadyExists => "RouteAlreadyExists",
            ResourceAlreadyAssociated => "Resource.AlreadyAssociated",
            InvalidStateTransition => "InvalidStateTransition",
            VpcPeeringConnectionAlreadyExists => "VpcPeeringConnectionAlreadyExists",
            ActiveVpcPeeringConnectionPerVpcLimitExceeded => {
                "ActiveVpcPeeringConnectionPerVpcLimitExceeded"
            }
            OutstandingVpcPeeringConnectionLimitExceeded => {
                "OutstandingVpcPeeringConnectionLimitExceeded"
            }
            CidrLimitExceeded => "CidrLimitExceeded",
            RouteTableLimitExceeded => "RouteTableLimitExceeded",
            RouteLimitExceeded => "RouteLimitExceeded",
            InvalidParameterValue => "InvalidParameterValue",
            InvalidVpcRange => "InvalidVpc.Range",
            InvalidSubnetRange => "InvalidSubnet.Range",
            InvalidSubnetConflict => "InvalidSubnet.Conflict",
            CidrConflict => "CidrConflict",
            DependencyViolation => "DependencyViolation",
            UnauthorizedOperation => "UnauthorizedOperation",
            OperationNotPermitted => "OperationNotPermitted",
            InternalError => "InternalError",
            GroupNotFound => "InvalidGroup.NotFound",
            GroupIdMalformed => "InvalidGroupId.Malformed",
            GroupDuplicate => "InvalidGroup.Duplicate",
            PermissionDuplicate => "InvalidPermission.Duplicate",
            PermissionNotFound => "InvalidPermission.NotFound",
            PermissionMalformed => "InvalidPermission.Malformed",
            SecurityGroupRuleNotFound => "InvalidSecurityGroupRuleId.NotFound",
            SecurityGroupRuleIdMalformed => "InvalidSecurityGroupRuleId.Malformed",
            RulesPerSecurityGroupLimitExceeded => "RulesPerSecurityGroupLimitExceeded",
            SecurityGroupLimitExceeded => "SecurityGroupLimitExceeded",
            SecurityGroupsPerInterfaceLimitExceeded => "SecurityGroupsPerInterfaceLimitExceeded",
            CannotDelete => "CannotDelete",
            NetworkInterfaceNotFound => "InvalidNetworkInterfaceID.NotFound",
            NetworkInterfaceIdMalformed => "InvalidNetworkInterfaceId.Malformed",
            IpAddressInUse => "InvalidIPAddress.InUse",
            InsufficientFreeAddressesInSubnet => "InsufficientFreeAddressesInSubnet",
        }
    }

    /// HTTP status hint: 404 for missing things, 403 for authorization
    /// failures, 500 for internal errors, 400 for every other client error.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            VpcPeeringConnectionNotFound
            | VpcNotFound
            | SubnetNotFound
            | RouteTableNotFound
            | AssociationNotFound
            | RouteNotFound
            | GroupNotFound
            | PermissionNotFound
            | SecurityGroupRuleNotFound
            | NetworkInterfaceNotFound => 404,
            UnauthorizedOperation => 403,
            InternalError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error returned by a control-plane operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// Longest run of non-blank characters an error message keeps: ids, CIDRs,
/// names and values a caller sends are echoed in messages, and a caller may
/// send 256 KiB of them. No fixed text of ours has a word this long.
pub const MAX_ECHO_CHARS: usize = 64;
/// Longest message kept, for values with blanks in them.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// Bounds an error message: every run of non-blank characters longer than
/// [`MAX_ECHO_CHARS`] is cut to that many characters and "…", then the
/// whole message to [`MAX_MESSAGE_CHARS`] and "…" (cuts fall on character
/// boundaries). Every error constructor of the API, the model's and the
/// HTTP layer's, goes through here, so no site that formats a caller's value
/// into a message can forget it. Applying it twice changes nothing.
pub fn bound_message(message: String) -> String {
    let mut word = 0usize;
    let long_word = message.chars().any(|c| {
        word = if c.is_whitespace() { 0 } else { word + 1 };
        word > MAX_ECHO_CHARS + 1
    });
    if !long_word && message.chars().nth(MAX_MESSAGE_CHARS + 1).is_none() {
        return message;
    }
    let mut out = String::with_capacity(MAX_MESSAGE_CHARS + 8);
    let mut word = 0usize;
    let mut kept = 0usize;
    for c in message.chars() {
        if kept == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        word = if c.is_whitespace() { 0 } else { word + 1 };
        if word <= MAX_ECHO_CHARS {
            out.push(c);
            kept += 1;
        } else if word == MAX_ECHO_CHARS + 1 {
            out.push('…');
            kept += 1;
        }
    }
    out
}

impl ApiError {
    /// An error with `message` bounded by [`bound_message`].
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: bound_message(message.into()),
        }
    }

    /// The AWS error code string, e.g. `InvalidVpcID.NotFound`.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidParameterValue, message)
    }

    pub(crate) fn vpc_not_found(id: &str) -> Self {
        ApiError::new(
            ErrorCode::VpcNotFound,
            format!("The vpc ID '{id}' does not exist"),
        )
    }

    pub(crate) fn pcx_not_found(id: &str) -> Self {
        ApiError::new(
            ErrorCode::VpcPeeringConnectionNotFound,
            format!("The vpcPeeringConnection ID '{id}' does not exist"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut() {
        let short = "The vpc ID 'vpc-0123456789abcdef0' does not exist".to_string();
        assert_eq!(bound_message(short.clone()), short);
        // A 10,000-character id: cut to 64 characters and "…".
        let id = "x".repeat(10_000);
        let m = ApiError::vpc_not_found(&id).message;
        assert_eq!(m, format!("The vpc ID '{}… does not exist", "x".repeat(63)));
        // Exactly 64 and 65 characters: kept; 66 characters: cut.
        for (len, kept) in [(64, true), (65, true), (66, false)] {
            let w = "y".repeat(len);
            assert_eq!(bound_message(w.clone()) == w, kept, "{len}");
        }
        // Multi-byte characters are cut on a boundary.
        let m = bound_message(format!("value {}", "é".repeat(5000)));
        assert_eq!(m, format!("value {}…", "é".repeat(64)));
        // Values with blanks are bounded as a whole.
        let m = bound_message(format!("value '{}'", "ab ".repeat(5000)));
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(m.ends_with('…'));
        // Idempotent, so errors passed on through another constructor stay
        // the same.
        for m in [m, ApiError::vpc_not_found(&id).message] {
            assert_eq!(bound_message(m.clone()), m);
        }
    }

    #[test]
    fn codes_and_statuses() {
        let e = ApiError::pcx_not_found("pcx-1");
        assert_eq!(e.code(), "InvalidVpcPeeringConnectionID.NotFound");
        assert_eq!(e.http_status(), 404);
        assert_eq!(
            ErrorCode::VpcPeeringConnectionIdMalformed.as_str(),
            "InvalidVpcPeeringConnectionId.Malformed"
        );
        assert_eq!(ErrorCode::UnauthorizedOperation.http_status(), 403);
        assert_eq!(ErrorCode::RouteAlreadyExists.http_status(), 400);
        assert_eq!(ErrorCode::InvalidVpcRange.as_str(), "InvalidVpc.Range");
        assert!(e
            .to_string()
            .starts_with("InvalidVpcPeeringConnectionID.NotFound: "));
    }
}
