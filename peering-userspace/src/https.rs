//! The client side of HTTPS, shared by `peerctl` and the agent's
//! controller client: which URLs are allowed, the CA file, and errors a
//! person can act on.
//!
//! Rules: `https://` URLs are verified against the certificates of a CA
//! file (there are no built-in roots: a deployment has its own CA; point
//! the CA file at the system bundle for a public one). `http://` is only
//! accepted for loopback hosts, where nothing crosses a network.

use anyhow::{bail, Context};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Environment variable naming the CA file (peerctl and the agent).
pub const ENV_CA_FILE: &str = "PEERING_CA_FILE";

/// What a URL's scheme and host allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    /// Plain HTTP to a loopback host.
    LoopbackHttp,
}

/// Checks that `url` is `https://HOST[:PORT][/PATH]`, or `http://` to a
/// loopback host (`127.0.0.0/8`, `::1`, `localhost`).
pub fn check_url(url: &str) -> Result<Scheme, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("endpoint {url:?} must start with https:// (or http:// on loopback)")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "endpoint {url:?} must be https://HOST:PORT (no user, no empty host)"
        ));
    }
    match scheme {
        "https" => Ok(Scheme::Https),
        "http" if is_loopback_host(host_of(authority)) => Ok(Scheme::LoopbackHttp),
        "http" => Err(format!(
            "endpoint {url:?} is plain HTTP to a host that is not loopback: tokens and keys \
             would cross the network in clear; use https:// and a CA file"
        )),
        _ => Err(format!(
            "endpoint {url:?} must start with https:// (or http:// on loopback)"
        )),
    }
}

/// The host of `host[:port]` or `[v6][:port]`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The certificates of a PEM CA file (at least one).
pub fn load_ca(path: &Path) -> anyhow::Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.with_context(|| format!("parsing CA file {}", path.display()))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        bail!("CA file {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// Timeouts of an agent.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// End to end, per request (None: unbounded).
    pub global: Option<Duration>,
}

/// A blocking HTTP client trusting exactly the certificates of `ca`
/// (none: every https:// server is refused as untrusted).
pub fn agent(ca: Option<&Path>, timeouts: Timeouts) -> anyhow::Result<ureq::Agent> {
    let roots = match ca {
        Some(path) => load_ca(path)?,
        None => Vec::new(),
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls)
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(timeouts.global)
        .build()
        .into())
}

/// Where a CA file comes from: the flag, else `$PEERING_CA_FILE`.
pub fn ca_from_env(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| {
        std::env::var_os(ENV_CA_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Whether an error means "this server, not the network, is the problem":
/// certificate refused, or TLS spoken to something that does not.
pub fn is_tls_error(e: &ureq::Error) -> bool {
    rustls_error(e).is_some()
}

fn rustls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// A sentence about a failed request to `url` a person can act on.
pub fn describe(url: &str, ca: Option<&Path>, e: &ureq::Error) -> String {
    let ca_text = || match ca {
        Some(p) => format!("the CA file {}", p.display()),
        None => "a CA file (none given: use --ca-file or PEERING_CA_FILE)".to_owned(),
    };
    if let Some(r) = rustls_error(e) {
        return match r {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
                "the certificate of {url} is not trusted: it is not issued by {}",
                ca_text()
            ),
            rustls::Error::InvalidCertificate(c) => {
                format!("the certificate of {url} is refused: {c:?}")
            }
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                format!("{url} does not speak TLS (a plain http:// endpoint?)")
            }
            other => format!("TLS with {url} failed: {other}"),
        };
    }
    match e {
        ureq::Error::Timeout(t) => format!("{url} did not answer in time ({t:?})"),
        ureq::Error::HostNotFound => format!("the host of {url} is not found"),
        ureq::Error::ConnectionFailed => format!("could not connect to {url}"),
        ureq::Error::Io(io) => format!("could not talk to {url}: {io}"),
        other => format!("request to {url} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "https://ctl.example:7780",
            "https://198.18.0.1:7780/",
            "https://h:1/v1",
            "https://[2001:db8::1]:7780",
        ] {
            assert_eq!(check_url(ok), Ok(Scheme::Https), "{ok}");
        }
        for ok in [
            "http://127.0.0.1:7780",
            "http://127.1.2.3:1",
            "http://localhost:7780",
            "http://[::1]:7780",
            "http://localhost",
        ] {
            assert_eq!(check_url(ok), Ok(Scheme::LoopbackHttp), "{ok}");
        }
        for bad in [
            "http://198.18.0.1:7780",
            "http://ctl.example:7780",
            "http://[2001:db8::1]:7780",
            "ftp://127.0.0.1:1",
            "127.0.0.1:7780",
            "https://",
            "https:///v1",
            "https://user@h:1",
            "http://127.0.0.1.evil.example:1",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url("http://198.18.0.1:1")
            .unwrap_err()
            .contains("in clear"));
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("peering-https-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ca.pem");
        std::fs::write(&p, "not a pem").unwrap();
        assert!(load_ca(&p).unwrap_err().to_string().contains("no PEM"));
        assert!(load_ca(&dir.join("missing.pem")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
