//! Security group rules: Authorize/Revoke SecurityGroup Ingress/Egress
//! with EC2's `IpPermissions`, DescribeSecurityGroupRules, and
//! DescribeStaleSecurityGroups.
//!
//! An `IpPermission` names a protocol (`tcp`, `udp`, `icmp`, `-1` for
//! all, or a protocol number), ports (`FromPort`/`ToPort`; for ICMP the
//! type and code, `-1` meaning any) and peers (`IpRanges`,
//! `UserIdGroupPairs`); it becomes one rule (`sgr-…`) per peer.
//!
//! A reference to another group is valid when that group is in the same
//! VPC, or in a peer VPC of the same region over an active peering (any
//! account). A reference that stops being valid (the peering ended, the
//! peer's group was deleted) stays, is stale, and leaves the region view.

use crate::control::account::{AccountId, Call};
use crate::control::cidr;
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{self, IdSource, Kind};
use crate::control::peering::PeeringStatus;
use crate::control::security_group::{group_not_found, RulePeer, SecurityGroup, SgRule};
use crate::control::sg_view::SgProtocol;
use crate::control::state::State;
use serde::{Deserialize, Serialize};

/// Rule descriptions: up to 255 characters (EC2).
pub const MAX_RULE_DESCRIPTION: usize = 255;

/// One `IpPermissions` element (requests and descriptions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IpPermission {
    pub ip_protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    #[serde(default)]
    pub ip_ranges: Vec<IpRange>,
    #[serde(default)]
    pub user_id_group_pairs: Vec<UserIdGroupPair>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IpRange {
    pub cidr_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UserIdGroupPair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_peering_connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// DescribeSecurityGroupRules output element (and the rules Authorize
/// returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupRuleDescription {
    pub security_group_rule_id: String,
    pub group_id: String,
    pub group_owner_id: String,
    pub is_egress: bool,
    pub ip_protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referenced_group_info: Option<UserIdGroupPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// DescribeStaleSecurityGroups output element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StaleSecurityGroup {
    pub group_id: String,
    pub group_name: String,
    pub description: String,
    pub vpc_id: String,
    pub stale_ip_permissions: Vec<IpPermission>,
    pub stale_ip_permissions_egress: Vec<IpPermission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "inbound",
            Direction::Egress => "outbound",
        }
    }
}

fn bad_port(which: &str, v: Option<i32>) -> ApiError {
    let v = v.map_or("(missing)".to_owned(), |v| v.to_string());
    ApiError::invalid(format!("Invalid value '{v}' for {which}"))
}

/// The protocol (with ports) of a permission, as EC2 reads it: names or
/// numbers (6, 17 and 1 are tcp, udp and icmp); ports for tcp and udp are
/// required, 0-65535, from <= to; for ICMP `FromPort` is the type and
/// `ToPort` the code, -1 meaning any (a code needs a type); other
/// protocols allow all their traffic and ignore ports.
pub fn parse_protocol(p: &IpPermission) -> Result<SgProtocol, ApiError> {
    let name = p.ip_protocol.trim().to_ascii_lowercase();
    let number: i32 = match name.as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "-1" | "all" => -1,
        n => match n.parse::<u8>() {
            Ok(n) => i32::from(n),
            Err(_) => {
                return Err(ApiError::invalid(format!(
                    "Invalid value '{}' for IP protocol. Unknown protocol.",
                    p.ip_protocol
                )))
            }
        },
    };
    let ports = || -> Result<(u16, u16), ApiError> {
        let from = p
            .from_port
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| bad_port("fromPort", p.from_port))?;
        let to = p
            .to_port
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| bad_port("toPort", p.to_port))?;
        if from > to {
            return Err(ApiError::invalid(format!(
                "Invalid port range: fromPort {from} is greater than toPort {to}"
            )));
        }
        Ok((from, to))
    };
    let icmp_field = |which: &str, v: Option<i32>| -> Result<Option<u8>, ApiError> {
        match v.unwrap_or(-1) {
            -1 => Ok(None),
            x => u8::try_from(x).map(Some).map_err(|_| bad_port(which, v)),
        }
    };
    Ok(match number {
        -1 => SgProtocol::All,
        6 => {
            let (from_port, to_port) = ports()?;
            SgProtocol::Tcp { from_port, to_port }
        }
        17 => {
            let (from_port, to_port) = ports()?;
            SgProtocol::Udp { from_port, to_port }
        }
        1 => {
            let icmp_type = icmp_field("ICMP type (fromPort)", p.from_port)?;
            let code = icmp_field("ICMP code (toPort)", p.to_port)?;
            if icmp_type.is_none() && code.is_some() {
                return Err(ApiError::invalid(
                    "Invalid ICMP code: a code needs an ICMP type (fromPort -1 means any type and any code)",
                ));
            }
            SgProtocol::Icmp { icmp_type, code }
        }
        n => SgProtocol::Other(n as u8),
    })
}

