//! `cargo xtask bench`: dataplane figures from BPF_PROG_TEST_RUN.
//!
//! BPF_PROG_TEST_RUN does not restore the frame between repeats, so a
//! forwarded frame loses one TTL per run. Each call therefore runs a fresh
//! frame (TTL 255) 250 times and a run's figure is the mean over many
//! calls; each row is the median of [`RUNS`] runs, with their min and max,
//! and its ratio to the XDP_DROP floor measured the same way.
//!
//! Two tables: program cost (one small world, one case per path, security
//! groups included) and scale
//! (a route hit with 1 to 1,000,000 routes in the ingress route table, and
//! with 10,000 VPCs programmed). `--json` prints the rows as a JSON array
//! of `{name, ns_median, ns_min, ns_max, ratio_to_floor}` instead.

use std::{collections::HashSet, time::Instant};

use clap::Parser;
use ipnet::Ipv4Net;
use peering_common::EgressPort;
use peering_tests::{frame::Frame, verdict::Harness, verdict::LO, world};
use peering_userspace::dataplane::{sg::VpcGroups, RouteTarget};

const REPEAT: u32 = 250;
const CALLS: u32 = 2000;
/// Runs per row; the row is their median.
const RUNS: usize = 3;
/// Route counts of the scale rows.
const SCALE_ROUTES: [usize; 4] = [1, 1_000, 100_000, 1_000_000];
const SCALE_VPCS: u32 = 10_000;
/// The route table the scale rows bind VPC A's port to.
const SCALE_TABLE: u32 = 500;

#[derive(Parser)]
#[command(about = "XDP program cost through BPF_PROG_TEST_RUN")]
struct Opts {
    /// Print the rows as JSON (an array of {name, ns_median, ns_min,
    /// ns_max, ratio_to_floor}) instead of tables.
    #[arg(long)]
    json: bool,
    /// Only the program-cost table (skips the scale rows, which take
    /// minutes to program).
    #[arg(long)]
    cost_only: bool,
}

struct Row {
    name: String,
    verdict: u32,
    runs: Vec<f64>,
}

impl Row {
    fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn max(&self) -> f64 {
        self.runs.iter().copied().fold(0.0, f64::max)
    }
}

/// One run: the mean ns/packet over [`CALLS`] calls of [`REPEAT`] repeats.
fn run_once(h: &Harness, prog: &str, frame: &[u8]) -> (u32, f64) {
    let mut total_ns = 0u64;
    let mut verdict = 0;
    for _ in 0..CALLS {
        let (out, ns) = h.run_prog(prog, LO, frame, REPEAT);
        verdict = out.verdict;
        total_ns += ns;
    }
    (verdict, total_ns as f64 / CALLS as f64)
}

fn measure(h: &Harness, name: impl Into<String>, prog: &str, frame: &[u8]) -> Row {
    let mut row = Row {
        name: name.into(),
        verdict: 0,
        runs: Vec::new(),
    };
    for _ in 0..RUNS {
        let (verdict, ns) = run_once(h, prog, frame);
        row.verdict = verdict;
        row.runs.push(ns);
    }
    row
}

fn udp(dst: [u8; 4]) -> Vec<u8> {
    Frame::udp(world::A_HOST, dst, 64).ttl(255).bytes()
}

fn program_cost(h: &Harness) -> Vec<Row> {
    let spoofed = Frame::udp([10, 2, 0, 7], world::B_HOST, 64)
        .ttl(255)
        .bytes();
    vec![
        measure(
            h,
            "XDP_DROP only (floor)",
            "peering_drop",
            &udp(world::B_HOST),
        ),
        measure(
            h,
            "route hit: forward to local peer",
            "peering_vpc",
            &udp(world::B_HOST),
        ),
        measure(
            h,
            "route hit: blackhole",
            "peering_vpc",
            &udp(world::B_BLACKHOLED),
        ),
        measure(
            h,
            "route miss: pass to kernel",
            "peering_vpc",
            &udp(world::GATEWAY_A),
        ),
        measure(h, "spoofed source: drop", "peering_vpc", &spoofed),
    ]
}

/// Security groups on the local-peer path: a new flow refused after its
/// destination's whole ingress policy of `n` rules was scanned (no rule
/// matches, so nothing is tracked and every repeat is a new flow), then a
/// flow the last of 300 rules allows, whose repeats after the first hit
/// its conntrack entry. Rows to read beside "route hit: forward".
fn sg_cost(h: &mut Harness) -> Vec<Row> {
    let mut rows = Vec::new();
    for n in [1, 60, 300] {
        program_sg(h, n, false);
        let name = format!("security groups: new flow, {n} rules scanned, refused");
        rows.push(measure(h, name, "peering_vpc", &udp(world::B_HOST)));
    }
    program_sg(h, 300, true);
    let name = "security groups: tracked flow (conntrack hit), forward";
    rows.push(measure(h, name, "peering_vpc", &udp(world::B_HOST)));
    rows
}

