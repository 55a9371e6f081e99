//! Deployment configuration carried inside the state: the regions that exist
//! and the quotas.

use crate::control::error::ApiError;
use serde::{Deserialize, Serialize};

/// Regions a fresh deployment knows about.
pub const DEFAULT_REGIONS: [&str; 4] = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1"];

/// Quotas, defaults from the Amazon VPC quotas page
/// (https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// "Active VPC peering connections per VPC": 50.
    pub active_peerings_per_vpc: usize,
    /// "Outstanding VPC peering connection requests": 25 per account.
    pub outstanding_requests_per_account: usize,
    /// "IPv4 CIDR blocks per VPC": 5, i.e. the primary plus four secondaries.
    pub cidr_blocks_per_vpc: usize,
    /// "Route tables per VPC": 200 (the main table included).
    pub route_tables_per_vpc: usize,
    /// "Routes per route table (non-propagated routes)": 50.
    pub routes_per_route_table: usize,
    /// "VPC security groups per Region": 2,500 per account (default groups
    /// included). Absent in stores written before issue 12: the default.
    #[serde(default = "default_security_groups_per_region")]
    pub security_groups_per_region: usize,
    /// "Inbound or outbound rules per security group": 60 each.
    #[serde(default = "default_rules_per_group")]
    pub inbound_rules_per_group: usize,
    #[serde(default = "default_rules_per_group")]
    pub outbound_rules_per_group: usize,
    /// "Security groups per network interface": 5.
    #[serde(default = "default_groups_per_interface")]
    pub groups_per_interface: usize,
}

fn default_security_groups_per_region() -> usize {
    2500
}

fn default_rules_per_group() -> usize {
    60
}

fn default_groups_per_interface() -> usize {
    5
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            active_peerings_per_vpc: 50,
            outstanding_requests_per_account: 25,
            cidr_blocks_per_vpc: 5,
            route_tables_per_vpc: 200,
            routes_per_route_table: 50,
            security_groups_per_region: default_security_groups_per_region(),
            inbound_rules_per_group: default_rules_per_group(),
            outbound_rules_per_group: default_rules_per_group(),
            groups_per_interface: default_groups_per_interface(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub regions: Vec<String>,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            regions: DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Refuses regions that are not configured.
    pub fn check_region(&self, region: &str) -> Result<(), ApiError> {
        if self.regions.iter().any(|r| r == region) {
            Ok(())
        } else {
            Err(ApiError::invalid(format!(
                "The region '{region}' does not exist (known: {})",
                self.regions.join(", ")
            )))
        }
    }
}
