//! `compare-bench` (`cargo xtask bench --compare`): peering beside what a
//! user would run instead, in one sitting, on the same wiring, with the same
//! generator and sizes.
//!
//! - **intra-region** (the lab of `lab_intra_region`: host A, gateway, host
//!   B): Linux IP forwarding on the gateway vs peering on the path a veth
//!   port takes by default (TC) and on the XDP path (`--port-path xdp`);
//! - **inter-region** (the wiring of `lab_inter_region`: A, gateway 1, a
//!   router, gateway 2, C): plain routing (no encryption), wireguard-go and
//!   boringtun-cli tunnels between the gateways, and peering's sealed
//!   AF_XDP tunnel (real `peering-controld` and agents), with one tunnel
//!   worker and with two (`--workers 2`, two queues on every veth);
//! - **program cost and scale**: `peering-bench --json` (BPF_PROG_TEST_RUN).
//!
//! Figures: received Mpps of 64-byte frames (`peering-pktgen` on CPU 0 of
//! host A, its sink on the far host; 1 or 1,000 UDP flows), Gbit/s of
//! 1,400-byte IP packets the same way, and TCP goodput (iperf3, 1 and 4
//! streams). Every cell is the median of `--runs` runs with min–max. The
//! hosts keep the offloads a veth has (TSO, GSO, TX checksum offload);
//! the rows "hosts' TX offloads off" show every path with TX checksum
//! offload (hence TSO) off, the setting the XDP path needs for TCP.
//!
//! Usage: `compare-bench [--runs N] [--secs S] [--tcp-secs S] [--json]
//! [--paths linux-intra,peering-intra,linux-inter,wireguard-go,boringtun,
//! peering-inter,peering-inter2]`
//! (root; wireguard-go, wg and boringtun-cli on PATH: `cargo xtask setup
//! --bench`). Namespaces and processes are removed on every exit.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use peering_tests::{
    control_lab::eventually,
    inter_region::{self, InterRegionLab, UNDERLAY_1, UNDERLAY_2, WAN_1, WAN_2},
    lab::{self, IntraRegionLab, Netns, TempPath},
    teardown::{self, Proc},
};
use peering_userspace::pktgen::{Run, Sizes, Stop};
use serde_json::{json, Value};

#[derive(Parser)]
struct Opts {
    /// Runs per cell (the median and min–max are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per packet-generator run.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Seconds per iperf3 run (after one omitted warm-up second).
    #[arg(long, default_value_t = 4)]
    tcp_secs: u32,
    /// Print the table as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Measure only these paths (comma-separated; default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    paths: Vec<Which>,
}

/// The paths, as `--paths` names them.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    LinuxIntra,
    PeeringIntra,
    LinuxInter,
    WireguardGo,
    Boringtun,
    PeeringInter,
    PeeringInter2,
}

impl Opts {
    fn runs_path(&self, which: Which) -> bool {
        self.paths.is_empty() || self.paths.contains(&which)
    }
}

/// What one cell measures.
#[derive(Clone, Copy, PartialEq)]
enum Metric {
    /// Received Mpps of 64-byte frames over `flows` UDP flows.
    Mpps64 { flows: u32 },
    /// Received Gbit/s of 1,400-byte IP packets (1,000 flows).
    Gbps1400,
    /// TCP goodput, Gbit/s, over `streams` streams.
    Tcp { streams: u32 },
}

impl Metric {
    fn label(self) -> String {
        match self {
            Metric::Mpps64 { flows: 1 } => "64 B frames, 1 flow (Mpps)".into(),
            Metric::Mpps64 { flows } => format!("64 B frames, {flows} flows (Mpps)"),
            Metric::Gbps1400 => "1400 B packets, 1000 flows (Gbit/s)".into(),
            Metric::Tcp { streams: 1 } => "TCP, 1 stream (Gbit/s)".into(),
            Metric::Tcp { streams } => format!("TCP, {streams} streams (Gbit/s)"),
        }
    }
}