/// (IpProtocol, FromPort, ToPort) of a protocol, as EC2 shows them.
pub fn protocol_fields(p: &SgProtocol) -> (String, Option<i32>, Option<i32>) {
    let any = |v: Option<u8>| Some(v.map_or(-1, i32::from));
    match p {
        SgProtocol::All => ("-1".into(), None, None),
        SgProtocol::Tcp { from_port, to_port } => (
            "tcp".into(),
            Some(i32::from(*from_port)),
            Some(i32::from(*to_port)),
        ),
        SgProtocol::Udp { from_port, to_port } => (
            "udp".into(),
            Some(i32::from(*from_port)),
            Some(i32::from(*to_port)),
        ),
        SgProtocol::Icmp { icmp_type, code } => ("icmp".into(), any(*icmp_type), any(*code)),
        SgProtocol::Other(n) => (n.to_string(), None, None),
    }
}

fn check_description(d: &Option<String>) -> Result<(), ApiError> {
    match d {
        Some(d) if d.chars().count() > MAX_RULE_DESCRIPTION => Err(ApiError::invalid(format!(
            "Invalid rule description: at most {MAX_RULE_DESCRIPTION} characters"
        ))),
        _ => Ok(()),
    }
}

fn different_networks() -> ApiError {
    // EC2 answers a reference to a group outside the VPC and its active
    // same-region peers (including a peer VPC's group across regions,
    // which "you can't reference": vpc-peering-security-groups.html) with
    // InvalidGroup.NotFound and this message; no dedicated cross-region
    // code is documented.
    ApiError::new(
        ErrorCode::GroupNotFound,
        "You have specified two resources that belong to different networks.",
    )
}

/// A rule to add or remove, before it gets ids.
pub(crate) struct NewRule {
    pub protocol: SgProtocol,
    pub peer: RulePeer,
    pub description: Option<String>,
}

impl State {
    /// Whether VPCs `a` and `b` (distinct) are peered by an active peering
    /// and in the same region: when a rule of one may reference a group
    /// of the other.
    pub(crate) fn same_region_peers(&self, a: &str, b: &str, now: u64) -> Option<&str> {
        let (va, vb) = (self.vpc(a)?, self.vpc(b)?);
        if va.region != vb.region {
            return None;
        }
        self.peerings
            .values()
            .find(|p| {
                p.status_at(now) == PeeringStatus::Active
                    && p.side_of_vpc(a).is_some()
                    && p.side_of_vpc(b).is_some()
            })
            .map(|p| p.id.as_str())
    }

