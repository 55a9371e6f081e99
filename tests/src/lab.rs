//! Network-namespace labs: namespaces and veth pairs created for one test
//! and removed when it ends, also when it fails (cleanup runs on drop) or
//! is interrupted (see [`crate::teardown`]).
//!
//! Names carry the process id and a counter, so concurrent tests and runs
//! never collide. Test addresses live only inside these namespaces.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique name with `prefix`, e.g. `pt-1234-0-gw`.
pub fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("pt{}-{n}-{prefix}", std::process::id())
}

/// Runs a command and returns its output; panics with the command and its
/// stderr if it cannot be started. The command dies with this process.
pub fn run(cmd: &mut Command) -> Output {
    crate::teardown::die_with_parent(cmd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    ok(Command::new("ip").args(args))
}

/// A network namespace that is deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Self {
        let name = unique(role);
        crate::teardown::add_netns(&name);
        let ns = Self { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command running inside this namespace.
    pub fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    pub fn exec_ok(&self, argv: &[&str]) -> String {
        ok(&mut self.cmd(argv))
    }

    pub fn mac(&self, iface: &str) -> String {
        self.exec_ok(&["cat", &format!("/sys/class/net/{iface}/address")])
            .trim()
            .to_string()
    }

    /// True when `count` pings to `dst` all come back.
    pub fn ping(&self, dst: &str, count: u32) -> bool {
        self.ping_from(None, dst, count)
    }

    pub fn ping_from(&self, src: Option<&str>, dst: &str, count: u32) -> bool {
        let count = count.to_string();
        let mut argv = vec!["ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1"];
        if let Some(s) = src {
            argv.extend(["-I", s]);
        }
        argv.push(dst);
        run(&mut self.cmd(&argv)).status.success()
    }

    /// Starts `count` pings to `dst`, one every `interval` seconds (each
    /// waited for at most 2 s), in the background; [`ping_replies`] reads
    /// the outcome.
    pub fn ping_stream(&self, dst: &str, interval: &str, count: u32) -> crate::teardown::Proc {
        let count = count.to_string();
        let argv = ["ping", "-n", "-i", interval, "-W", "2", "-c", &count, dst];
        crate::teardown::spawn(
            self.cmd(&argv)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null()),
        )
        .expect("start ping")
    }
}

/// The icmp_seq of each reply of a [`Netns::ping_stream`], once it has
/// finished: ascending, duplicates left out.
pub fn ping_replies(mut p: crate::teardown::Proc) -> Vec<u32> {
    use std::io::Read as _;
    let mut out = String::new();
    if let Some(mut s) = p.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    let _ = p.0.wait();
    let mut r: Vec<u32> = out
        .lines()
        .filter(|l| l.contains("bytes from") && !l.contains("DUP"))
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

impl Drop for Netns {
    fn drop(&mut self) {
        crate::teardown::del_netns(&self.name);
    }
}

/// Runs an iperf3 client in `from` (`-c dst -J` and `args`) against a
/// one-shot server that `to` starts on `dst`; returns the client's JSON
/// report (which carries `"error"` when iperf3 failed). Bounded: the
/// client is killed after two minutes, the server with its
/// [`crate::teardown::Proc`].
pub fn iperf3(
    from: &Netns,
    to: &Netns,
    dst: &str,
    args: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let server = crate::teardown::spawn(
        to.cmd(&["iperf3", "-s", "-1", "-B", dst])
            .stdout(std::process::Stdio::null()),
    )?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut argv = vec!["timeout", "120", "iperf3", "-c", dst, "-J"];
    argv.extend(args);
    let out = run(&mut from.cmd(&argv));
    drop(server);
    serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("iperf3 gave no JSON report ({e})"))
}

/// `eth0` of `ns`, where hosts send and receive generated traffic.
pub fn eth0(ns: &Netns) -> peering_userspace::pktgen::Endpoint {
    peering_userspace::pktgen::Endpoint {
        netns: Some(ns.name.clone()),
        dev: "eth0".into(),
    }
}

/// The generator's plan for host `from` (its `eth0`) sending UDP to port 9
/// of `dst` through the next hop `hop_mac`, over `flows` source ports from
/// 1024, at full rate.
pub fn udp_plan(
    from: &Netns,
    hop_mac: &str,
    (src, dst): (std::net::Ipv4Addr, std::net::Ipv4Addr),
    sizes: peering_userspace::pktgen::Sizes,
    flows: u32,
) -> anyhow::Result<peering_userspace::pktgen::Plan> {
    use peering_userspace::{pktgen, sys::parse_mac};
    Ok(pktgen::Plan {
        dst_mac: parse_mac(hop_mac)?,
        src_mac: parse_mac(&from.mac("eth0"))?,
        dst_ip: dst,
        dst_port: 9,
        sizes,
        flows: pktgen::Flows {
            flows,
            src_ip: src,
            src_ips: 1,
            src_port: 1024,
        },
        rate_pps: 0,
    })
}

