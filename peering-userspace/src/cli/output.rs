//! Rendering answers: pretty JSON (the default, the API's own shape) or an
//! aligned table of the main fields for people.

use crate::cli::args::Output;
use serde_json::Value;

pub fn render(value: &Value, output: Output) -> String {
    match output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
            s.push('\n');
            s
        }
        Output::Table => table(value),
    }
}

type Columns = &'static [(&'static str, &'static str)];

const VPC: Columns = &[
    ("VpcId", "/VpcId"),
    ("OwnerId", "/OwnerId"),
    ("CidrBlock", "/CidrBlock"),
    ("State", "/State"),
];

const SUBNET: Columns = &[
    ("SubnetId", "/SubnetId"),
    ("VpcId", "/VpcId"),
    ("CidrBlock", "/CidrBlock"),
    ("Interface", "/Interface"),
    ("Vlan", "/Vlan"),
    ("GatewayIp", "/GatewayIp"),
    ("State", "/State"),
];

const PEERING: Columns = &[
    ("VpcPeeringConnectionId", "/VpcPeeringConnectionId"),
    ("Status", "/Status/Code"),
    ("RequesterOwner", "/RequesterVpcInfo/OwnerId"),
    ("RequesterVpc", "/RequesterVpcInfo/VpcId"),
    ("RequesterRegion", "/RequesterVpcInfo/Region"),
    ("RequesterCidr", "/RequesterVpcInfo/CidrBlock"),
    ("AccepterOwner", "/AccepterVpcInfo/OwnerId"),
    ("AccepterVpc", "/AccepterVpcInfo/VpcId"),
    ("AccepterRegion", "/AccepterVpcInfo/Region"),
    ("AccepterCidr", "/AccepterVpcInfo/CidrBlock"),
];

/// Route tables are shown one row per route.
const ROUTE: Columns = &[
    ("RouteTableId", "/RouteTableId"),
    ("VpcId", "/VpcId"),
    ("Main", "/Main"),
    ("Destination", "/DestinationCidrBlock"),
    ("Target", "/Target"),
    ("State", "/State"),
];

const REGION: Columns = &[("RegionName", "/RegionName")];

const SECURITY_GROUP: Columns = &[
    ("GroupId", "/GroupId"),
    ("GroupName", "/GroupName"),
    ("VpcId", "/VpcId"),
    ("OwnerId", "/OwnerId"),
    ("Description", "/Description"),
];

const SECURITY_GROUP_RULE: Columns = &[
    ("SecurityGroupRuleId", "/SecurityGroupRuleId"),
    ("GroupId", "/GroupId"),
    ("IsEgress", "/IsEgress"),
    ("IpProtocol", "/IpProtocol"),
    ("FromPort", "/FromPort"),
    ("ToPort", "/ToPort"),
    ("CidrIpv4", "/CidrIpv4"),
    ("ReferencedGroup", "/ReferencedGroupInfo/GroupId"),
    ("Description", "/Description"),
];

/// The first group only; `--output json` shows them all.
const NETWORK_INTERFACE: Columns = &[
    ("NetworkInterfaceId", "/NetworkInterfaceId"),
    ("SubnetId", "/SubnetId"),
    ("VpcId", "/VpcId"),
    ("PrivateIpAddress", "/PrivateIpAddress"),
    ("FirstGroup", "/Groups/0/GroupId"),
    ("Status", "/Status"),
];

/// The items of a single (`"Vpc"`) or list (`"Vpcs"`) answer.
fn items<'a>(v: &'a Value, one: &str, many: &str) -> Option<Vec<&'a Value>> {
    if let Some(x) = v.get(one) {
        return Some(vec![x]);
    }
    v.get(many)?.as_array().map(|a| a.iter().collect())
}