/// Where traffic goes in: host `from` sends to `dst` through the gateway
/// whose MAC is `hop_mac`; `to` receives.
struct Path<'a> {
    from: &'a Netns,
    to: &'a Netns,
    hop_mac: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

/// The median and range of one cell's runs.
#[derive(Clone, Debug)]
struct Cell {
    samples: Vec<f64>,
}

impl Cell {
    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        s
    }
    fn median(&self) -> f64 {
        let s = self.sorted();
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }
    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }
    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
    fn show(&self) -> String {
        format!("{:.3} ({:.3}–{:.3})", self.median(), self.min(), self.max())
    }
}

/// Results: (section, metric label) → column → cell.
type Table = BTreeMap<(usize, String), BTreeMap<&'static str, Cell>>;

const INTRA: usize = 0;
const INTRA_OFFLOAD_OFF: usize = 1;
const INTER: usize = 2;

const LINUX: &str = "Linux forwarding";
const WG_GO: &str = "wireguard-go";
const BORINGTUN: &str = "boringtun 0.7.1";
const PEERING: &str = "peering";
const PEERING_XDP: &str = "peering, XDP port path";
const PEERING_2: &str = "peering, 2 workers";
const COLUMNS: [&str; 6] = [LINUX, WG_GO, BORINGTUN, PEERING, PEERING_XDP, PEERING_2];
/// The columns a ratio to the best alternative is given for.
const OURS: [&str; 3] = [PEERING, PEERING_XDP, PEERING_2];

fn section_name(s: usize) -> &'static str {
    match s {
        INTRA => "intra-region",
        INTRA_OFFLOAD_OFF => "intra-region, hosts' TX offloads off",
        _ => "inter-region",
    }
}

fn main() -> Result<()> {
    let opts = Opts::parse();
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    for tool in ["iperf3", "wireguard-go", "wg", "boringtun-cli"] {
        if !on_path(tool) {
            bail!("{tool} is not on PATH: run `cargo xtask setup --bench`");
        }
    }
    let started = Instant::now();
    let mut table = Table::new();
    let intra = [
        Metric::Mpps64 { flows: 1 },
        Metric::Mpps64 { flows: 1000 },
        Metric::Tcp { streams: 1 },
        Metric::Tcp { streams: 4 },
    ];
    let tcp_only = [Metric::Tcp { streams: 1 }, Metric::Tcp { streams: 4 }];
    let inter = [
        Metric::Tcp { streams: 1 },
        Metric::Tcp { streams: 4 },
        Metric::Mpps64 { flows: 1000 },
        Metric::Gbps1400,
    ];

    if opts.runs_path(Which::LinuxIntra) {
        let lab = linux_intra(true)?;
        measure(&opts, &mut table, INTRA, LINUX, &intra_path(&lab), &intra)?;
        drop(lab);
        let lab = linux_intra(false)?;
        let p = intra_path(&lab);
        measure(&opts, &mut table, INTRA_OFFLOAD_OFF, LINUX, &p, &tcp_only)?;
    }
    if opts.runs_path(Which::PeeringIntra) {
        // The default path of a veth port (TC), hosts' offloads on, then
        // off on the same lab.
        let lab = peering_intra(IntraRegionLab::new(false));
        let p = intra_path(&lab);
        measure(&opts, &mut table, INTRA, PEERING, &p, &intra)?;
        offloads_off(&[&lab.a, &lab.b]);
        measure(&opts, &mut table, INTRA_OFFLOAD_OFF, PEERING, &p, &tcp_only)?;
        drop(lab);
        // The XDP path: TCP only with the hosts' TX checksum offload off
        // (a redirected frame keeps a partial checksum; the connection
        // never comes up), so its TCP rows are in that section alone.
        let lab = peering_intra(IntraRegionLab::xdp(false));
        let p = intra_path(&lab);
        let frames = [Metric::Mpps64 { flows: 1 }, Metric::Mpps64 { flows: 1000 }];
        measure(&opts, &mut table, INTRA, PEERING_XDP, &p, &frames)?;
        measure(
            &opts,
            &mut table,
            INTRA_OFFLOAD_OFF,
            PEERING_XDP,
            &p,
            &tcp_only,
        )?;
    }
    for (which, column, tunnel) in [
        (Which::LinuxInter, LINUX, None),
        (Which::WireguardGo, WG_GO, Some(Wg::Go)),
        (Which::Boringtun, BORINGTUN, Some(Wg::Boringtun)),
    ] {
        if !opts.runs_path(which) {
            continue;
        }
        let net = AltInterRegion::new(tunnel)?;
        measure(&opts, &mut table, INTER, column, &net.path(), &inter)?;
    }
    for (which, column, workers) in [
        (Which::PeeringInter, PEERING, 1),
        (Which::PeeringInter2, PEERING_2, 2),
    ] {
        if !opts.runs_path(which) {
            continue;
        }
        let lab = InterRegionLab::with_workers(false, &[], workers);
        let v = lab.vpcs();
        lab.wait_for_keys();
        lab.peer_a_with_c(&v);
        if !eventually(Duration::from_secs(10), || lab.a.ping("10.3.0.10", 1)) {
            bail!("{column}: A never reached C across regions");
        }
        let p = Path {
            from: &lab.a,
            to: &lab.c,
            hop_mac: lab.gw1.ns.mac("vpc-a"),
            src: Ipv4Addr::new(10, 1, 0, 10),
            dst: Ipv4Addr::new(10, 3, 0, 10),
        };
        measure(&opts, &mut table, INTER, column, &p, &inter)?;
    }
    let ceiling = generator_ceiling(&opts)?;
    let programs = program_cost()?;
    let elapsed = started.elapsed().as_secs_f64();
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&table, &ceiling, &programs, &opts))?
        );
    } else {
        print_markdown(&table, &ceiling, &programs, &opts, elapsed);
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn intra_path(lab: &IntraRegionLab) -> Path<'_> {
    Path {
        from: &lab.a,
        to: &lab.b,
        hop_mac: lab.gw.mac("vpc-a"),
        src: Ipv4Addr::new(10, 1, 0, 10),
        dst: Ipv4Addr::new(10, 2, 0, 10),
    }
}

