//! TLS from this process to etcd, in etcdctl's terms: `--etcd-cacert`
//! (the CA that issued the members' certificates), `--etcd-cert` and
//! `--etcd-key` (this client's certificate, for a cluster started with
//! `--client-cert-auth`).
//!
//! - **TLS is on exactly when a CA is given.** etcd clusters run on a
//!   private CA, so there is no "system roots" mode, and a client
//!   certificate without a CA to check the members with is refused.
//! - **Plain gRPC reaches loopback only** ([`check`]): tunnel keys, account
//!   tokens and gateway credentials are values in etcd, so an endpoint on
//!   any other address without a CA is refused before anything is opened,
//!   as `peering-controld` refuses to listen beyond loopback without TLS.
//! - The files are read and checked once, at start ([`EtcdTls::load`]):
//!   every certificate parses, the key parses and belongs to the
//!   certificate. A bad file is an error naming its flag and path.
//!
//! [`check`] and [`EtcdTls::from_pem`] are sans-IO; [`EtcdTls::load`]
//! reads the files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::default_provider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The flags' names, for messages (the environment variables are
/// `PEERING_ETCD_CACERT`, `PEERING_ETCD_CERT` and `PEERING_ETCD_KEY`).
pub const CACERT_FLAG: &str = "--etcd-cacert";
pub const CERT_FLAG: &str = "--etcd-cert";
pub const KEY_FLAG: &str = "--etcd-key";

/// Largest PEM file read (a CA bundle of a few hundred certificates).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// The paths as given on the command line; all absent means plain gRPC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTlsFiles {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdTlsFiles {
    pub fn is_empty(&self) -> bool {
        self.cacert.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// What is wrong with a PEM file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("no private key in it (expected PEM, e.g. -----BEGIN PRIVATE KEY-----)")]
    NoKey,
    #[error("invalid PEM: {0}")]
    Invalid(String),
    #[error("unusable: {0}")]
    Unusable(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdTlsError {
    #[error("{CERT_FLAG} needs {KEY_FLAG} (the certificate's private key)")]
    CertWithoutKey,
    #[error("{KEY_FLAG} needs {CERT_FLAG} (the certificate of that key)")]
    KeyWithoutCert,
    #[error(
        "{CERT_FLAG} and {KEY_FLAG} need {CACERT_FLAG}: the CA that issued the etcd members' \
         certificates (TLS to etcd is on when {CACERT_FLAG} is given)"
    )]
    ClientCertWithoutCa,
    #[error(
        "refusing to reach etcd at {0} without TLS: tunnel keys, tokens and gateway \
         credentials would cross the network in clear. Give {CACERT_FLAG} (and {CERT_FLAG} \
         with {KEY_FLAG} when etcd runs with --client-cert-auth), or run etcd on loopback"
    )]
    PlainToNonLoopback(String),
    /// The gRPC client takes the name to verify from the URL, and cannot
    /// take it from an IPv6 literal (brackets).
    #[error(
        "etcd endpoint {0}: over TLS, name IPv6 members by a DNS name their certificate \
         carries"
    )]
    TlsIpv6Literal(String),
    #[error("cannot read {flag} {path}: {reason}")]
    Read {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("{flag} {path}: {err}")]
    Pem {
        flag: &'static str,
        path: String,
        err: PemError,
    },
    #[error("{KEY_FLAG} {key} is not the private key of {CERT_FLAG} {cert}")]
    KeyMismatch { cert: String, key: String },
}

/// Refuses what cannot be meant before any file is read: a certificate
/// without its key (or a key alone), a client certificate without a CA,
/// and plain gRPC to an endpoint beyond loopback. `endpoints` are
/// `host:port` (IPv6 in brackets), as [`super::super::url`] writes them.
pub fn check(endpoints: &[String], files: &EtcdTlsFiles) -> Result<(), EtcdTlsError> {
    match (&files.cert, &files.key) {
        (Some(_), None) => return Err(EtcdTlsError::CertWithoutKey),
        (None, Some(_)) => return Err(EtcdTlsError::KeyWithoutCert),
        (Some(_), Some(_)) if files.cacert.is_none() => {
            return Err(EtcdTlsError::ClientCertWithoutCa)
        }
        _ => {}
    }
    if files.cacert.is_none() {
        if let Some(ep) = endpoints.iter().find(|ep| !is_loopback(ep)) {
            return Err(EtcdTlsError::PlainToNonLoopback(ep.clone()));
        }
    } else if let Some(ep) = endpoints.iter().find(|ep| ep.starts_with('[')) {
        return Err(EtcdTlsError::TlsIpv6Literal(ep.clone()));
    }
    Ok(())
}

