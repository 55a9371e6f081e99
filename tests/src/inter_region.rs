//! A two-region lab: gateways `gw1` (us-east-1) and `gw2` (us-west-2)
//! whose underlay interfaces sit on two subnets of 198.18.0.0/15 joined by
//! a router namespace, `wan`; each gateway runs its own `peering-agent`
//! process with the tunnel on; one control plane.
//!
//! ```text
//!  a (10.1.0.10) --vpc-a-- gw1 198.18.0.1 ==[wan-1 .0.254  wan  .1.254 wan-2]== 198.18.1.2 gw2 --vpc-b-- b (10.2.0.10)
//!                                                                                              \--vpc-c-- c (10.3.0.10)
//! ```
//!
//! VPC A is in region 1, VPCs B and C in region 2. The underlay MTU is
//! 1600: sealed datagrams of full 1500-byte packets (1572 bytes) fit. The
//! router makes each gateway reach the other through a next hop (as
//! regions are), and `wan-1` is where captures see the wire: frames sent
//! by AF_XDP pass no packet tap on their own gateway, and frames the
//! underlay XDP program takes pass none on the receiving one.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use peering_userspace::gateway::TunnelStats;

use crate::{
    control_lab::{eventually, Account, ControlPlane, Proc},
    lab::{announce, host, unique, veth_queues, Netns, PinDir},
    supervisor::Supervisor,
};

pub const REGION_1: &str = "us-east-1";
pub const REGION_2: &str = "us-west-2";
pub const OWNER_A: &str = "111111111111";
pub const OWNER_B: &str = "222222222222";
pub const OWNER_C: &str = "333333333333";
pub const UNDERLAY_1: &str = "198.18.0.1";
pub const UNDERLAY_2: &str = "198.18.1.2";
/// The router's addresses on the two underlay subnets.
pub const WAN_1: &str = "198.18.0.254";
pub const WAN_2: &str = "198.18.1.254";
/// The router's interface towards gateway 1: captures of the underlay.
pub const WIRE_IF: &str = "wan-1";
pub const UNDERLAY_MTU: &str = "1600";

/// One gateway: namespace, pins, state directory, agent process.
pub struct Gateway {
    pub ns: Netns,
    pub pins: PinDir,
    pub state: PathBuf,
    pub region: &'static str,
    pub underlay: &'static str,
    /// `peering-agent run --underlay-io` value.
    pub underlay_io: &'static str,
    /// `peering-agent run --workers` value (1: the flag is not passed).
    pub workers: u32,
    /// `peering-agent run --port-path` value ("auto": not passed).
    pub port_path: &'static str,
    agent: Option<Proc>,
    /// The agent under a supervisor that restarts it (instead of `agent`).
    pub supervisor: Option<Supervisor>,
}

impl Gateway {
    fn new(role: &str, region: &'static str, underlay: &'static str) -> Self {
        let state = std::env::temp_dir().join(unique(&format!("{role}-state")));
        crate::teardown::add_path(&state);
        Gateway {
            ns: Netns::new(role),
            pins: PinDir::new(&format!("{role}-pins")),
            state,
            region,
            underlay,
            underlay_io: "af-xdp",
            workers: 1,
            port_path: "auto",
            agent: None,
            supervisor: None,
        }
    }

    pub fn stats_path(&self) -> PathBuf {
        self.state.join(peering_userspace::agent::TUNNEL_STATS_FILE)
    }

    /// The tunnel's counters as last written by the agent.
    pub fn tunnel_stats(&self) -> TunnelStats {
        TunnelStats::read(&self.stats_path()).unwrap_or_default()
    }

