//! Which store a process opens, as one string:
//!
//! - `sqlite:PATH`, or a plain `PATH`: the embedded SQLite store (one
//!   machine);
//! - `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`: an etcd v3 cluster. The
//!   client fails over between the members listed; the port defaults to
//!   2379; `PREFIX` (default `peering`) separates deployments sharing a
//!   cluster, e.g. `etcd://10.0.0.1:2379,10.0.0.2:2379/prod` keeps its keys
//!   under `/prod/`.
//!
//! How etcd is reached is not part of the string: TLS is on when a CA is
//! given (`--etcd-cacert`, with `--etcd-cert` and `--etcd-key` for etcd's
//! `--client-cert-auth`; see [`super::etcd::tls`]), and [`StoreUrl::parse`]
//! leaves [`EtcdTlsFiles`] empty for the caller to fill. Without a CA,
//! [`open_kv`] refuses any endpoint beyond loopback: the store holds tunnel
//! keys, tokens and gateway credentials.
//!
//! Parsing is sans-IO ([`StoreUrl::parse`]); [`open_kv`] is the edge that
//! opens the store.

use std::path::PathBuf;
use std::sync::Arc;

use crate::control::store::etcd::tls::{EtcdTls, EtcdTlsFiles};
use crate::control::store::etcd::{EtcdKv, EtcdOptions};
use crate::control::store::kv::{Commit, Kv, Op};
use crate::control::store::sqlite_kv::SqliteKv;
use crate::control::store::StoreError;

/// etcd's registered client port (IANA).
pub const ETCD_DEFAULT_PORT: u16 = 2379;
/// At most this many members in one URL (etcd clusters have 3, 5 or 7).
pub const MAX_ENDPOINTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Etcd {
        /// `host:port` each, as given (IPv6 literals in brackets).
        endpoints: Vec<String>,
        /// The key prefix, `/NAME/`.
        prefix: String,
        /// CA, client certificate and key (empty: plain gRPC, loopback
        /// only).
        tls: EtcdTlsFiles,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the store URL is empty")]
    Empty,
    #[error("unknown store scheme {0:?}: use sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]")]
    UnknownScheme(String),
    #[error("sqlite: needs a path, e.g. sqlite:/var/lib/peering/state.db")]
    NoPath,
    #[error("etcd:// needs at least one HOST:PORT")]
    NoEndpoints,
    #[error("more than {MAX_ENDPOINTS} etcd endpoints")]
    TooManyEndpoints,
    #[error("etcd endpoint {0:?} has an empty host")]
    EmptyHost(String),
    #[error("etcd endpoint {0:?} has an invalid host")]
    BadHost(String),
    #[error("etcd endpoint {0:?} has an invalid port (1 to 65535)")]
    BadPort(String),
    #[error("invalid key prefix {0:?}: letters, digits, '-', '_', '.' and '/' between names")]
    BadPrefix(String),
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        if s.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            return parse_etcd(rest);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(UrlError::NoPath);
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        // A scheme we do not know (`postgres://...`, `etcd:/x`), rather
        // than a file name that happens to contain a colon.
        if let Some((scheme, _)) = s.split_once(':') {
            let looks_like_scheme = !scheme.is_empty()
                && !scheme.contains('/')
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+');
            if looks_like_scheme {
                return Err(UrlError::UnknownScheme(scheme.to_owned()));
            }
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(s)))
    }
}

/// The store as a user would write it: `sqlite:PATH`, or
/// `etcd://HOSTS/PREFIX` with `(TLS)` or `(plain)`; never file contents.
impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Etcd {
                endpoints,
                prefix,
                tls,
            } => {
                let how = if tls.cacert.is_some() { "TLS" } else { "plain" };
                let name = prefix.trim_matches('/');
                write!(f, "etcd://{}/{name} ({how})", endpoints.join(","))
            }
        }
    }
}

fn parse_etcd(rest: &str) -> Result<StoreUrl, UrlError> {
    let (hosts, prefix) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    let prefix = if prefix.is_empty() {
        super::etcd::layout::DEFAULT_PREFIX.to_owned()
    } else {
        let ok = prefix.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
        if !ok {
            return Err(UrlError::BadPrefix(prefix.to_owned()));
        }
        format!("/{prefix}/")
    };
    if hosts.is_empty() {
        return Err(UrlError::NoEndpoints);
    }
    let parts: Vec<&str> = hosts.split(',').collect();
    if parts.len() > MAX_ENDPOINTS {
        return Err(UrlError::TooManyEndpoints);
    }
    let endpoints = parts
        .into_iter()
        .map(endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StoreUrl::Etcd {
        endpoints,
        prefix,
        tls: EtcdTlsFiles::default(),
    })
}