    /// The peer a pair names, for a rule of `group`, checked as EC2 does.
    fn resolve_pair(
        &self,
        call: &Call,
        group: &SecurityGroup,
        pair: &UserIdGroupPair,
    ) -> Result<RulePeer, ApiError> {
        let id = pair.group_id.as_deref().ok_or_else(|| {
            ApiError::invalid("UserIdGroupPairs need a GroupId (group names are not supported)")
        })?;
        ids::check_id(Kind::SecurityGroup, id)?;
        let target = self
            .security_groups
            .get(id)
            .ok_or_else(|| group_not_found(id))?;
        let user = pair.user_id.as_deref().map(AccountId::parse).transpose()?;
        // Another account's group is named with its account (EC2's
        // "123456789012/sg-…"); without it the group is not found.
        let owner_named = target.owner == call.account || user.as_ref() == Some(&target.owner);
        if !owner_named || user.as_ref().is_some_and(|u| *u != target.owner) {
            return Err(group_not_found(id));
        }
        if target.vpc_id == group.vpc_id {
            return Ok(RulePeer::Group {
                group_id: id.to_owned(),
                user_id: target.owner.clone(),
                pcx_id: None,
            });
        }
        let pcx = self
            .same_region_peers(&group.vpc_id, &target.vpc_id, call.now)
            .ok_or_else(different_networks)?;
        if let Some(named) = &pair.vpc_peering_connection_id {
            if named != pcx {
                return Err(different_networks());
            }
        }
        Ok(RulePeer::Group {
            group_id: id.to_owned(),
            user_id: target.owner.clone(),
            pcx_id: Some(pcx.to_owned()),
        })
    }

    /// The rules a list of permissions names, validated.
    fn expand(
        &self,
        call: &Call,
        group: &SecurityGroup,
        perms: &[IpPermission],
    ) -> Result<Vec<NewRule>, ApiError> {
        let mut out = Vec::new();
        for p in perms {
            let protocol = parse_protocol(p)?;
            if p.ip_ranges.is_empty() && p.user_id_group_pairs.is_empty() {
                return Err(ApiError::invalid(
                    "Each IpPermission needs at least one IpRanges or UserIdGroupPairs entry",
                ));
            }
            for r in &p.ip_ranges {
                check_description(&r.description)?;
                out.push(NewRule {
                    protocol: protocol.clone(),
                    peer: RulePeer::Cidr(cidr::parse(&r.cidr_ip)?),
                    description: r.description.clone(),
                });
            }
            for pair in &p.user_id_group_pairs {
                check_description(&pair.description)?;
                out.push(NewRule {
                    protocol: protocol.clone(),
                    peer: self.resolve_pair(call, group, pair)?,
                    description: pair.description.clone(),
                });
            }
        }
        if out.is_empty() {
            return Err(ApiError::invalid("IpPermissions must not be empty"));
        }
        Ok(out)
    }

