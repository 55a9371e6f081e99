//! Security groups and network interfaces through the HTTP/JSON API
//! against a real server (127.0.0.1, temporary SQLite store): shapes,
//! errors and statuses, peer references and stale rules.

mod common;

use common::*;
use serde_json::{json, Value};

fn group(a: &Caller, vpc: &str, name: &str) -> String {
    let r = a.ok(
        "CreateSecurityGroup",
        json!({"GroupName": name, "Description": format!("{name} servers"), "VpcId": vpc}),
    );
    r["GroupId"].as_str().unwrap().to_owned()
}

fn describe_group(a: &Caller, id: &str) -> Value {
    let r = a.ok("DescribeSecurityGroups", json!({"GroupIds": [id]}));
    r["SecurityGroups"][0].clone()
}

#[test]
fn groups_rules_and_filters() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let vpc = a.create_vpc("10.0.0.0/16");
    let d = a.ok(
        "DescribeSecurityGroups",
        json!({"Filters": [{"Name": "vpc-id", "Values": [vpc]}]}),
    );
    let default = &d["SecurityGroups"][0];
    assert_eq!(default["GroupName"], "default");
    assert_eq!(default["Description"], "default VPC security group");
    assert_eq!(default["OwnerId"], A);
    assert_eq!(
        default["IpPermissionsEgress"],
        json!([{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "UserIdGroupPairs": []}])
    );
    let default_id = default["GroupId"].as_str().unwrap().to_owned();
    assert_eq!(
        default["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"],
        default_id.as_str()
    );

    let web = group(&a, &vpc, "web");
    assert!(web.starts_with("sg-"));
    let r = a.ok(
        "AuthorizeSecurityGroupIngress",
        json!({"GroupId": web, "IpPermissions": [
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
             "IpRanges": [{"CidrIp": "10.2.0.0/16", "Description": "peer"}],
             "UserIdGroupPairs": [{"GroupId": default_id}]},
            {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
             "IpRanges": [{"CidrIp": "10.2.0.0/16"}]}
        ]}),
    );
    assert_eq!(r["Return"], true);
    let rules = r["SecurityGroupRules"].as_array().unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0]["CidrIpv4"], "10.2.0.0/16");
    assert_eq!(rules[0]["Description"], "peer");
    assert_eq!(rules[0]["IsEgress"], false);
    assert_eq!(
        rules[1]["ReferencedGroupInfo"]["GroupId"],
        default_id.as_str()
    );
    assert_eq!(
        (rules[2]["FromPort"].clone(), rules[2]["ToPort"].clone()),
        (json!(8), json!(-1))
    );
    let rule_ids: Vec<String> = rules
        .iter()
        .map(|r| r["SecurityGroupRuleId"].as_str().unwrap().to_owned())
        .collect();
    assert!(rule_ids.iter().all(|r| r.starts_with("sgr-")));

    // Describe groups rules by protocol, with ranges and pairs.
    let g = describe_group(&a, &web);
    assert_eq!(g["IpPermissions"].as_array().unwrap().len(), 2);
    assert_eq!(g["IpPermissions"][0]["FromPort"], 443);
    assert_eq!(g["IpPermissions"][0]["IpRanges"][0]["Description"], "peer");
    // Filters.
    for (name, value, want) in [
        ("ip-permission.cidr", "10.2.0.0/16", 1),
        ("ip-permission.from-port", "443", 1),
        ("ip-permission.protocol", "icmp", 1),
        ("ip-permission.group-id", default_id.as_str(), 2),
        ("egress.ip-permission.cidr", "0.0.0.0/0", 2),
        ("group-name", "web", 1),
        ("description", "web servers", 1),
        ("owner-id", A, 2),
        ("ip-permission.cidr", "10.9.0.0/16", 0),
    ] {
        let d = a.ok(
            "DescribeSecurityGroups",
            json!({"Filters": [{"Name": name, "Values": [value]}]}),
        );
        assert_eq!(
            d["SecurityGroups"].as_array().unwrap().len(),
            want,
            "{name}={value}"
        );
    }
    let r = a.call(
        "DescribeSecurityGroups",
        json!({"Filters": [{"Name": "no-such-filter", "Values": ["x"]}]}),
    );
    assert_error(&r, 400, "InvalidParameterValue");
    let d = a.ok(
        "DescribeSecurityGroupRules",
        json!({"Filters": [{"Name": "group-id", "Values": [web]}]}),
    );
    assert_eq!(
        d["SecurityGroupRules"].as_array().unwrap().len(),
        4,
        "3 in, 1 out"
    );

    // Errors.
    let rev = s.revision();
    let dup = json!({"GroupId": web, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 443,
        "ToPort": 443, "IpRanges": [{"CidrIp": "10.2.0.0/16"}]}]});
    assert_error(
        &a.call("AuthorizeSecurityGroupIngress", dup.clone()),
        400,
        "InvalidPermission.Duplicate",
    );
    assert_error(
        &a.call(
            "CreateSecurityGroup",
            json!({"GroupName": "web", "Description": "x", "VpcId": vpc}),
        ),
        400,
        "InvalidGroup.Duplicate",
    );
    assert_error(
        &a.call("DeleteSecurityGroup", json!({"GroupId": default_id})),
        400,
        "CannotDelete",
    );
    assert_error(
        &a.call(
            "DeleteSecurityGroup",
            json!({"GroupId": "sg-0000000000000abcd"}),
        ),
        404,
        "InvalidGroup.NotFound",
    );
    assert_error(
        &a.call("DeleteSecurityGroup", json!({"GroupId": "sg-1"})),
        400,
        "InvalidGroupId.Malformed",
    );
    let wrong = json!({"GroupId": web, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 1,
        "ToPort": 2, "IpRanges": [{"CidrIp": "10.3.0.0/16"}]}]});
    assert_error(
        &a.call("RevokeSecurityGroupIngress", wrong),
        404,
        "InvalidPermission.NotFound",
    );
    let ipv6 = json!({"GroupId": web, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 1,
        "ToPort": 2, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]});
    // IPv6 is not modelled: the field is unknown.
    assert_error(
        &a.call("AuthorizeSecurityGroupIngress", ipv6),
        400,
        "UnknownParameter",
    );
    // A group of another account is invisible.
    let b = Caller::new(&s, B, E1);
    assert_error(
        &b.call("AuthorizeSecurityGroupIngress", dup.clone()),
        404,
        "InvalidGroup.NotFound",
    );
    assert_eq!(s.revision(), rev, "refused calls change nothing");

    // Revoke by permission and by id.
    a.ok("RevokeSecurityGroupIngress", dup);
    a.ok(
        "RevokeSecurityGroupIngress",
        json!({"GroupId": web, "SecurityGroupRuleIds": [rule_ids[2]]}),
    );
    let g = describe_group(&a, &web);
    assert_eq!(
        g["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"],
        default_id.as_str()
    );
    assert_eq!(g["IpPermissions"].as_array().unwrap().len(), 1);
    a.ok("DeleteSecurityGroup", json!({"GroupId": web}));
}

