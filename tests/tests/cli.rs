//! End-to-end tests of the `peerctl` binary against a running API server.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// A test setup: a server, tokens for A and B, and a config file with the
/// `default` profile (A, us-east-1) and profile `b` (B, us-west-2).
struct Setup {
    server: Server,
    home: TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let server = Server::start();
        let home = TempDir::new("cli");
        let config = home.path().join("config");
        let (ta, tb) = (server.token(A), server.token(B));
        std::fs::write(
            &config,
            format!(
                "# peerctl test profiles\n[default]\nendpoint_url = {url}\nregion = {E1}\ntoken = {ta}\n\n\
                 [profile b]\nendpoint_url = {url}/\nregion = {W2}\ntoken = {tb}\noutput = json\n\n\
                 [profile dead]\nendpoint_url = http://127.0.0.1:{port}\nregion = {E1}\ntoken = {ta}\n",
                url = server.url,
                port = closed_port(),
            ),
        )
        .unwrap();
        Setup {
            server,
            home,
            config,
        }
    }

    /// Runs peerctl with a clean environment plus `env`.
    fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let out = Command::new(peering_tests::lab::bin("peerctl"))
            .env_clear()
            .env("HOME", self.home.path())
            .env("PEERING_CONFIG_FILE", &self.config)
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_env(&[], args)
    }

    fn ok(&self, args: &[&str]) -> Value {
        self.run(args).json()
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

#[test]
fn request_accept_and_routes_across_accounts_and_regions() {
    let t = Setup::new();
    let who = t.ok(&["get-caller-identity"]);
    assert_eq!(who["Account"], A);
    let who = t.ok(&["--profile", "b", "get-caller-identity"]);
    assert_eq!(who["Account"], B);

    let va = s(&t.ok(&["create-vpc", "--cidr-block", "10.1.0.0/16"])["Vpc"]["VpcId"]);
    let vb = s(&t.ok(&[
        "--profile",
        "b",
        "create-vpc",
        "--cidr-block",
        "10.2.0.0/16",
    ])["Vpc"]["VpcId"]);
    let sa = t.ok(&[
        "create-subnet",
        "--vpc-id",
        &va,
        "--cidr-block",
        "10.1.1.0/24",
        "--interface",
        "eth1",
        "--vlan",
        "10",
    ]);
    assert_eq!(sa["Subnet"]["Vlan"], 10);
    let sa = s(&sa["Subnet"]["SubnetId"]);
    let rta = s(&t.ok(&["create-route-table", "--vpc-id", &va])["RouteTable"]["RouteTableId"]);
    let assoc = t.ok(&[
        "associate-route-table",
        "--route-table-id",
        &rta,
        "--subnet-id",
        &sa,
    ]);
    assert!(s(&assoc["AssociationId"]).starts_with("rtbassoc-"));

    // A requests, in A's region.
    let p = t.ok(&[
        "create-vpc-peering-connection",
        "--vpc-id",
        &va,
        "--peer-vpc-id",
        &vb,
        "--peer-owner-id",
        B,
        "--peer-region",
        W2,
    ]);
    let pcx = s(&p["VpcPeeringConnection"]["VpcPeeringConnectionId"]);
    assert_eq!(
        p["VpcPeeringConnection"]["Status"]["Code"],
        "pending-acceptance"
    );

    // B finds it with shorthand and JSON filters.
    let d = t.ok(&[
        "--profile",
        "b",
        "describe-vpc-peering-connections",
        "--filters",
        "Name=status-code,Values=pending-acceptance,active",
        "Name=requester-vpc-info.owner-id,Values=111111111111",
    ]);
    assert_eq!(
        d["VpcPeeringConnections"][0]["VpcPeeringConnectionId"],
        pcx.as_str()
    );
    let d = t.ok(&[
        "--profile",
        "b",
        "describe-vpc-peering-connections",
        "--filters",
        r#"[{"Name":"status-code","Values":["active"]}]"#,
    ]);
    assert_eq!(d["VpcPeeringConnections"], serde_json::json!([]));

    // B accepts in its region; A (requester) cannot.
    let r = t.run(&[
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    assert_eq!(r.code, 254);
    assert!(r.stderr.contains(
        "An error occurred (UnauthorizedOperation) when calling the AcceptVpcPeeringConnection operation: "
    ), "{}", r.stderr);
    let acc = t.ok(&[
        "--profile",
        "b",
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    assert_eq!(acc["VpcPeeringConnection"]["Status"]["Code"], "active");

    // Routes on both sides.
    let r = t.ok(&[
        "create-route",
        "--route-table-id",
        &rta,
        "--destination-cidr-block",
        "10.2.0.0/16",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    assert_eq!(r, serde_json::json!({"Return": true}));
    let rtb = t.ok(&[
        "--profile",
        "b",
        "describe-route-tables",
        "--filters",
        &format!("Name=vpc-id,Values={vb}"),
        "Name=association.main,Values=true",
    ]);
    let rtb = s(&rtb["RouteTables"][0]["RouteTableId"]);
    t.ok(&[
        "--profile",
        "b",
        "create-route",
        "--route-table-id",
        &rtb,
        "--destination-cidr-block",
        "10.1.0.0/16",
        "--vpc-peering-connection-id",
        &pcx,
    ]);

    // Tables for people.
    let table = t.run(&[
        "describe-route-tables",
        "--route-table-ids",
        &rta,
        "--output",
        "table",
    ]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("RouteTableId"), "{}", table.stdout);
    assert!(lines[0].contains("Destination") && lines[0].contains("Target"));
    assert!(lines
        .iter()
        .any(|l| l.contains("10.1.0.0/16") && l.contains("local")));
    assert!(lines
        .iter()
        .any(|l| l.contains("10.2.0.0/16") && l.contains(&pcx) && l.contains("active")));
    let table = t.run(&["--output", "table", "describe-vpc-peering-connections"]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    assert!(lines[0].starts_with("VpcPeeringConnectionId  Status"));
    for field in [
        pcx.as_str(),
        "active",
        A,
        B,
        E1,
        W2,
        "10.1.0.0/16",
        "10.2.0.0/16",
    ] {
        assert!(
            lines[1].contains(field),
            "{field} missing: {}",
            table.stdout
        );
    }
    let table = t.run(&["describe-vpcs", "--output", "table"]);
    assert!(table.stdout.contains(&va) && table.stdout.contains("available"));
    let table = t.run(&["--profile", "b", "describe-subnets", "--output", "table"]);
    assert_eq!(
        table.stdout.trim(),
        "SubnetId  VpcId  CidrBlock  Interface  Vlan  GatewayIp  State"
    );

    // Options, each side its own.
    let m = t.ok(&[
        "modify-vpc-peering-connection-options",
        "--vpc-peering-connection-id",
        &pcx,
        "--requester-peering-connection-options",
        "AllowDnsResolutionFromRemoteVpc=true",
    ]);
    assert_eq!(
        m["RequesterPeeringConnectionOptions"]["AllowDnsResolutionFromRemoteVpc"],
        true
    );
    t.ok(&[
        "--profile",
        "b",
        "modify-vpc-peering-connection-options",
        "--vpc-peering-connection-id",
        &pcx,
        "--accepter-peering-connection-options",
        r#"{"AllowDnsResolutionFromRemoteVpc":true}"#,
    ]);
    let d = t.ok(&[
        "describe-vpc-peering-connections",
        "--vpc-peering-connection-ids",
        &pcx,
    ]);
    let p = &d["VpcPeeringConnections"][0];
    assert_eq!(
        p["RequesterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"],
        true
    );
    assert_eq!(
        p["AccepterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"],
        true
    );

    // A second VPC of A, a request to it that A rejects, then route edits.
    let va2 = s(&t.ok(&["create-vpc", "--cidr-block", "10.3.0.0/16"])["Vpc"]["VpcId"]);
    let p2 = t.ok(&[
        "create-vpc-peering-connection",
        "--vpc-id",
        &va,
        "--peer-vpc-id",
        &va2,
    ]);
    let p2 = s(&p2["VpcPeeringConnection"]["VpcPeeringConnectionId"]);
    t.ok(&[
        "replace-route",
        "--route-table-id",
        &rta,
        "--destination-cidr-block",
        "10.2.0.0/16",
        "--vpc-peering-connection-id",
        &p2,
    ]);
    t.ok(&[
        "replace-route",
        "--route-table-id",
        &rta,
        "--destination-cidr-block",
        "10.2.0.0/16",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    t.ok(&[
        "reject-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &p2,
    ]);
    t.ok(&[
        "delete-route",
        "--route-table-id",
        &rta,
        "--destination-cidr-block",
        "10.2.0.0/16",
    ]);
    let c = t.ok(&[
        "associate-vpc-cidr-block",
        "--vpc-id",
        &va2,
        "--cidr-block",
        "10.30.0.0/16",
    ]);
    assert_eq!(
        c["CidrBlockAssociation"]["CidrBlockState"]["State"],
        "associated"
    );
    t.ok(&[
        "disassociate-vpc-cidr-block",
        "--vpc-id",
        &va2,
        "--cidr-block",
        "10.30.0.0/16",
    ]);

    // Tear down.
    t.ok(&[
        "--profile",
        "b",
        "delete-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    t.ok(&[
        "disassociate-route-table",
        "--association-id",
        &s(&assoc["AssociationId"]),
    ]);
    t.ok(&["delete-route-table", "--route-table-id", &rta]);
    t.ok(&["delete-subnet", "--subnet-id", &sa]);
    for v in [&va, &va2] {
        t.ok(&["delete-vpc", "--vpc-id", v]);
    }
    assert_eq!(t.ok(&["describe-vpcs"]), serde_json::json!({"Vpcs": []}));
    let regions = t.ok(&["describe-regions"]);
    assert_eq!(regions["Regions"][1]["RegionName"], W2);
}

#[test]
fn service_errors_exit_254_with_aws_message() {
    let t = Setup::new();
    let rev = t.server.revision();
    let r = t.run(&[
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        "pcx-0000000000000abcd",
    ]);
    assert_eq!(r.code, 254);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.trim().starts_with(
        "An error occurred (InvalidVpcPeeringConnectionID.NotFound) when calling the AcceptVpcPeeringConnection operation: The vpcPeeringConnection ID 'pcx-0000000000000abcd' does not exist"
    ), "{}", r.stderr);
    let r = t.run(&[
        "delete-vpc-peering-connection",
        "--vpc-peering-connection-id",
        "pcx-1",
    ]);
    assert_eq!(r.code, 254);
    assert!(r.stderr.contains("(InvalidVpcPeeringConnectionId.Malformed) when calling the DeleteVpcPeeringConnection operation"));
    let r = t.run(&["create-vpc", "--cidr-block", "10.0.0.0/8"]);
    assert_eq!(r.code, 254);
    assert!(r
        .stderr
        .contains("(InvalidVpc.Range) when calling the CreateVpc operation"));
    let r = t.run(&["describe-vpcs", "--filters", "Name=bogus,Values=x"]);
    assert_eq!(r.code, 254);
    assert!(r
        .stderr
        .contains("(InvalidParameterValue) when calling the DescribeVpcs operation"));
    let r = t.run(&["--region", "mars-1", "describe-vpcs"]);
    assert_eq!(r.code, 254);
    assert!(r.stderr.contains("(InvalidParameterValue)"));
    let r = t.run_env(&[("PEERING_TOKEN", "bogus")], &["describe-vpcs"]);
    assert_eq!(r.code, 254);
    assert!(r
        .stderr
        .contains("An error occurred (AuthFailure) when calling the DescribeVpcs operation"));
    assert_eq!(t.server.revision(), rev);
}

#[test]
fn usage_errors_exit_252() {
    let t = Setup::new();
    for args in [
        vec!["create-vpc"],
        vec!["no-such-command"],
        vec![],
        vec![
            "create-subnet",
            "--vpc-id",
            "vpc-1",
            "--cidr-block",
            "10.0.0.0/24",
            "--interface",
            "e",
            "--vlan",
            "abc",
        ],
        vec!["describe-vpcs", "--output", "yaml"],
        vec![
            "describe-vpc-peering-connections",
            "--filters",
            "Name=status-code",
        ],
        vec!["describe-vpc-peering-connections", "--filters", "[{"],
        vec![
            "modify-vpc-peering-connection-options",
            "--vpc-peering-connection-id",
            "pcx-1",
            "--requester-peering-connection-options",
            "AllowDnsResolutionFromRemoteVpc=maybe",
        ],
        vec!["create-vpc", "--cidr-block", "10.0.0.0/16", "--bogus"],
    ] {
        let r = t.run(&args);
        assert_eq!(r.code, 252, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty());
    }
    assert_eq!(t.server.revision(), 0);
    let r = t.run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("create-vpc-peering-connection"));
    let r = t.run(&["create-route", "--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("--destination-cidr-block"));
}

#[test]
fn configuration_and_connection_errors() {
    let t = Setup::new();
    // Unknown profile.
    let r = t.run(&["--profile", "nope", "describe-vpcs"]);
    assert_eq!(r.code, 253, "{}", r.stderr);
    assert!(r
        .stderr
        .contains("The config profile (nope) could not be found"));
    let r = t.run_env(&[("PEERING_PROFILE", "nope")], &["describe-vpcs"]);
    assert_eq!(r.code, 253);
    // No config file at all: no token, then no region.
    let none = [("PEERING_CONFIG_FILE", "/nonexistent/peering/config")];
    let r = t.run_env(&none, &["describe-vpcs"]);
    assert_eq!(r.code, 253);
    assert!(
        r.stderr.contains("Unable to locate credentials"),
        "{}",
        r.stderr
    );
    let token = t.server.token(A);
    let env = [
        none[0],
        ("PEERING_TOKEN", token.as_str()),
        ("PEERING_ENDPOINT", t.server.url.as_str()),
    ];
    let r = t.run_env(&env, &["describe-vpcs"]);
    assert_eq!(r.code, 253);
    assert!(
        r.stderr.contains("You must specify a region"),
        "{}",
        r.stderr
    );
    // Everything from the environment.
    let mut env = env.to_vec();
    env.push(("PEERING_REGION", E1));
    assert_eq!(
        t.run_env(&env, &["describe-vpcs"]).json(),
        serde_json::json!({"Vpcs": []})
    );
    // Nothing listening.
    let r = t.run(&["--profile", "dead", "describe-vpcs"]);
    assert_eq!(r.code, 255, "{}", r.stderr);
    assert!(
        r.stderr.contains("Could not connect to the endpoint URL"),
        "{}",
        r.stderr
    );
    let r = t.run(&["--endpoint-url", "ftp://x", "describe-vpcs"]);
    assert_eq!(r.code, 253);
    // An endpoint that is not the API.
    let r = t.run(&[
        "--endpoint-url",
        &format!("{}/v1/healthz", t.server.url),
        "describe-vpcs",
    ]);
    assert_eq!(r.code, 254, "{}", r.stderr);
    assert!(r.stderr.contains("(NotFound)"), "{}", r.stderr);
}

#[test]
fn flags_override_environment_override_profile() {
    let t = Setup::new();
    let va = s(&t.ok(&["create-vpc", "--cidr-block", "10.1.0.0/16"])["Vpc"]["VpcId"]);
    let vw =
        s(&t.ok(&["--region", W2, "create-vpc", "--cidr-block", "10.2.0.0/16"])["Vpc"]["VpcId"]);
    let list = |r: Run| -> Vec<String> {
        r.json()["Vpcs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| s(&v["VpcId"]))
            .collect()
    };
    // Profile region, then env, then flag (also after the verb).
    assert_eq!(list(t.run(&["describe-vpcs"])), vec![va.clone()]);
    assert_eq!(
        list(t.run_env(&[("PEERING_REGION", W2)], &["describe-vpcs"])),
        vec![vw.clone()]
    );
    assert_eq!(
        list(t.run_env(
            &[("PEERING_REGION", W2)],
            &["describe-vpcs", "--region", E1]
        )),
        vec![va.clone()]
    );
    // Endpoint: env beats the profile's dead endpoint, flag beats env.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    assert_eq!(
        list(t.run_env(
            &[("PEERING_ENDPOINT", t.server.url.as_str())],
            &["--profile", "dead", "describe-vpcs"]
        )),
        vec![va.clone()]
    );
    assert_eq!(
        t.run_env(&[("PEERING_ENDPOINT", dead.as_str())], &["describe-vpcs"])
            .code,
        255
    );
    assert_eq!(
        list(t.run_env(
            &[("PEERING_ENDPOINT", dead.as_str())],
            &["--endpoint-url", &t.server.url, "describe-vpcs"]
        )),
        vec![va.clone()]
    );
    // Token and profile from the environment.
    let tb = t.server.token(B);
    assert_eq!(
        t.run_env(&[("PEERING_TOKEN", tb.as_str())], &["describe-vpcs"])
            .json(),
        serde_json::json!({"Vpcs": []})
    );
    let who = t
        .run_env(&[("PEERING_PROFILE", "b")], &["get-caller-identity"])
        .json();
    assert_eq!(who["Account"], B);
    let who = t
        .run_env(
            &[("PEERING_PROFILE", "b")],
            &["--profile", "default", "get-caller-identity"],
        )
        .json();
    assert_eq!(who["Account"], A);
    // Output from the environment.
    let r = t.run_env(&[("PEERING_OUTPUT", "table")], &["describe-vpcs"]);
    assert!(r.stdout.starts_with("VpcId"), "{}", r.stdout);
}

#[test]
fn security_groups_and_network_interfaces() {
    let t = Setup::new();
    let v = t.ok(&["create-vpc", "--cidr-block", "10.0.0.0/16"]);
    let vpc = s(&v["Vpc"]["VpcId"]);
    let sn = t.ok(&[
        "create-subnet",
        "--vpc-id",
        &vpc,
        "--cidr-block",
        "10.0.1.0/24",
        "--interface",
        "eth1",
    ]);
    let subnet = s(&sn["Subnet"]["SubnetId"]);
    let g = t.ok(&[
        "create-security-group",
        "--vpc-id",
        &vpc,
        "--group-name",
        "web",
        "--description",
        "web servers",
    ]);
    let web = s(&g["GroupId"]);
    let r = t.ok(&[
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "8000-8080",
        "--cidr",
        "10.2.0.0/16",
    ]);
    let rule = s(&r["SecurityGroupRules"][0]["SecurityGroupRuleId"]);
    assert_eq!(r["SecurityGroupRules"][0]["FromPort"], 8000);
    assert_eq!(r["SecurityGroupRules"][0]["ToPort"], 8080);
    t.ok(&[
        "authorize-security-group-egress",
        "--group-id",
        &web,
        "--ip-permissions",
        r#"[{"IpProtocol":"icmp","FromPort":8,"ToPort":-1,"IpRanges":[{"CidrIp":"10.2.0.0/16"}]}]"#,
    ]);
    t.ok(&[
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "all",
        "--source-group",
        &web,
    ]);
    let d = t.ok(&[
        "describe-security-groups",
        "--filters",
        "Name=ip-permission.from-port,Values=8000",
    ]);
    assert_eq!(d["SecurityGroups"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["SecurityGroups"][0]["IpPermissionsEgress"][1]["IpProtocol"],
        "icmp"
    );
    // A duplicate is the service's refusal (254), a missing peer a usage error.
    let dup = t.run(&[
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "8000-8080",
        "--cidr",
        "10.2.0.0/16",
    ]);
    assert_eq!(dup.code, 254, "{}", dup.stderr);
    assert!(
        dup.stderr.contains("InvalidPermission.Duplicate"),
        "{}",
        dup.stderr
    );
    let usage = t.run(&[
        "authorize-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
    ]);
    assert_eq!(usage.code, 252, "{}", usage.stderr);
    t.ok(&[
        "revoke-security-group-ingress",
        "--group-id",
        &web,
        "--security-group-rule-ids",
        &rule,
    ]);
    let r = t.ok(&[
        "describe-security-group-rules",
        "--filters",
        &format!("Name=group-id,Values={web}"),
    ]);
    assert_eq!(r["SecurityGroupRules"].as_array().unwrap().len(), 3);

    let n = t.ok(&[
        "create-network-interface",
        "--subnet-id",
        &subnet,
        "--private-ip-address",
        "10.0.1.10",
        "--groups",
        &web,
    ]);
    let eni = s(&n["NetworkInterface"]["NetworkInterfaceId"]);
    assert_eq!(n["NetworkInterface"]["PrivateIpAddress"], "10.0.1.10");
    let d = t.ok(&["describe-security-groups", "--group-names", "default"]);
    let default = s(&d["SecurityGroups"][0]["GroupId"]);
    t.ok(&[
        "modify-network-interface-attribute",
        "--network-interface-id",
        &eni,
        "--groups",
        &default,
        &web,
    ]);
    let d = t.ok(&[
        "describe-network-interfaces",
        "--network-interface-ids",
        &eni,
    ]);
    assert_eq!(
        d["NetworkInterfaces"][0]["Groups"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let stale = t.ok(&["describe-stale-security-groups", "--vpc-id", &vpc]);
    assert_eq!(stale["StaleSecurityGroupSet"], serde_json::json!([]));
    t.ok(&["delete-network-interface", "--network-interface-id", &eni]);
    t.ok(&["delete-security-group", "--group-id", &web]);
}
