//! VPC security groups (EC2 semantics): CreateSecurityGroup,
//! DeleteSecurityGroup, DescribeSecurityGroups and each VPC's default
//! group. Rules (Authorize/Revoke, DescribeSecurityGroupRules, stale
//! rules) are in `sg_rules.rs`.
//!
//! A group belongs to one VPC and one account. Its rules only allow; each
//! is one protocol (with ports or ICMP type/code) and one peer (a CIDR, or
//! the members of a group of the same VPC or of a peer VPC in the same
//! region over an active peering). Every group and rule carries a
//! dataplane id from the never-reused counter.

use crate::control::account::{AccountId, Call};
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{self, IdSource, Kind};
use crate::control::sg_view::SgProtocol;
use crate::control::state::State;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The name of every VPC's default group (reserved for it).
pub const DEFAULT_GROUP_NAME: &str = "default";
pub const DEFAULT_GROUP_DESCRIPTION: &str = "default VPC security group";
/// GroupName and Description: up to 255 characters (EC2 CreateSecurityGroup).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub dp_id: u32,
    pub owner: AccountId,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

/// One rule (`sgr-…`): one protocol and one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgRule {
    pub id: String,
    pub dp_id: u32,
    pub protocol: SgProtocol,
    pub peer: RulePeer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RulePeer {
    Cidr(Ipv4Net),
    /// Members of group `group_id` (owned by `user_id`); `pcx_id` names the
    /// peering a reference to a peer VPC's group was made over.
    Group {
        group_id: String,
        user_id: AccountId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pcx_id: Option<String>,
    },
}

impl SgRule {
    /// Whether two rules allow the same thing (AWS's duplicate test: the
    /// description does not count).
    pub fn same_as(&self, protocol: &SgProtocol, peer: &RulePeer) -> bool {
        self.protocol == *protocol && same_peer(&self.peer, peer)
    }

    pub fn group_ref(&self) -> Option<&str> {
        match &self.peer {
            RulePeer::Group { group_id, .. } => Some(group_id),
            RulePeer::Cidr(_) => None,
        }
    }
}

pub(crate) fn same_peer(a: &RulePeer, b: &RulePeer) -> bool {
    match (a, b) {
        (RulePeer::Cidr(x), RulePeer::Cidr(y)) => x == y,
        (RulePeer::Group { group_id: x, .. }, RulePeer::Group { group_id: y, .. }) => x == y,
        _ => false,
    }
}

impl SecurityGroup {
    pub fn rules(&self) -> impl Iterator<Item = &SgRule> {
        self.ingress.iter().chain(&self.egress)
    }

    pub fn references(&self, group_id: &str) -> bool {
        self.rules().any(|r| r.group_ref() == Some(group_id))
    }
}

/// CreateSecurityGroup input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateSecurityGroup {
    pub group_name: String,
    pub description: String,
    pub vpc_id: String,
}

/// GroupName and Description characters in a VPC, from the EC2 API
/// reference: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*
fn check_text(what: &str, s: &str, allow_empty: bool) -> Result<(), ApiError> {
    const EXTRA: &str = " ._-:/()#,@[]+=&;{}!$*";
    let ok = (allow_empty || !s.is_empty())
        && s.chars().count() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || EXTRA.contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid value '{s}' for {what}: up to {MAX_NAME_LEN} characters of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{{}}!$*"
        )))
    }
}

pub(crate) fn group_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::GroupNotFound,
        format!("The security group '{id}' does not exist"),
    )
}

/// The rule every default group starts with, and every new group's egress:
/// all traffic.
pub(crate) fn all_traffic(id: String, dp_id: u32, peer: RulePeer) -> SgRule {
    SgRule {
        id,
        dp_id,
        protocol: SgProtocol::All,
        peer,
        description: None,
    }
}

pub(crate) fn anywhere() -> RulePeer {
    RulePeer::Cidr(Ipv4Net::default())
}

/// DescribeSecurityGroups output element, shaped like the EC2 JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupDescription {
    pub group_id: String,
    pub group_name: String,
    pub description: String,
    pub owner_id: String,
    pub vpc_id: String,
    pub ip_permissions: Vec<crate::control::sg_rules::IpPermission>,
    pub ip_permissions_egress: Vec<crate::control::sg_rules::IpPermission>,
}

