//! The AWS CLI "shorthand" syntax for structured parameters, plus the JSON
//! form of the same values:
//! - filters: `Name=status-code,Values=active,pending-acceptance` or
//!   `{"Name":"status-code","Values":["active"]}` or a JSON list of those;
//! - peering options: `AllowDnsResolutionFromRemoteVpc=true` or
//!   `{"AllowDnsResolutionFromRemoteVpc":true}`.

use crate::api::types::PeeringConnectionOptions;
use crate::control::peering_describe::Filter;

/// Parses one `--filters` argument into one or more filters.
pub fn parse_filters(arg: &str) -> Result<Vec<Filter>, String> {
    let trimmed = arg.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).map_err(|e| format!("invalid filters JSON: {e}"));
    }
    if trimmed.starts_with('{') {
        let f: Filter =
            serde_json::from_str(trimmed).map_err(|e| format!("invalid filter JSON: {e}"))?;
        return Ok(vec![f]);
    }
    let mut name: Option<String> = None;
    let mut values: Option<Vec<String>> = None;
    // Which key the bare pieces after a comma continue.
    let mut current = "";
    for piece in trimmed.split(',') {
        match piece.split_once('=') {
            Some(("Name", v)) => {
                if name.is_some() {
                    return Err(format!("filter {arg:?}: Name given twice"));
                }
                name = Some(v.to_owned());
                current = "Name";
            }
            Some(("Values", v)) => {
                if values.is_some() {
                    return Err(format!("filter {arg:?}: Values given twice"));
                }
                values = Some(vec![strip_brackets(v)]);
                current = "Values";
            }
            Some((k, _)) if current != "Values" => {
                return Err(format!(
                    "filter {arg:?}: unknown key {k:?} (expected Name=...,Values=...)"
                ))
            }
            _ if current == "Values" => {
                if let Some(vs) = values.as_mut() {
                    vs.push(strip_brackets(piece));
                }
            }
            _ => {
                return Err(format!(
                    "filter {arg:?}: expected Name=NAME,Values=V1,V2,..."
                ))
            }
        }
    }
    let name = name.filter(|n| !n.is_empty());
    match (name, values) {
        (Some(name), Some(values)) => {
            let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
            Ok(vec![Filter { name, values }])
        }
        _ => Err(format!(
            "filter {arg:?}: expected Name=NAME,Values=V1,V2,..."
        )),
    }
}

fn strip_brackets(v: &str) -> String {
    v.trim_start_matches('[').trim_end_matches(']').to_owned()
}

/// Parses `--requester-peering-connection-options` /
/// `--accepter-peering-connection-options`.
pub fn parse_peering_options(arg: &str) -> Result<PeeringConnectionOptions, String> {
    let trimmed = arg.trim();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed)
            .map_err(|e| format!("invalid peering options JSON: {e}"));
    }
    let mut opts = PeeringConnectionOptions::default();
    for piece in trimmed.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = piece
            .split_once('=')
            .ok_or_else(|| format!("peering options {arg:?}: expected Key=Value"))?;
        let v = match v {
            "true" => true,
            "false" => false,
            _ => {
                return Err(format!(
                    "peering options {arg:?}: {k} must be true or false"
                ))
            }
        };
        match k {
            "AllowDnsResolutionFromRemoteVpc" => opts.allow_dns_resolution_from_remote_vpc = Some(v),
            _ => {
                return Err(format!(
                    "peering options {arg:?}: unknown key {k:?} (supported: AllowDnsResolutionFromRemoteVpc)"
                ))
            }
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_shorthand() {
        assert_eq!(
            parse_filters("Name=status-code,Values=active,pending-acceptance").unwrap(),
            vec![Filter::new(
                "status-code",
                &["active", "pending-acceptance"]
            )]
        );
        assert_eq!(
            parse_filters("Values=a,Name=vpc-id").unwrap(),
            vec![Filter::new("vpc-id", &["a"])]
        );
        assert_eq!(
            parse_filters("Name=vpc-id,Values=[a,b]").unwrap(),
            vec![Filter::new("vpc-id", &["a", "b"])]
        );
        for bad in [
            "",
            "Name=x",
            "Values=a",
            "Nam=x,Values=a",
            "x",
            "Name=x,Name=y,Values=a",
        ] {
            assert!(parse_filters(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters_json() {
        let want = vec![Filter::new("status-code", &["active"])];
        assert_eq!(
            parse_filters(r#"[{"Name":"status-code","Values":["active"]}]"#).unwrap(),
            want
        );
        assert_eq!(
            parse_filters(r#"{"Name":"status-code","Values":["active"]}"#).unwrap(),
            want
        );
        assert!(parse_filters(r#"{"Name":"x","Values":["a"],"Bogus":1}"#).is_err());
        assert!(parse_filters("[1").is_err());
    }

    #[test]
    fn peering_options() {
        let t = PeeringConnectionOptions {
            allow_dns_resolution_from_remote_vpc: Some(true),
        };
        assert_eq!(
            parse_peering_options("AllowDnsResolutionFromRemoteVpc=true").unwrap(),
            t
        );
        assert_eq!(
            parse_peering_options(r#"{"AllowDnsResolutionFromRemoteVpc":true}"#).unwrap(),
            t
        );
        assert!(parse_peering_options("AllowDnsResolutionFromRemoteVpc=yes").is_err());
        assert!(parse_peering_options("Other=true").is_err());
        assert!(parse_peering_options("{\"Other\":true}").is_err());
    }
}