    /// Destinations in the route map of the pinned dataplane, as
    /// `peering-agent show --json` lists them (empty when it cannot say).
    pub fn programmed_routes(&self) -> Vec<String> {
        let out = crate::lab::run(
            std::process::Command::new(crate::lab::bin("peering-agent"))
                .args(["--netns", &self.ns.name, "--pin-dir"])
                .arg(&self.pins.path)
                .args(["show", "--json"]),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["routes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["dst"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The agent's process id, while it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(|p| p.0.id())
    }

    /// Stops the agent (the pinned dataplane stays).
    pub fn stop_agent(&mut self) {
        self.agent = None;
        self.supervisor = None;
    }

    /// The log of the supervised agent (every start appends to it).
    pub fn agent_log_path(&self) -> PathBuf {
        self.state.join("agent.log")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.supervisor = None;
        self.agent = None;
        crate::teardown::remove_path(&self.state);
    }
}

/// The two-region lab, its control plane and three accounts.
pub struct InterRegionLab {
    // Field order is drop order: agents stop before the namespaces go.
    pub gw1: Gateway,
    pub gw2: Gateway,
    pub wan: Netns,
    pub a: Netns,
    pub b: Netns,
    pub c: Netns,
    pub cp: ControlPlane,
    pub acct_a: Account,
    pub acct_b: Account,
    pub acct_c: Account,
}

/// Ids of what [`InterRegionLab::vpcs`] created.
pub struct Vpcs {
    pub a: String,
    pub b: String,
    pub c: String,
    pub rtb_a: String,
    pub rtb_b: String,
    pub rtb_c: String,
}

impl InterRegionLab {
    /// Builds the namespaces and links, starts peering-controld with
    /// `controld_args` (e.g. a key rotation period) and both agents.
    pub fn new(verbose: bool, controld_args: &[&str]) -> Self {
        Self::with_underlay_io(verbose, controld_args, "af-xdp")
    }

    /// Like [`InterRegionLab::new`], the agents moving the underlay with
    /// `underlay_io` ("af-xdp" or "socket").
    pub fn with_underlay_io(
        verbose: bool,
        controld_args: &[&str],
        underlay_io: &'static str,
    ) -> Self {
        Self::with_control_plane(underlay_io, || {
            ControlPlane::start_with(verbose, controld_args)
        })
    }

    /// The lab with the control plane `start_cp` starts (after the
    /// namespaces are built, before the agents start).
    pub fn with_control_plane(
        underlay_io: &'static str,
        start_cp: impl FnOnce() -> ControlPlane,
    ) -> Self {
        Self::build(underlay_io, 1, 1, start_cp)
    }

    /// Like [`InterRegionLab::new`] with `workers` tunnel workers per
    /// agent (`--workers`), and as many queues on every gateway veth (VPC
    /// ports, underlay) and on their peers, so each worker has its own.
    pub fn with_workers(verbose: bool, controld_args: &[&str], workers: u32) -> Self {
        Self::build("af-xdp", workers, workers, || {
            ControlPlane::start_with(verbose, controld_args)
        })
    }

    /// Like [`InterRegionLab::with_workers`], but the VPC ports (and the
    /// hosts' veths) have `port_queues` queues; the underlay keeps one per
    /// worker.
    pub fn with_workers_and_port_queues(
        verbose: bool,
        controld_args: &[&str],
        workers: u32,
        port_queues: u32,
    ) -> Self {
        Self::build("af-xdp", workers, port_queues, || {
            ControlPlane::start_with(verbose, controld_args)
        })
    }

    fn build(
        underlay_io: &'static str,
        workers: u32,
        port_queues: u32,
        start_cp: impl FnOnce() -> ControlPlane,
    ) -> Self {
        let mut gw1 = Gateway::new("gw1", REGION_1, UNDERLAY_1);
        let mut gw2 = Gateway::new("gw2", REGION_2, UNDERLAY_2);
        for gw in [&mut gw1, &mut gw2] {
            gw.underlay_io = underlay_io;
            gw.workers = workers;
        }
        let queues = (workers.max(1), port_queues.max(1));
        let (a, b, c) = (Netns::new("a"), Netns::new("b"), Netns::new("c"));
        let wan = Netns::new("wan");
        wire(&gw1.ns, &gw2.ns, &wan, [&a, &b, &c], queues);
        let cp = start_cp();
        let acct_a = cp.account(OWNER_A);
        let acct_b = cp.account(OWNER_B);
        let acct_c = cp.account(OWNER_C);
        let mut lab = InterRegionLab {
            gw1,
            gw2,
            wan,
            a,
            b,
            c,
            cp,
            acct_a,
            acct_b,
            acct_c,
        };
        lab.start_agent(1);
        lab.start_agent(2);
        lab
    }

    /// Restarts both agents with `--port-path xdp` (their ports move to
    /// the XDP path) and turns the hosts' TX checksum offload off, as the
    /// XDP path needs (see [`crate::lab::xdp_path_host`]).
    pub fn use_xdp_path(&mut self) {
        for n in [1, 2] {
            let gw = if n == 1 { &mut self.gw1 } else { &mut self.gw2 };
            gw.stop_agent();
            gw.port_path = "xdp";
            self.start_agent(n);
        }
        for host in [&self.a, &self.b, &self.c] {
            crate::lab::xdp_path_host(host);
        }
    }

    pub fn gateway(&self, n: u8) -> &Gateway {
        if n == 1 {
            &self.gw1
        } else {
            &self.gw2
        }
    }

    pub fn start_agent(&mut self, n: u8) {
        let gw = if n == 1 { &mut self.gw1 } else { &mut self.gw2 };
        let cmd = Self::agent_cmd(&self.cp, gw);
        gw.agent =
            Some(crate::teardown::spawn(&mut cmd.command()).expect("start peering-agent run"));
    }

    fn agent_cmd(cp: &ControlPlane, gw: &Gateway) -> crate::control_lab::AgentCmd {
        let mut cmd = cp.tunnel_agent_cmd(
            &gw.ns,
            &gw.pins,
            gw.region,
            gw.underlay,
            gw.underlay_io,
            &gw.state,
        );
        if gw.workers > 1 {
            cmd.args
                .extend(["--workers".into(), gw.workers.to_string()]);
        }
        if gw.port_path != "auto" {
            cmd.args
                .extend(["--port-path".into(), gw.port_path.to_string()]);
        }
        cmd
    }

    /// Replaces gateway `n`'s agent with one under a [`Supervisor`] that
    /// starts it again `restart_sec` after it exits, as systemd does for
    /// the shipped unit. Its log goes to [`Gateway::agent_log_path`].
    pub fn supervise_agent(&mut self, n: u8, restart_sec: Duration) {
        let gw = if n == 1 { &mut self.gw1 } else { &mut self.gw2 };
        gw.stop_agent();
        std::fs::create_dir_all(&gw.state).expect("state directory");
        let mut cmd = Self::agent_cmd(&self.cp, gw);
        cmd.log = Some(gw.agent_log_path());
        gw.supervisor = Some(Supervisor::start(
            Box::new(move || cmd.spawn()),
            restart_sec,
        ));
    }

    /// VPCs A (region 1, account A), B and C (region 2, accounts B and C),
    /// each with one subnet on its gateway port.
    pub fn vpcs(&self) -> Vpcs {
        let v = self.quiet_vpcs();
        self.hosts_announce();
        v
    }

    /// [`InterRegionLab::vpcs`] with hosts that have sent nothing.
    pub fn quiet_vpcs(&self) -> Vpcs {
        let cp = &self.cp;
        let a = cp.create_vpc(&self.acct_a, REGION_1, "10.1.0.0/16");
        let b = cp.create_vpc(&self.acct_b, REGION_2, "10.2.0.0/16");
        let c = cp.create_vpc(&self.acct_c, REGION_2, "10.3.0.0/16");
        cp.create_subnet(&self.acct_a, REGION_1, &a, "10.1.0.0/24", "vpc-a");
        cp.create_subnet(&self.acct_b, REGION_2, &b, "10.2.0.0/24", "vpc-b");
        cp.create_subnet(&self.acct_c, REGION_2, &c, "10.3.0.0/24", "vpc-c");
        Vpcs {
            rtb_a: cp.main_route_table(&self.acct_a, REGION_1, &a),
            rtb_b: cp.main_route_table(&self.acct_b, REGION_2, &b),
            rtb_c: cp.main_route_table(&self.acct_c, REGION_2, &c),
            a,
            b,
            c,
        }
    }

    /// Hosts resolve their gateway, so the gateways learn their MACs.
    pub fn hosts_announce(&self) {
        announce(&[
            (&self.a, "10.1.0.1"),
            (&self.b, "10.2.0.1"),
            (&self.c, "10.3.0.1"),
        ]);
    }

    /// Peers `from_vpc` (owned by `from`, in `from_region`) with `to_vpc`,
    /// accepted by `to`, routes each side's table to the other's CIDR and
    /// lets each side's default security group admit the other's CIDR.
    #[allow(clippy::too_many_arguments)]
    pub fn peer(
        &self,
        (from, from_region, from_vpc, from_rtb, from_cidr): (&Account, &str, &str, &str, &str),
        (to, to_region, to_vpc, to_rtb, to_cidr): (&Account, &str, &str, &str, &str),
    ) -> String {
        let cp = &self.cp;
        let pcx = cp.request_peering(from, from_region, from_vpc, to_vpc, &to.id, to_region);
        cp.peering_action(to, to_region, "accept-vpc-peering-connection", &pcx);
        cp.create_route(from, from_region, from_rtb, to_cidr, &pcx);
        cp.create_route(to, to_region, to_rtb, from_cidr, &pcx);
        cp.allow_from(from, from_region, from_vpc, to_cidr);
        cp.allow_from(to, to_region, to_vpc, from_cidr);
        pcx
    }

    /// A (region 1) peered with C (region 2) in `v`, each side routed to
    /// the other's block. Returns the peering.
    pub fn peer_a_with_c(&self, v: &Vpcs) -> String {
        self.peer(
            (&self.acct_a, REGION_1, &v.a, &v.rtb_a, "10.1.0.0/16"),
            (&self.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
        )
    }

    /// The lab's usual topology: the VPCs created, a key held, A peered with
    /// C across regions and B with C within region 2, each side routed to
    /// the other. Returns the VPCs and the two peerings (A-C, B-C).
    pub fn peer_a_c_and_b_c(&self) -> (Vpcs, String, String) {
        let v = self.vpcs();
        self.wait_for_keys();
        let ac = self.peer_a_with_c(&v);
        let bc = self.peer(
            (&self.acct_b, REGION_2, &v.b, &v.rtb_b, "10.2.0.0/16"),
            (&self.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
        );
        (v, ac, bc)
    }

    /// Waits until both tunnels hold a current key.
    pub fn wait_for_keys(&self) {
        let keyed = || {
            [&self.gw1, &self.gw2]
                .iter()
                .all(|g| g.tunnel_stats().current_epoch.is_some())
        };
        assert!(
            eventually(Duration::from_secs(15), keyed),
            "the gateways never got a tunnel key"
        );
    }
}

/// The lab's namespaces joined as the diagram shows, nothing started: the
/// underlay legs through the router `wan` (MTU 1600, each gateway routed
/// to the other's subnet, IP forwarding off on the gateways), the VPC
/// ports (RX and TX queues: `underlay_queues` on the underlay veths,
/// `port_queues` on the VPC ports'), and hosts `a`, `b`,
/// `c` with their addresses. Benchmarks build
/// other gateways (plain routing, WireGuard) on the same wiring.
pub fn wire(
    gw1: &Netns,
    gw2: &Netns,
    wan: &Netns,
    [a, b, c]: [&Netns; 3],
    (underlay_queues, port_queues): (u32, u32),
) {
    wan.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let legs = [
        (gw1, UNDERLAY_1, "wan-1", WAN_1, "198.18.1.0/24"),
        (gw2, UNDERLAY_2, "wan-2", WAN_2, "198.18.0.0/24"),
    ];
    for (ns, addr, wan_if, wan_addr, other) in legs {
        veth_queues(ns, "underlay", wan, wan_if, underlay_queues);
        // No IPv6 on the underlay: the kernel's router solicitations
        // would show in the captures of what crosses it.
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.underlay.disable_ipv6=1"]);
        wan.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{wan_if}.disable_ipv6=1"),
        ]);
        ns.exec_ok(&["ip", "link", "set", "underlay", "mtu", UNDERLAY_MTU]);
        wan.exec_ok(&["ip", "link", "set", wan_if, "mtu", UNDERLAY_MTU]);
        ns.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "underlay",
        ]);
        wan.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{wan_addr}/24"),
            "dev",
            wan_if,
        ]);
        ns.exec_ok(&["ip", "route", "add", other, "via", wan_addr]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    }
    veth_queues(gw1, "vpc-a", a, "eth0", port_queues);
    veth_queues(gw2, "vpc-b", b, "eth0", port_queues);
    veth_queues(gw2, "vpc-c", c, "eth0", port_queues);
    // No address on the VPC ports: the agents put each subnet's router
    // address (10.1.0.1, 10.2.0.1, 10.3.0.1) there.
    host(a, "10.1.0.10/24", "10.1.0.1");
    host(b, "10.2.0.10/24", "10.2.0.1");
    host(c, "10.3.0.10/24", "10.3.0.1");
}

