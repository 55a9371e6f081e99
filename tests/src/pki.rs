//! Certificates made for a test: a CA, a server certificate it issues for
//! the given names and addresses, and an unrelated CA that trusts nothing
//! of ours; more certificates (client, or both client and server, as etcd
//! members need) on demand with [`Pki::issue`]. Written as PEM files into
//! a directory registered for teardown.

use crate::teardown;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// PEM files of one test PKI.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA clients trust.
    pub ca: PathBuf,
    /// The server certificate (issued by `ca`) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A CA that issued nothing the server presents.
    pub other_ca: PathBuf,
    /// A self-signed server certificate and key for the same names.
    pub self_signed_cert: PathBuf,
    pub self_signed_key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// What a certificate from [`Pki::issue`] may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// etcd members: a peer connection authenticates both ends with the
    /// same certificate, and the members' gateway dials their own gRPC.
    ServerAndClient,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

fn server_params(names: &[&str], ips: &[IpAddr]) -> CertificateParams {
    params(names, ips, Usage::Server)
}

fn params(names: &[&str], ips: &[IpAddr], usage: Usage) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("server params");
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("peering"),
    );
    params.extended_key_usages = match usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params
}

impl Pki {
    /// A PKI whose server certificate names `names` (DNS) and `ips`
    /// (always with `localhost` and 127.0.0.1 added).
    pub fn new(tag: &str, names: &[&str], ips: &[IpAddr]) -> Pki {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "peering-pki-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("pki dir");
        teardown::add_path(&dir);
        let mut names: Vec<&str> = names.to_vec();
        names.push("localhost");
        let mut ips = ips.to_vec();
        ips.push(IpAddr::from([127, 0, 0, 1]));

        let ours = ca("peering test CA");
        let key = KeyPair::generate().expect("server key");
        let cert = server_params(&names, &ips)
            .signed_by(&key, &ours)
            .expect("server cert");
        let other = ca("some other CA");
        let self_key = KeyPair::generate().expect("self-signed key");
        let self_signed = server_params(&names, &ips)
            .self_signed(&self_key)
            .expect("self-signed cert");

        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write pem");
            p
        };
        Pki {
            ca: write("ca.pem", ours.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            other_ca: write("other-ca.pem", other.pem()),
            self_signed_cert: write("self.pem", self_signed.pem()),
            self_signed_key: write("self.key", self_key.serialize_pem()),
            issuer: ours,
            dir,
        }
    }

    /// A certificate from this PKI's CA for `names` (the first is also the
    /// common name) and `ips`, written as `FILE.pem` and `FILE.key`.
    pub fn issue(
        &self,
        file: &str,
        names: &[&str],
        ips: &[IpAddr],
        usage: Usage,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let cert = params(names, ips, usage)
            .signed_by(&key, &self.issuer)
            .expect("issue a certificate");
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write pem");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        teardown::remove_path(&self.dir);
    }
}
