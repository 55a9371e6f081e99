//! End-to-end tests of the HTTP/JSON API against a real server on
//! 127.0.0.1 with a temporary SQLite store.

mod common;

use common::*;
use peering_userspace::control::config::Limits;
use serde_json::{json, Value};

const UNKNOWN_PCX: &str = "pcx-0000000000000abcd";
const UNKNOWN_VPC: &str = "vpc-0000000000000abcd";

fn ids(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn healthz_needs_no_token() {
    let s = Server::start();
    let r = get(&s.url, "/v1/healthz", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"Status": "ok"}));
}

#[test]
fn authentication_failures_are_401_with_aws_body() {
    let s = Server::start();
    let body = br#"{"CidrBlock":"10.0.0.0/16"}"#;
    let r = post_raw(&s.url, "/v1/CreateVpc", None, Some(E1), body);
    assert_error(&r, 401, "MissingAuthenticationToken");
    let r = post_raw(&s.url, "/v1/CreateVpc", Some("not-a-token"), Some(E1), body);
    assert_error(&r, 401, "AuthFailure");
    // Unknown actions are not revealed before authentication.
    let r = post_raw(&s.url, "/v1/NoSuchAction", Some("bad"), Some(E1), body);
    assert_error(&r, 401, "AuthFailure");
    let r = agent_post_with_header(&s.url, "Authorization", "Basic Zm9vOmJhcg==");
    assert_error(&r, 401, "AuthFailure");
    let r = agent_post_with_header(&s.url, "Authorization", "Bearer");
    assert_error(&r, 401, "AuthFailure");
    assert_eq!(s.revision(), 0);

    // A revoked token stops working.
    let token = s.token(A);
    let r = post_raw(&s.url, "/v1/CreateVpc", Some(&token), Some(E1), body);
    assert_eq!(r.status, 200, "{}", r.text);
    use peering_userspace::control::account::AccountId;
    use peering_userspace::control::store::Store;
    s.store
        .revoke_tokens(&AccountId::parse(A).unwrap())
        .unwrap();
    let r = post_raw(&s.url, "/v1/CreateVpc", Some(&token), Some(E1), body);
    assert_error(&r, 401, "AuthFailure");
}