/// Starts `tcpdump` writing `iface` of `ns` to `file`; stop it with
/// [`Capture::finish`].
pub struct Capture {
    proc: Proc,
    pub file: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, iface: &str, file: &Path) -> Self {
        // tcpdump switches to its own user once capturing, which clears
        // the parent-death signal: only the drop or the signal handler of
        // `teardown` stop it (`-Z root` would keep it, but changed what the
        // replay test captures; not understood yet).
        let proc = crate::teardown::spawn(
            ns.cmd(&["tcpdump", "-U", "-n", "-s", "0", "-i", iface, "-w"])
                .arg(file)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("start tcpdump");
        // tcpdump needs a moment before it captures.
        std::thread::sleep(Duration::from_millis(700));
        Capture {
            proc,
            file: file.to_path_buf(),
        }
    }

    /// Stops tcpdump (SIGINT flushes the file) and returns the frames.
    pub fn finish(self) -> Vec<Vec<u8>> {
        std::thread::sleep(Duration::from_millis(300));
        let pid = self.proc.0.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(300));
        drop(self.proc);
        let bytes = std::fs::read(&self.file).unwrap_or_default();
        pcap_frames(&bytes)
    }
}

/// The frames of a classic pcap file (microsecond or nanosecond, either
/// byte order).
pub fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let Some(magic) = bytes.get(0..4) else {
        return Vec::new();
    };
    let le = matches!(magic, [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]);
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        } as usize)
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while let Some(caplen) = word(at + 8) {
        let start = at + 16;
        let Some(frame) = bytes.get(start..start + caplen) else {
            break;
        };
        frames.push(frame.to_vec());
        at = start + caplen;
    }
    frames
}

/// (IP protocol, source port, destination port, UDP payload) of an
/// untagged Ethernet/IPv4 frame.
pub fn udp_of(frame: &[u8]) -> Option<(u8, u16, u16, &[u8])> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let proto = *ip.get(9)?;
    let l4 = ip.get(ihl..)?;
    let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    let dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
    Some((proto, sport, dport, l4.get(8..)?))
}
