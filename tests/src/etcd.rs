//! Real etcd clusters for tests: n `etcd` processes (Debian's
//! `etcd-server`), each in a network namespace of its own ("host") on a lab
//! bridge in 198.18.0.0/15, with data under a temporary directory. Clients
//! live in client namespaces on the same bridge: [`EtcdCluster::kv`] opens
//! an [`EtcdKv`] whose client threads run inside one (see [`in_netns`]), so
//! the root namespace never gets a test address or route.
//!
//! ```text
//!   m0 198.18.250.10   m1 .11   m2 .12        cl .100   cl2 .101 ...
//!        \               |       /              |        /
//!         +--------------- br0 (namespace sw) ---------+
//! ```
//!
//! [`EtcdCluster::start_tls`] starts a TLS-only cluster, as production
//! runs it: client and peer URLs are https, members ask every client and
//! every peer for a certificate from the cluster's CA
//! (`--client-cert-auth`, `--peer-client-cert-auth`), and clients get
//! [`EtcdCluster::tls_files`] (`--etcd-cacert`, `--etcd-cert`,
//! `--etcd-key`). Nothing crosses the lab bridge in clear.
//!
//! Everything (processes, namespaces, the data directory) is registered
//! with [`crate::teardown`] and removed on drop, failure or interrupt.

