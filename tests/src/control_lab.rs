//! A control plane for labs: `peering-controld` on loopback with a
//! temporary SQLite store and accounts, `peerctl` calls as those accounts,
//! and `peering-agent run` processes for region gateways, each with its
//! region's gateway credential. Everything is stopped and removed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::lab::{bin, run, unique, Netns, PinDir};
use crate::teardown;
pub use crate::teardown::Proc;

/// Where a daemon's log goes: the test's stderr with PEERING_TEST_VERBOSE,
/// else nowhere.
pub fn daemon_log() -> Stdio {
    if std::env::var_os("PEERING_TEST_VERBOSE").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// Waits up to 20 s until `peering-controld` accepts connections on
/// `listen` (host:port).
pub fn wait_listening(listen: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "peering-controld did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct ControlPlane {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub endpoint: String,
    pub verbose: bool,
    listen: String,
    extra: Vec<String>,
    daemon: Option<Proc>,
    /// Further controllers agents fail over to.
    more: Vec<String>,
    /// Daemons started by `start_another`.
    others: Vec<Proc>,
    /// Controllers on other hosts over a shared store (the multi-host lab).
    remote: Option<Remote>,
}

/// Controllers in namespaces of their own ("hosts") sharing one store,
/// served over TLS; admin commands, `peerctl` and the agents' control
/// connections run in `client_ns` and reach them over the lab network.
pub struct Remote {
    /// Namespace of the operator's and agents' host.
    pub client_ns: String,
    /// `--store` of every controller and admin command.
    pub store: String,
    /// Flags that go with it (`--etcd-cacert`, `--etcd-cert`, `--etcd-key`).
    pub store_flags: Vec<std::ffi::OsString>,
    /// The CA that issued the controllers' certificate.
    pub ca_file: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// (namespace, listen address) of each controller.
    pub hosts: Vec<(String, String)>,
    daemons: Vec<Option<Proc>>,
}

impl Remote {
    pub fn new(
        client_ns: &str,
        (store, store_flags): (&str, Vec<std::ffi::OsString>),
        (ca_file, tls_cert, tls_key): (PathBuf, PathBuf, PathBuf),
        hosts: Vec<(String, String)>,
    ) -> Self {
        Remote {
            client_ns: client_ns.to_owned(),
            store: store.to_owned(),
            store_flags,
            ca_file,
            tls_cert,
            tls_key,
            daemons: hosts.iter().map(|_| None).collect(),
            hosts,
        }
    }
}

/// Connects to `addr` from namespace `ns` (a thread moved there).
fn reachable_from(ns: &str, addr: &str) -> bool {
    let path = format!("/var/run/netns/{ns}");
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        let Ok(file) = std::fs::File::open(&path) else {
            return false;
        };
        // SAFETY: setns on a namespace file we hold open; it affects only
        // this short-lived thread.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        rc == 0
            && addr.parse::<std::net::SocketAddr>().is_ok_and(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
            })
    })
    .join()
    .unwrap_or(false)
}

/// Bind-and-release finds a free loopback port for a daemon.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// An account's credentials for `peerctl`.
#[derive(Clone)]
pub struct Account {
    pub id: String,
    pub token: String,
}

impl ControlPlane {
    pub fn start(verbose: bool) -> Self {
        Self::start_with(verbose, &[])
    }

