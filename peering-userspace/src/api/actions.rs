//! The actions: `POST /v1/{Action}` bodies decoded into [`crate::api::types`]
//! requests and run against the model inside the store. Writes go through
//! [`Store::transact`], so a refused call changes nothing; reads use
//! [`Store::read`]. Everything here is synchronous and runs on a blocking
//! thread.

use crate::api::error::Fault;
use crate::api::extract::decode;
use crate::api::filters;
use crate::api::types::*;
use crate::control::account::Call;
use crate::control::error::ApiError;
use crate::control::ids::{IdSource, RngIds};
use crate::control::peering::{CreatePeering, ModifyPeeringOptions};
use crate::control::state::State;
use crate::control::store::Store;
use crate::control::subnet::CreateSubnet;
use serde::Serialize;
use serde_json::Value;

/// Every action the API serves, in the order of the model's nouns.
pub const ACTIONS: [&str; 24] = [
    "CreateVpc",
    "DeleteVpc",
    "DescribeVpcs",
    "AssociateVpcCidrBlock",
    "DisassociateVpcCidrBlock",
    "CreateSubnet",
    "DeleteSubnet",
    "DescribeSubnets",
    "CreateRouteTable",
    "DeleteRouteTable",
    "DescribeRouteTables",
    "AssociateRouteTable",
    "DisassociateRouteTable",
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "CreateVpcPeeringConnection",
    "AcceptVpcPeeringConnection",
    "RejectVpcPeeringConnection",
    "DeleteVpcPeeringConnection",
    "DescribeVpcPeeringConnections",
    "ModifyVpcPeeringConnectionOptions",
    "DescribeRegions",
    "GetCallerIdentity",
];

/// Actions that do not depend on a region: the region header is optional.
pub const REGIONLESS_ACTIONS: [&str; 2] = ["DescribeRegions", "GetCallerIdentity"];

pub fn is_action(name: &str) -> bool {
    ACTIONS.contains(&name) || crate::api::sg_actions::SG_ACTIONS.contains(&name)
}

pub(crate) fn ok<T: Serialize>(body: T) -> Result<Value, Fault> {
    serde_json::to_value(body).map_err(Fault::internal)
}