/// B's host in as many groups as `n` ingress rules need (60 a group), UDP
/// rules on ports 1000.. (the frames go to port 5000); with `allow`, the
/// last rule is port 5000's. Everything else may send anything.
fn program_sg(h: &mut Harness, n: u32, allow: bool) {
    use peering_userspace::control::sg_view::*;
    let anywhere = SgPeer::Cidr("0.0.0.0/0".parse().unwrap());
    let rule = |dp_id: u32, port: u16| SgRuleView {
        rule_id: format!("sgr-{dp_id}"),
        dp_id,
        protocol: SgProtocol::Udp {
            from_port: port,
            to_port: port,
        },
        peer: anywhere.clone(),
    };
    let group = |dp_id: u32, vpc: u32, ingress: Vec<SgRuleView>| SecurityGroupView {
        group_id: format!("sg-{dp_id}"),
        dp_id,
        vpc_dp_id: vpc,
        ingress,
        egress: vec![SgRuleView {
            protocol: SgProtocol::All,
            ..rule(dp_id * 1000, 0)
        }],
    };
    let mut groups = vec![
        group(1, world::VPC_A, vec![]),
        group(2, world::VPC_B, vec![]),
    ];
    let mut ids = Vec::new();
    for g in 0..n.div_ceil(60) {
        let rules = (g * 60..n.min(g * 60 + 60))
            .map(|i| match allow && i == n - 1 {
                true => rule(10 + i, 5000),
                false => rule(10 + i, 1000 + i as u16),
            })
            .collect();
        groups.push(group(3 + g, world::VPC_B, rules));
        ids.push(3 + g);
    }
    let vpc = |id, default, cidr: &str| VpcGroups {
        vpc_dp_id: id,
        default_group_dp_id: default,
        cidrs: vec![cidr.parse().unwrap()],
    };
    let vpcs = [
        vpc(world::VPC_A, 1, "10.1.0.0/16"),
        vpc(world::VPC_B, 2, "10.2.0.0/16"),
    ];
    let eni = InterfaceView {
        eni_id: "eni-b".into(),
        vpc_dp_id: world::VPC_B,
        address: world::B_HOST.into(),
        group_dp_ids: ids,
    };
    h.dp.maps
        .program_security_groups(&vpcs, &groups, &[eni])
        .expect("program security groups");
}

/// A prefix of length 16 to 32 anywhere outside 10.0.0.0/8 (the world's
/// VPCs), so it never shadows the route under test.
fn random_prefix(rng: &mut fastrand::Rng) -> Ipv4Net {
    loop {
        let addr = rng.u32(..);
        if addr >> 24 == 10 {
            continue;
        }
        let len = rng.u8(16..=32);
        return Ipv4Net::new(addr.into(), len).expect("len <= 32").trunc();
    }
}

/// The route hit with 1 to 1,000,000 routes in the ingress route table:
/// VPC A's port is bound to a table holding the route to VPC B, then
/// random prefixes (lengths 16-32, blackholes) are added.
fn scale_routes(h: &mut Harness, quiet: bool) -> Vec<Row> {
    let maps = &mut h.dp.maps;
    let a = world::iface_a(SCALE_TABLE);
    maps.set_iface(LO, 0, a)
        .expect("bind VPC A to the scale table");
    let to_b = RouteTarget::LocalPeer {
        peer_vpc: world::VPC_B,
    };
    maps.set_route(SCALE_TABLE, "10.2.0.0/16".parse().expect("CIDR"), to_b)
        .expect("route to VPC B");
    // Seeded: the same routes in every run.
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut seen = HashSet::new();
    let mut installed = 1;
    let mut rows = Vec::new();
    for n in SCALE_ROUTES {
        let t = Instant::now();
        while installed < n {
            let p = random_prefix(&mut rng);
            if !seen.insert(p) {
                continue;
            }
            if let Err(e) = h.dp.maps.set_route(SCALE_TABLE, p, RouteTarget::Blackhole) {
                note(quiet, &format!("{n} routes: stopped at {installed}: {e:#}"));
                return rows;
            }
            installed += 1;
        }
        note(
            quiet,
            &format!(
                "{} route(s) installed in {:.1} s; maps hold {:.1} MiB",
                thousands(n),
                t.elapsed().as_secs_f64(),
                map_memory() as f64 / (1 << 20) as f64
            ),
        );
        rows.push(measure(
            h,
            format!(
                "route hit, {} route{}",
                thousands(n),
                if n == 1 { "" } else { "s" }
            ),
            "peering_vpc",
            &udp(world::B_HOST),
        ));
    }
    rows
}

