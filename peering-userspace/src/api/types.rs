//! Wire types of the HTTP/JSON API: one request struct per action (field
//! names as in EC2, PascalCase) and the response envelopes. Shared by the
//! server and `peerctl`, so both sides agree on the shapes by construction.
//!
//! Requests refuse unknown fields, so a misspelt parameter is an error rather
//! than silently ignored.

use crate::control::peering_describe::{Filter, VpcPeeringConnection};
use crate::control::route_table::RouteTableDescription;
use crate::control::subnet::SubnetDescription;
use crate::control::vpc::VpcDescription;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateVpcRequest {
    pub cidr_block: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VpcIdRequest {
    pub vpc_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VpcCidrBlockRequest {
    pub vpc_id: String,
    pub cidr_block: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeVpcsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpc_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateSubnetRequest {
    pub vpc_id: String,
    pub cidr_block: String,
    /// Gateway interface on the region's dataplane host.
    pub interface: String,
    /// 802.1Q VLAN id; absent = untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SubnetIdRequest {
    pub subnet_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeSubnetsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RouteTableIdRequest {
    pub route_table_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AssociateRouteTableRequest {
    pub route_table_id: String,
    pub subnet_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AssociationIdRequest {
    pub association_id: String,
}

/// CreateRoute and ReplaceRoute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RouteRequest {
    pub route_table_id: String,
    pub destination_cidr_block: String,
    pub vpc_peering_connection_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeleteRouteRequest {
    pub route_table_id: String,
    pub destination_cidr_block: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeRouteTablesRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_table_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateVpcPeeringConnectionRequest {
    pub vpc_id: String,
    pub peer_vpc_id: String,
    /// Defaults to the caller's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_owner_id: Option<String>,
    /// Defaults to the region of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_region: Option<String>,
}

/// Accept, Reject and DeleteVpcPeeringConnection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PeeringIdRequest {
    pub vpc_peering_connection_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeVpcPeeringConnectionsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpc_peering_connection_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// One side's options in ModifyVpcPeeringConnectionOptions (request and
/// response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PeeringConnectionOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_dns_resolution_from_remote_vpc: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ModifyVpcPeeringConnectionOptionsRequest {
    pub vpc_peering_connection_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_peering_connection_options: Option<PeeringConnectionOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepter_peering_connection_options: Option<PeeringConnectionOptions>,
}

// ----- responses -----

/// `{"Return": true}`: the answer of actions that only succeed or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReturnResponse {
    pub r#return: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcResponse {
    pub vpc: VpcDescription,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcsResponse {
    pub vpcs: Vec<VpcDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrBlockAssociation {
    pub cidr_block: String,
    pub cidr_block_state: CidrBlockState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CidrBlockState {
    /// `associated` or `disassociated`.
    pub state: String,
}

/// Associate and DisassociateVpcCidrBlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcCidrBlockResponse {
    pub vpc_id: String,
    pub cidr_block_association: CidrBlockAssociation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubnetResponse {
    pub subnet: SubnetDescription,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubnetsResponse {
    pub subnets: Vec<SubnetDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTableResponse {
    pub route_table: RouteTableDescription,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTablesResponse {
    pub route_tables: Vec<RouteTableDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssociateRouteTableResponse {
    pub association_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcPeeringConnectionResponse {
    pub vpc_peering_connection: VpcPeeringConnection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcPeeringConnectionsResponse {
    pub vpc_peering_connections: Vec<VpcPeeringConnection>,
}

/// The options as requested (AWS echoes the options it applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifyVpcPeeringConnectionOptionsResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_peering_connection_options: Option<PeeringConnectionOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepter_peering_connection_options: Option<PeeringConnectionOptions>,
}

/// The body of every error response:
/// `{"Error": {"Code": "InvalidVpcID.NotFound", "Message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Actions without parameters (the body may be empty or `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegionInfo {
    pub region_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegionsResponse {
    pub regions: Vec<RegionInfo>,
}

/// GetCallerIdentity (as in AWS STS): the account the token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentityResponse {
    pub account: String,
}

// ----- security groups and network interfaces -----

pub use crate::control::network_interface::{CreateNetworkInterface, NetworkInterfaceDescription};
pub use crate::control::security_group::{CreateSecurityGroup, SecurityGroupDescription};
pub use crate::control::sg_rules::{
    IpPermission, IpRange, SecurityGroupRuleDescription, StaleSecurityGroup, UserIdGroupPair,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GroupIdRequest {
    pub group_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeSecurityGroupsRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// Authorize and Revoke SecurityGroup Ingress/Egress (rule ids: Revoke
/// only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SecurityGroupRulesRequest {
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_permissions: Vec<IpPermission>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_rule_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeSecurityGroupRulesRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_rule_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NetworkInterfaceIdRequest {
    pub network_interface_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeNetworkInterfacesRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_interface_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// ModifyNetworkInterfaceAttribute: the groups attribute only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ModifyNetworkInterfaceAttributeRequest {
    pub network_interface_id: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSecurityGroupResponse {
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupsResponse {
    pub security_groups: Vec<SecurityGroupDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthorizeSecurityGroupResponse {
    pub r#return: bool,
    pub security_group_rules: Vec<SecurityGroupRuleDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupRulesResponse {
    pub security_group_rules: Vec<SecurityGroupRuleDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StaleSecurityGroupsResponse {
    pub stale_security_group_set: Vec<StaleSecurityGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterfaceResponse {
    pub network_interface: NetworkInterfaceDescription,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterfacesResponse {
    pub network_interfaces: Vec<NetworkInterfaceDescription>,
}