    /// AuthorizeSecurityGroupIngress / Egress: adds one rule per peer of
    /// every permission, all or none. Returns the new rules.
    pub fn authorize_security_group(
        &mut self,
        call: &Call,
        ids: &mut dyn IdSource,
        dir: Direction,
        group_id: &str,
        perms: &[IpPermission],
    ) -> Result<Vec<SecurityGroupRuleDescription>, ApiError> {
        self.check_call(call)?;
        let group = self.owned_group(call, group_id)?;
        let new = self.expand(call, group, perms)?;
        let existing = match dir {
            Direction::Ingress => &group.ingress,
            Direction::Egress => &group.egress,
        };
        let limit = match dir {
            Direction::Ingress => self.config.limits.inbound_rules_per_group,
            Direction::Egress => self.config.limits.outbound_rules_per_group,
        };
        let over = || {
            ApiError::new(
                ErrorCode::RulesPerSecurityGroupLimitExceeded,
                format!(
                    "The maximum number of {} rules per security group ({limit}) has been reached.",
                    dir.name()
                ),
            )
        };
        // A request larger than the quota is refused before the duplicate
        // scan (quadratic in the request) runs.
        if new.len() > limit {
            return Err(over());
        }
        for (i, r) in new.iter().enumerate() {
            let dup_in_request = new[..i].iter().any(|o| {
                o.protocol == r.protocol
                    && crate::control::security_group::same_peer(&o.peer, &r.peer)
            });
            if dup_in_request || existing.iter().any(|e| e.same_as(&r.protocol, &r.peer)) {
                return Err(ApiError::new(
                    ErrorCode::PermissionDuplicate,
                    format!(
                        "the specified rule \"{}\" already exists",
                        rule_text(&r.protocol, &r.peer)
                    ),
                ));
            }
        }
        if existing.len() + new.len() > limit {
            return Err(over());
        }
        let mut rule_ids: Vec<String> = Vec::with_capacity(new.len());
        for _ in &new {
            let mut id = self.new_id(Kind::SecurityGroupRule, ids)?;
            while rule_ids.contains(&id) {
                id = self.new_id(Kind::SecurityGroupRule, ids)?;
            }
            rule_ids.push(id);
        }
        let first = self.take_dp_ids(new.len() as u32)?;
        let rules: Vec<SgRule> = new
            .into_iter()
            .zip(rule_ids)
            .enumerate()
            .map(|(i, (r, id))| SgRule {
                id,
                dp_id: first + i as u32,
                protocol: r.protocol,
                peer: r.peer,
                description: r.description,
            })
            .collect();
        let group = self
            .security_groups
            .get_mut(group_id)
            .expect("checked above");
        match dir {
            Direction::Ingress => group.ingress.extend(rules.iter().cloned()),
            Direction::Egress => group.egress.extend(rules.iter().cloned()),
        }
        let group = self.security_groups.get(group_id).expect("checked above");
        Ok(rules
            .iter()
            .map(|r| self.describe_rule(group, r, dir == Direction::Egress))
            .collect())
    }

