//! `peerctl` verbs for security groups and network interfaces (issue 12),
//! in the AWS CLI's style: rules as `--ip-permissions` (JSON, a list or one
//! object) or, for one rule, `--protocol`, `--port` and `--cidr` or
//! `--source-group` (with `--group-owner` for another account's group).

use crate::api::types::*;
use crate::cli::args::{filters, req, Request};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// Create a security group in a VPC.
    CreateSecurityGroup {
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        description: String,
        #[arg(long)]
        vpc_id: String,
    },
    /// Delete a security group (not the default group, not while in use
    /// or referenced by another group of its VPC).
    DeleteSecurityGroup {
        #[arg(long)]
        group_id: String,
    },
    /// Describe your security groups in the region.
    DescribeSecurityGroups {
        #[arg(long, num_args = 1..)]
        group_ids: Vec<String>,
        #[arg(long, num_args = 1..)]
        group_names: Vec<String>,
        /// Names: group-id, group-name, vpc-id, owner-id, description,
        /// ip-permission.{cidr,from-port,to-port,protocol,group-id,user-id,description}
        /// and egress.ip-permission.* alike.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// Add inbound rules to a security group.
    AuthorizeSecurityGroupIngress(RuleArgs),
    /// Add outbound rules to a security group.
    AuthorizeSecurityGroupEgress(RuleArgs),
    /// Remove inbound rules from a security group.
    RevokeSecurityGroupIngress(RevokeArgs),
    /// Remove outbound rules from a security group.
    RevokeSecurityGroupEgress(RevokeArgs),
    /// Describe the rules of your security groups.
    DescribeSecurityGroupRules {
        #[arg(long, num_args = 1..)]
        security_group_rule_ids: Vec<String>,
        /// Names: group-id, security-group-rule-id.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// List the groups of a VPC with stale rules (referencing a peer VPC's
    /// group over a peering that is no longer active, or a deleted group).
    DescribeStaleSecurityGroups {
        #[arg(long)]
        vpc_id: String,
    },
    /// Create a network interface in a subnet.
    CreateNetworkInterface {
        #[arg(long)]
        subnet_id: String,
        /// Default: the lowest free address of the subnet.
        #[arg(long)]
        private_ip_address: Option<String>,
        /// Security group ids (default: the VPC's default group).
        #[arg(long, num_args = 1..)]
        groups: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a network interface.
    DeleteNetworkInterface {
        #[arg(long)]
        network_interface_id: String,
    },
    /// Describe your network interfaces in the region.
    DescribeNetworkInterfaces {
        #[arg(long, num_args = 1..)]
        network_interface_ids: Vec<String>,
        /// Names: network-interface-id, subnet-id, vpc-id,
        /// private-ip-address, addresses.private-ip-address, group-id,
        /// group-name, owner-id, description, status.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// Replace the security groups of a network interface.
    ModifyNetworkInterfaceAttribute {
        #[arg(long)]
        network_interface_id: String,
        #[arg(long, num_args = 1.., required = true)]
        groups: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    #[arg(long)]
    pub group_id: String,
    /// JSON: a list of IpPermission objects, or one.
    #[arg(long, conflicts_with_all = ["protocol", "port", "cidr", "source_group"])]
    pub ip_permissions: Option<String>,
    /// tcp, udp, icmp, all (-1) or a protocol number.
    #[arg(long)]
    pub protocol: Option<String>,
    /// A port, a range FROM-TO, or -1/all; for ICMP the type (or TYPE-CODE).
    #[arg(long, allow_hyphen_values = true)]
    pub port: Option<String>,
    #[arg(long, conflicts_with = "source_group")]
    pub cidr: Option<String>,
    /// A security group id.
    #[arg(long)]
    pub source_group: Option<String>,
    /// The account of --source-group, if not yours.
    #[arg(long, requires = "source_group")]
    pub group_owner: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub rule: RuleArgs,
    #[arg(long, num_args = 1..)]
    pub security_group_rule_ids: Vec<String>,
}

/// `--port` as (FromPort, ToPort).
fn ports(protocol: &str, port: Option<&str>) -> Result<(Option<i32>, Option<i32>), String> {
    let num = |s: &str| -> Result<i32, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("--port {s:?}: not a number"))
    };
    let icmp = matches!(protocol, "icmp" | "1");
    match port.map(str::trim) {
        None if icmp => Ok((Some(-1), Some(-1))),
        None => Ok((None, None)),
        Some("-1") | Some("all") => Ok((Some(-1), Some(-1))),
        Some(p) => match p.split_once('-') {
            Some((a, b)) if !a.is_empty() => Ok((Some(num(a)?), Some(num(b)?))),
            _ if icmp => Ok((Some(num(p)?), Some(-1))),
            _ => {
                let v = num(p)?;
                Ok((Some(v), Some(v)))
            }
        },
    }
}

impl RuleArgs {
    /// The permissions these arguments name (none when only rule ids are
    /// given to a revoke).
    pub fn permissions(&self) -> Result<Vec<IpPermission>, String> {
        if let Some(json) = &self.ip_permissions {
            let t = json.trim();
            return if t.starts_with('[') {
                serde_json::from_str(t).map_err(|e| format!("invalid --ip-permissions: {e}"))
            } else {
                serde_json::from_str(t)
                    .map(|p| vec![p])
                    .map_err(|e| format!("invalid --ip-permissions: {e}"))
            };
        }
        let Some(protocol) = &self.protocol else {
            if self.cidr.is_some() || self.source_group.is_some() || self.port.is_some() {
                return Err("--protocol is required with --port, --cidr or --source-group".into());
            }
            return Ok(vec![]);
        };
        let protocol = match protocol.as_str() {
            "all" => "-1".to_owned(),
            p => p.to_owned(),
        };
        let (from_port, to_port) = ports(&protocol, self.port.as_deref())?;
        let mut p = IpPermission {
            ip_protocol: protocol,
            from_port,
            to_port,
            ..Default::default()
        };
        match (&self.cidr, &self.source_group) {
            (Some(c), None) => p.ip_ranges.push(IpRange {
                cidr_ip: c.clone(),
                description: None,
            }),
            (None, Some(g)) => p.user_id_group_pairs.push(UserIdGroupPair {
                group_id: Some(g.clone()),
                user_id: self.group_owner.clone(),
                ..Default::default()
            }),
            _ => return Err("give --cidr or --source-group (or --ip-permissions)".into()),
        }
        Ok(vec![p])
    }

    fn request(&self, rule_ids: &[String]) -> Result<SecurityGroupRulesRequest, String> {
        Ok(SecurityGroupRulesRequest {
            group_id: self.group_id.clone(),
            ip_permissions: self.permissions()?,
            security_group_rule_ids: rule_ids.to_vec(),
        })
    }
}

impl SgCommand {
    pub fn request(&self) -> Result<Request, String> {
        use SgCommand::*;
        match self {
            CreateSecurityGroup {
                group_name,
                description,
                vpc_id,
            } => req(
                "CreateSecurityGroup",
                crate::control::security_group::CreateSecurityGroup {
                    group_name: group_name.clone(),
                    description: description.clone(),
                    vpc_id: vpc_id.clone(),
                },
            ),
            DeleteSecurityGroup { group_id } => req(
                "DeleteSecurityGroup",
                GroupIdRequest {
                    group_id: group_id.clone(),
                },
            ),
            DescribeSecurityGroups {
                group_ids,
                group_names,
                filters: f,
            } => req(
                "DescribeSecurityGroups",
                DescribeSecurityGroupsRequest {
                    group_ids: group_ids.clone(),
                    group_names: group_names.clone(),
                    filters: filters(f)?,
                },
            ),
            AuthorizeSecurityGroupIngress(r) => {
                req("AuthorizeSecurityGroupIngress", r.request(&[])?)
            }
            AuthorizeSecurityGroupEgress(r) => req("AuthorizeSecurityGroupEgress", r.request(&[])?),
            RevokeSecurityGroupIngress(r) => req(
                "RevokeSecurityGroupIngress",
                r.rule.request(&r.security_group_rule_ids)?,
            ),
            RevokeSecurityGroupEgress(r) => req(
                "RevokeSecurityGroupEgress",
                r.rule.request(&r.security_group_rule_ids)?,
            ),
            DescribeSecurityGroupRules {
                security_group_rule_ids,
                filters: f,
            } => req(
                "DescribeSecurityGroupRules",
                DescribeSecurityGroupRulesRequest {
                    security_group_rule_ids: security_group_rule_ids.clone(),
                    filters: filters(f)?,
                },
            ),
            DescribeStaleSecurityGroups { vpc_id } => req(
                "DescribeStaleSecurityGroups",
                VpcIdRequest {
                    vpc_id: vpc_id.clone(),
                },
            ),
            CreateNetworkInterface {
                subnet_id,
                private_ip_address,
                groups,
                description,
            } => req(
                "CreateNetworkInterface",
                crate::control::network_interface::CreateNetworkInterface {
                    subnet_id: subnet_id.clone(),
                    private_ip_address: private_ip_address.clone(),
                    groups: groups.clone(),
                    description: description.clone(),
                },
            ),
            DeleteNetworkInterface {
                network_interface_id,
            } => req(
                "DeleteNetworkInterface",
                NetworkInterfaceIdRequest {
                    network_interface_id: network_interface_id.clone(),
                },
            ),
            DescribeNetworkInterfaces {
                network_interface_ids,
                filters: f,
            } => req(
                "DescribeNetworkInterfaces",
                DescribeNetworkInterfacesRequest {
                    network_interface_ids: network_interface_ids.clone(),
                    filters: filters(f)?,
                },
            ),
            ModifyNetworkInterfaceAttribute {
                network_interface_id,
                groups,
            } => req(
                "ModifyNetworkInterfaceAttribute",
                ModifyNetworkInterfaceAttributeRequest {
                    network_interface_id: network_interface_id.clone(),
                    groups: groups.clone(),
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_forms() {
        assert_eq!(ports("tcp", Some("22")).unwrap(), (Some(22), Some(22)));
        assert_eq!(ports("tcp", Some("80-90")).unwrap(), (Some(80), Some(90)));
        assert_eq!(ports("tcp", Some("-1")).unwrap(), (Some(-1), Some(-1)));
        assert_eq!(ports("icmp", Some("8")).unwrap(), (Some(8), Some(-1)));
        assert_eq!(ports("icmp", Some("3-4")).unwrap(), (Some(3), Some(4)));
        assert_eq!(ports("icmp", None).unwrap(), (Some(-1), Some(-1)));
        assert_eq!(ports("-1", None).unwrap(), (None, None));
        assert!(ports("tcp", Some("x")).is_err());
    }
}
