//! `peerctl` arguments (clap) and their translation into API requests.

use crate::api::types::*;
use crate::cli::shorthand::{parse_filters, parse_peering_options};
use crate::control::peering_describe::Filter;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "peerctl",
    version,
    about = "Command line client of the peering control plane (AWS CLI style)",
    after_help = "Settings come from flags, then the environment (PEERING_ENDPOINT, \
PEERING_CA_FILE, PEERING_REGION, PEERING_TOKEN, PEERING_PROFILE, PEERING_OUTPUT), then the \
profile in ~/.peering/config (or $PEERING_CONFIG_FILE):\n\n  [default]\n  endpoint_url = \
https://ctl.example:7780\n  ca_file = /etc/peering/ca.pem\n  region = us-east-1\n  \
token = ...\n\n  [profile other]\n  ...\n\nhttp:// endpoints are accepted on loopback only."
)]
pub struct Cli {
    /// Profile of the config file to use.
    #[arg(long, global = true, env = "PEERING_PROFILE")]
    pub profile: Option<String>,
    /// API endpoint, e.g. https://ctl.example:7780 (http:// on loopback
    /// only, e.g. http://127.0.0.1:7780).
    #[arg(
        long,
        visible_alias = "endpoint",
        global = true,
        env = "PEERING_ENDPOINT"
    )]
    pub endpoint_url: Option<String>,
    /// PEM file of the CA that issued the endpoint's certificate (https://).
    #[arg(long, global = true, env = "PEERING_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Region to make the call in.
    #[arg(long, global = true, env = "PEERING_REGION")]
    pub region: Option<String>,
    /// Output format.
    #[arg(long, global = true, env = "PEERING_OUTPUT", value_enum)]
    pub output: Option<Output>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a VPC.
    CreateVpc {
        #[arg(long)]
        cidr_block: String,
    },
    /// Delete a VPC (it must have no subnets or extra route tables).
    DeleteVpc {
        #[arg(long)]
        vpc_id: String,
    },
    /// Describe your VPCs in the region.
    DescribeVpcs {
        #[arg(long, num_args = 1..)]
        vpc_ids: Vec<String>,
        /// Name=NAME,Values=V1,V2 (or JSON); names: vpc-id, owner-id,
        /// cidr-block, cidr-block-association.cidr-block, state.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// Add a secondary IPv4 block to a VPC.
    AssociateVpcCidrBlock {
        #[arg(long)]
        vpc_id: String,
        #[arg(long)]
        cidr_block: String,
    },
    /// Remove a secondary IPv4 block from a VPC.
    DisassociateVpcCidrBlock {
        #[arg(long)]
        vpc_id: String,
        #[arg(long)]
        cidr_block: String,
    },
    /// Create a subnet bound to a gateway interface (and VLAN).
    CreateSubnet {
        #[arg(long)]
        vpc_id: String,
        #[arg(long)]
        cidr_block: String,
        /// Interface on the region's dataplane host.
        #[arg(long)]
        interface: String,
        /// 802.1Q VLAN id (1-4094); untagged if absent.
        #[arg(long)]
        vlan: Option<u16>,
    },
    /// Delete a subnet.
    DeleteSubnet {
        #[arg(long)]
        subnet_id: String,
    },
    /// Describe your subnets in the region.
    DescribeSubnets {
        #[arg(long, num_args = 1..)]
        subnet_ids: Vec<String>,
        /// Names: subnet-id, vpc-id, owner-id, cidr-block, interface, state.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// Create a route table in a VPC.
    CreateRouteTable {
        #[arg(long)]
        vpc_id: String,
    },
    /// Delete a (non-main, unassociated) route table.
    DeleteRouteTable {
        #[arg(long)]
        route_table_id: String,
    },
    /// Describe your route tables in the region.
    DescribeRouteTables {
        #[arg(long, num_args = 1..)]
        route_table_ids: Vec<String>,
        /// Names: route-table-id, vpc-id, owner-id, association.main,
        /// association.subnet-id, association.route-table-association-id,
        /// route.destination-cidr-block, route.vpc-peering-connection-id,
        /// route.state.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// Associate a subnet with a route table.
    AssociateRouteTable {
        #[arg(long)]
        route_table_id: String,
        #[arg(long)]
        subnet_id: String,
    },
    /// Remove a subnet's route table association.
    DisassociateRouteTable {
        #[arg(long)]
        association_id: String,
    },
    /// Add a route to a peering connection.
    CreateRoute {
        #[arg(long)]
        route_table_id: String,
        #[arg(long)]
        destination_cidr_block: String,
        #[arg(long)]
        vpc_peering_connection_id: String,
    },
    /// Point an existing route at another peering connection.
    ReplaceRoute {
        #[arg(long)]
        route_table_id: String,
        #[arg(long)]
        destination_cidr_block: String,
        #[arg(long)]
        vpc_peering_connection_id: String,
    },
    /// Delete a route.
    DeleteRoute {
        #[arg(long)]
        route_table_id: String,
        #[arg(long)]
        destination_cidr_block: String,
    },
    /// Request a peering connection (call in the requester VPC's region).
    CreateVpcPeeringConnection {
        #[arg(long)]
        vpc_id: String,
        #[arg(long)]
        peer_vpc_id: String,
        /// Defaults to your account.
        #[arg(long)]
        peer_owner_id: Option<String>,
        /// Defaults to the region of the call.
        #[arg(long)]
        peer_region: Option<String>,
    },
    /// Accept a request (call in the accepter VPC's region).
    AcceptVpcPeeringConnection {
        #[arg(long)]
        vpc_peering_connection_id: String,
    },
    /// Reject a request (call in the accepter VPC's region).
    RejectVpcPeeringConnection {
        #[arg(long)]
        vpc_peering_connection_id: String,
    },
    /// Delete a peering connection.
    DeleteVpcPeeringConnection {
        #[arg(long)]
        vpc_peering_connection_id: String,
    },
    /// Describe peering connections you are party to in the region.
    DescribeVpcPeeringConnections {
        #[arg(long, num_args = 1..)]
        vpc_peering_connection_ids: Vec<String>,
        /// Names: status-code, requester-vpc-info.vpc-id,
        /// accepter-vpc-info.vpc-id, requester-vpc-info.owner-id,
        /// accepter-vpc-info.owner-id, vpc-peering-connection-id.
        #[arg(long, num_args = 1..)]
        filters: Vec<String>,
    },
    /// Change the options of an active peering connection.
    ModifyVpcPeeringConnectionOptions {
        #[arg(long)]
        vpc_peering_connection_id: String,
        /// AllowDnsResolutionFromRemoteVpc=true|false (or JSON).
        #[arg(long)]
        requester_peering_connection_options: Option<String>,
        /// AllowDnsResolutionFromRemoteVpc=true|false (or JSON).
        #[arg(long)]
        accepter_peering_connection_options: Option<String>,
    },
    /// List the regions of the deployment.
    DescribeRegions,
    /// Show the account your token belongs to.
    GetCallerIdentity,
    #[command(flatten)]
    Sg(crate::cli::sg_args::SgCommand),
}

/// An API call: action name and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: &'static str,
    pub body: Value,
}

pub(crate) fn req<T: Serialize>(action: &'static str, body: T) -> Result<Request, String> {
    let body = serde_json::to_value(body).map_err(|e| e.to_string())?;
    Ok(Request { action, body })
}

pub(crate) fn filters(args: &[String]) -> Result<Vec<Filter>, String> {
    let mut out = Vec::new();
    for a in args {
        out.extend(parse_filters(a)?);
    }
    Ok(out)
}

fn options(arg: &Option<String>) -> Result<Option<PeeringConnectionOptions>, String> {
    arg.as_deref().map(parse_peering_options).transpose()
}

impl Command {
    /// The API request for this command; Err is a usage error.
    pub fn request(&self) -> Result<Request, String> {
        use Command::*;
        match self {
            CreateVpc { cidr_block } => req(
                "CreateVpc",
                CreateVpcRequest {
                    cidr_block: cidr_block.clone(),
                },
            ),
            DeleteVpc { vpc_id } => req(
                "DeleteVpc",
                VpcIdRequest {
                    vpc_id: vpc_id.clone(),
                },
            ),
            DescribeVpcs {
                vpc_ids,
                filters: f,
            } => req(
                "DescribeVpcs",
                DescribeVpcsRequest {
                    vpc_ids: vpc_ids.clone(),
                    filters: filters(f)?,
                },
            ),
            AssociateVpcCidrBlock { vpc_id, cidr_block } => req(
                "AssociateVpcCidrBlock",
                VpcCidrBlockRequest {
                    vpc_id: vpc_id.clone(),
                    cidr_block: cidr_block.clone(),
                },
            ),
            DisassociateVpcCidrBlock { vpc_id, cidr_block } => req(
                "DisassociateVpcCidrBlock",
                VpcCidrBlockRequest {
                    vpc_id: vpc_id.clone(),
                    cidr_block: cidr_block.clone(),
                },
            ),
            CreateSubnet {
                vpc_id,
                cidr_block,
                interface,
                vlan,
            } => req(
                "CreateSubnet",
                CreateSubnetRequest {
                    vpc_id: vpc_id.clone(),
                    cidr_block: cidr_block.clone(),
                    interface: interface.clone(),
                    vlan: *vlan,
                },
            ),
            DeleteSubnet { subnet_id } => req(
                "DeleteSubnet",
                SubnetIdRequest {
                    subnet_id: subnet_id.clone(),
                },
            ),
            DescribeSubnets {
                subnet_ids,
                filters: f,
            } => req(
                "DescribeSubnets",
                DescribeSubnetsRequest {
                    subnet_ids: subnet_ids.clone(),
                    filters: filters(f)?,
                },
            ),
            CreateRouteTable { vpc_id } => req(
                "CreateRouteTable",
                VpcIdRequest {
                    vpc_id: vpc_id.clone(),
                },
            ),
            DeleteRouteTable { route_table_id } => req(
                "DeleteRouteTable",
                RouteTableIdRequest {
                    route_table_id: route_table_id.clone(),
                },
            ),
            DescribeRouteTables {
                route_table_ids,
                filters: f,
            } => req(
                "DescribeRouteTables",
                DescribeRouteTablesRequest {
                    route_table_ids: route_table_ids.clone(),
                    filters: filters(f)?,
                },
            ),
            AssociateRouteTable {
                route_table_id,
                subnet_id,
            } => req(
                "AssociateRouteTable",
                AssociateRouteTableRequest {
                    route_table_id: route_table_id.clone(),
                    subnet_id: subnet_id.clone(),
                },
            ),
            DisassociateRouteTable { association_id } => req(
                "DisassociateRouteTable",
                AssociationIdRequest {
                    association_id: association_id.clone(),
                },
            ),
            CreateRoute {
                route_table_id,
                destination_cidr_block,
                vpc_peering_connection_id,
            }
            | ReplaceRoute {
                route_table_id,
                destination_cidr_block,
                vpc_peering_connection_id,
            } => req(
                if matches!(self, CreateRoute { .. }) {
                    "CreateRoute"
                } else {
                    "ReplaceRoute"
                },
                RouteRequest {
                    route_table_id: route_table_id.clone(),
                    destination_cidr_block: destination_cidr_block.clone(),
                    vpc_peering_connection_id: vpc_peering_connection_id.clone(),
                },
            ),
            DeleteRoute {
                route_table_id,
                destination_cidr_block,
            } => req(
                "DeleteRoute",
                DeleteRouteRequest {
                    route_table_id: route_table_id.clone(),
                    destination_cidr_block: destination_cidr_block.clone(),
                },
            ),
            CreateVpcPeeringConnection {
                vpc_id,
                peer_vpc_id,
                peer_owner_id,
                peer_region,
            } => req(
                "CreateVpcPeeringConnection",
                CreateVpcPeeringConnectionRequest {
                    vpc_id: vpc_id.clone(),
                    peer_vpc_id: peer_vpc_id.clone(),
                    peer_owner_id: peer_owner_id.clone(),
                    peer_region: peer_region.clone(),
                },
            ),
            AcceptVpcPeeringConnection {
                vpc_peering_connection_id: id,
            } => peering("AcceptVpcPeeringConnection", id),
            RejectVpcPeeringConnection {
                vpc_peering_connection_id: id,
            } => peering("RejectVpcPeeringConnection", id),
            DeleteVpcPeeringConnection {
                vpc_peering_connection_id: id,
            } => peering("DeleteVpcPeeringConnection", id),
            DescribeVpcPeeringConnections {
                vpc_peering_connection_ids,
                filters: f,
            } => req(
                "DescribeVpcPeeringConnections",
                DescribeVpcPeeringConnectionsRequest {
                    vpc_peering_connection_ids: vpc_peering_connection_ids.clone(),
                    filters: filters(f)?,
                },
            ),
            ModifyVpcPeeringConnectionOptions {
                vpc_peering_connection_id,
                requester_peering_connection_options,
                accepter_peering_connection_options,
            } => req(
                "ModifyVpcPeeringConnectionOptions",
                ModifyVpcPeeringConnectionOptionsRequest {
                    vpc_peering_connection_id: vpc_peering_connection_id.clone(),
                    requester_peering_connection_options: options(
                        requester_peering_connection_options,
                    )?,
                    accepter_peering_connection_options: options(
                        accepter_peering_connection_options,
                    )?,
                },
            ),
            DescribeRegions => req("DescribeRegions", EmptyRequest {}),
            GetCallerIdentity => req("GetCallerIdentity", EmptyRequest {}),
            Sg(c) => c.request(),
        }
    }
}

fn peering(action: &'static str, id: &str) -> Result<Request, String> {
    req(
        action,
        PeeringIdRequest {
            vpc_peering_connection_id: id.to_owned(),
        },
    )
}