fn agent_post_with_header(base: &str, name: &str, value: &str) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(format!("{base}/v1/CreateVpc"))
        .header(name, value)
        .header("X-Peering-Region", E1)
        .send("{}")
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[test]
fn malformed_requests_are_4xx_with_aws_body_and_change_nothing() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    a.create_vpc("10.0.0.0/16");
    let rev = s.revision();
    let t = Some(a.token.as_str());
    // (path, region header, body, status, code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/v1/CreateVpc", Some(E1), b"{".to_vec(), 400, "MalformedJson"),
        ("/v1/CreateVpc", Some(E1), b"not json".to_vec(), 400, "MalformedJson"),
        ("/v1/CreateVpc", Some(E1), b"[1,2]".to_vec(), 400, "MalformedJson"),
        ("/v1/CreateVpc", Some(E1), b"\"x\"".to_vec(), 400, "MalformedJson"),
        ("/v1/CreateVpc", Some(E1), vec![0xff, 0xfe], 400, "MalformedJson"),
        ("/v1/CreateVpc", Some(E1), br#"{"CidrBlock":5}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/CreateVpc", Some(E1), br#"{"CidrBlock":null}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/CreateVpc", Some(E1), br#"{"CidrBlock":"10.1.0.0/16","Extra":1}"#.to_vec(), 400, "UnknownParameter"),
        ("/v1/CreateVpc", Some(E1), br#"{"cidrBlock":"10.1.0.0/16"}"#.to_vec(), 400, "UnknownParameter"),
        ("/v1/CreateVpc", Some(E1), b"{}".to_vec(), 400, "MissingParameter"),
        ("/v1/CreateVpc", Some(E1), b"".to_vec(), 400, "MissingParameter"),
        ("/v1/CreateSubnet", Some(E1), br#"{"VpcId":"vpc-1","CidrBlock":"10.0.0.0/24","Interface":"eth0","Vlan":70000}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/CreateSubnet", Some(E1), br#"{"VpcId":"vpc-1","CidrBlock":"10.0.0.0/24","Interface":"eth0","Vlan":-1}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/DescribeVpcPeeringConnections", Some(E1), br#"{"Filters":[{"Name":"status-code","Values":"active"}]}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/DescribeVpcPeeringConnections", Some(E1), br#"{"Filters":[{"Name":"status-code","Values":["active"],"X":1}]}"#.to_vec(), 400, "UnknownParameter"),
        ("/v1/DescribeVpcPeeringConnections", Some(E1), br#"{"Filters":[{"Name":"bogus","Values":["a"]}]}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/DescribeVpcs", Some(E1), br#"{"Filters":[{"Name":"vpc-id","Values":[]}]}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/ModifyVpcPeeringConnectionOptions", Some(E1), br#"{"VpcPeeringConnectionId":"pcx-1","RequesterPeeringConnectionOptions":{"AllowDnsResolutionFromRemoteVpc":"yes"}}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/NoSuchAction", Some(E1), b"{}".to_vec(), 400, "InvalidAction"),
        ("/v1/createvpc", Some(E1), br#"{"CidrBlock":"10.1.0.0/16"}"#.to_vec(), 400, "InvalidAction"),
        ("/v1/CreateVpc", None, br#"{"CidrBlock":"10.1.0.0/16"}"#.to_vec(), 400, "MissingParameter"),
        ("/v1/CreateVpc", Some(""), br#"{"CidrBlock":"10.1.0.0/16"}"#.to_vec(), 400, "MissingParameter"),
        ("/v1/CreateVpc", Some("mars-1"), br#"{"CidrBlock":"10.1.0.0/16"}"#.to_vec(), 400, "InvalidParameterValue"),
        ("/v1/CreateVpc", Some(E1), vec![b' '; 300 * 1024], 413, "RequestEntityTooLarge"),
        ("/v2/CreateVpc", Some(E1), b"{}".to_vec(), 404, "NotFound"),
        ("/v1/a/b/c", Some(E1), b"{}".to_vec(), 404, "NotFound"),
        ("/v1/healthz", Some(E1), b"{}".to_vec(), 405, "MethodNotAllowed"),
    ];
    for (path, region, body, status, code) in cases {
        let r = post_raw(&s.url, path, t, region, &body);
        assert_eq!(
            r.status,
            status,
            "{path} {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            r.text
        );
        assert_eq!(r.code(), code, "{path}: {}", r.text);
        assert!(r.body["Error"]["Message"].is_string());
        assert_eq!(s.revision(), rev, "{path} changed the store");
    }
    let r = get(&s.url, "/v1/CreateVpc", t);
    assert_error(&r, 405, "MethodNotAllowed");
    let r = get(&s.url, "/nope", None);
    assert_error(&r, 404, "NotFound");
    // The store still works after all that.
    a.create_vpc("10.1.0.0/16");
    assert_eq!(s.revision(), rev + 1);
}

#[test]
fn vpc_subnet_and_route_table_actions() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let who = a.ok("GetCallerIdentity", json!({}));
    assert_eq!(who, json!({"Account": A}));
    let regions = a.ok("DescribeRegions", json!({}));
    assert_eq!(
        regions,
        json!({"Regions": [{"RegionName": E1}, {"RegionName": W2}]})
    );

    let v = a.ok("CreateVpc", json!({"CidrBlock": "10.0.0.0/16"}));
    let vpc = v["Vpc"]["VpcId"].as_str().unwrap().to_owned();
    assert_eq!(v["Vpc"]["OwnerId"], A);
    assert_eq!(v["Vpc"]["CidrBlock"], "10.0.0.0/16");
    assert_eq!(v["Vpc"]["State"], "available");

    let r = a.ok(
        "AssociateVpcCidrBlock",
        json!({"VpcId": vpc, "CidrBlock": "10.50.0.0/16"}),
    );
    assert_eq!(
        r,
        json!({"VpcId": vpc, "CidrBlockAssociation": {"CidrBlock": "10.50.0.0/16",
            "CidrBlockState": {"State": "associated"}}})
    );
    let d = a.ok("DescribeVpcs", json!({"VpcIds": [vpc]}));
    assert_eq!(
        d["Vpcs"][0]["CidrBlockAssociationSet"],
        json!([{"CidrBlock": "10.0.0.0/16"}, {"CidrBlock": "10.50.0.0/16"}])
    );
    let r = a.ok(
        "DisassociateVpcCidrBlock",
        json!({"VpcId": vpc, "CidrBlock": "10.50.0.0/16"}),
    );
    assert_eq!(
        r["CidrBlockAssociation"]["CidrBlockState"]["State"],
        "disassociated"
    );

    let sn = a.ok(
        "CreateSubnet",
        json!({"VpcId": vpc, "CidrBlock": "10.0.1.0/24", "Interface": "eth1", "Vlan": 100}),
    );
    let subnet = sn["Subnet"]["SubnetId"].as_str().unwrap().to_owned();
    assert_eq!(sn["Subnet"]["GatewayIp"], "10.0.1.1");
    assert_eq!(sn["Subnet"]["Vlan"], 100);
    let sn2 = a.ok(
        "CreateSubnet",
        json!({"VpcId": vpc, "CidrBlock": "10.0.2.0/24", "Interface": "eth2"}),
    );
    assert!(sn2["Subnet"].get("Vlan").is_none());
    let d = a.ok(
        "DescribeSubnets",
        json!({"Filters": [{"Name": "interface", "Values": ["eth1"]}]}),
    );
    assert_eq!(ids(&d, "Subnets", "SubnetId"), vec![subnet.clone()]);
    let d = a.ok("DescribeSubnets", json!({}));
    assert_eq!(d["Subnets"].as_array().unwrap().len(), 2);

    let rt = a.ok("CreateRouteTable", json!({"VpcId": vpc}));
    let rtb = rt["RouteTable"]["RouteTableId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        rt["RouteTable"]["Routes"],
        json!([{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local",
            "State": "active", "Origin": "CreateRouteTable"}])
    );
    let assoc = a.ok(
        "AssociateRouteTable",
        json!({"RouteTableId": rtb, "SubnetId": subnet}),
    );
    let assoc_id = assoc["AssociationId"].as_str().unwrap().to_owned();
    assert!(assoc_id.starts_with("rtbassoc-"));
    let d = a.ok(
        "DescribeRouteTables",
        json!({"Filters": [{"Name": "association.subnet-id", "Values": [subnet]}]}),
    );
    assert_eq!(ids(&d, "RouteTables", "RouteTableId"), vec![rtb.clone()]);
    let d = a.ok("DescribeRouteTables", json!({"RouteTableIds": [rtb]}));
    assert_eq!(
        d["RouteTables"][0]["Associations"][0]["SubnetId"],
        subnet.as_str()
    );
    let d = a.ok("DescribeRouteTables", json!({}));
    assert_eq!(d["RouteTables"].as_array().unwrap().len(), 2);

    assert_eq!(
        a.ok("DisassociateRouteTable", json!({"AssociationId": assoc_id})),
        json!({"Return": true})
    );
    assert_eq!(
        a.ok("DeleteRouteTable", json!({"RouteTableId": rtb})),
        json!({"Return": true})
    );
    for sn in [&subnet, sn2["Subnet"]["SubnetId"].as_str().unwrap()] {
        assert_eq!(
            a.ok("DeleteSubnet", json!({"SubnetId": sn})),
            json!({"Return": true})
        );
    }
    assert_eq!(
        a.ok("DeleteVpc", json!({"VpcId": vpc})),
        json!({"Return": true})
    );
    assert_eq!(a.ok("DescribeVpcs", json!({})), json!({"Vpcs": []}));
}

#[test]
fn peering_request_accept_and_routes_across_accounts_and_regions() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let b = Caller::new(&s, B, W2);
    let va = a.create_vpc("10.1.0.0/16");
    let vb = b.create_vpc("10.2.0.0/16");

    let created = a.ok(
        "CreateVpcPeeringConnection",
        json!({"VpcId": va, "PeerVpcId": vb, "PeerOwnerId": B, "PeerRegion": W2}),
    );
    let p = &created["VpcPeeringConnection"];
    let pcx = p["VpcPeeringConnectionId"].as_str().unwrap().to_owned();
    assert_eq!(p["Status"]["Code"], "pending-acceptance");
    assert_eq!(p["RequesterVpcInfo"]["OwnerId"], A);
    assert_eq!(p["RequesterVpcInfo"]["Region"], E1);
    assert_eq!(p["AccepterVpcInfo"]["OwnerId"], B);
    assert_eq!(p["AccepterVpcInfo"]["Region"], W2);
    assert!(p["ExpirationTime"].is_u64());

    // B sees it in the accepter region only, with filters.
    let d = b.ok(
        "DescribeVpcPeeringConnections",
        json!({"Filters": [{"Name": "status-code", "Values": ["pending-acceptance", "active"]},
                           {"Name": "accepter-vpc-info.owner-id", "Values": [B]}]}),
    );
    assert_eq!(
        ids(&d, "VpcPeeringConnections", "VpcPeeringConnectionId"),
        vec![pcx.clone()]
    );
    let d = b
        .in_region(E1)
        .ok("DescribeVpcPeeringConnections", json!({}));
    assert_eq!(d, json!({"VpcPeeringConnections": []}));
    let d = b.ok(
        "DescribeVpcPeeringConnections",
        json!({"Filters": [{"Name": "status-code", "Values": ["active"]}]}),
    );
    assert_eq!(d, json!({"VpcPeeringConnections": []}));

    // Accept: only B, only in W2.
    let body = json!({"VpcPeeringConnectionId": pcx});
    let rev = s.revision();
    assert_error(
        &a.call("AcceptVpcPeeringConnection", body.clone()),
        403,
        "UnauthorizedOperation",
    );
    assert_error(
        &b.in_region(E1)
            .call("AcceptVpcPeeringConnection", body.clone()),
        404,
        "InvalidVpcPeeringConnectionID.NotFound",
    );
    assert_eq!(s.revision(), rev);
    let acc = b.ok("AcceptVpcPeeringConnection", body.clone());
    assert_eq!(acc["VpcPeeringConnection"]["Status"]["Code"], "active");
    assert_eq!(
        acc["VpcPeeringConnection"]["AccepterVpcInfo"]["CidrBlock"],
        "10.2.0.0/16"
    );
    assert_eq!(a.peering_status(&pcx), "active");
    assert_error(
        &b.call("AcceptVpcPeeringConnection", body.clone()),
        400,
        "InvalidStateTransition",
    );

    // Routes on both sides.
    let rta = a.main_route_table(&va);
    let rtb = b.main_route_table(&vb);
    a.ok(
        "CreateRoute",
        json!({"RouteTableId": rta, "DestinationCidrBlock": "10.2.0.0/16", "VpcPeeringConnectionId": pcx}),
    );
    b.ok(
        "CreateRoute",
        json!({"RouteTableId": rtb, "DestinationCidrBlock": "10.1.0.0/16", "VpcPeeringConnectionId": pcx}),
    );
    let d = a.ok("DescribeRouteTables", json!({"RouteTableIds": [rta]}));
    assert_eq!(
        d["RouteTables"][0]["Routes"][1],
        json!({"DestinationCidrBlock": "10.2.0.0/16", "VpcPeeringConnectionId": pcx,
            "State": "active", "Origin": "CreateRoute"})
    );

    // Options: each side sets its own.
    let m = a.ok(
        "ModifyVpcPeeringConnectionOptions",
        json!({"VpcPeeringConnectionId": pcx,
            "RequesterPeeringConnectionOptions": {"AllowDnsResolutionFromRemoteVpc": true}}),
    );
    assert_eq!(
        m,
        json!({"RequesterPeeringConnectionOptions": {"AllowDnsResolutionFromRemoteVpc": true}})
    );
    assert_error(
        &a.call(
            "ModifyVpcPeeringConnectionOptions",
            json!({"VpcPeeringConnectionId": pcx,
                "AccepterPeeringConnectionOptions": {"AllowDnsResolutionFromRemoteVpc": true}}),
        ),
        403,
        "UnauthorizedOperation",
    );
    let d = b.ok(
        "DescribeVpcPeeringConnections",
        json!({"VpcPeeringConnectionIds": [pcx]}),
    );
    assert_eq!(
        d["VpcPeeringConnections"][0]["RequesterVpcInfo"]["PeeringOptions"],
        json!({"AllowDnsResolutionFromRemoteVpc": true})
    );

    // B deletes it; A's route becomes a blackhole.
    assert_eq!(
        b.ok("DeleteVpcPeeringConnection", body.clone()),
        json!({"Return": true})
    );
    assert_eq!(a.peering_status(&pcx), "deleted");
    let d = a.ok(
        "DescribeRouteTables",
        json!({"Filters": [{"Name": "route.state", "Values": ["blackhole"]}]}),
    );
    assert_eq!(ids(&d, "RouteTables", "RouteTableId"), vec![rta.clone()]);
    assert_error(
        &a.call("DeleteVpcPeeringConnection", body),
        400,
        "InvalidStateTransition",
    );
}

#[test]
fn reject_replace_and_delete_routes() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let v1 = a.create_vpc("10.1.0.0/16");
    let v2 = a.create_vpc("10.2.0.0/16");
    let v3 = a.create_vpc("10.3.0.0/16");
    let p12 = a.request_peering(&v1, &v2, A, E1);
    let p13 = a.request_peering(&v1, &v3, A, E1);
    a.ok(
        "AcceptVpcPeeringConnection",
        json!({"VpcPeeringConnectionId": p12}),
    );
    let rt = a.main_route_table(&v1);
    let route = |pcx: &str| json!({"RouteTableId": rt, "DestinationCidrBlock": "10.0.0.0/8", "VpcPeeringConnectionId": pcx});
    // Routes may target pending peerings (blackhole until active).
    assert_eq!(a.ok("CreateRoute", route(&p13)), json!({"Return": true}));
    let d = a.ok("DescribeRouteTables", json!({"RouteTableIds": [rt]}));
    assert_eq!(d["RouteTables"][0]["Routes"][1]["State"], "blackhole");
    assert_eq!(a.ok("ReplaceRoute", route(&p12)), json!({"Return": true}));
    let d = a.ok("DescribeRouteTables", json!({"RouteTableIds": [rt]}));
    assert_eq!(
        d["RouteTables"][0]["Routes"][1]["VpcPeeringConnectionId"],
        p12.as_str()
    );
    assert_eq!(d["RouteTables"][0]["Routes"][1]["State"], "active");
    assert_eq!(
        a.ok(
            "RejectVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": p13})
        ),
        json!({"Return": true})
    );
    assert_eq!(a.peering_status(&p13), "rejected");
    assert_eq!(
        a.ok(
            "DeleteRoute",
            json!({"RouteTableId": rt, "DestinationCidrBlock": "10.0.0.0/8"})
        ),
        json!({"Return": true})
    );
    let d = a.ok(
        "DescribeVpcPeeringConnections",
        json!({"Filters": [{"Name": "status-code", "Values": ["rejected"]}]}),
    );
    assert_eq!(
        ids(&d, "VpcPeeringConnections", "VpcPeeringConnectionId"),
        vec![p13]
    );
}

/// Every model error reachable through the API, each leaving the store
/// revision unchanged.
#[test]
fn model_errors_map_to_codes_and_statuses_without_changes() {
    let s = Server::with_limits(Limits {
        active_peerings_per_vpc: 1,
        outstanding_requests_per_account: 3,
        cidr_blocks_per_vpc: 2,
        route_tables_per_vpc: 2,
        routes_per_route_table: 1,
        ..Limits::default()
    });
    let a = Caller::new(&s, A, E1);
    let b = Caller::new(&s, B, E1);
    let v1 = a.create_vpc("10.1.0.0/16");
    let v2 = a.create_vpc("10.2.0.0/16");
    let v3 = a.create_vpc("10.3.0.0/16");
    let v4 = a.create_vpc("10.4.0.0/16");
    let vb = b.create_vpc("10.9.0.0/16");
    let active = a.request_peering(&v1, &v2, A, E1);
    a.ok(
        "AcceptVpcPeeringConnection",
        json!({"VpcPeeringConnectionId": active}),
    );
    let pending = a.request_peering(&v3, &v4, A, E1);
    let pending_b = a.request_peering(&v3, &vb, B, E1);
    let subnet = a.ok(
        "CreateSubnet",
        json!({"VpcId": v1, "CidrBlock": "10.1.1.0/24", "Interface": "eth1"}),
    )["Subnet"]["SubnetId"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt_main = a.main_route_table(&v1);
    let rt_extra = a.ok("CreateRouteTable", json!({"VpcId": v1}))["RouteTable"]["RouteTableId"]
        .as_str()
        .unwrap()
        .to_owned();
    a.ok(
        "AssociateRouteTable",
        json!({"RouteTableId": rt_extra, "SubnetId": subnet}),
    );
    a.ok(
        "CreateRoute",
        json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.2.0.0/16", "VpcPeeringConnectionId": active}),
    );
    a.ok(
        "AssociateVpcCidrBlock",
        json!({"VpcId": v4, "CidrBlock": "10.40.0.0/16"}),
    );

    let a_w2 = a.in_region(W2);
    let rev = s.revision();
    let cases: Vec<(&Caller, &str, Value, u16, &str)> = vec![
        (
            &a,
            "AcceptVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": UNKNOWN_PCX}),
            404,
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            &a,
            "DescribeVpcPeeringConnections",
            json!({"VpcPeeringConnectionIds": [UNKNOWN_PCX]}),
            404,
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            &a,
            "DeleteVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": "pcx-1"}),
            400,
            "InvalidVpcPeeringConnectionId.Malformed",
        ),
        (
            &a,
            "AcceptVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": active}),
            400,
            "InvalidStateTransition",
        ),
        (
            &a,
            "RejectVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": active}),
            400,
            "InvalidStateTransition",
        ),
        (
            &a,
            "CreateVpcPeeringConnection",
            json!({"VpcId": v3, "PeerVpcId": v4}),
            400,
            "VpcPeeringConnectionAlreadyExists",
        ),
        (
            &a,
            "CreateVpcPeeringConnection",
            json!({"VpcId": v4, "PeerVpcId": v3}),
            400,
            "VpcPeeringConnectionAlreadyExists",
        ),
        (
            &b,
            "AcceptVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": pending}),
            404,
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            &a,
            "AcceptVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": pending_b}),
            403,
            "UnauthorizedOperation",
        ),
        (
            &b,
            "DeleteVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": pending_b}),
            403,
            "UnauthorizedOperation",
        ),
        (
            &a_w2,
            "DeleteVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": active}),
            404,
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            &a,
            "ModifyVpcPeeringConnectionOptions",
            json!({"VpcPeeringConnectionId": pending, "RequesterPeeringConnectionOptions": {"AllowDnsResolutionFromRemoteVpc": true}}),
            400,
            "OperationNotPermitted",
        ),
        (
            &a,
            "CreateVpcPeeringConnection",
            json!({"VpcId": v1, "PeerVpcId": v1}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "CreateVpcPeeringConnection",
            json!({"VpcId": v1, "PeerVpcId": v2, "PeerOwnerId": "12"}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "CreateVpcPeeringConnection",
            json!({"VpcId": v1, "PeerVpcId": v2, "PeerRegion": "mars-1"}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "CreateVpcPeeringConnection",
            json!({"VpcId": vb, "PeerVpcId": v2}),
            404,
            "InvalidVpcID.NotFound",
        ),
        (
            &a,
            "DescribeVpcs",
            json!({"VpcIds": [UNKNOWN_VPC]}),
            404,
            "InvalidVpcID.NotFound",
        ),
        (
            &a,
            "DescribeVpcs",
            json!({"VpcIds": ["vpc-x"]}),
            400,
            "InvalidVpcID.Malformed",
        ),
        (
            &b,
            "DeleteVpc",
            json!({"VpcId": v1}),
            404,
            "InvalidVpcID.NotFound",
        ),
        (
            &a,
            "DeleteVpc",
            json!({"VpcId": v1}),
            400,
            "DependencyViolation",
        ),
        (
            &a,
            "CreateVpc",
            json!({"CidrBlock": "10.0.0.0/8"}),
            400,
            "InvalidVpc.Range",
        ),
        (
            &a,
            "CreateVpc",
            json!({"CidrBlock": "10.0.0.1/16"}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "CreateVpc",
            json!({"CidrBlock": "banana"}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "AssociateVpcCidrBlock",
            json!({"VpcId": v4, "CidrBlock": "10.41.0.0/16"}),
            400,
            "CidrLimitExceeded",
        ),
        (
            &a,
            "AssociateVpcCidrBlock",
            json!({"VpcId": v1, "CidrBlock": "10.1.0.0/16"}),
            400,
            "CidrConflict",
        ),
        (
            &a,
            "AssociateVpcCidrBlock",
            json!({"VpcId": v1, "CidrBlock": "10.2.0.0/16"}),
            400,
            "CidrConflict",
        ),
        (
            &a,
            "DisassociateVpcCidrBlock",
            json!({"VpcId": v1, "CidrBlock": "10.1.0.0/16"}),
            400,
            "OperationNotPermitted",
        ),
        (
            &a,
            "CreateSubnet",
            json!({"VpcId": v1, "CidrBlock": "10.7.0.0/24", "Interface": "eth1"}),
            400,
            "InvalidSubnet.Range",
        ),
        (
            &a,
            "CreateSubnet",
            json!({"VpcId": v1, "CidrBlock": "10.1.1.128/25", "Interface": "eth1"}),
            400,
            "InvalidSubnet.Conflict",
        ),
        (
            &a,
            "CreateSubnet",
            json!({"VpcId": v1, "CidrBlock": "10.1.2.0/24", "Interface": "eth 1"}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "CreateSubnet",
            json!({"VpcId": v1, "CidrBlock": "10.1.2.0/24", "Interface": "eth1", "Vlan": 4095}),
            400,
            "InvalidParameterValue",
        ),
        (
            &a,
            "DeleteSubnet",
            json!({"SubnetId": "subnet-0000000000000abcd"}),
            404,
            "InvalidSubnetID.NotFound",
        ),
        (
            &b,
            "DeleteSubnet",
            json!({"SubnetId": subnet}),
            404,
            "InvalidSubnetID.NotFound",
        ),
        (
            &a,
            "DescribeSubnets",
            json!({"SubnetIds": ["subnet-1"]}),
            400,
            "InvalidSubnetID.Malformed",
        ),
        (
            &a,
            "CreateRouteTable",
            json!({"VpcId": v1}),
            400,
            "RouteTableLimitExceeded",
        ),
        (
            &a,
            "DeleteRouteTable",
            json!({"RouteTableId": rt_main}),
            400,
            "DependencyViolation",
        ),
        (
            &a,
            "DeleteRouteTable",
            json!({"RouteTableId": rt_extra}),
            400,
            "DependencyViolation",
        ),
        (
            &a,
            "DescribeRouteTables",
            json!({"RouteTableIds": ["rtb-0000000000000abcd"]}),
            404,
            "InvalidRouteTableID.NotFound",
        ),
        (
            &b,
            "DescribeRouteTables",
            json!({"RouteTableIds": [rt_main]}),
            404,
            "InvalidRouteTableID.NotFound",
        ),
        (
            &a,
            "DescribeRouteTables",
            json!({"RouteTableIds": ["rtb-1"]}),
            400,
            "InvalidRouteTableId.Malformed",
        ),
        (
            &a,
            "AssociateRouteTable",
            json!({"RouteTableId": rt_extra, "SubnetId": subnet}),
            400,
            "Resource.AlreadyAssociated",
        ),
        (
            &a,
            "DisassociateRouteTable",
            json!({"AssociationId": "rtbassoc-0000000000000abcd"}),
            404,
            "InvalidAssociationID.NotFound",
        ),
        (
            &a,
            "DisassociateRouteTable",
            json!({"AssociationId": "x"}),
            400,
            "InvalidAssociationID.Malformed",
        ),
        (
            &a,
            "CreateRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.2.0.0/16", "VpcPeeringConnectionId": active}),
            400,
            "RouteAlreadyExists",
        ),
        (
            &a,
            "CreateRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.1.0.0/16", "VpcPeeringConnectionId": active}),
            400,
            "RouteAlreadyExists",
        ),
        (
            &a,
            "CreateRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "172.16.0.0/12", "VpcPeeringConnectionId": active}),
            400,
            "RouteLimitExceeded",
        ),
        (
            &a,
            "CreateRoute",
            json!({"RouteTableId": rt_extra, "DestinationCidrBlock": "10.2.0.0/16", "VpcPeeringConnectionId": UNKNOWN_PCX}),
            404,
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            &a,
            "CreateRoute",
            json!({"RouteTableId": rt_extra, "DestinationCidrBlock": "10.2.0.0/16", "VpcPeeringConnectionId": pending}),
            404,
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            &a,
            "ReplaceRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.3.0.0/16", "VpcPeeringConnectionId": active}),
            404,
            "InvalidRoute.NotFound",
        ),
        (
            &a,
            "DeleteRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.3.0.0/16"}),
            404,
            "InvalidRoute.NotFound",
        ),
        (
            &a,
            "DeleteRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.1.0.0/16"}),
            400,
            "InvalidParameterValue",
        ),
        (
            &b,
            "DeleteRoute",
            json!({"RouteTableId": rt_main, "DestinationCidrBlock": "10.2.0.0/16"}),
            404,
            "InvalidRouteTableID.NotFound",
        ),
    ];
    for (caller, action, body, status, code) in cases {
        let r = caller.call(action, body.clone());
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{action} {body}: {}",
            r.text
        );
        assert!(r.body["Error"]["Message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(s.revision(), rev, "{action} {body} changed the store");
    }

    // Quotas: three outstanding requests is the limit, and v2 is at its
    // limit of one active peering.
    let p23 = a.request_peering(&v3, &v2, A, E1);
    let rev = s.revision();
    let r = a.call(
        "CreateVpcPeeringConnection",
        json!({"VpcId": v2, "PeerVpcId": v4}),
    );
    assert_error(&r, 400, "OutstandingVpcPeeringConnectionLimitExceeded");
    assert_eq!(s.revision(), rev);
    for p in [&pending, &pending_b] {
        a.ok(
            "DeleteVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": p}),
        );
    }
    let rev = s.revision();
    let r = a.call(
        "CreateVpcPeeringConnection",
        json!({"VpcId": v2, "PeerVpcId": v4}),
    );
    assert_error(&r, 400, "ActiveVpcPeeringConnectionPerVpcLimitExceeded");
    let r = a.call(
        "AcceptVpcPeeringConnection",
        json!({"VpcPeeringConnectionId": p23}),
    );
    assert_error(&r, 400, "ActiveVpcPeeringConnectionPerVpcLimitExceeded");
    assert_eq!(s.revision(), rev);
}