/// Joins `a`'s interface `a_if` and `b`'s `b_if` with a veth pair.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.exec_ok(&["ip", "link", "set", a_if, "up"]);
    b.exec_ok(&["ip", "link", "set", b_if, "up"]);
}

/// A veth pair like [`veth`] with `queues` receive and transmit queues on
/// each end: the sender's flow hash picks the transmit queue, and the
/// peer receives on the queue of that index (veth's "RSS").
pub fn veth_queues(a: &Netns, a_if: &str, b: &Netns, b_if: &str, queues: u32) {
    let q = queues.to_string();
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        &a.name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        &b.name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ]);
    a.exec_ok(&["ip", "link", "set", a_if, "up"]);
    b.exec_ok(&["ip", "link", "set", b_if, "up"]);
}

/// A host namespace with `addr` (CIDR) on `eth0` and a default route via
/// `gw`, its offloads left as a veth has them (TSO, GSO, TX checksum
/// offload on: the gateway's TC path takes such traffic as it is). GRO on
/// lets frames that XDP redirects into the veth be received (a veth drops
/// redirected frames unless its peer has NAPI).
pub fn host(ns: &Netns, addr: &str, gw: &str) {
    ns.exec_ok(&["ip", "addr", "add", addr, "dev", "eth0"]);
    ns.exec_ok(&["ip", "route", "add", "default", "via", gw]);
    ns.exec_ok(&["ethtool", "-K", "eth0", "gro", "on"]);
}

/// Makes a [`host`] fit for a gateway port on the XDP path: TX checksum
/// offload off. A veth otherwise sends TCP/UDP with only a partial
/// checksum, which an XDP redirect carries as-is to a receiver that then
/// drops it (a NIC would have completed it on the wire).
pub fn xdp_path_host(ns: &Netns) {
    ns.exec_ok(&["ethtool", "-K", "eth0", "tx", "off"]);
}

/// Each host pings its router until it answers (the agent adds router
/// addresses within a poll), for up to 5 s each.
pub fn announce(hosts: &[(&Netns, &str)]) {
    for (ns, router) in hosts {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let once = || {
            let argv = ["ping", "-n", "-q", "-c", "1", "-W", "0.2", router];
            run(&mut ns.cmd(&argv)).status.success()
        };
        while !once() && std::time::Instant::now() < deadline {}
    }
}

/// A bpffs directory for one gateway, removed on drop.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(role: &str) -> Self {
        let path = Path::new("/sys/fs/bpf").join(unique(role));
        crate::teardown::add_path(&path);
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        crate::teardown::remove_path(&self.path);
    }
}

/// A file or directory in the temporary directory with a unique name,
/// removed on drop (it is created by whoever uses it).
pub struct TempPath {
    pub path: PathBuf,
}

impl TempPath {
    pub fn new(role: &str) -> Self {
        let path = std::env::temp_dir().join(unique(role));
        crate::teardown::add_path(&path);
        Self { path }
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        crate::teardown::remove_path(&self.path);
    }
}

/// The `peering-agent` binary.
pub fn agent_bin() -> PathBuf {
    bin("peering-agent")
}

/// A workspace binary built next to this test binary (the test runner
/// builds the workspace's binaries first). `$PEERING_BIN_DIR` overrides.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PEERING_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    // Test binaries live in target/<profile>/deps, other binaries one up.
    let exe = std::env::current_exe().expect("own binary path");
    let dir = exe.parent().expect("binary directory");
    let bin = [dir, dir.parent().unwrap_or(dir)]
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(name));
    assert!(
        bin.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins, or cargo xtask test)",
        bin.display()
    );
    bin
}

/// Drives `peering-agent` for one gateway namespace and pin directory.
pub struct Agent<'a> {
    pub ns: &'a Netns,
    pub pins: &'a PinDir,
    /// Print each command before running it (the demo narrates).
    pub verbose: bool,
}

impl Agent<'_> {
    pub fn cmd(&self, args: &[&str]) -> Command {
        if self.verbose {
            crate::say!("  $ peering-agent {}", args.join(" "));
        }
        let mut c = Command::new(agent_bin());
        c.arg("--netns")
            .arg(&self.ns.name)
            .arg("--pin-dir")
            .arg(&self.pins.path)
            .args(args);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(&mut self.cmd(args))
    }

    /// Output of a command that may fail (e.g. before the agent loaded).
    pub fn try_ok(&self, args: &[&str]) -> Option<String> {
        let out = run(&mut self.cmd(args));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Packets counted under `label`, quietly.
    fn stats_text(&self) -> String {
        let quiet = Agent {
            verbose: false,
            ..*self
        };
        quiet.ok(&["stats"])
    }

    /// The path `peering-agent show` reports for port `iface` ("tc",
    /// "xdp"), if it reports one.
    pub fn port_path(&self, iface: &str) -> Option<String> {
        let quiet = Agent {
            verbose: false,
            ..*self
        };
        let out = quiet.ok(&["show"]);
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["port", _, name, "path", path] if *name == iface => Some(path.to_string()),
                _ => None,
            }
        })
    }

    /// Packets counted under `label` (a `Stat` label such as `fwd_local`).
    pub fn stat(&self, label: &str) -> u64 {
        let out = self.stats_text();
        out.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(label)).then(|| f.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no counter {label} in:\n{out}"))
    }
}

