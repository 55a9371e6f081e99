//! The security groups and network interfaces of a region's view
//! ([`crate::control::sg_view`]), built from the model.
//!
//! A rule referencing a group appears only while the reference is valid
//! (the group exists, in the same VPC or in a peer VPC of the same region
//! over an active peering); stale references are left out, so removing a
//! peering withdraws what its references allowed.

use crate::control::network_interface::NetworkInterface;
use crate::control::security_group::{RulePeer, SecurityGroup, SgRule};
use crate::control::sg_view::{InterfaceView, SecurityGroupView, SgPeer, SgRuleView};
use crate::control::state::State;

/// The view of group `g`; `peered(a, b)` tells whether VPCs `a` and `b`
/// are peered by an active peering in one region. None if its VPC is gone.
pub(crate) fn group_view(
    state: &State,
    g: &SecurityGroup,
    peered: &dyn Fn(&str, &str) -> bool,
) -> Option<SecurityGroupView> {
    let vpc = state.vpc(&g.vpc_id)?;
    let rules = |rules: &[SgRule]| -> Vec<SgRuleView> {
        rules
            .iter()
            .filter_map(|r| {
                let peer = match &r.peer {
                    RulePeer::Cidr(c) => SgPeer::Cidr(*c),
                    RulePeer::Group { group_id, .. } => {
                        let t = state.security_group(group_id)?;
                        if t.vpc_id != g.vpc_id && !peered(&g.vpc_id, &t.vpc_id) {
                            return None;
                        }
                        SgPeer::Group {
                            group_dp_id: t.dp_id,
                        }
                    }
                };
                Some(SgRuleView {
                    rule_id: r.id.clone(),
                    dp_id: r.dp_id,
                    protocol: r.protocol.clone(),
                    peer,
                })
            })
            .collect()
    };
    Some(SecurityGroupView {
        group_id: g.id.clone(),
        dp_id: g.dp_id,
        vpc_dp_id: vpc.dp_id,
        ingress: rules(&g.ingress),
        egress: rules(&g.egress),
    })
}

pub(crate) fn interface_view(state: &State, n: &NetworkInterface) -> Option<InterfaceView> {
    Some(InterfaceView {
        eni_id: n.id.clone(),
        vpc_dp_id: state.vpc(&n.vpc_id)?.dp_id,
        address: n.address,
        group_dp_ids: n
            .groups
            .iter()
            .filter_map(|g| state.security_group(g).map(|g| g.dp_id))
            .collect(),
    })
}

/// The default group's dataplane id of VPC `vpc_id` (0: none yet).
pub(crate) fn default_group_dp_id(state: &State, vpc_id: &str) -> u32 {
    state
        .vpc(vpc_id)
        .and_then(|v| v.default_group_id.as_deref())
        .and_then(|g| state.security_group(g))
        .map_or(0, |g| g.dp_id)
}