/// Hosts' TX checksum offload off, which also ends TSO.
fn offloads_off(hosts: &[&Netns]) {
    for h in hosts {
        h.exec_ok(&["ethtool", "-K", "eth0", "tx", "off"]);
    }
}

/// An intra-region lab with the peering between its VPCs routed, the
/// hosts known to the gateway and its ports polled in their own threads.
fn peering_intra(lab: IntraRegionLab) -> IntraRegionLab {
    lab.peer_routes();
    lab.hosts_announce();
    napi_threaded(&lab.gw, &["vpc-a", "vpc-b"]);
    lab
}

/// GRO on the gateway's ports, as a NIC has it: a veth without it (and
/// without XDP) has no NAPI and drops the frames the generator's XDP sends
/// into it, and GRO is what Linux forwarding runs with on real ports.
fn gro_on(gw: &Netns, ports: &[&str]) {
    for port in ports {
        gw.exec_ok(&["ethtool", "-K", port, "gro", "on"]);
    }
}

/// The gateway's ports poll in their own kernel threads (threaded NAPI),
/// which the scheduler places on the CPU the generator leaves free: a
/// veth otherwise runs its peer's receive path on the sending CPU, so the
/// gateway's work and the generator would share CPU 0, where a real
/// gateway has its own cores. Linux forwarding and peering get the same.
fn napi_threaded(gw: &Netns, ports: &[&str]) {
    for port in ports {
        gw.exec_ok(&[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{port}/threaded"),
        ]);
    }
}