    /// RevokeSecurityGroupIngress / Egress: removes the rules the
    /// permissions name (matched on protocol, ports and peer, as EC2 does)
    /// and the rules named by id; all or none
    /// (`InvalidPermission.NotFound`).
    pub fn revoke_security_group(
        &mut self,
        call: &Call,
        dir: Direction,
        group_id: &str,
        perms: &[IpPermission],
        rule_ids: &[String],
    ) -> Result<(), ApiError> {
        self.check_call(call)?;
        let group = self.owned_group(call, group_id)?;
        let existing = match dir {
            Direction::Ingress => &group.ingress,
            Direction::Egress => &group.egress,
        };
        let mut gone: Vec<String> = Vec::new();
        if !perms.is_empty() {
            for r in self.expand_for_revoke(call, group, perms)? {
                let found = existing
                    .iter()
                    .find(|e| e.same_as(&r.protocol, &r.peer))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::PermissionNotFound,
                            format!(
                                "The specified rule \"{}\" does not exist in this security group.",
                                rule_text(&r.protocol, &r.peer)
                            ),
                        )
                    })?;
                gone.push(found.id.clone());
            }
        }
        for id in rule_ids {
            ids::check_id(Kind::SecurityGroupRule, id)?;
            if !existing.iter().any(|e| e.id == *id) {
                return Err(ApiError::new(
                    ErrorCode::SecurityGroupRuleNotFound,
                    format!(
                        "The security group rule ID '{id}' does not exist in {group_id} ({} rules)",
                        dir.name()
                    ),
                ));
            }
            gone.push(id.clone());
        }
        if gone.is_empty() {
            return Err(ApiError::invalid(
                "Either IpPermissions or SecurityGroupRuleIds must be given",
            ));
        }
        let group = self
            .security_groups
            .get_mut(group_id)
            .expect("checked above");
        let list = match dir {
            Direction::Ingress => &mut group.ingress,
            Direction::Egress => &mut group.egress,
        };
        list.retain(|r| !gone.contains(&r.id));
        Ok(())
    }

    /// Like `expand`, but a group peer is matched by id only: a stale
    /// reference (peering gone) can still be revoked.
    fn expand_for_revoke(
        &self,
        call: &Call,
        group: &SecurityGroup,
        perms: &[IpPermission],
    ) -> Result<Vec<NewRule>, ApiError> {
        let mut out = Vec::new();
        for p in perms {
            let protocol = parse_protocol(p)?;
            for r in &p.ip_ranges {
                out.push(NewRule {
                    protocol: protocol.clone(),
                    peer: RulePeer::Cidr(cidr::parse(&r.cidr_ip)?),
                    description: None,
                });
            }
            for pair in &p.user_id_group_pairs {
                let id = pair
                    .group_id
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid("UserIdGroupPairs need a GroupId"))?;
                ids::check_id(Kind::SecurityGroup, id)?;
                out.push(NewRule {
                    protocol: protocol.clone(),
                    peer: RulePeer::Group {
                        group_id: id.to_owned(),
                        user_id: call.account.clone(),
                        pcx_id: None,
                    },
                    description: None,
                });
            }
        }
        let _ = group;
        if out.is_empty() {
            return Err(ApiError::invalid("IpPermissions must not be empty"));
        }
        Ok(out)
    }

    /// DescribeSecurityGroupRules: every rule of the caller's groups in
    /// the call's region, or the rules named (unknown ids are
    /// `InvalidSecurityGroupRuleId.NotFound`).
    pub fn describe_security_group_rules(
        &self,
        call: &Call,
        rule_ids: &[String],
    ) -> Result<Vec<SecurityGroupRuleDescription>, ApiError> {
        self.check_call(call)?;
        for id in rule_ids {
            ids::check_id(Kind::SecurityGroupRule, id)?;
        }
        let wanted: std::collections::HashSet<&str> = rule_ids.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for g in self
            .security_groups
            .values()
            .filter(|g| g.owner == call.account && self.group_region(g) == Some(&call.region))
        {
            for (r, egress) in g
                .ingress
                .iter()
                .map(|r| (r, false))
                .chain(g.egress.iter().map(|r| (r, true)))
            {
                if wanted.is_empty() || wanted.contains(r.id.as_str()) {
                    out.push(self.describe_rule(g, r, egress));
                }
            }
        }
        let found: std::collections::HashSet<&str> = out
            .iter()
            .map(|r| r.security_group_rule_id.as_str())
            .collect();
        if let Some(missing) = rule_ids.iter().find(|id| !found.contains(id.as_str())) {
            return Err(ApiError::new(
                ErrorCode::SecurityGroupRuleNotFound,
                format!("The security group rule ID '{missing}' does not exist"),
            ));
        }
        Ok(out)
    }

    /// DescribeStaleSecurityGroups: the caller's groups of `vpc_id` with
    /// rules referencing a group of another VPC that are no longer valid
    /// (the peering is not active any more, or the group was deleted).
    pub fn describe_stale_security_groups(
        &self,
        call: &Call,
        vpc_id: &str,
    ) -> Result<Vec<StaleSecurityGroup>, ApiError> {
        self.check_call(call)?;
        let vpc = self.owned_vpc(call, vpc_id)?;
        let mut out = Vec::new();
        for g in self.groups_of_vpc(&vpc.id) {
            let stale = |rules: &[SgRule]| -> Vec<SgRule> {
                rules
                    .iter()
                    .filter(|r| self.is_stale(g, r, call.now))
                    .cloned()
                    .collect()
            };
            let (ingress, egress) = (stale(&g.ingress), stale(&g.egress));
            if ingress.is_empty() && egress.is_empty() {
                continue;
            }
            out.push(StaleSecurityGroup {
                group_id: g.id.clone(),
                group_name: g.name.clone(),
                description: g.description.clone(),
                vpc_id: g.vpc_id.clone(),
                stale_ip_permissions: self.permissions(&ingress),
                stale_ip_permissions_egress: self.permissions(&egress),
            });
        }
        Ok(out)
    }

    /// A rule of `g` referencing a group of another VPC that is not a valid
    /// reference any more.
    pub(crate) fn is_stale(&self, g: &SecurityGroup, r: &SgRule, now: u64) -> bool {
        let Some(target) = r.group_ref() else {
            return false;
        };
        match self.security_groups.get(target) {
            None => true,
            Some(t) if t.vpc_id == g.vpc_id => false,
            Some(t) => self.same_region_peers(&g.vpc_id, &t.vpc_id, now).is_none(),
        }
    }

    /// Rules as EC2's `IpPermissions`: one permission per protocol (and
    /// ports), in first-seen order, with its CIDRs and groups.
    pub(crate) fn permissions(&self, rules: &[SgRule]) -> Vec<IpPermission> {
        let mut out: Vec<(SgProtocol, IpPermission)> = Vec::new();
        for r in rules {
            let i = match out.iter().position(|(p, _)| *p == r.protocol) {
                Some(i) => i,
                None => {
                    let (ip_protocol, from_port, to_port) = protocol_fields(&r.protocol);
                    out.push((
                        r.protocol.clone(),
                        IpPermission {
                            ip_protocol,
                            from_port,
                            to_port,
                            ..Default::default()
                        },
                    ));
                    out.len() - 1
                }
            };
            let perm = &mut out[i].1;
            match &r.peer {
                RulePeer::Cidr(c) => perm.ip_ranges.push(IpRange {
                    cidr_ip: c.to_string(),
                    description: r.description.clone(),
                }),
                RulePeer::Group { .. } => {
                    let mut pair = self.pair_of(&r.peer);
                    pair.description = r.description.clone();
                    perm.user_id_group_pairs.push(pair);
                }
            }
        }
        out.into_iter().map(|(_, p)| p).collect()
    }

    fn pair_of(&self, peer: &RulePeer) -> UserIdGroupPair {
        let RulePeer::Group {
            group_id,
            user_id,
            pcx_id,
        } = peer
        else {
            return UserIdGroupPair::default();
        };
        UserIdGroupPair {
            group_id: Some(group_id.clone()),
            user_id: Some(user_id.to_string()),
            vpc_id: self.security_groups.get(group_id).map(|t| t.vpc_id.clone()),
            vpc_peering_connection_id: pcx_id.clone(),
            peering_status: pcx_id.as_ref().map(|p| {
                self.peering(p)
                    .map_or(PeeringStatus::Deleted, |p| p.status)
                    .as_str()
                    .to_owned()
            }),
            description: None,
        }
    }

    pub(crate) fn describe_rule(
        &self,
        g: &SecurityGroup,
        r: &SgRule,
        is_egress: bool,
    ) -> SecurityGroupRuleDescription {
        let (ip_protocol, from, to) = protocol_fields(&r.protocol);
        SecurityGroupRuleDescription {
            security_group_rule_id: r.id.clone(),
            group_id: g.id.clone(),
            group_owner_id: g.owner.to_string(),
            is_egress,
            ip_protocol,
            from_port: from.unwrap_or(-1),
            to_port: to.unwrap_or(-1),
            cidr_ipv4: match &r.peer {
                RulePeer::Cidr(c) => Some(c.to_string()),
                RulePeer::Group { .. } => None,
            },
            referenced_group_info: r.group_ref().map(|_| self.pair_of(&r.peer)),
            description: r.description.clone(),
        }
    }
}

/// A rule in words, for error messages (EC2's style).
fn rule_text(p: &SgProtocol, peer: &RulePeer) -> String {
    let (proto, from, to) = protocol_fields(p);
    let peer = match peer {
        RulePeer::Cidr(c) => c.to_string(),
        RulePeer::Group { group_id, .. } => group_id.clone(),
    };
    let port = |v: Option<i32>| v.map_or("all".to_owned(), |v| v.to_string());
    format!(
        "peer: {peer}, {}, from port: {}, to port: {}, ALLOW",
        proto.to_ascii_uppercase(),
        port(from),
        port(to)
    )
}