    /// Starts peering-controld with extra `serve` arguments.
    pub fn start_with(verbose: bool, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(unique("ctl"));
        teardown::add_path(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("peering.db");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cp = Self {
            dir,
            db,
            endpoint: format!("http://{listen}"),
            verbose,
            listen,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            daemon: None,
            more: Vec::new(),
            others: Vec::new(),
            remote: None,
        };
        cp.spawn_daemon();
        cp
    }

    /// A control plane of `remote`'s controllers (started here, in order),
    /// with extra `serve` arguments. Agents get every controller, the first
    /// one first.
    pub fn start_remote(verbose: bool, extra: &[&str], remote: Remote) -> Self {
        let dir = std::env::temp_dir().join(unique("ctl"));
        teardown::add_path(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let urls: Vec<String> = remote
            .hosts
            .iter()
            .map(|(_, listen)| format!("https://{listen}"))
            .collect();
        let mut cp = Self {
            db: dir.join("no-db"),
            dir,
            endpoint: urls[0].clone(),
            verbose,
            listen: remote.hosts[0].1.clone(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            daemon: None,
            more: urls[1..].to_vec(),
            others: Vec::new(),
            remote: Some(remote),
        };
        for i in 0..cp.remote.as_ref().map_or(0, |r| r.hosts.len()) {
            cp.start_controller(i);
        }
        cp
    }

    /// The log file of remote controller `i`.
    pub fn controller_log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("controller-{i}.log"))
    }

    /// Starts remote controller `i` (again) and waits until it listens.
    pub fn start_controller(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.controller_log(i))
            .expect("controller log");
        let remote = self.remote.as_mut().expect("a remote control plane");
        let (ns, listen) = remote.hosts[i].clone();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(bin("peering-controld"))
            .args(["serve", "--listen", &listen, "--store", &remote.store])
            .args(&remote.store_flags)
            .arg("--tls-cert")
            .arg(&remote.tls_cert)
            .arg("--tls-key")
            .arg(&remote.tls_key)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log);
        // `ip netns exec` execs the daemon: the child's pid is its own.
        remote.daemons[i] = Some(teardown::spawn(&mut cmd).expect("start peering-controld"));
        let client = remote.client_ns.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reachable_from(&client, &listen) {
            assert!(
                Instant::now() < deadline,
                "peering-controld {i} did not start: {}",
                std::fs::read_to_string(self.controller_log(i)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills remote controller `i` with SIGKILL (a crash) and leaves it down.
    pub fn kill_controller(&mut self, i: usize) {
        if let Some(r) = self.remote.as_mut() {
            r.daemons[i] = None;
        }
    }

    /// The process id of remote controller `i`, while it runs.
    pub fn controller_pid(&self, i: usize) -> Option<u32> {
        self.remote
            .as_ref()
            .and_then(|r| r.daemons[i].as_ref().map(Proc::pid))
    }

    /// The number of remote controllers.
    pub fn controller_count(&self) -> usize {
        self.remote.as_ref().map_or(0, |r| r.hosts.len())
    }

    /// A command running `name` where the operator is: this host, or the
    /// remote control plane's client namespace.
    fn command(&self, name: &str) -> Command {
        match &self.remote {
            None => Command::new(bin(name)),
            Some(r) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &r.client_ns]).arg(bin(name));
                c
            }
        }
    }

    /// `--db PATH`, or `--store URL` for a remote control plane.
    fn store_args(&self) -> Vec<std::ffi::OsString> {
        match &self.remote {
            None => vec!["--db".into(), self.db.clone().into()],
            Some(r) => [
                vec!["--store".into(), r.store.clone().into()],
                r.store_flags.clone(),
            ]
            .concat(),
        }
    }

    /// Starts the daemon on the same address and database and waits until
    /// it listens.
    fn spawn_daemon(&mut self) {
        let listen = self.listen.clone();
        self.daemon = Some(self.serve(&listen));
    }

    /// Starts another peering-controld on the same store (a second
    /// controller of the deployment) on a free loopback port; its
    /// endpoint. It stops with the control plane.
    pub fn start_another(&mut self) -> String {
        let listen = format!("127.0.0.1:{}", free_port());
        let daemon = self.serve(&listen);
        self.others.push(daemon);
        format!("http://{listen}")
    }

    /// Kills the first daemon (SIGKILL) and leaves it down; `restart`
    /// starts it again.
    pub fn kill(&mut self) {
        self.daemon = None;
    }