/// `localhost`, 127.0.0.0/8 or `[::1]`, with a port.
pub fn is_loopback(endpoint: &str) -> bool {
    let host = match endpoint.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => endpoint,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The checked TLS material: the PEM for the gRPC client, and the same
/// as a rustls configuration for diagnosing a failed connect.
#[derive(Clone)]
pub struct EtcdTls {
    pub(crate) ca_pem: Vec<u8>,
    /// (certificate chain, key), PEM.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) config: Arc<ClientConfig>,
}

impl std::fmt::Debug for EtcdTls {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_cert", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// A problem with one of the three inputs of [`EtcdTls::from_pem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemInput {
    CaCert(PemError),
    Cert(PemError),
    Key(PemError),
    KeyMismatch,
}

impl EtcdTls {
    /// Checks `files` ([`check`]) and reads them: `None` for plain gRPC.
    pub fn load(endpoints: &[String], files: &EtcdTlsFiles) -> Result<Option<Self>, EtcdTlsError> {
        check(endpoints, files)?;
        let Some(ca_path) = &files.cacert else {
            return Ok(None);
        };
        let ca = read(CACERT_FLAG, ca_path)?;
        let pair = match (&files.cert, &files.key) {
            (Some(c), Some(k)) => Some((read(CERT_FLAG, c)?, read(KEY_FLAG, k)?)),
            _ => None,
        };
        let shown = |p: &Option<PathBuf>| p.as_deref().map(|p| p.display().to_string());
        let pem = |flag, path: Option<String>, err| EtcdTlsError::Pem {
            flag,
            path: path.unwrap_or_default(),
            err,
        };
        let ident = pair.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        EtcdTls::from_pem(&ca, ident)
            .map(Some)
            .map_err(|e| match e {
                PemInput::CaCert(e) => pem(CACERT_FLAG, shown(&files.cacert), e),
                PemInput::Cert(e) => pem(CERT_FLAG, shown(&files.cert), e),
                PemInput::Key(e) => pem(KEY_FLAG, shown(&files.key), e),
                PemInput::KeyMismatch => EtcdTlsError::KeyMismatch {
                    cert: shown(&files.cert).unwrap_or_default(),
                    key: shown(&files.key).unwrap_or_default(),
                },
            })
    }

    /// Parses and checks the CA bundle and the optional client
    /// certificate chain and key.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Self, PemInput> {
        let roots_der = certs(ca).map_err(PemInput::CaCert)?;
        let mut roots = RootCertStore::empty();
        for der in roots_der {
            roots
                .add(der)
                .map_err(|e| PemInput::CaCert(PemError::Unusable(e.to_string())))?;
        }
        let provider = Arc::new(default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PemInput::CaCert(PemError::Unusable(e.to_string())))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certs(cert).map_err(PemInput::Cert)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                    PemInput::Key(match e {
                        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey,
                        e => PemError::Invalid(e.to_string()),
                    })
                })?;
                match CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
                    Ok(_) => {}
                    Err(rustls::Error::InconsistentKeys(_)) => return Err(PemInput::KeyMismatch),
                    Err(e) => return Err(PemInput::Key(PemError::Unusable(e.to_string()))),
                }
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| PemInput::Cert(PemError::Unusable(e.to_string())))?
            }
        };
        Ok(EtcdTls {
            ca_pem: ca.to_vec(),
            identity: identity.map(|(c, k)| (c.to_vec(), k.to_vec())),
            config: Arc::new(config),
        })
    }

    pub fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }

    /// The gRPC client's TLS settings; a handshake is bounded by
    /// `handshake`.
    pub(crate) fn client_options(&self, handshake: Duration) -> etcd_client::TlsOptions {
        let mut o = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&self.ca_pem))
            // etcd 3.4 negotiates no ALPN on its client port, yet speaks
            // HTTP/2 there (gRPC).
            .assume_http2(true)
            .timeout(handshake);
        if let Some((cert, key)) = &self.identity {
            o = o.identity(etcd_client::Identity::from_pem(cert, key));
        }
        o
    }

    /// Why no member answered, as far as TLS can tell: one handshake per
    /// endpoint, all at once, each bounded by twice `timeout` (connect,
    /// handshake, and the server's first bytes, where TLS 1.3 reports a
    /// refused client certificate). Empty when every handshake went
    /// through.
    pub(crate) async fn diagnose(&self, endpoints: &[String], timeout: Duration) -> String {
        let mut probes = tokio::task::JoinSet::new();
        for (i, ep) in endpoints.iter().enumerate() {
            let (config, ep) = (self.config.clone(), ep.clone());
            probes.spawn(async move {
                let why = match tokio::time::timeout(timeout * 2, probe(config, &ep)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(why),
                    Err(_) => Some(format!("no TLS answer within {:?}", timeout * 2)),
                };
                (i, ep, why)
            });
        }
        let mut found: Vec<(usize, String, String)> = Vec::new();
        while let Some(done) = probes.join_next().await {
            if let Ok((i, ep, Some(why))) = done {
                found.push((i, ep, why));
            }
        }
        found.sort();
        found
            .into_iter()
            .map(|(_, ep, why)| format!("; {ep}: {why}"))
            .collect()
    }
}

