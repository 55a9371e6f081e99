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
            | RouteNotFound => 404,
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

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
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