#[test]
fn peer_references_across_regions_are_refused_and_go_stale() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let b = Caller::new(&s, B, E1);
    let bw = b.in_region(W2);
    let va = a.create_vpc("10.0.0.0/16");
    let vb = b.create_vpc("10.1.0.0/16");
    let vw = bw.create_vpc("10.2.0.0/16");
    let pcx = a.request_peering(&va, &vb, B, E1);
    b.ok(
        "AcceptVpcPeeringConnection",
        json!({"VpcPeeringConnectionId": pcx}),
    );
    let pcx_w = a.request_peering(&va, &vw, B, W2);
    bw.ok(
        "AcceptVpcPeeringConnection",
        json!({"VpcPeeringConnectionId": pcx_w}),
    );
    let ga = group(&a, &va, "app");
    let gb = group(&b, &vb, "db");
    let gw = group(&bw, &vw, "far");
    // Same region, another account: named with its account.
    let rule = |g: &str| {
        json!({"GroupId": ga, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 5432,
            "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": g, "UserId": B}]}]})
    };
    a.ok("AuthorizeSecurityGroupIngress", rule(&gb));
    let g = describe_group(&a, &ga);
    let pair = &g["IpPermissions"][0]["UserIdGroupPairs"][0];
    assert_eq!(pair["VpcPeeringConnectionId"], pcx.as_str());
    assert_eq!(pair["PeeringStatus"], "active");
    assert_eq!(pair["VpcId"], vb.as_str());
    // Across regions: refused with EC2's answer.
    let r = a.call("AuthorizeSecurityGroupIngress", rule(&gw));
    assert_error(&r, 404, "InvalidGroup.NotFound");
    assert!(r.text.contains("different networks"), "{}", r.text);
    // A CIDR across regions is fine.
    a.ok(
        "AuthorizeSecurityGroupIngress",
        json!({"GroupId": ga, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22,
            "ToPort": 22, "IpRanges": [{"CidrIp": "10.2.0.0/16"}]}]}),
    );
    let r = a.ok("DescribeStaleSecurityGroups", json!({"VpcId": va}));
    assert_eq!(r, json!({"StaleSecurityGroupSet": []}));
    // Deleting the peering makes the rule stale.
    b.ok(
        "DeleteVpcPeeringConnection",
        json!({"VpcPeeringConnectionId": pcx}),
    );
    let r = a.ok("DescribeStaleSecurityGroups", json!({"VpcId": va}));
    let set = r["StaleSecurityGroupSet"].as_array().unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0]["GroupId"], ga.as_str());
    let p = &set[0]["StaleIpPermissions"][0];
    assert_eq!(p["IpProtocol"], "tcp");
    assert_eq!(p["UserIdGroupPairs"][0]["GroupId"], gb.as_str());
    assert_eq!(p["UserIdGroupPairs"][0]["PeeringStatus"], "deleted");
    assert_eq!(set[0]["StaleIpPermissionsEgress"], json!([]));
    // B may delete its group now: the reference was from another VPC.
    b.ok("DeleteSecurityGroup", json!({"GroupId": gb}));
    let _ = gw;
}