/// The intra-region lab with the gateway's kernel forwarding: the VPC
/// routers' addresses on its ports, IP forwarding on, no XDP.
fn linux_intra(host_offloads: bool) -> Result<IntraRegionLab> {
    let lab = IntraRegionLab::network(false);
    let gw = &lab.gw;
    gw.exec_ok(&["ip", "addr", "add", "10.1.0.1/24", "dev", "vpc-a"]);
    gw.exec_ok(&["ip", "addr", "add", "10.2.0.1/24", "dev", "vpc-b"]);
    gw.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    gro_on(gw, &["vpc-a", "vpc-b"]);
    napi_threaded(gw, &["vpc-a", "vpc-b"]);
    if !host_offloads {
        offloads_off(&[&lab.a, &lab.b]);
    }
    lab.hosts_announce();
    if !lab.a.ping("10.2.0.10", 1) {
        bail!("Linux forwarding: A does not reach B");
    }
    Ok(lab)
}

#[derive(Clone, Copy)]
enum Wg {
    Go,
    Boringtun,
}

/// The inter-region wiring with the gateways' kernels forwarding, either
/// in plain (the router knows the VPC blocks) or through a WireGuard
/// tunnel between the gateways' underlay addresses (MTU 1420, the
/// implementations' default).
struct AltInterRegion {
    // Processes stop before the namespaces go.
    daemons: Vec<Proc>,
    _files: Vec<TempPath>,
    /// The daemons' UAPI sockets, removed on drop.
    sockets: Vec<PathBuf>,
    gw1: Netns,
    gw2: Netns,
    wan: Netns,
    a: Netns,
    _b: Netns,
    c: Netns,
}

impl AltInterRegion {
    fn new(tunnel: Option<Wg>) -> Result<Self> {
        let (gw1, gw2, wan) = (Netns::new("cgw1"), Netns::new("cgw2"), Netns::new("cwan"));
        let (a, b, c) = (Netns::new("ca"), Netns::new("cb"), Netns::new("cc"));
        inter_region::wire(&gw1, &gw2, &wan, [&a, &b, &c], (1, 1));
        gw1.exec_ok(&["ip", "addr", "add", "10.1.0.1/24", "dev", "vpc-a"]);
        gw2.exec_ok(&["ip", "addr", "add", "10.3.0.1/24", "dev", "vpc-c"]);
        for gw in [&gw1, &gw2] {
            gw.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        }
        gro_on(&gw1, &["vpc-a", "underlay"]);
        gro_on(&gw2, &["vpc-c", "underlay"]);
        let mut net = AltInterRegion {
            daemons: Vec::new(),
            _files: Vec::new(),
            sockets: Vec::new(),
            gw1,
            gw2,
            wan,
            a,
            _b: b,
            c,
        };
        match tunnel {
            None => {
                net.gw1
                    .exec_ok(&["ip", "route", "add", "10.3.0.0/16", "via", WAN_1]);
                net.gw2
                    .exec_ok(&["ip", "route", "add", "10.1.0.0/16", "via", WAN_2]);
                net.wan
                    .exec_ok(&["ip", "route", "add", "10.1.0.0/16", "via", UNDERLAY_1]);
                net.wan
                    .exec_ok(&["ip", "route", "add", "10.3.0.0/16", "via", UNDERLAY_2]);
            }
            Some(kind) => net.wireguard(kind)?,
        }
        lab::announce(&[(&net.a, "10.1.0.1"), (&net.c, "10.3.0.1")]);
        let reached = eventually(Duration::from_secs(10), || net.a.ping("10.3.0.10", 1));
        if !reached {
            bail!("inter-region alternative: A never reached C");
        }
        Ok(net)
    }

