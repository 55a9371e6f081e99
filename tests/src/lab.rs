//! Network-namespace labs: namespaces and veth pairs created for one test
//! and removed when it ends, also when it fails (cleanup runs on drop).
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
/// stderr if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
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
        ip(&["netns", "add", &name]);
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
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
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

/// A host namespace with `addr` (CIDR) on `eth0` and a default route via
/// `gw`. Two veth specifics make it behave like a host on a real link:
/// - GRO on lets frames that XDP redirects into the veth be received (a
///   veth drops redirected frames unless its peer has NAPI);
/// - TX checksum offload off: a veth otherwise sends TCP/UDP with only a
///   partial checksum, which an XDP redirect carries as-is to a receiver
///   that then drops it. A NIC would have completed it on the wire.
pub fn host(ns: &Netns, addr: &str, gw: &str) {
    ns.exec_ok(&["ip", "addr", "add", addr, "dev", "eth0"]);
    ns.exec_ok(&["ip", "route", "add", "default", "via", gw]);
    ns.exec_ok(&["ethtool", "-K", "eth0", "gro", "on", "tx", "off"]);
}

/// A bpffs directory for one gateway, removed on drop.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(role: &str) -> Self {
        let path = Path::new("/sys/fs/bpf").join(unique(role));
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The `peering-agent` binary built next to this test binary (the test
/// runner builds the workspace's binaries first), or `$PEERING_AGENT`.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PEERING_AGENT") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("peering-agent");
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
}

impl Agent<'_> {
    pub fn cmd(&self, args: &[&str]) -> Command {
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

    /// Packets counted under `label` (a `Stat` label such as `fwd_local`).
    pub fn stat(&self, label: &str) -> u64 {
        let out = self.ok(&["stats"]);
        out.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(label)).then(|| f.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no counter {label} in:\n{out}"))
    }
}