impl State {
    /// CreateSecurityGroup: a group in one of the caller's VPCs with no
    /// inbound rule and one outbound rule allowing all traffic, as EC2
    /// creates it.
    pub fn create_security_group(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        req: &CreateSecurityGroup,
    ) -> Result<String, ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, &req.vpc_id)?;
        check_text("GroupName", &req.group_name, false)?;
        check_text("GroupDescription", &req.description, true)?;
        if req.group_name == DEFAULT_GROUP_NAME {
            return Err(ApiError::invalid(format!(
                "Cannot use reserved security group name: {DEFAULT_GROUP_NAME}"
            )));
        }
        if req.group_name.starts_with("sg-") {
            return Err(ApiError::invalid(
                "Group names may not be in the format sg-*",
            ));
        }
        if self
            .groups_of_vpc(&vpc.id)
            .any(|g| g.name == req.group_name)
        {
            return Err(ApiError::new(
                ErrorCode::GroupDuplicate,
                format!(
                    "The security group '{}' already exists for VPC '{}'",
                    req.group_name, vpc.id
                ),
            ));
        }
        self.check_group_quota(call)?;
        let vpc_id = vpc.id.clone();
        let id = self.new_id(Kind::SecurityGroup, ids)?;
        let rule_id = self.new_id(Kind::SecurityGroupRule, ids)?;
        let first = self.take_dp_ids(2)?;
        let group = SecurityGroup {
            id: id.clone(),
            dp_id: first,
            owner: call.account.clone(),
            vpc_id,
            name: req.group_name.clone(),
            description: req.description.clone(),
            ingress: vec![],
            egress: vec![all_traffic(rule_id, first.wrapping_add(1), anywhere())],
        };
        self.security_groups.insert(id.clone(), group);
        Ok(id)
    }

    fn check_group_quota(&self, call: &Call) -> Result<(), ApiError> {
        let limit = self.config.limits.security_groups_per_region;
        let used = self
            .security_groups
            .values()
            .filter(|g| g.owner == call.account && self.group_region(g) == Some(&call.region))
            .count();
        if used >= limit {
            return Err(ApiError::new(
                ErrorCode::SecurityGroupLimitExceeded,
                format!("You have exceeded the number of VPC security groups allowed per region ({limit})"),
            ));
        }
        Ok(())
    }

    /// A VPC's default group, built (ids drawn, nothing stored): ingress
    /// from its own members, egress to anywhere. Takes 3 dataplane ids
    /// from `first`.
    pub(crate) fn default_group(
        &self,
        ids: &mut dyn IdSource,
        vpc_id: &str,
        owner: &AccountId,
        first: u32,
    ) -> Result<SecurityGroup, ApiError> {
        let id = self.new_id(Kind::SecurityGroup, ids)?;
        let ingress = self.new_id(Kind::SecurityGroupRule, ids)?;
        let mut egress = self.new_id(Kind::SecurityGroupRule, ids)?;
        while egress == ingress {
            egress = self.new_id(Kind::SecurityGroupRule, ids)?;
        }
        let own = RulePeer::Group {
            group_id: id.clone(),
            user_id: owner.clone(),
            pcx_id: None,
        };
        Ok(SecurityGroup {
            id,
            dp_id: first,
            owner: owner.clone(),
            vpc_id: vpc_id.to_owned(),
            name: DEFAULT_GROUP_NAME.into(),
            description: DEFAULT_GROUP_DESCRIPTION.into(),
            ingress: vec![all_traffic(ingress, first.wrapping_add(1), own)],
            egress: vec![all_traffic(egress, first.wrapping_add(2), anywhere())],
        })
    }

    /// Gives every VPC without a default group one (VPCs of a store
    /// written before security groups existed). Returns how many it made.
    pub fn adopt_default_groups(&mut self, ids: &mut dyn IdSource) -> Result<usize, ApiError> {
        let missing: Vec<(String, AccountId)> = self
            .vpcs
            .values()
            .filter(|v| v.default_group_id.is_none())
            .map(|v| (v.id.clone(), v.owner.clone()))
            .collect();
        for (vpc_id, owner) in &missing {
            let first = self.next_dp_id;
            let group = self.default_group(ids, vpc_id, owner, first)?;
            self.take_dp_ids(3)?;
            let vpc = self.vpcs.get_mut(vpc_id).expect("listed above");
            vpc.default_group_id = Some(group.id.clone());
            self.security_groups.insert(group.id.clone(), group);
        }
        Ok(missing.len())
    }

    /// DeleteSecurityGroup. The default group cannot be deleted
    /// (`CannotDelete`); a group used by an interface, or referenced by a
    /// rule of another group of its VPC, is a `DependencyViolation`.
    /// References from peer VPCs do not block: those rules become stale,
    /// as in EC2.
    pub fn delete_security_group(&mut self, call: &Call, group_id: &str) -> Result<(), ApiError> {
        self.check_call(call)?;
        let g = self.owned_group(call, group_id)?;
        if self
            .vpc(&g.vpc_id)
            .is_some_and(|v| v.default_group_id.as_deref() == Some(group_id))
        {
            return Err(ApiError::new(
                ErrorCode::CannotDelete,
                format!("the specified group: \"{group_id}\" name: \"default\" cannot be deleted by a user"),
            ));
        }
        let in_use = self
            .network_interfaces
            .values()
            .find(|n| n.groups.iter().any(|x| x == group_id))
            .map(|n| n.id.clone());
        let referenced = self
            .groups_of_vpc(&g.vpc_id)
            .find(|o| o.id != group_id && o.references(group_id))
            .map(|o| o.id.clone());
        if let Some(dep) = in_use.or(referenced) {
            return Err(ApiError::new(
                ErrorCode::DependencyViolation,
                format!("resource {group_id} has a dependent object ({dep})"),
            ));
        }
        self.security_groups.remove(group_id);
        Ok(())
    }

    /// DescribeSecurityGroups: the caller's groups in the call's region;
    /// `group_ids` and `group_names` narrow the result, and naming a group
    /// the caller cannot see is `InvalidGroup.NotFound`.
    pub fn describe_security_groups(
        &self,
        call: &Call,
        group_ids: &[String],
        group_names: &[String],
    ) -> Result<Vec<SecurityGroupDescription>, ApiError> {
        self.check_call(call)?;
        let mut out = Vec::new();
        for id in group_ids {
            out.push(self.describe_group(self.owned_group(call, id)?));
        }
        if !group_names.is_empty() {
            let names: std::collections::HashSet<&str> =
                group_names.iter().map(String::as_str).collect();
            let found: Vec<&SecurityGroup> = self
                .visible_groups(call)
                .filter(|g| names.contains(g.name.as_str()))
                .collect();
            let found_names: std::collections::HashSet<&str> =
                found.iter().map(|g| g.name.as_str()).collect();
            if let Some(missing) = group_names
                .iter()
                .find(|n| !found_names.contains(n.as_str()))
            {
                return Err(group_not_found(missing));
            }
            out.extend(found.into_iter().map(|g| self.describe_group(g)));
        }
        if group_ids.is_empty() && group_names.is_empty() {
            out = self
                .visible_groups(call)
                .map(|g| self.describe_group(g))
                .collect();
        }
        Ok(out)
    }

    pub(crate) fn describe_group(&self, g: &SecurityGroup) -> SecurityGroupDescription {
        SecurityGroupDescription {
            group_id: g.id.clone(),
            group_name: g.name.clone(),
            description: g.description.clone(),
            owner_id: g.owner.to_string(),
            vpc_id: g.vpc_id.clone(),
            ip_permissions: self.permissions(&g.ingress),
            ip_permissions_egress: self.permissions(&g.egress),
        }
    }

    // ----- lookups -----

    pub fn security_group(&self, id: &str) -> Option<&SecurityGroup> {
        self.security_groups.get(id)
    }

    pub fn security_groups(&self) -> impl Iterator<Item = &SecurityGroup> {
        self.security_groups.values()
    }

    pub(crate) fn groups_of_vpc<'a>(
        &'a self,
        vpc_id: &'a str,
    ) -> impl Iterator<Item = &'a SecurityGroup> + 'a {
        self.security_groups
            .values()
            .filter(move |g| g.vpc_id == vpc_id)
    }

    pub(crate) fn group_region(&self, g: &SecurityGroup) -> Option<&String> {
        self.vpc(&g.vpc_id).map(|v| &v.region)
    }

    fn visible_groups<'a>(
        &'a self,
        call: &'a Call,
    ) -> impl Iterator<Item = &'a SecurityGroup> + 'a {
        self.security_groups
            .values()
            .filter(move |g| g.owner == call.account && self.group_region(g) == Some(&call.region))
    }

    /// The group `id` if the caller owns it and its VPC is in the call's
    /// region; anything else is not found.
    pub(crate) fn owned_group(&self, call: &Call, id: &str) -> Result<&SecurityGroup, ApiError> {
        ids::check_id(Kind::SecurityGroup, id)?;
        self.security_groups
            .get(id)
            .filter(|g| g.owner == call.account && self.group_region(g) == Some(&call.region))
            .ok_or_else(|| group_not_found(id))
    }
}