/// `host[:port]` to `host:port`, checked.
fn endpoint(s: &str) -> Result<String, UrlError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::BadHost(s.to_owned()))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError::BadHost(s.to_owned()));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::BadHost(s.to_owned()))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(UrlError::EmptyHost(s.to_owned()));
        }
        if !valid_hostname(host) {
            return Err(UrlError::BadHost(s.to_owned()));
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => ETCD_DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(UrlError::BadPort(s.to_owned())),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// A DNS name or an IPv4 address: labels of letters, digits and '-', not
/// starting or ending with '-', at most 253 characters (RFC 1123).
fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Opens the store `url` names. A store with no keys yet is given
/// `initial()` (e.g. the first configuration) in one commit that lands
/// only if nobody else initialised it first. An etcd store's TLS files are
/// checked and read before anything is opened ([`EtcdTls::load`]).
pub fn open_kv(
    url: &StoreUrl,
    initial: impl FnOnce() -> Vec<(String, Vec<u8>)>,
) -> Result<Arc<dyn Kv>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteKv::open(path, initial)?)),
        StoreUrl::Etcd {
            endpoints,
            prefix,
            tls,
        } => {
            let opts = EtcdOptions {
                tls: EtcdTls::load(endpoints, tls)?,
                ..EtcdOptions::default()
            };
            let kv = EtcdKv::connect(endpoints, prefix, opts)?;
            let (rev, entries) = kv.snapshot()?;
            if entries.is_empty() {
                let ops: Vec<Op> = initial()
                    .into_iter()
                    .map(|(key, value)| Op::Put { key, value })
                    .collect();
                if !ops.is_empty() {
                    // Conflict: another controller initialised it first.
                    let _: Commit = kv.commit(rev, &ops)?;
                }
            }
            Ok(Arc::new(kv))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(endpoints: &[&str], prefix: &str) -> StoreUrl {
        StoreUrl::Etcd {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.into(),
            tls: EtcdTlsFiles::default(),
        }
    }

    #[test]
    fn sqlite_urls() {
        let p = |s: &str| StoreUrl::Sqlite(PathBuf::from(s));
        assert_eq!(StoreUrl::parse("state.db"), Ok(p("state.db")));
        assert_eq!(StoreUrl::parse("/var/lib/p.db"), Ok(p("/var/lib/p.db")));
        assert_eq!(StoreUrl::parse("./a:b.db"), Ok(p("./a:b.db")));
        assert_eq!(StoreUrl::parse("sqlite:/var/p.db"), Ok(p("/var/p.db")));
        assert_eq!(StoreUrl::parse("sqlite:rel.db"), Ok(p("rel.db")));
        assert_eq!(StoreUrl::parse("sqlite:///abs.db"), Ok(p("/abs.db")));
        assert_eq!(StoreUrl::parse("sqlite:"), Err(UrlError::NoPath));
        assert_eq!(StoreUrl::parse(""), Err(UrlError::Empty));
    }

    #[test]
    fn etcd_urls() {
        assert_eq!(
            StoreUrl::parse("etcd://h1:2379,h2:2380,10.0.0.3"),
            Ok(etcd(&["h1:2379", "h2:2380", "10.0.0.3:2379"], "/peering/"))
        );
        assert_eq!(
            StoreUrl::parse("etcd://[::1]:2379,[fd00::2]/lab-1/x"),
            Ok(etcd(&["[::1]:2379", "[fd00::2]:2379"], "/lab-1/x/"))
        );
        assert_eq!(
            StoreUrl::parse("etcd://h:1/"),
            Ok(etcd(&["h:1"], "/peering/"))
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            (
                "postgres://h/db",
                UrlError::UnknownScheme("postgres".into()),
            ),
            ("etcd:/h:2379", UrlError::UnknownScheme("etcd".into())),
            ("etcd://", UrlError::NoEndpoints),
            ("etcd:///p", UrlError::NoEndpoints),
            ("etcd://:2379", UrlError::EmptyHost(":2379".into())),
            ("etcd://h1:2379,,h2", UrlError::EmptyHost("".into())),
            ("etcd://h:0", UrlError::BadPort("h:0".into())),
            ("etcd://h:65536", UrlError::BadPort("h:65536".into())),
            ("etcd://h:+1", UrlError::BadPort("h:+1".into())),
            ("etcd://h:", UrlError::BadPort("h:".into())),
            ("etcd://h:x", UrlError::BadPort("h:x".into())),
            ("etcd://h:1:2", UrlError::BadPort("h:1:2".into())),
            ("etcd://bad_host", UrlError::BadHost("bad_host".into())),
            ("etcd://-h", UrlError::BadHost("-h".into())),
            ("etcd://a..b", UrlError::BadHost("a..b".into())),
            ("etcd://[::1", UrlError::BadHost("[::1".into())),
            ("etcd://[zz]:1", UrlError::BadHost("[zz]:1".into())),
            ("etcd://[::1]x", UrlError::BadHost("[::1]x".into())),
            ("etcd://h/a b", UrlError::BadPrefix("a b".into())),
            ("etcd://h/a//b", UrlError::BadPrefix("a//b".into())),
        ];
        for (url, want) in cases {
            assert_eq!(StoreUrl::parse(url), Err(want), "{url}");
        }
        let many = format!("etcd://{}", vec!["h"; MAX_ENDPOINTS + 1].join(","));
        assert_eq!(StoreUrl::parse(&many), Err(UrlError::TooManyEndpoints));
        // Every message names the fix or the culprit.
        assert!(UrlError::UnknownScheme("x".into())
            .to_string()
            .contains("etcd://HOST:PORT"));
    }

    #[test]
    fn urls_display_as_written() {
        for url in ["sqlite:/var/p.db", "etcd://h1:2379,[::1]:2/a/b"] {
            let shown = StoreUrl::parse(url).unwrap().to_string();
            assert!(shown.starts_with(url), "{url}: {shown}");
        }
        let mut tls = StoreUrl::parse("etcd://h").unwrap();
        if let StoreUrl::Etcd { tls, .. } = &mut tls {
            tls.cacert = Some("ca.pem".into());
        }
        assert_eq!(tls.to_string(), "etcd://h:2379/peering (TLS)");
    }

    #[test]
    fn parsed_prefixes_are_valid_layouts() {
        for url in ["etcd://h", "etcd://h/a", "etcd://h/a.b/c-d_e/"] {
            let Ok(StoreUrl::Etcd { prefix, .. }) = StoreUrl::parse(url) else {
                panic!("{url}");
            };
            assert!(
                super::super::etcd::layout::Layout::new(&prefix).is_ok(),
                "{prefix}"
            );
        }
    }
}