#[test]
fn accounts_are_isolated() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let b = Caller::new(&s, B, E1);
    let va = a.create_vpc("10.1.0.0/16");
    let sa = a.ok(
        "CreateSubnet",
        json!({"VpcId": va, "CidrBlock": "10.1.0.0/24", "Interface": "eth0"}),
    )["Subnet"]["SubnetId"]
        .as_str()
        .unwrap()
        .to_owned();
    let vb = b.create_vpc("10.1.0.0/16");
    // B sees only its own things.
    assert_eq!(
        ids(&b.ok("DescribeVpcs", json!({})), "Vpcs", "VpcId"),
        vec![vb.clone()]
    );
    assert_eq!(b.ok("DescribeSubnets", json!({})), json!({"Subnets": []}));
    assert_eq!(
        b.ok("DescribeRouteTables", json!({}))["RouteTables"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let rev = s.revision();
    for (action, body, code) in [
        (
            "DescribeVpcs",
            json!({"VpcIds": [va]}),
            "InvalidVpcID.NotFound",
        ),
        ("DeleteVpc", json!({"VpcId": va}), "InvalidVpcID.NotFound"),
        (
            "CreateSubnet",
            json!({"VpcId": va, "CidrBlock": "10.1.1.0/24", "Interface": "eth9"}),
            "InvalidVpcID.NotFound",
        ),
        (
            "DescribeSubnets",
            json!({"SubnetIds": [sa]}),
            "InvalidSubnetID.NotFound",
        ),
        (
            "DeleteSubnet",
            json!({"SubnetId": sa}),
            "InvalidSubnetID.NotFound",
        ),
        (
            "CreateRouteTable",
            json!({"VpcId": va}),
            "InvalidVpcID.NotFound",
        ),
        (
            "AssociateVpcCidrBlock",
            json!({"VpcId": va, "CidrBlock": "10.5.0.0/16"}),
            "InvalidVpcID.NotFound",
        ),
        (
            "CreateVpcPeeringConnection",
            json!({"VpcId": va, "PeerVpcId": vb}),
            "InvalidVpcID.NotFound",
        ),
    ] {
        let r = b.call(action, body);
        assert_error(&r, 404, code);
    }
    assert_eq!(s.revision(), rev);
    // A's own VPC is invisible from another region too.
    assert_error(
        &a.in_region(W2)
            .call("DescribeVpcs", json!({"VpcIds": [va]})),
        404,
        "InvalidVpcID.NotFound",
    );
    // A request to a VPC id that does not match owner/region is created failed.
    let p = a.ok(
        "CreateVpcPeeringConnection",
        json!({"VpcId": va, "PeerVpcId": vb, "PeerOwnerId": A}),
    );
    assert_eq!(p["VpcPeeringConnection"]["Status"]["Code"], "failed");
    assert_eq!(
        b.ok("DescribeVpcPeeringConnections", json!({})),
        json!({"VpcPeeringConnections": []})
    );
}

#[test]
fn pending_requests_expire_after_a_week() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let b = Caller::new(&s, B, E1);
    let va = a.create_vpc("10.1.0.0/16");
    let vb = b.create_vpc("10.2.0.0/16");
    let pcx = a.request_peering(&va, &vb, B, E1);
    s.clock.advance(7 * 86_400);
    assert_eq!(b.peering_status(&pcx), "expired");
    let rev = s.revision();
    assert_error(
        &b.call(
            "AcceptVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": pcx}),
        ),
        400,
        "InvalidStateTransition",
    );
    assert_eq!(s.revision(), rev);
}

