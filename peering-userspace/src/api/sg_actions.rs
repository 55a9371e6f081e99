//! The security group and network interface actions (issue 12), served
//! like those of `actions.rs`: requests from [`crate::api::types`], writes
//! through [`Store::transact`], reads through [`Store::read`].

use crate::api::actions::{done, ok, read, write};
use crate::api::error::Fault;
use crate::api::extract::decode;
use crate::api::filters;
use crate::api::types::*;
use crate::control::account::Call;
use crate::control::ids::IdSource;
use crate::control::sg_rules::Direction;
use crate::control::store::Store;
use serde_json::Value;

pub const SG_ACTIONS: [&str; 13] = [
    "CreateSecurityGroup",
    "DeleteSecurityGroup",
    "DescribeSecurityGroups",
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "DescribeSecurityGroupRules",
    "DescribeStaleSecurityGroups",
    "CreateNetworkInterface",
    "DeleteNetworkInterface",
    "DescribeNetworkInterfaces",
    "ModifyNetworkInterfaceAttribute",
];

fn direction(action: &str) -> Direction {
    if action.ends_with("Egress") {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

/// Runs one of [`SG_ACTIONS`]; None for any other action.
pub fn execute<S: Store>(
    store: &S,
    ids: &mut dyn IdSource,
    action: &str,
    call: &Call,
    body: &[u8],
) -> Option<Result<Value, Fault>> {
    let out = match action {
        "CreateSecurityGroup" => (|| {
            let r: CreateSecurityGroup = decode(body)?;
            let group_id = write(store, |s| s.create_security_group(call, ids, &r))?;
            ok(CreateSecurityGroupResponse { group_id })
        })(),
        "DeleteSecurityGroup" => (|| {
            let r: GroupIdRequest = decode(body)?;
            write(store, |s| s.delete_security_group(call, &r.group_id))?;
            done()
        })(),
        "DescribeSecurityGroups" => (|| {
            let r: DescribeSecurityGroupsRequest = decode(body)?;
            let groups = read(store, |s| {
                s.describe_security_groups(call, &r.group_ids, &r.group_names)
            })?;
            let security_groups = filters::apply(
                groups,
                &r.filters,
                &filters::SECURITY_GROUP_FILTERS,
                filters::security_group_fields,
            )?;
            ok(SecurityGroupsResponse { security_groups })
        })(),
        "AuthorizeSecurityGroupIngress" | "AuthorizeSecurityGroupEgress" => (|| {
            let r: SecurityGroupRulesRequest = decode(body)?;
            if !r.security_group_rule_ids.is_empty() {
                return Err(crate::control::error::ApiError::invalid(
                    "SecurityGroupRuleIds is a parameter of the Revoke actions",
                )
                .into());
            }
            let dir = direction(action);
            let security_group_rules = write(store, |s| {
                s.authorize_security_group(call, ids, dir, &r.group_id, &r.ip_permissions)
            })?;
            ok(AuthorizeSecurityGroupResponse {
                r#return: true,
                security_group_rules,
            })
        })(),
        "RevokeSecurityGroupIngress" | "RevokeSecurityGroupEgress" => (|| {
            let r: SecurityGroupRulesRequest = decode(body)?;
            let dir = direction(action);
            write(store, |s| {
                s.revoke_security_group(
                    call,
                    dir,
                    &r.group_id,
                    &r.ip_permissions,
                    &r.security_group_rule_ids,
                )
            })?;
            done()
        })(),
        "DescribeSecurityGroupRules" => (|| {
            let r: DescribeSecurityGroupRulesRequest = decode(body)?;
            let rules = read(store, |s| {
                s.describe_security_group_rules(call, &r.security_group_rule_ids)
            })?;
            let security_group_rules = filters::apply(
                rules,
                &r.filters,
                &filters::SECURITY_GROUP_RULE_FILTERS,
                filters::security_group_rule_fields,
            )?;
            ok(SecurityGroupRulesResponse {
                security_group_rules,
            })
        })(),
        "DescribeStaleSecurityGroups" => (|| {
            let r: VpcIdRequest = decode(body)?;
            let stale_security_group_set =
                read(store, |s| s.describe_stale_security_groups(call, &r.vpc_id))?;
            ok(StaleSecurityGroupsResponse {
                stale_security_group_set,
            })
        })(),
        "CreateNetworkInterface" => (|| {
            let r: CreateNetworkInterface = decode(body)?;
            let network_interface = write(store, |s| s.create_network_interface(call, ids, &r))?;
            ok(NetworkInterfaceResponse { network_interface })
        })(),
        "DeleteNetworkInterface" => (|| {
            let r: NetworkInterfaceIdRequest = decode(body)?;
            write(store, |s| {
                s.delete_network_interface(call, &r.network_interface_id)
            })?;
            done()
        })(),
        "DescribeNetworkInterfaces" => (|| {
            let r: DescribeNetworkInterfacesRequest = decode(body)?;
            let enis = read(store, |s| {
                s.describe_network_interfaces(call, &r.network_interface_ids)
            })?;
            let network_interfaces = filters::apply(
                enis,
                &r.filters,
                &filters::NETWORK_INTERFACE_FILTERS,
                filters::network_interface_fields,
            )?;
            ok(NetworkInterfacesResponse { network_interfaces })
        })(),
        "ModifyNetworkInterfaceAttribute" => (|| {
            let r: ModifyNetworkInterfaceAttributeRequest = decode(body)?;
            write(store, |s| {
                s.modify_network_interface_groups(call, &r.network_interface_id, &r.groups)
            })?;
            done()
        })(),
        _ => return None,
    };
    Some(out)
}