/// The route hit with 10,000 more VPCs programmed: each with a block, a
/// subnet on loopback and a route from VPC A's table.
fn scale_vpcs(h: &mut Harness, quiet: bool) -> Vec<Row> {
    let t = Instant::now();
    let port = EgressPort {
        ifindex: LO,
        vlan: 0,
        src_mac: world::HOST_B2,
    };
    for i in 0..SCALE_VPCS {
        let vpc = 1000 + i;
        // 10.128.0.0/9 holds 32,768 /24s: one per VPC.
        let net = Ipv4Net::new([10, 128 + (i >> 8) as u8, i as u8, 0].into(), 24).expect("/24");
        let m = &mut h.dp.maps;
        let done = m
            .add_vpc_cidr(vpc, net)
            .and_then(|_| m.set_subnet(vpc, net, port))
            .and_then(|_| {
                m.set_route(world::RTB_A, net, RouteTarget::LocalPeer { peer_vpc: vpc })
                    .map(|_| ())
            });
        if let Err(e) = done {
            note(quiet, &format!("10,000 VPCs: stopped at {i}: {e:#}"));
            return Vec::new();
        }
    }
    note(
        quiet,
        &format!(
            "{} VPCs installed in {:.1} s",
            thousands(SCALE_VPCS as usize),
            t.elapsed().as_secs_f64()
        ),
    );
    vec![measure(
        h,
        format!("route hit, {} VPCs", thousands(SCALE_VPCS as usize)),
        "peering_vpc",
        &udp(world::B_HOST),
    )]
}

/// Bytes the kernel accounts to this process's maps (`memlock` of every
/// map descriptor; tries and hashes without preallocation report what
/// their entries use).
fn map_memory() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            let line = info.lines().find(|l| l.starts_with("memlock:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

fn note(quiet: bool, msg: &str) {
    if quiet {
        eprintln!("{msg}");
    } else {
        peering_tests::say!("  ({msg})");
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// BPF_PROG_TEST_RUN with repeat > 1 adds the program to the kernel's XDP
/// dispatcher before the runs and removes it after, and each change waits
/// for an RCU grace period: milliseconds on a busy VM, far more than the
/// runs. A program attached to a device stays in the dispatcher, so the
/// bench moves into a network namespace of its own (it goes away with the
/// process, devices and attachments included) and attaches each program it
/// measures, in generic mode, to one end of a veth pair there.
fn private_netns() {
    // SAFETY: unshare(2) with no pointers; called before any thread starts,
    // so the whole process moves.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    for args in [
        &["link", "set", "lo", "up"][..],
        &[
            "link", "add", "pbench0", "type", "veth", "peer", "name", "pbench1",
        ],
    ] {
        let ok = std::process::Command::new("ip").args(args).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip {args:?}");
    }
}

/// The world's harness, its programs held in the dispatcher.
fn harness() -> Harness {
    let mut h = world::harness();
    for (prog, dev) in [("peering_drop", "pbench0"), ("peering_vpc", "pbench1")] {
        let ifindex = peering_userspace::sys::ifindex(dev).expect("veth device");
        h.dp.program_named_mut(prog)
            .expect("program loaded")
            .attach_to_if_index(ifindex, aya::programs::XdpMode::Skb)
            .expect("generic XDP attach");
    }
    h
}

fn main() {
    let opts = Opts::parse();
    private_netns();
    let quiet = opts.json;
    if !quiet {
        peering_tests::say!(
            "BPF_PROG_TEST_RUN, {}-byte frames, {} x {} runs per case, one CPU; \
             median of {RUNS} runs (min-max)",
            64 + 14,
            CALLS,
            REPEAT
        );
    }
    let mut h = harness();
    let mut cost = program_cost(&h);
    cost.extend(sg_cost(&mut h));
    drop(h);
    let floor = cost[0].median();
    if !quiet {
        print_table("program cost", &cost, floor);
    }
    if opts.cost_only {
        if quiet {
            print_json(cost.iter(), floor);
        }
        return;
    }
    let mut h = harness();
    let mut scale = scale_routes(&mut h, quiet);
    drop(h);
    let mut h = harness();
    scale.extend(scale_vpcs(&mut h, quiet));
    drop(h);
    if quiet {
        print_json(cost.iter().chain(&scale), floor);
    } else {
        print_table("scale: route hit (forward to local peer)", &scale, floor);
    }
}

fn print_table(title: &str, rows: &[Row], floor: f64) {
    peering_tests::say!("\n{title}");
    peering_tests::say!(
        "{:<36} {:>8} {:>10} {:>15} {:>8} {:>8}",
        "case",
        "verdict",
        "ns/packet",
        "min-max",
        "Mpps",
        "x floor"
    );
    for r in rows {
        let ns = r.median();
        peering_tests::say!(
            "{:<36} {:>8} {:>10.1} {:>15} {:>8.1} {:>8.2}",
            r.name,
            verdict_name(r.verdict),
            ns,
            format!("{:.1}-{:.1}", r.min(), r.max()),
            1e3 / ns,
            ns / floor
        );
    }
}

fn print_json<'a>(rows: impl Iterator<Item = &'a Row>, floor: f64) {
    let rows: Vec<serde_json::Value> = rows
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "ns_median": r.median(),
                "ns_min": r.min(),
                "ns_max": r.max(),
                "ratio_to_floor": r.median() / floor,
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&rows).expect("JSON of plain numbers");
    let _ = peering_userspace::out::println(&text);
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "ABORTED",
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}