use std::{
    net::IpAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use peering_userspace::control::store::etcd::tls::{EtcdTls, EtcdTlsFiles};
use peering_userspace::control::store::etcd::{EtcdKv, EtcdOptions};

use crate::lab::{ok, unique, veth, Netns, TempPath};
use crate::pki::{Pki, Usage};
use crate::teardown::{self, Proc};

/// The lab subnet (a /24 of the 198.18.0.0/15 benchmarking range).
const NET: &str = "198.18.250";
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

struct Member {
    ns: Netns,
    ip: String,
    proc: Option<Proc>,
}

/// The certificates of a TLS-only cluster.
pub struct ClusterPki {
    /// Its CA issued everything below.
    pub pki: Pki,
    /// Every member's certificate (all members' addresses; server and
    /// client use, for peers) and key.
    pub member: (PathBuf, PathBuf),
    /// The clients' (controllers') certificate and key.
    pub client: (PathBuf, PathBuf),
}

pub struct EtcdCluster {
    members: Vec<Member>,
    /// Set for a TLS-only cluster; removed after the members stop.
    tls: Option<ClusterPki>,
    clients: Vec<Netns>,
    /// The switch; dropped after the hosts (field order).
    sw: Netns,
    dir: TempPath,
    token: String,
}

impl EtcdCluster {
    /// Starts `n` members (1 to 9) and waits until the cluster answers.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, false)
    }

    /// [`Self::start`], TLS-only with client and peer certificate auth.
    pub fn start_tls(n: usize) -> Self {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> Self {
        assert!((1..=9).contains(&n), "1 to 9 members");
        let sw = Netns::new("esw");
        sw.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        sw.exec_ok(&["ip", "link", "set", "br0", "up"]);
        let dir = TempPath::new("etcd");
        std::fs::create_dir_all(&dir.path).expect("etcd temp dir");
        let mut c = Self {
            members: Vec::new(),
            tls: None,
            clients: Vec::new(),
            sw,
            dir,
            token: unique("etcd"),
        };
        for i in 0..n {
            let ns = Netns::new(&format!("e{i}"));
            let ip = format!("{NET}.{}", 10 + i);
            c.plug(&ns, &format!("m{i}"), &ip);
            c.members.push(Member { ns, ip, proc: None });
        }
        if tls {
            c.tls = Some(c.make_pki());
        }
        c.add_client();
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_healthy(Duration::from_secs(30));
        c
    }

    fn make_pki(&self) -> ClusterPki {
        let ips: Vec<IpAddr> = self
            .members
            .iter()
            .map(|m| m.ip.parse().expect("member address"))
            .collect();
        let pki = Pki::new("etcd", &[], &[]);
        let member = pki.issue("member", &["etcd"], &ips, Usage::ServerAndClient);
        let client = pki.issue("client", &["peering-controld"], &[], Usage::Client);
        ClusterPki {
            pki,
            member,
            client,
        }
    }

    /// The certificates of a TLS-only cluster.
    pub fn pki(&self) -> Option<&ClusterPki> {
        self.tls.as_ref()
    }

    /// What a client is given to reach this cluster (empty: plain).
    pub fn tls_files(&self) -> EtcdTlsFiles {
        match &self.tls {
            None => EtcdTlsFiles::default(),
            Some(t) => EtcdTlsFiles {
                cacert: Some(t.pki.ca.clone()),
                cert: Some(t.client.0.clone()),
                key: Some(t.client.1.clone()),
            },
        }
    }

    /// [`Self::tls_files`] as `peering-controld` flags.
    pub fn tls_args(&self) -> Vec<std::ffi::OsString> {
        let f = self.tls_files();
        [
            ("--etcd-cacert", f.cacert),
            ("--etcd-cert", f.cert),
            ("--etcd-key", f.key),
        ]
        .into_iter()
        .filter_map(|(flag, p)| p.map(|p| [flag.into(), p.into_os_string()]))
        .flatten()
        .collect()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Joins `ns` to the bridge as `ip`/24 (its side is `eth0`).
    fn plug(&self, ns: &Netns, port: &str, ip: &str) {
        veth(&self.sw, port, ns, "eth0");
        self.sw
            .exec_ok(&["ip", "link", "set", port, "master", "br0"]);
        ns.exec_ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    }

    /// Another client host on the bridge; returns its index for
    /// [`Self::client`] (0 is made by `start`).
    pub fn add_client(&mut self) -> usize {
        let i = self.clients.len();
        let ns = Netns::new(&format!("ec{i}"));
        self.plug(&ns, &format!("c{i}"), &format!("{NET}.{}", 100 + i));
        self.clients.push(ns);
        i
    }

    /// Member `i`'s host (e.g. to cut its link).
    pub fn member(&self, i: usize) -> &Netns {
        &self.members[i].ns
    }

    pub fn client(&self, i: usize) -> &Netns {
        &self.clients[i]
    }

    /// Client host `i`'s address on the lab bridge.
    pub fn client_ip(&self, i: usize) -> String {
        format!("{NET}.{}", 100 + i)
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// `host:port` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}:{CLIENT_PORT}", m.ip))
            .collect()
    }

    fn initial_cluster(&self) -> String {
        let all: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("m{i}={}://{}:{PEER_PORT}", self.scheme(), m.ip))
            .collect();
        all.join(",")
    }

    fn spawn(&mut self, i: usize) {
        let ip = self.members[i].ip.clone();
        let data = self.dir.path.join(format!("m{i}"));
        let log =
            std::fs::File::create(self.dir.path.join(format!("m{i}.log"))).expect("etcd log file");
        let client_url = format!("{}://{ip}:{CLIENT_PORT}", self.scheme());
        let peer_url = format!("{}://{ip}:{PEER_PORT}", self.scheme());
        let initial = self.initial_cluster();
        let mut cmd = self.members[i].ns.cmd(&["etcd"]);
        cmd.arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &self.token])
            // Ignored once the data directory exists (a restart).
            .args(["--initial-cluster-state", "new"])
            // Commits of the controller may write many keys at once.
            .args(["--max-txn-ops", "1024"]);
        if let Some(t) = &self.tls {
            let (cert, key) = &t.member;
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&t.pki.ca)
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--peer-client-cert-auth")
                .arg("--peer-trusted-ca-file")
                .arg(&t.pki.ca)
                .arg("--peer-cert-file")
                .arg(cert)
                .arg("--peer-key-file")
                .arg(key);
        }
        cmd.stdout(Stdio::null()).stderr(log);
        // `ip netns exec` execs etcd itself: the child's pid is etcd's.
        self.members[i].proc = Some(teardown::spawn(&mut cmd).expect("start etcd"));
    }

    /// Kills member `i` with SIGKILL (a crash); its data stays.
    pub fn kill9(&mut self, i: usize) {
        self.members[i].proc = None;
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].proc.is_none(), "member {i} is running");
        self.spawn(i);
    }

    /// Polls every running member's `/health` until all say true.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for (i, m) in self.members.iter().enumerate() {
            if m.proc.is_none() {
                continue;
            }
            let url = format!("http://{}:{CLIENT_PORT}/health", m.ip);
            let up = || match &self.tls {
                // `endpoint health` is what `/health` answers, over TLS.
                Some(_) => {
                    let mut cmd = self.etcdctl_cmd(&[format!("{}:{CLIENT_PORT}", m.ip)]);
                    cmd.args(["--command-timeout", "1s", "endpoint", "health"]);
                    crate::lab::run(&mut cmd).status.success()
                }
                None => in_netns(&self.clients[0], {
                    let url = url.clone();
                    move || healthy(&url)
                }),
            };
            while !up() {
                assert!(
                    Instant::now() < deadline,
                    "etcd member m{i} not healthy in {within:?}; log: {}",
                    self.log(i)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The end of member `i`'s log (for failure messages).
    pub fn log(&self, i: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.path.join(format!("m{i}.log"))).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or("").to_string()
    }

    /// An [`EtcdKv`] on every member, under `prefix`, from client host 0.
    pub fn kv(&self, prefix: &str) -> EtcdKv {
        self.kv_on(&self.endpoints(), prefix)
    }

    pub fn kv_on(&self, endpoints: &[String], prefix: &str) -> EtcdKv {
        let eps = endpoints.to_vec();
        let prefix = prefix.to_owned();
        // A plain cluster is on lab addresses, which `load` would refuse
        // (rightly, for a controller): the store itself takes any.
        let tls = match self.tls {
            Some(_) => EtcdTls::load(endpoints, &self.tls_files()).expect("the TLS files"),
            None => None,
        };
        in_netns(&self.clients[0], move || {
            EtcdKv::connect(
                &eps,
                &prefix,
                EtcdOptions {
                    tls,
                    ..EtcdOptions::default()
                },
            )
        })
        .unwrap_or_else(|e| panic!("connect to etcd: {e}"))
    }

    /// `etcdctl` on client host 0 against `endpoints` (with the client
    /// certificate of a TLS-only cluster).
    fn etcdctl_cmd(&self, endpoints: &[String]) -> Command {
        let eps: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{}://{e}", self.scheme()))
            .collect();
        let mut cmd = self.clients[0].cmd(&["etcdctl", "--endpoints", &eps.join(",")]);
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.pki.ca)
                .arg("--cert")
                .arg(&t.client.0)
                .arg("--key")
                .arg(&t.client.1);
        }
        cmd.env("ETCDCTL_API", "3");
        cmd
    }

    /// `etcdctl` on client host 0 against all members.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let mut cmd = self.etcdctl_cmd(&self.endpoints());
        cmd.args(args);
        ok(&mut cmd)
    }

    /// Compacts the cluster's history up to `revision`.
    pub fn compact(&self, revision: u64) {
        self.etcdctl(&["compact", &revision.to_string()]);
    }

    /// The revision member `i` has applied locally (`endpoint status`).
    pub fn member_revision(&self, i: usize) -> Option<u64> {
        let ep = self.endpoints()[i].clone();
        let mut cmd = self.etcdctl_cmd(&[ep]);
        cmd.args([
            "--command-timeout",
            "1s",
            "endpoint",
            "status",
            "-w",
            "json",
        ]);
        let out = crate::lab::run(&mut cmd);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["Status"]["header"]["revision"].as_u64()
    }

    /// The data directory (logs are `m<i>.log` in it).
    pub fn dir(&self) -> PathBuf {
        self.dir.path.clone()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // Processes before the namespaces they run in.
        for m in &mut self.members {
            m.proc = None;
        }
    }
}

fn healthy(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .is_some_and(|b| b.contains("\"health\":\"true\""))
}

/// Runs `f` on a thread moved into `ns`'s network namespace. Sockets it
/// opens, and threads it starts (an [`EtcdKv`]'s runtime), stay there.
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a namespace file we hold open; it affects only
        // this thread (and threads it starts later).
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in namespace")
}