pub(crate) fn done() -> Result<Value, Fault> {
    ok(ReturnResponse { r#return: true })
}

/// Runs `f` in one store transaction.
pub(crate) fn write<S: Store, T>(
    store: &S,
    f: impl FnMut(&mut State) -> Result<T, ApiError>,
) -> Result<T, Fault> {
    Ok(store.transact(f)?.0)
}

/// Runs `f` on the latest state, without copying it.
pub(crate) fn read<S: Store, T>(
    store: &S,
    f: impl FnOnce(&State) -> Result<T, ApiError>,
) -> Result<T, Fault> {
    Ok(store.read(f)??)
}

/// Runs `action` for `call` with the raw JSON `body`.
pub fn execute<S: Store>(
    store: &S,
    action: &str,
    call: &Call,
    body: &[u8],
) -> Result<Value, Fault> {
    execute_with(store, &mut RngIds::from_os(), action, call, body)
}

/// [`execute`] with the source of new resource ids passed in, so a caller
/// (a test, a fuzz target) can make the ids predictable.
pub fn execute_with<S: Store>(
    store: &S,
    ids: &mut dyn IdSource,
    action: &str,
    call: &Call,
    body: &[u8],
) -> Result<Value, Fault> {
    match action {
        "CreateVpc" => {
            let r: CreateVpcRequest = decode(body)?;
            let vpc = write(store, |s| s.create_vpc(call, ids, &r.cidr_block))?;
            ok(VpcResponse { vpc })
        }
        "DeleteVpc" => {
            let r: VpcIdRequest = decode(body)?;
            write(store, |s| s.delete_vpc(call, &r.vpc_id))?;
            done()
        }
        "DescribeVpcs" => {
            let r: DescribeVpcsRequest = decode(body)?;
            let vpcs = read(store, |s| s.describe_vpcs(call, &r.vpc_ids))?;
            let vpcs =
                filters::apply(vpcs, &r.filters, &filters::VPC_FILTERS, filters::vpc_fields)?;
            ok(VpcsResponse { vpcs })
        }
        "AssociateVpcCidrBlock" | "DisassociateVpcCidrBlock" => {
            let r: VpcCidrBlockRequest = decode(body)?;
            let associate = action == "AssociateVpcCidrBlock";
            write(store, |s| {
                if associate {
                    s.associate_vpc_cidr_block(call, &r.vpc_id, &r.cidr_block)
                } else {
                    s.disassociate_vpc_cidr_block(call, &r.vpc_id, &r.cidr_block)
                }
            })?;
            let state = if associate {
                "associated"
            } else {
                "disassociated"
            };
            ok(VpcCidrBlockResponse {
                vpc_id: r.vpc_id,
                cidr_block_association: CidrBlockAssociation {
                    cidr_block: r.cidr_block,
                    cidr_block_state: CidrBlockState {
                        state: state.into(),
                    },
                },
            })
        }
        "CreateSubnet" => {
            let r: CreateSubnetRequest = decode(body)?;
            let req = CreateSubnet {
                vpc_id: r.vpc_id,
                cidr_block: r.cidr_block,
                interface: r.interface,
                vlan: r.vlan,
            };
            let subnet = write(store, |s| s.create_subnet(call, ids, &req))?;
            ok(SubnetResponse { subnet })
        }
        "DeleteSubnet" => {
            let r: SubnetIdRequest = decode(body)?;
            write(store, |s| s.delete_subnet(call, &r.subnet_id))?;
            done()
        }
        "DescribeSubnets" => {
            let r: DescribeSubnetsRequest = decode(body)?;
            let subnets = read(store, |s| s.describe_subnets(call, &r.subnet_ids))?;
            let subnets = filters::apply(
                subnets,
                &r.filters,
                &filters::SUBNET_FILTERS,
                filters::subnet_fields,
            )?;
            ok(SubnetsResponse { subnets })
        }
        "CreateRouteTable" => {
            let r: VpcIdRequest = decode(body)?;
            let route_table = write(store, |s| s.create_route_table(call, ids, &r.vpc_id))?;
            ok(RouteTableResponse { route_table })
        }
        "DeleteRouteTable" => {
            let r: RouteTableIdRequest = decode(body)?;
            write(store, |s| s.delete_route_table(call, &r.route_table_id))?;
            done()
        }
        "DescribeRouteTables" => {
            let r: DescribeRouteTablesRequest = decode(body)?;
            let tables = read(store, |s| s.describe_route_tables(call, &r.route_table_ids))?;
            let route_tables = filters::apply(
                tables,
                &r.filters,
                &filters::ROUTE_TABLE_FILTERS,
                filters::route_table_fields,
            )?;
            ok(RouteTablesResponse { route_tables })
        }
        "AssociateRouteTable" => {
            let r: AssociateRouteTableRequest = decode(body)?;
            let association_id = write(store, |s| {
                s.associate_route_table(call, ids, &r.route_table_id, &r.subnet_id)
            })?;
            ok(AssociateRouteTableResponse { association_id })
        }
        "DisassociateRouteTable" => {
            let r: AssociationIdRequest = decode(body)?;
            write(store, |s| {
                s.disassociate_route_table(call, &r.association_id)
            })?;
            done()
        }
        "CreateRoute" | "ReplaceRoute" => {
            let r: RouteRequest = decode(body)?;
            let create = action == "CreateRoute";
            write(store, |s| {
                let (t, d, p) = (
                    &r.route_table_id,
                    &r.destination_cidr_block,
                    &r.vpc_peering_connection_id,
                );
                if create {
                    s.create_route(call, t, d, p)
                } else {
                    s.replace_route(call, t, d, p)
                }
            })?;
            done()
        }
        "DeleteRoute" => {
            let r: DeleteRouteRequest = decode(body)?;
            write(store, |s| {
                s.delete_route(call, &r.route_table_id, &r.destination_cidr_block)
            })?;
            done()
        }
        "CreateVpcPeeringConnection" => {
            let r: CreateVpcPeeringConnectionRequest = decode(body)?;
            let req = CreatePeering {
                vpc_id: r.vpc_id,
                peer_vpc_id: r.peer_vpc_id,
                peer_owner_id: r.peer_owner_id,
                peer_region: r.peer_region,
            };
            let pcx = write(store, |s| s.create_vpc_peering_connection(call, ids, &req))?;
            ok(VpcPeeringConnectionResponse {
                vpc_peering_connection: pcx,
            })
        }
        "AcceptVpcPeeringConnection" => {
            let r: PeeringIdRequest = decode(body)?;
            let pcx = write(store, |s| {
                s.accept_vpc_peering_connection(call, &r.vpc_peering_connection_id)
            })?;
            ok(VpcPeeringConnectionResponse {
                vpc_peering_connection: pcx,
            })
        }
        "RejectVpcPeeringConnection" => {
            let r: PeeringIdRequest = decode(body)?;
            write(store, |s| {
                s.reject_vpc_peering_connection(call, &r.vpc_peering_connection_id)
            })?;
            done()
        }
        "DeleteVpcPeeringConnection" => {
            let r: PeeringIdRequest = decode(body)?;
            write(store, |s| {
                s.delete_vpc_peering_connection(call, &r.vpc_peering_connection_id)
            })?;
            done()
        }
        "DescribeVpcPeeringConnections" => {
            let r: DescribeVpcPeeringConnectionsRequest = decode(body)?;
            let pcxs = read(store, |s| {
                s.describe_vpc_peering_connections(call, &r.vpc_peering_connection_ids, &r.filters)
            })?;
            ok(VpcPeeringConnectionsResponse {
                vpc_peering_connections: pcxs,
            })
        }
        "ModifyVpcPeeringConnectionOptions" => {
            let r: ModifyVpcPeeringConnectionOptionsRequest = decode(body)?;
            let dns = |o: Option<PeeringConnectionOptions>| {
                o.and_then(|o| o.allow_dns_resolution_from_remote_vpc)
            };
            let opts = ModifyPeeringOptions {
                requester_allow_dns_resolution_from_remote_vpc: dns(
                    r.requester_peering_connection_options
                ),
                accepter_allow_dns_resolution_from_remote_vpc: dns(
                    r.accepter_peering_connection_options
                ),
            };
            write(store, |s| {
                s.modify_vpc_peering_connection_options(call, &r.vpc_peering_connection_id, &opts)
            })?;
            ok(ModifyVpcPeeringConnectionOptionsResponse {
                requester_peering_connection_options: r.requester_peering_connection_options,
                accepter_peering_connection_options: r.accepter_peering_connection_options,
            })
        }
        "DescribeRegions" => {
            let _: EmptyRequest = decode(body)?;
            let regions = read(store, |s| Ok(s.config.regions.clone()))?;
            ok(RegionsResponse {
                regions: regions
                    .into_iter()
                    .map(|region_name| RegionInfo { region_name })
                    .collect(),
            })
        }
        "GetCallerIdentity" => {
            let _: EmptyRequest = decode(body)?;
            ok(CallerIdentityResponse {
                account: call.account.to_string(),
            })
        }
        other => crate::api::sg_actions::execute(store, ids, other, call, body)
            .unwrap_or_else(|| Err(unknown_action(other))),
    }
}

pub fn unknown_action(name: &str) -> Fault {
    Fault::bad_request(
        crate::api::error::codes::INVALID_ACTION,
        format!("The action '{name}' is not valid for this web service"),
    )
}