    fn serve(&self, listen: &str) -> Proc {
        let daemon = teardown::spawn(
            Command::new(bin("peering-controld"))
                .args(["serve", "--listen", listen, "--db"])
                .arg(&self.db)
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(daemon_log()),
        )
        .expect("start peering-controld");
        wait_listening(listen);
        daemon
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Proc::pid)
    }

    /// Kills the daemon (SIGKILL, a crash) and starts it again on the same
    /// address and database.
    pub fn restart(&mut self) {
        self.daemon = None;
        self.spawn_daemon();
    }

    /// Creates an account and its token with the admin command.
    pub fn account(&self, id: &str) -> Account {
        let out = run(self
            .command("peering-controld")
            .args(["create-account", "--account", id])
            .args(self.store_args()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Account {
            id: id.into(),
            token,
        }
    }

    pub fn peerctl_cmd(&self, who: &Account, region: &str, args: &[&str]) -> Command {
        if self.verbose {
            crate::say!("  [{} @ {region}] $ peerctl {}", who.id, args.join(" "));
        }
        let mut c = self.command("peerctl");
        if let Some(r) = &self.remote {
            c.env("PEERING_CA_FILE", &r.ca_file);
        }
        c.args(args)
            .env("PEERING_ENDPOINT", &self.endpoint)
            .env("PEERING_REGION", region)
            .env("PEERING_TOKEN", &who.token)
            .env("PEERING_CONFIG_FILE", self.dir.join("no-config"));
        c
    }

    /// Runs `peerctl` as `who` in `region`; it must succeed.
    pub fn peerctl(&self, who: &Account, region: &str, args: &[&str]) -> Value {
        let out = run(&mut self.peerctl_cmd(who, region, args));
        assert!(
            out.status.success(),
            "peerctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("peerctl prints JSON")
    }

    /// `create-vpc`; returns the VPC id.
    pub fn create_vpc(&self, who: &Account, region: &str, cidr: &str) -> String {
        let v = self.peerctl(who, region, &["create-vpc", "--cidr-block", cidr]);
        field(&v, &["Vpc", "VpcId"])
    }

    /// `create-subnet` bound to gateway interface `port`; returns its id.
    pub fn create_subnet(
        &self,
        who: &Account,
        region: &str,
        vpc: &str,
        cidr: &str,
        port: &str,
    ) -> String {
        let args = [
            "create-subnet",
            "--vpc-id",
            vpc,
            "--cidr-block",
            cidr,
            "--interface",
            port,
        ];
        field(&self.peerctl(who, region, &args), &["Subnet", "SubnetId"])
    }

    /// The id of `vpc`'s main route table.
    pub fn main_route_table(&self, who: &Account, region: &str, vpc: &str) -> String {
        let f = format!("Name=vpc-id,Values={vpc}");
        let args = [
            "describe-route-tables",
            "--filters",
            &f,
            "Name=association.main,Values=true",
        ];
        field(
            &self.peerctl(who, region, &args),
            &["RouteTables", "0", "RouteTableId"],
        )
    }

    /// `create-vpc-peering-connection`; returns the peering id.
    pub fn request_peering(
        &self,
        who: &Account,
        region: &str,
        vpc: &str,
        peer_vpc: &str,
        peer_owner: &str,
        peer_region: &str,
    ) -> String {
        let args = [
            "create-vpc-peering-connection",
            "--vpc-id",
            vpc,
            "--peer-vpc-id",
            peer_vpc,
            "--peer-owner-id",
            peer_owner,
            "--peer-region",
            peer_region,
        ];
        let v = self.peerctl(who, region, &args);
        field(&v, &["VpcPeeringConnection", "VpcPeeringConnectionId"])
    }

    /// A peering action (`accept-…`, `reject-…`, `delete-…`) on `pcx`.
    pub fn peering_action(&self, who: &Account, region: &str, verb: &str, pcx: &str) -> Value {
        let args = [verb, "--vpc-peering-connection-id", pcx];
        self.peerctl(who, region, &args)
    }

    /// The id of `vpc`'s default security group.
    pub fn default_group(&self, who: &Account, region: &str, vpc: &str) -> String {
        let f = format!("Name=vpc-id,Values={vpc}");
        let args = [
            "describe-security-groups",
            "--filters",
            &f,
            "Name=group-name,Values=default",
        ];
        field(
            &self.peerctl(who, region, &args),
            &["SecurityGroups", "0", "GroupId"],
        )
    }

    /// Lets all traffic from `cidr` into `vpc`'s default security group:
    /// what a user does for a peer VPC once the peering is up (a default
    /// group admits only its own members).
    pub fn allow_from(&self, who: &Account, region: &str, vpc: &str, cidr: &str) {
        let group = self.default_group(who, region, vpc);
        let args = [
            "authorize-security-group-ingress",
            "--group-id",
            &group,
            "--protocol",
            "all",
            "--cidr",
            cidr,
        ];
        self.peerctl(who, region, &args);
    }

    /// `create-route` from `rtb` to `pcx`.
    pub fn create_route(&self, who: &Account, region: &str, rtb: &str, dst: &str, pcx: &str) {
        let args = [
            "create-route",
            "--route-table-id",
            rtb,
            "--destination-cidr-block",
            dst,
            "--vpc-peering-connection-id",
            pcx,
        ];
        self.peerctl(who, region, &args);
    }

    /// Starts `peering-agent run` for `region` in gateway namespace `gw`.
    /// Its state (the resolver's counters) goes under this control plane's
    /// directory, removed with it.
    pub fn agent(&self, gw: &Netns, pins: &PinDir, region: &str) -> Proc {
        let state = self.dir.join(format!("state-{}", gw.name));
        let state = state.to_string_lossy();
        self.spawn_agent(gw, pins, region, &["--state-dir", &state])
    }

    /// Starts an agent with the inter-region tunnel on `underlay`, writing
    /// its counters under `state`.
    pub fn tunnel_agent(
        &self,
        gw: &Netns,
        pins: &PinDir,
        region: &str,
        underlay: &str,
        underlay_io: &str,
        state: &std::path::Path,
    ) -> Proc {
        let cmd = self.tunnel_agent_cmd(gw, pins, region, underlay, underlay_io, state);
        teardown::spawn(&mut cmd.command()).expect("start peering-agent run")
    }

    /// The command line of [`ControlPlane::tunnel_agent`], to start again
    /// and again (a supervisor restarting it).
    pub fn tunnel_agent_cmd(
        &self,
        gw: &Netns,
        pins: &PinDir,
        region: &str,
        underlay: &str,
        underlay_io: &str,
        state: &std::path::Path,
    ) -> AgentCmd {
        let state = state.to_string_lossy();
        let args = [
            "--underlay",
            underlay,
            "--underlay-io",
            underlay_io,
            "--state-dir",
            &state,
        ];
        self.agent_cmd(gw, pins, region, &args)
    }

    fn spawn_agent(&self, gw: &Netns, pins: &PinDir, region: &str, extra: &[&str]) -> Proc {
        teardown::spawn(&mut self.agent_cmd(gw, pins, region, extra).command())
            .expect("start peering-agent run")
    }

    /// The gateway credential of `region`, issued on first use with the
    /// admin command (`create-gateway`).
    pub fn gateway_credential(&self, region: &str) -> PathBuf {
        let path = self.dir.join(format!("gateway-{region}.json"));
        if !path.exists() {
            let out = run(self
                .command("peering-controld")
                .args(["create-gateway", "--region", region])
                .args(self.store_args())
                .arg("--out")
                .arg(&path));
            assert!(
                out.status.success(),
                "create-gateway: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        path
    }

    /// The controllers agents are given: this daemon, then any `more`.
    pub fn controllers(&self) -> String {
        std::iter::once(self.endpoint.clone())
            .chain(self.more.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Agents started from now on try `endpoint` after this daemon.
    pub fn add_controller(&mut self, endpoint: &str) {
        self.more.push(endpoint.to_owned());
    }

    /// The agent's control connection is made in the namespace it is
    /// started in (the host's, where peering-controld listens on
    /// loopback) before it enters the gateway's namespace (`--netns`).
    fn agent_cmd(&self, gw: &Netns, pins: &PinDir, region: &str, extra: &[&str]) -> AgentCmd {
        let mut args: Vec<String> = vec![
            "--netns".into(),
            gw.name.clone(),
            "--pin-dir".into(),
            pins.path.to_string_lossy().into_owned(),
            "run".into(),
            "--region".into(),
            region.into(),
            "--controller".into(),
            self.controllers(),
            "--credential".into(),
            self.gateway_credential(region)
                .to_string_lossy()
                .into_owned(),
        ];
        if let Some(r) = &self.remote {
            args.push("--ca-file".into());
            args.push(r.ca_file.to_string_lossy().into_owned());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        AgentCmd {
            args,
            verbose: self.verbose,
            log: None,
            netns: self.remote.as_ref().map(|r| r.client_ns.clone()),
        }
    }
}

/// A `peering-agent` command line that can be started any number of times.
#[derive(Clone)]
pub struct AgentCmd {
    pub args: Vec<String>,
    pub verbose: bool,
    /// Append the agent's log here instead of the test's stderr.
    pub log: Option<PathBuf>,
    /// Start it in this namespace (its control connections are made
    /// there) instead of the host's.
    pub netns: Option<String>,
}

impl AgentCmd {
    /// Starts it as a child that dies with the spawning thread (a
    /// supervisor's, which outlives it).
    pub fn spawn(&self) -> Child {
        teardown::die_with_parent(&mut self.command())
            .spawn()
            .expect("start peering-agent run")
    }

    pub fn command(&self) -> Command {
        let stderr = match &self.log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .expect("agent log file"),
            None if self.verbose => Stdio::inherit(),
            None => Stdio::null(),
        };
        let mut cmd = match &self.netns {
            None => Command::new(bin("peering-agent")),
            // nsenter changes the network namespace only (`ip netns exec`
            // would also remount /sys, hiding the bpffs); it execs the
            // agent, whose pid is the child's.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}"))
                    .arg("--")
                    .arg(bin("peering-agent"));
                c
            }
        };
        cmd.args(&self.args).stdout(Stdio::null()).stderr(stderr);
        cmd
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        teardown::remove_path(&self.dir);
    }
}

/// A string field of a JSON value, by path.
pub fn field(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[*p],
        };
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
        .to_string()
}

/// Waits up to `within` for `f` to hold, polling.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