    /// Starts one userspace WireGuard per gateway and peers them.
    fn wireguard(&mut self, kind: Wg) -> Result<()> {
        let keys = [wg_keypair()?, wg_keypair()?];
        let sides = [
            (&self.gw1, UNDERLAY_2, "10.3.0.0/16"),
            (&self.gw2, UNDERLAY_1, "10.1.0.0/16"),
        ];
        for (i, (ns, peer_addr, peer_cidr)) in sides.into_iter().enumerate() {
            // Interface names are global to the UAPI socket directory
            // (/var/run/wireguard/NAME.sock): unique per run and side.
            let n = NEXT_WG.fetch_add(1, Ordering::Relaxed);
            let ifname = format!("wg{}x{n}", std::process::id() % 100_000);
            let sock = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
            teardown::add_path(&sock);
            self.sockets.push(sock.clone());
            let argv: Vec<&str> = match kind {
                Wg::Go => vec!["wireguard-go", "-f", &ifname],
                Wg::Boringtun => vec!["boringtun-cli", "-f", "--disable-drop-privileges", &ifname],
            };
            let daemon = teardown::spawn(
                ns.cmd(&argv)
                    .env("WG_PROCESS_FOREGROUND", "1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .with_context(|| format!("starting {}", argv[0]))?;
            self.daemons.push(daemon);
            if !eventually(Duration::from_secs(10), || sock.exists()) {
                bail!("{} never opened {}", argv[0], sock.display());
            }
            let key = TempPath::new("wg.key");
            std::fs::write(&key.path, &keys[i].0)?;
            let key_path = key.path.to_string_lossy().into_owned();
            self._files.push(key);
            let peer_endpoint = format!("{peer_addr}:51820");
            ns.exec_ok(&[
                "wg",
                "set",
                &ifname,
                "private-key",
                &key_path,
                "listen-port",
                "51820",
                "peer",
                &keys[1 - i].1,
                "endpoint",
                &peer_endpoint,
                "allowed-ips",
                peer_cidr,
            ]);
            ns.exec_ok(&["ip", "link", "set", &ifname, "mtu", "1420", "up"]);
            ns.exec_ok(&["ip", "route", "add", peer_cidr, "dev", &ifname]);
        }
        Ok(())
    }

    fn path(&self) -> Path<'_> {
        Path {
            from: &self.a,
            to: &self.c,
            hop_mac: self.gw1.mac("vpc-a"),
            src: Ipv4Addr::new(10, 1, 0, 10),
            dst: Ipv4Addr::new(10, 3, 0, 10),
        }
    }
}

impl Drop for AltInterRegion {
    fn drop(&mut self) {
        self.daemons.clear();
        for s in &self.sockets {
            teardown::remove_path(s);
        }
    }
}

/// Numbers the WireGuard interfaces of a run.
static NEXT_WG: AtomicU32 = AtomicU32::new(0);

/// A WireGuard key pair (private, public), base64, from `wg`.
fn wg_keypair() -> Result<(String, String)> {
    let private = lab::ok(Command::new("wg").arg("genkey")).trim().to_owned();
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("wg pubkey")?;
    use std::io::Write as _;
    child
        .stdin
        .take()
        .context("wg pubkey stdin")?
        .write_all(private.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("wg pubkey failed");
    }
    Ok((private, String::from_utf8(out.stdout)?.trim().to_owned()))
}

/// Runs every metric `opts.runs` times on `path`, into `table`.
fn measure(
    opts: &Opts,
    table: &mut Table,
    section: usize,
    column: &'static str,
    path: &Path,
    metrics: &[Metric],
) -> Result<()> {
    for &m in metrics {
        let mut cell = Cell {
            samples: Vec::new(),
        };
        for _ in 0..opts.runs {
            let v = match m {
                Metric::Mpps64 { flows } => generate(opts, path, 64, flows)?.0,
                Metric::Gbps1400 => generate(opts, path, 1414, 1000)?.1,
                Metric::Tcp { streams } => tcp(opts, path, streams)?,
            };
            cell.samples.push(v);
        }
        eprintln!(
            "{:<38} {:<18} {:<38} {}",
            section_name(section),
            column,
            m.label(),
            cell.show()
        );
        table
            .entry((section, m.label()))
            .or_default()
            .insert(column, cell);
    }
    Ok(())
}

/// One generator run: (received Mpps, received Gbit/s of IP packets).
fn generate(opts: &Opts, p: &Path, frame: u16, flows: u32) -> Result<(f64, f64)> {
    let plan = lab::udp_plan(
        p.from,
        &p.hop_mac,
        (p.src, p.dst),
        Sizes::Fixed(frame),
        flows,
    )?;
    let r = Run {
        out: lab::eth0(p.from),
        sink: Some(lab::eth0(p.to)),
        plan,
        stop: Stop::After(Duration::from_secs_f64(opts.secs)),
        cpus: vec![0],
        batch: 64,
    }
    .execute()?;
    let packets = r.received_packets.unwrap_or(0) as f64;
    let ip_bits = packets * f64::from(frame - 14) * 8.0;
    Ok((packets / r.seconds / 1e6, ip_bits / r.seconds / 1e9))
}

/// One iperf3 TCP run from `from` to `to`: received Gbit/s.
fn tcp(opts: &Opts, p: &Path, streams: u32) -> Result<f64> {
    let secs = opts.tcp_secs.to_string();
    let streams = streams.to_string();
    let args = [
        "-t",
        &secs,
        "-O",
        "1",
        "-P",
        &streams,
        "--connect-timeout",
        "3000",
    ];
    let v = lab::iperf3(p.from, p.to, &p.dst.to_string(), &args)?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 gave no sum_received")?;
    Ok(bps / 1e9)
}

/// The generator straight into the sink over one veth pair: the most the
/// 64 B rows could show.
fn generator_ceiling(opts: &Opts) -> Result<Cell> {
    let (a, b) = (Netns::new("cda"), Netns::new("cdb"));
    lab::veth(&a, "eth0", &b, "eth0");
    // The sink polls in its own thread, as behind a gateway it runs in
    // the gateway's: the generator has CPU 0 to itself in every row.
    gro_on(&b, &["eth0"]);
    napi_threaded(&b, &["eth0"]);
    let p = Path {
        from: &a,
        to: &b,
        hop_mac: b.mac("eth0"),
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
    };
    let mut cell = Cell {
        samples: Vec::new(),
    };
    for _ in 0..opts.runs {
        cell.samples.push(generate(opts, &p, 64, 1)?.0);
    }
    eprintln!(
        "generator ceiling (64 B, 1 flow, no gateway): {}",
        cell.show()
    );
    Ok(cell)
}

/// The program-cost and scale rows of `peering-bench --json`.
fn program_cost() -> Result<Value> {
    let bench = lab::bin("peering-bench");
    let out = lab::run(Command::new(&bench).arg("--json"));
    if !out.status.success() {
        bail!(
            "peering-bench --json: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("peering-bench JSON")
}

/// peering ÷ the best alternative of its row: Linux forwarding within a
/// region, the better WireGuard between regions (plain routing encrypts
/// nothing: it is the ceiling, not an alternative).
fn ratio(section: usize, row: &BTreeMap<&'static str, Cell>, ours: &str) -> Option<f64> {
    let ours = row.get(ours)?.median();
    let alternatives: &[&str] = if section == INTER {
        &[WG_GO, BORINGTUN]
    } else {
        &[LINUX]
    };
    let best = alternatives
        .iter()
        .filter_map(|c| row.get(c).map(Cell::median))
        .fold(f64::NAN, f64::max);
    (best > 0.0).then(|| ours / best)
}

fn print_markdown(table: &Table, ceiling: &Cell, programs: &Value, opts: &Opts, elapsed: f64) {
    println!(
        "Median of {} runs (min–max); generator on CPU 0, {} s per generator run, \
         iperf3 {} s (+1 s warm-up), everything else unpinned; {} CPUs; {:.0} s in all. \
         Within a region the gateway's ports poll in their own kernel threads \
         (threaded NAPI), so the gateway and the sink run beside the generator, not \
         on its CPU. The generator's own ceiling, straight into the sink over one \
         veth with no gateway: {} Mpps (64 B, 1 flow).\n",
        opts.runs,
        opts.secs,
        opts.tcp_secs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        elapsed,
        ceiling.show()
    );
    println!(
        "| path | figure | {} | peering ÷ best alternative | XDP port path ÷ best alternative | 2 workers ÷ best alternative |",
        COLUMNS.join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(COLUMNS.len() + OURS.len()));
    for ((section, label), row) in table {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|c| row.get(c).map_or("—".into(), Cell::show))
            .collect();
        let ratios: Vec<String> = OURS
            .iter()
            .map(|c| ratio(*section, row, c).map_or("—".into(), |r| format!("{r:.2}×")))
            .collect();
        println!(
            "| {} | {} | {} | {} |",
            section_name(*section),
            label,
            cells.join(" | "),
            ratios.join(" | ")
        );
    }
    println!(
        "\nInter-region, the {LINUX} column is plain routing between the gateways \
         (nothing encrypted): the ceiling, not an alternative.\n"
    );
    println!(
        "| program (BPF_PROG_TEST_RUN, one CPU) | ns/packet, median (min–max) | Mpps | × XDP_DROP floor |"
    );
    println!("|---|---|---|---|");
    for row in programs.as_array().into_iter().flatten() {
        let ns = row["ns_median"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {:.1} ({:.1}–{:.1}) | {:.2} | {:.2} |",
            row["name"].as_str().unwrap_or("?"),
            ns,
            row["ns_min"].as_f64().unwrap_or(f64::NAN),
            row["ns_max"].as_f64().unwrap_or(f64::NAN),
            1000.0 / ns,
            row["ratio_to_floor"].as_f64().unwrap_or(f64::NAN),
        );
    }
}

fn to_json(table: &Table, ceiling: &Cell, programs: &Value, opts: &Opts) -> Value {
    let rows: Vec<Value> = table
        .iter()
        .map(|((section, label), row)| {
            let cells: serde_json::Map<String, Value> = row
                .iter()
                .map(|(c, cell)| {
                    (
                        (*c).to_owned(),
                        json!({
                            "median": cell.median(),
                            "min": cell.min(),
                            "max": cell.max(),
                            "samples": cell.samples,
                        }),
                    )
                })
                .collect();
            json!({
                "path": section_name(*section),
                "figure": label,
                "cells": cells,
                "ratio_to_best_alternative": ratio(*section, row, PEERING),
                "ratio_to_best_alternative_xdp_port_path": ratio(*section, row, PEERING_XDP),
                "ratio_to_best_alternative_2_workers": ratio(*section, row, PEERING_2),
            })
        })
        .collect();
    json!({
        "runs": opts.runs,
        "generator_ceiling_mpps": {
            "median": ceiling.median(),
            "min": ceiling.min(),
            "max": ceiling.max(),
        },
        "rows": rows,
        "programs": programs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(samples: &[f64]) -> Cell {
        Cell {
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn a_cell_is_summed_up_by_median_and_range() {
        let c = cell(&[3.0, 1.0, 2.0]);
        assert_eq!((c.median(), c.min(), c.max()), (2.0, 1.0, 3.0));
        assert_eq!(cell(&[4.0, 1.0, 2.0, 3.0]).median(), 2.5);
        assert!(cell(&[]).median().is_nan());
        assert_eq!(c.show(), "2.000 (1.000–3.000)");
    }

    #[test]
    fn the_ratio_is_to_the_best_alternative_of_the_row() {
        let row = |cells: &[(&'static str, f64)]| -> BTreeMap<&'static str, Cell> {
            cells.iter().map(|&(c, v)| (c, cell(&[v]))).collect()
        };
        // Between regions plain routing is the ceiling, not an alternative.
        let inter = row(&[
            (LINUX, 10.0),
            (WG_GO, 0.5),
            (BORINGTUN, 1.0),
            (PEERING, 2.0),
        ]);
        assert_eq!(ratio(INTER, &inter, PEERING), Some(2.0));
        // Within a region Linux forwarding is the alternative.
        let intra = row(&[(LINUX, 4.0), (PEERING, 2.0)]);
        assert_eq!(ratio(INTRA, &intra, PEERING), Some(0.5));
        // Nothing to compare with, or no peering figure: no ratio.
        assert_eq!(ratio(INTER, &row(&[(PEERING, 2.0)]), PEERING), None);
        assert_eq!(ratio(INTRA, &row(&[(LINUX, 4.0)]), PEERING), None);
        assert_eq!(ratio(INTRA, &intra, PEERING_2), None);
        assert_eq!(
            ratio(INTRA, &row(&[(LINUX, 0.0), (PEERING, 1.0)]), PEERING),
            None
        );
    }
}