fn table(v: &Value) -> String {
    if let Some(xs) = items(v, "Vpc", "Vpcs") {
        return grid(VPC, &xs);
    }
    if let Some(xs) = items(v, "Subnet", "Subnets") {
        return grid(SUBNET, &xs);
    }
    if let Some(xs) = items(v, "VpcPeeringConnection", "VpcPeeringConnections") {
        return grid(PEERING, &xs);
    }
    if let Some(xs) = items(v, "RouteTable", "RouteTables") {
        let rows: Vec<Value> = xs.iter().flat_map(|t| route_rows(t)).collect();
        return grid(ROUTE, &rows.iter().collect::<Vec<_>>());
    }
    if let Some(xs) = items(v, "Region", "Regions") {
        return grid(REGION, &xs);
    }
    if let Some(xs) = items(v, "SecurityGroup", "SecurityGroups") {
        return grid(SECURITY_GROUP, &xs);
    }
    if let Some(xs) = items(v, "SecurityGroupRule", "SecurityGroupRules") {
        return grid(SECURITY_GROUP_RULE, &xs);
    }
    if let Some(xs) = items(v, "NetworkInterface", "NetworkInterfaces") {
        return grid(NETWORK_INTERFACE, &xs);
    }
    // Anything else (e.g. {"Return": true}): flattened key/value pairs.
    let mut pairs = Vec::new();
    flatten("", v, &mut pairs);
    let rows: Vec<Value> = pairs
        .into_iter()
        .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
        .collect();
    grid(
        &[("Key", "/Key"), ("Value", "/Value")],
        &rows.iter().collect::<Vec<_>>(),
    )
}

fn route_rows(t: &Value) -> Vec<Value> {
    let main = t
        .get("Associations")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.get("Main") == Some(&Value::Bool(true))));
    let routes = t
        .get("Routes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    routes
        .iter()
        .map(|r| {
            let target = r
                .get("VpcPeeringConnectionId")
                .or_else(|| r.get("GatewayId"))
                .cloned()
                .unwrap_or(Value::Null);
            serde_json::json!({
                "RouteTableId": t.get("RouteTableId"),
                "VpcId": t.get("VpcId"),
                "Main": main,
                "DestinationCidrBlock": r.get("DestinationCidrBlock"),
                "Target": target,
                "State": r.get("State"),
            })
        })
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        other => out.push((prefix.to_owned(), cell(Some(other)))),
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An aligned table: a header row, then one row per item.
fn grid(cols: Columns, rows: &[&Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, p)| cell(r.pointer(p))).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| {
        let mut s = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(cols.iter().map(|(h, _)| *h).collect());
    for r in &cells {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables() {
        let v = json!({"Vpcs": [
            {"VpcId": "vpc-1", "OwnerId": "111111111111", "CidrBlock": "10.0.0.0/16", "State": "available"},
        ]});
        assert_eq!(
            render(&v, Output::Table),
            "VpcId  OwnerId       CidrBlock    State\n\
             vpc-1  111111111111  10.0.0.0/16  available\n"
        );
        assert_eq!(
            render(&json!({"Return": true}), Output::Table),
            "Key     Value\nReturn  true\n"
        );
        let rt = json!({"RouteTables": [{"RouteTableId": "rtb-1", "VpcId": "vpc-1",
            "Associations": [{"Main": true}],
            "Routes": [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"},
                       {"DestinationCidrBlock": "10.1.0.0/16", "VpcPeeringConnectionId": "pcx-1", "State": "blackhole"}]}]});
        let t = render(&rt, Output::Table);
        assert!(
            t.contains("rtb-1         vpc-1  true  10.1.0.0/16  pcx-1   blackhole"),
            "{t}"
        );
        assert_eq!(render(&json!({"A": 1}), Output::Json), "{\n  \"A\": 1\n}\n");
        let n = json!({"NetworkInterfaces": [{"NetworkInterfaceId": "eni-1", "SubnetId": "subnet-1",
            "VpcId": "vpc-1", "PrivateIpAddress": "10.0.1.4", "Status": "available",
            "Groups": [{"GroupId": "sg-1", "GroupName": "default"}]}]});
        let t = render(&n, Output::Table);
        assert!(
            t.contains(
                "eni-1               subnet-1  vpc-1  10.0.1.4          sg-1        available"
            ),
            "{t}"
        );
        let r = json!({"SecurityGroupRules": [{"SecurityGroupRuleId": "sgr-1", "GroupId": "sg-1",
            "IsEgress": false, "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "ReferencedGroupInfo": {"GroupId": "sg-2"}}]});
        let t = render(&r, Output::Table);
        assert!(t.contains("sgr-1") && t.contains("sg-2"), "{t}");
    }
}
