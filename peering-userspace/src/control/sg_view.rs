//! Security groups and network interfaces as a region's agent sees them:
//! the contract between the control plane (which fills these from its
//! model) and the dataplane compiler (`dataplane::sg`, which turns them into
//! maps). Numeric dataplane ids, never reused, as for VPCs and peerings.
//!
//! Semantics (EC2's): an interface's traffic is allowed when any rule of
//! any of its groups allows it (rules only allow); return traffic of an
//! allowed flow is always admitted (connection tracking). An address of a
//! VPC with no interface record belongs to the VPC's default group
//! ([`crate::control::view::VpcView`] carries its id).

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// One security group of a VPC of this region, with its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupView {
    /// `sg-…`.
    pub group_id: String,
    pub dp_id: u32,
    pub vpc_dp_id: u32,
    /// Rules matched against the packet's source (the peer is the sender).
    pub ingress: Vec<SgRuleView>,
    /// Rules matched against the packet's destination (the peer is the
    /// receiver).
    pub egress: Vec<SgRuleView>,
}

/// One rule: a protocol (with ports or ICMP type/code) and a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgRuleView {
    /// `sgr-…`.
    pub rule_id: String,
    /// Dataplane id of the rule's hit counter.
    pub dp_id: u32,
    pub protocol: SgProtocol,
    pub peer: SgPeer,
}

/// What a rule matches above IP. Port ranges are inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SgProtocol {
    /// Every protocol (AWS's `-1`).
    All,
    Tcp {
        from_port: u16,
        to_port: u16,
    },
    Udp {
        from_port: u16,
        to_port: u16,
    },
    /// `None` matches any ICMP type (AWS's `-1`); `code: None` any code of
    /// that type.
    Icmp {
        icmp_type: Option<u8>,
        code: Option<u8>,
    },
    /// Any other IP protocol by number, all of it.
    Other(u8),
}

/// Whom a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SgPeer {
    Cidr(Ipv4Net),
    /// Every address whose interface is a member of this group (a group
    /// of the same VPC, or of a peer VPC in the same region over an active
    /// peering; never across regions).
    Group {
        group_dp_id: u32,
    },
}

/// A network interface (`eni-…`) of a VPC of this region: its address
/// and the groups it is a member of (at least one, at most the quota).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub eni_id: String,
    pub vpc_dp_id: u32,
    pub address: Ipv4Addr,
    pub group_dp_ids: Vec<u32>,
}