#[test]
fn network_interfaces() {
    let s = Server::start();
    let a = Caller::new(&s, A, E1);
    let vpc = a.create_vpc("10.0.0.0/16");
    let sn = a.ok(
        "CreateSubnet",
        json!({"VpcId": vpc, "CidrBlock": "10.0.1.0/24", "Interface": "eth1"}),
    );
    let subnet = sn["Subnet"]["SubnetId"].as_str().unwrap().to_owned();
    let web = group(&a, &vpc, "web");
    let r = a.ok(
        "CreateNetworkInterface",
        json!({"SubnetId": subnet, "Description": "first"}),
    );
    let n = &r["NetworkInterface"];
    assert_eq!(n["PrivateIpAddress"], "10.0.1.4");
    assert_eq!(
        n["PrivateIpAddresses"],
        json!([{"PrivateIpAddress": "10.0.1.4", "Primary": true}])
    );
    assert_eq!(n["Groups"][0]["GroupName"], "default");
    assert_eq!(n["Status"], "available");
    assert_eq!(n["VpcId"], vpc.as_str());
    let first = n["NetworkInterfaceId"].as_str().unwrap().to_owned();
    assert!(first.starts_with("eni-"));
    let r = a.ok(
        "CreateNetworkInterface",
        json!({"SubnetId": subnet, "PrivateIpAddress": "10.0.1.50", "Groups": [web]}),
    );
    let second = r["NetworkInterface"]["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (body, status, code) in [
        (
            json!({"SubnetId": subnet, "PrivateIpAddress": "10.0.1.50"}),
            400,
            "InvalidIPAddress.InUse",
        ),
        (
            json!({"SubnetId": subnet, "PrivateIpAddress": "10.0.2.5"}),
            400,
            "InvalidParameterValue",
        ),
        (
            json!({"SubnetId": subnet, "PrivateIpAddress": "10.0.1.255"}),
            400,
            "InvalidParameterValue",
        ),
        (
            json!({"SubnetId": subnet, "Groups": ["sg-0000000000000abcd"]}),
            404,
            "InvalidGroup.NotFound",
        ),
        (
            json!({"SubnetId": "subnet-0000000000000abcd"}),
            404,
            "InvalidSubnetID.NotFound",
        ),
        (
            json!({"SubnetId": subnet, "Groups": [web, "sg-1", "sg-2", "sg-3", "sg-4", "sg-5"]}),
            400,
            "SecurityGroupsPerInterfaceLimitExceeded",
        ),
    ] {
        assert_error(
            &a.call("CreateNetworkInterface", body.clone()),
            status,
            code,
        );
    }
    for (name, value, want) in [
        ("group-id", web.as_str(), vec![second.clone()]),
        ("private-ip-address", "10.0.1.4", vec![first.clone()]),
        (
            "addresses.private-ip-address",
            "10.0.1.50",
            vec![second.clone()],
        ),
        (
            "subnet-id",
            subnet.as_str(),
            vec![first.clone(), second.clone()],
        ),
        ("description", "first", vec![first.clone()]),
    ] {
        let d = a.ok(
            "DescribeNetworkInterfaces",
            json!({"Filters": [{"Name": name, "Values": [value]}]}),
        );
        let mut got: Vec<String> = d["NetworkInterfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["NetworkInterfaceId"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{name}={value}");
    }
    // The group is in use; moving the interface off it frees it.
    assert_error(
        &a.call("DeleteSecurityGroup", json!({"GroupId": web})),
        400,
        "DependencyViolation",
    );
    let default = a.ok("DescribeSecurityGroups", json!({"GroupNames": ["default"]}))
        ["SecurityGroups"][0]["GroupId"]
        .clone();
    a.ok(
        "ModifyNetworkInterfaceAttribute",
        json!({"NetworkInterfaceId": second, "Groups": [default]}),
    );
    a.ok("DeleteSecurityGroup", json!({"GroupId": web}));
    assert_error(
        &a.call("DeleteSubnet", json!({"SubnetId": subnet})),
        400,
        "DependencyViolation",
    );
    let b = Caller::new(&s, B, E1);
    assert_error(
        &b.call(
            "DeleteNetworkInterface",
            json!({"NetworkInterfaceId": first}),
        ),
        404,
        "InvalidNetworkInterfaceID.NotFound",
    );
    for id in [&first, &second] {
        a.ok("DeleteNetworkInterface", json!({"NetworkInterfaceId": id}));
    }
    a.ok("DeleteSubnet", json!({"SubnetId": subnet}));
    a.ok("DeleteVpc", json!({"VpcId": vpc}));
    let d = a.ok("DescribeSecurityGroups", json!({}));
    assert_eq!(
        d["SecurityGroups"],
        json!([]),
        "the default group went with the VPC"
    );
}