/// One region's gateway with two VPCs, as in AWS: VPC A (10.1.0.0/16,
/// dataplane id 1, route table 1) and VPC B (10.2.0.0/16, id 2, table 2),
/// one /24 subnet of each on a gateway port, a host in each, no routes.
/// The gateway's kernel does not forward: only XDP can.
pub struct IntraRegionLab {
    pub gw: Netns,
    pub a: Netns,
    pub b: Netns,
    pub pins: PinDir,
    pub verbose: bool,
}

impl IntraRegionLab {
    /// The lab, programmed by hand with `peering-agent` subcommands; the
    /// ports (veths) take the default path, TC.
    pub fn new(verbose: bool) -> Self {
        Self::programmed(Self::network(verbose), "auto")
    }

    /// The lab with its ports on the XDP path (`attach --port-path xdp`)
    /// and the hosts' TX checksum offload off (see [`xdp_path_host`]).
    pub fn xdp(verbose: bool) -> Self {
        let r = Self::network(verbose);
        xdp_path_host(&r.a);
        xdp_path_host(&r.b);
        Self::programmed(r, "xdp")
    }

    fn programmed(r: Self, port_path: &str) -> Self {
        // The low-level subcommands leave the kernel alone: the VPC
        // routers' addresses go on the ports by hand (`run` does it).
        r.gw.exec_ok(&["ip", "addr", "add", "10.1.0.1/24", "dev", "vpc-a"]);
        r.gw.exec_ok(&["ip", "addr", "add", "10.2.0.1/24", "dev", "vpc-b"]);
        let ag = r.agent();
        for (port, vpc, cidr, subnet, router, host_ns, host_ip) in [
            (
                "vpc-a",
                "1",
                "10.1.0.0/16",
                "10.1.0.0/24",
                "10.1.0.1",
                &r.a,
                "10.1.0.10",
            ),
            (
                "vpc-b",
                "2",
                "10.2.0.0/16",
                "10.2.0.0/24",
                "10.2.0.1",
                &r.b,
                "10.2.0.10",
            ),
        ] {
            ag.ok(&["attach", "--iface", port, "--port-path", port_path]);
            ag.ok(&[
                "iface",
                "set",
                "--iface",
                port,
                "--vpc",
                vpc,
                "--route-table",
                vpc,
                "--gateway-ip",
                router,
                "--subnet",
                subnet,
            ]);
            ag.ok(&["vpc-cidr", "add", "--vpc", vpc, "--cidr", cidr]);
            ag.ok(&[
                "subnet", "add", "--vpc", vpc, "--cidr", subnet, "--iface", port,
            ]);
            let mac = host_ns.mac("eth0");
            ag.ok(&[
                "neigh", "add", "--iface", port, "--ip", host_ip, "--mac", &mac,
            ]);
        }
        r
    }

    /// Namespaces, links and hosts only: nothing programmed, and no
    /// address on the gateway's ports (`peering-agent run` puts the VPC
    /// routers' addresses, 10.1.0.1 and 10.2.0.1, there itself).
    pub fn network(verbose: bool) -> Self {
        let r = Self {
            gw: Netns::new("gw"),
            a: Netns::new("a"),
            b: Netns::new("b"),
            pins: PinDir::new("pins"),
            verbose,
        };
        veth(&r.gw, "vpc-a", &r.a, "eth0");
        veth(&r.gw, "vpc-b", &r.b, "eth0");
        r.gw.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        host(&r.a, "10.1.0.10/24", "10.1.0.1");
        host(&r.b, "10.2.0.10/24", "10.2.0.1");
        r
    }

    /// Hosts resolve their gateway, as they do when they boot, so the
    /// gateway's kernel learns their MACs (the agent reads them there).
    /// Not needed for reachability (the gateway resolves a host when a
    /// packet for it arrives) but it spares the first packet. Waits until
    /// the router addresses answer (an agent adds them within a poll).
    pub fn hosts_announce(&self) {
        announce(&[(&self.a, "10.1.0.1"), (&self.b, "10.2.0.1")]);
    }

    pub fn agent(&self) -> Agent<'_> {
        Agent {
            ns: &self.gw,
            pins: &self.pins,
            verbose: self.verbose,
        }
    }

    /// Routes each VPC's table to the other through the peering.
    pub fn peer_routes(&self) {
        let ag = self.agent();
        ag.ok(&[
            "route",
            "set",
            "--table",
            "1",
            "--dst",
            "10.2.0.0/16",
            "--local-peer",
            "2",
        ]);
        ag.ok(&[
            "route",
            "set",
            "--table",
            "2",
            "--dst",
            "10.1.0.0/16",
            "--local-peer",
            "1",
        ]);
    }
}