#[test]
fn concurrent_writes_are_serialized() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    // Revisions number every commit of the store (issuing the token took
    // one); the model's revision moves with each of the 8 writes.
    let base = s.store.store_revision();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || a.create_vpc(&format!("10.{i}.0.0/16")))
        })
        .collect();
    let mut vpcs: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    vpcs.sort();
    vpcs.dedup();
    assert_eq!(vpcs.len(), 8);
    assert_eq!(s.revision(), base + 8);
    let mut described = ids(&a.ok("DescribeVpcs", json!({})), "Vpcs", "VpcId");
    described.sort();
    assert_eq!(described, vpcs);
}

#[test]
fn vpc_blocks_in_reserved_or_other_private_ranges_are_refused() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let vpc = a.create_vpc("10.0.0.0/16");
    let rev = s.revision();
    for cidr in [
        "0.0.0.0/16",
        "127.0.0.0/16",
        "169.254.0.0/16",
        "224.0.0.0/16",
        "239.255.255.240/28",
        "240.0.0.0/16",
        "255.255.255.240/28",
    ] {
        let r = a.call("CreateVpc", json!({"CidrBlock": cidr}));
        assert_error(&r, 400, "InvalidVpc.Range");
        assert_eq!(
            r.body["Error"]["Message"],
            format!("The CIDR '{cidr}' is invalid.")
        );
        let r = a.call(
            "AssociateVpcCidrBlock",
            json!({"VpcId": vpc, "CidrBlock": cidr}),
        );
        assert_error(&r, 400, "InvalidVpc.Range");
    }
    // A VPC in 10.0.0.0/8 cannot add a block of another RFC 1918 range.
    let r = a.call(
        "AssociateVpcCidrBlock",
        json!({"VpcId": vpc, "CidrBlock": "192.168.0.0/16"}),
    );
    assert_error(&r, 400, "InvalidVpc.Range");
    assert_eq!(s.revision(), rev, "a refused block changed the store");
    // Next to the reserved ranges, and public space, is fine.
    a.create_vpc("1.0.0.0/16");
    a.create_vpc("223.255.255.240/28");
    a.ok(
        "AssociateVpcCidrBlock",
        json!({"VpcId": vpc, "CidrBlock": "100.64.0.0/16"}),
    );
}

