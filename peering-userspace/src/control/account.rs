//! Account identifiers and the per-call context (who calls, from which region,
//! at what time).

use crate::control::clock::Clock;
use crate::control::error::ApiError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// AWS account ids are exactly 12 decimal digits
/// (https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-identifiers.html).
pub const ACCOUNT_ID_LEN: usize = 12;

/// A validated 12-digit account id. Serialized as its string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if s.len() == ACCOUNT_ID_LEN && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_owned()))
        } else {
            Err(ApiError::invalid(format!(
                "Invalid account id '{s}': expected {ACCOUNT_ID_LEN} digits"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        AccountId::parse(s)
    }
}

impl TryFrom<String> for AccountId {
    type Error = ApiError;
    fn try_from(s: String) -> Result<Self, ApiError> {
        AccountId::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The context of one API call. Every operation takes one: the model has no
/// notion of "current user" or "current time" of its own, which keeps it
/// deterministic. The region is the region endpoint the call was made to;
/// it is validated against the configured regions by each operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub account: AccountId,
    pub region: String,
    /// Unix seconds.
    pub now: u64,
}

impl Call {
    /// A call made now, as told by `clock`.
    pub fn new(account: AccountId, region: impl Into<String>, clock: &dyn Clock) -> Self {
        Call::at(account, region, clock.now())
    }

    /// A call made at an explicit time (unix seconds).
    pub fn at(account: AccountId, region: impl Into<String>, now: u64) -> Self {
        Call {
            account,
            region: region.into(),
            now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_validation() {
        assert!(AccountId::parse("123456789012").is_ok());
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            " 23456789012",
            "１23456789012",
        ] {
            let e = AccountId::parse(bad).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterValue", "{bad:?}");
        }
    }

    #[test]
    fn account_serde_validates() {
        let a: AccountId = serde_json::from_str("\"000000000001\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"000000000001\"");
        assert!(serde_json::from_str::<AccountId>("\"1\"").is_err());
    }
}