/// HTTP/2's client connection preface and an empty SETTINGS frame
/// (RFC 9113 section 3.4): the server answers with its own SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Connects to `endpoint`, does the TLS handshake with `config` and waits
/// for the server's first bytes.
async fn probe(config: Arc<ClientConfig>, endpoint: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = match endpoint.rsplit_once(':') {
        Some((h, _)) => h,
        None => endpoint,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host} is not a name TLS can verify: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let client_cert = config.client_auth_cert_resolver.has_certs();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {}", explain(&e, client_cert)))?;
    let io = async {
        tls.write_all(H2_PREFACE).await?;
        tls.flush().await?;
        let mut first = [0u8; 9];
        tls.read(&mut first).await
    };
    match io.await {
        Ok(0) => Err(
            "closed the connection after the TLS handshake (was our client \
                      certificate refused?)"
                .into(),
        ),
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "refused the TLS session: {}",
            explain(&e, client_cert)
        )),
    }
}

/// A TLS failure with what to do about it.
fn explain(e: &std::io::Error, client_cert: bool) -> String {
    use rustls::AlertDescription as A;
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let hint = match tls {
        Some(rustls::Error::InvalidCertificate(_)) => {
            "the member's certificate is not from the CA of --etcd-cacert, or does not name \
             the host or address in the store URL"
        }
        Some(rustls::Error::AlertReceived(
            A::BadCertificate | A::CertificateRequired | A::UnknownCA | A::CertificateUnknown,
        )) if client_cert => {
            "etcd refused the client certificate of --etcd-cert: is it from the CA etcd \
             trusts (--trusted-ca-file)?"
        }
        Some(rustls::Error::AlertReceived(
            A::BadCertificate | A::CertificateRequired | A::HandshakeFailure,
        )) => "etcd asks for a client certificate (--client-cert-auth): give --etcd-cert and --etcd-key",
        _ => return e.to_string(),
    };
    format!("{e} ({hint})")
}