/// `body` with an extra (unknown) field `name`.
fn with_field(mut body: Value, name: &str) -> Value {
    body.as_object_mut().unwrap().insert(name.into(), json!(1));
    body
}

#[test]
fn long_values_are_cut_in_error_messages() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let long = "x".repeat(10_000);
    let spaced = "x ".repeat(5_000);
    let cases = [
        ("CreateVpc", json!({"CidrBlock": long})),
        ("CreateVpc", json!({"CidrBlock": spaced})),
        (
            "CreateVpc",
            with_field(json!({"CidrBlock": "10.9.0.0/16"}), &long),
        ),
        ("CreateVpc", json!({"CidrBlock": ["a", long]})),
        ("DescribeVpcs", json!({"VpcIds": [format!("vpc-{long}")]})),
        (
            "DescribeVpcs",
            json!({"Filters": [{"Name": long, "Values": ["a"]}]}),
        ),
        (
            "DescribeVpcPeeringConnections",
            with_field(
                json!({"Filters": [{"Name": "status-code", "Values": [long]}]}),
                &spaced,
            ),
        ),
        (
            "AcceptVpcPeeringConnection",
            json!({"VpcPeeringConnectionId": format!("pcx-{long}")}),
        ),
        (long.as_str(), json!({})),
    ];
    for (action, body) in cases {
        let r = a.call(action, body);
        assert!(r.status >= 400 && r.status < 500, "{}", r.text);
        let msg = r.body["Error"]["Message"].as_str().unwrap();
        assert!(msg.chars().count() <= 513, "{action}: {msg}");
        assert!(!msg.contains(&"x".repeat(65)), "{action}: {msg}");
    }
}
