//! Settings resolution: flags, then environment, then the config file.
//!
//! The config file (`~/.peering/config`, or `$PEERING_CONFIG_FILE`) is
//! INI-style like the AWS CLI's: `[default]` and `[profile NAME]` sections
//! (a bare `[NAME]` is accepted too) with `endpoint_url`, `ca_file`,
//! `region`, `token` and `output` keys.

use crate::cli::args::Output;
use ini::Ini;
use std::path::PathBuf;

/// Endpoint used when none is configured: the daemon's default listen
/// address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7780";
pub const ENV_CONFIG_FILE: &str = "PEERING_CONFIG_FILE";
pub const ENV_TOKEN: &str = "PEERING_TOKEN";

/// What flags and the environment said (clap merges those two already; the
/// token has no flag so it does not show up in process listings).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub region: Option<String>,
    pub output: Option<Output>,
    pub token: Option<String>,
}

/// The settings a call is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint_url: String,
    /// CA certificates the endpoint's certificate is verified against.
    pub ca_file: Option<PathBuf>,
    pub region: Option<String>,
    pub token: Option<String>,
    pub output: Output,
}

/// The config file path: `$PEERING_CONFIG_FILE`, else `~/.peering/config`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_CONFIG_FILE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".peering").join("config"))
}

/// Resolves settings. Err is a configuration error (unreadable file,
/// unknown profile, bad value).
pub fn resolve(over: Overrides, path: Option<PathBuf>) -> Result<Settings, String> {
    let explicit_profile = over.profile.is_some();
    let profile = over.profile.unwrap_or_else(|| "default".to_owned());
    let ini = match &path {
        Some(p) if p.exists() => Some(
            Ini::load_from_file(p)
                .map_err(|e| format!("cannot read config file {}: {e}", p.display()))?,
        ),
        _ => None,
    };
    let section = ini.as_ref().and_then(|ini| {
        let named = format!("profile {profile}");
        ini.section(Some(named.as_str()))
            .or_else(|| ini.section(Some(profile.as_str())))
    });
    if section.is_none() && explicit_profile {
        return Err(format!("The config profile ({profile}) could not be found"));
    }
    let get = |key: &str| {
        section
            .and_then(|s| s.get(key))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let output = match over.output {
        Some(o) => o,
        None => match get("output").as_deref() {
            None | Some("json") => Output::Json,
            Some("table") => Output::Table,
            Some(other) => {
                return Err(format!(
                    "profile {profile}: output must be json or table, not {other:?}"
                ))
            }
        },
    };
    let endpoint_url = over
        .endpoint_url
        .or_else(|| get("endpoint_url"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let scheme = crate::https::check_url(&endpoint_url)?;
    let ca_file = over.ca_file.or_else(|| get("ca_file").map(PathBuf::from));
    if scheme == crate::https::Scheme::Https && ca_file.is_none() {
        return Err(format!(
            "endpoint {endpoint_url} is https:// but no CA file is given: use --ca-file, \
             PEERING_CA_FILE or `ca_file` in the profile"
        ));
    }
    Ok(Settings {
        endpoint_url: endpoint_url.trim_end_matches('/').to_owned(),
        ca_file,
        region: over
            .region
            .filter(|r| !r.is_empty())
            .or_else(|| get("region")),
        token: over
            .token
            .filter(|t| !t.is_empty())
            .or_else(|| get("token")),
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "peerctl-profile-{}-{}",
            std::process::id(),
            content.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config");
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn precedence() {
        let p = file(
            "[default]\nendpoint_url = https://h:1/\nca_file = /etc/ca.pem\nregion = us-east-1\ntoken = t0\n\n\
             [profile b]\nregion = us-west-2\ntoken = tb\noutput = table\n",
        );
        let s = resolve(Overrides::default(), Some(p.clone())).unwrap();
        assert_eq!(s.endpoint_url, "https://h:1");
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        assert_eq!(s.token.as_deref(), Some("t0"));
        assert_eq!(s.output, Output::Json);

        let over = Overrides {
            profile: Some("b".into()),
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        let s = resolve(over, Some(p.clone())).unwrap();
        assert_eq!(s.endpoint_url, DEFAULT_ENDPOINT);
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.token.as_deref(), Some("tb"));
        assert_eq!(s.output, Output::Table);

        let over = Overrides {
            profile: Some("nope".into()),
            ..Default::default()
        };
        assert!(resolve(over, Some(p.clone())).is_err());
        let s = resolve(Overrides::default(), Some(p.with_file_name("missing"))).unwrap();
        assert_eq!(s.region, None);
        // Plain HTTP off loopback, and https without a CA file, are refused.
        for (url, why) in [
            ("http://198.18.0.1:7780", "in clear"),
            ("https://h:1", "CA file"),
        ] {
            let over = Overrides {
                endpoint_url: Some(url.into()),
                ..Default::default()
            };
            let err = resolve(over, Some(p.with_file_name("missing"))).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}