/// Every certificate in `pem`; at least one.
fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let all = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Invalid(e.to_string()))?;
    if all.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(all)
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, EtcdTlsError> {
    use std::io::Read;
    let err = |reason: String| EtcdTlsError::Read {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(err(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    fn files(ca: bool, cert: bool, key: bool) -> EtcdTlsFiles {
        let p = |on: bool, s: &str| on.then(|| PathBuf::from(s));
        EtcdTlsFiles {
            cacert: p(ca, "ca.pem"),
            cert: p(cert, "c.pem"),
            key: p(key, "c.key"),
        }
    }

    fn eps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn loopback_endpoints() {
        for ep in [
            "127.0.0.1:2379",
            "127.8.9.10:1",
            "localhost:2379",
            "LOCALHOST:1",
            "[::1]:2379",
        ] {
            assert!(is_loopback(ep), "{ep}");
        }
        for ep in [
            "198.18.250.10:2379",
            "[fd00::1]:2379",
            "etcd1:2379",
            "localhost.example:1",
            "0.0.0.0:2379",
            "[::]:2379",
        ] {
            assert!(!is_loopback(ep), "{ep}");
        }
    }

    #[test]
    fn combinations_of_flags() {
        let lan = eps(&["127.0.0.1:2379", "198.18.250.11:2379"]);
        let lo = eps(&["127.0.0.1:2379", "[::1]:2379"]);
        use EtcdTlsError::*;
        let v6 = eps(&["[fd00::1]:2379"]);
        let cases: [(&[String], EtcdTlsFiles, Result<(), EtcdTlsError>); 10] = [
            (&lo, files(false, false, false), Ok(())),
            (
                &lan,
                files(false, false, false),
                Err(PlainToNonLoopback("198.18.250.11:2379".into())),
            ),
            (&lan, files(true, false, false), Ok(())),
            (&lan, files(true, true, true), Ok(())),
            (
                &lo,
                files(true, true, true),
                Err(TlsIpv6Literal("[::1]:2379".into())),
            ),
            (&lan, files(true, true, false), Err(CertWithoutKey)),
            (&lan, files(true, false, true), Err(KeyWithoutCert)),
            (&lo, files(false, true, true), Err(ClientCertWithoutCa)),
            // The pair is checked before the endpoints.
            (&lan, files(false, true, false), Err(CertWithoutKey)),
            (
                &v6,
                files(true, false, false),
                Err(TlsIpv6Literal("[fd00::1]:2379".into())),
            ),
        ];
        for (endpoints, f, want) in cases {
            assert_eq!(check(endpoints, &f), want, "{endpoints:?} {f:?}");
        }
    }

    #[test]
    fn messages_name_the_flags() {
        let m = EtcdTlsError::PlainToNonLoopback("10.0.0.1:2379".into()).to_string();
        assert!(
            m.contains("10.0.0.1:2379") && m.contains(CACERT_FLAG) && m.contains("in clear"),
            "{m}"
        );
        assert!(EtcdTlsError::CertWithoutKey.to_string().contains(KEY_FLAG));
        assert!(EtcdTlsError::ClientCertWithoutCa
            .to_string()
            .contains(CACERT_FLAG));
    }

    /// (CA PEM, client chain PEM, client key PEM, another key PEM).
    fn pki() -> (String, String, String, String) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["controller".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let other = KeyPair::generate().unwrap();
        (
            ca.pem(),
            cert.pem(),
            key.serialize_pem(),
            other.serialize_pem(),
        )
    }

    #[test]
    fn pem_is_checked() {
        let (ca, cert, key, other) = pki();
        let (ca, cert, key, other) = (
            ca.as_bytes(),
            cert.as_bytes(),
            key.as_bytes(),
            other.as_bytes(),
        );
        let ok = EtcdTls::from_pem(ca, Some((cert, key))).expect("valid");
        assert!(ok.has_client_cert());
        assert!(!format!("{ok:?}").contains("PRIVATE"));
        assert!(!EtcdTls::from_pem(ca, None)
            .expect("CA only")
            .has_client_cert());

        let err =
            |ca: &[u8], id: Option<(&[u8], &[u8])>| EtcdTls::from_pem(ca, id).expect_err("refused");
        assert_eq!(err(b"", None), PemInput::CaCert(PemError::NoCertificate));
        assert_eq!(err(key, None), PemInput::CaCert(PemError::NoCertificate));
        assert!(matches!(
            err(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                None
            ),
            PemInput::CaCert(PemError::Invalid(_))
        ));
        assert_eq!(
            err(ca, Some((key, key))),
            PemInput::Cert(PemError::NoCertificate)
        );
        assert_eq!(err(ca, Some((cert, cert))), PemInput::Key(PemError::NoKey));
        assert_eq!(err(ca, Some((cert, other))), PemInput::KeyMismatch);
    }

    #[test]
    fn load_names_the_flag_and_file() {
        let dir = std::env::temp_dir().join(format!("peering-etcd-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key, other) = pki();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            Some(p)
        };
        let lan = eps(&["198.18.250.10:2379"]);
        let mut f = EtcdTlsFiles {
            cacert: write("ca.pem", &ca),
            cert: write("c.pem", &cert),
            key: write("c.key", &key),
        };
        assert!(EtcdTls::load(&lan, &f)
            .unwrap()
            .is_some_and(|t| t.has_client_cert()));
        assert!(
            EtcdTls::load(&eps(&["127.0.0.1:2379"]), &EtcdTlsFiles::default())
                .unwrap()
                .is_none()
        );

        f.key = write("other.key", &other);
        let m = EtcdTls::load(&lan, &f).unwrap_err().to_string();
        assert!(
            m.contains("other.key") && m.contains("c.pem") && m.contains(KEY_FLAG),
            "{m}"
        );
        f.key = write("empty.key", "");
        let m = EtcdTls::load(&lan, &f).unwrap_err().to_string();
        assert!(
            m.contains("empty.key") && m.contains("no private key"),
            "{m}"
        );
        f.cacert = Some(dir.join("missing.pem"));
        let m = EtcdTls::load(&lan, &f).unwrap_err().to_string();
        assert!(
            m.starts_with("cannot read --etcd-cacert") && m.contains("missing.pem"),
            "{m}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
