//! `cargo xtask soak --minutes N`: the two-region lab under churn for N
//! minutes while steady flows are measured.
//!
//! ```text
//! soak [--minutes N] [--verbose]
//! ```
//!
//! The controller rotates the tunnel key every 2 s. Both agents run under a
//! supervisor (as the shipped unit, `Restart=always`). In a loop: a second
//! peering (A↔B) is created and routed, then deleted (every 10 s, one
//! step each 5 s); a route on C's table is added and removed (every 5 s);
//! an agent is killed with SIGKILL and restarted by its supervisor (every
//! 30 s, the two in turn); the controller is killed and started again
//! (every 45 s); a bounded forged-datagram flood hits gateway 2's tunnel
//! port from the router namespace (every 20 s). Meanwhile a ping every
//! 50 ms runs across regions (A→C) and inside region 2 (B→C).
//!
//! Every 10 s it prints RSS and open descriptors of each agent and of
//! peering-controld, the entries of each gateway's route and neighbour
//! maps, the size of each stats file and the key epoch. At the end it
//! prints a summary and exits non-zero if descriptors or map entries
//! doubled after the warm-up, RSS tripled, or the intra-region flow lost a
//! packet. Everything it started is stopped and removed on every exit path
//! (`peering_tests::teardown`), Ctrl-C included.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use peering_tests::{
    control_lab::{eventually, Proc},
    inter_region::{InterRegionLab, Vpcs, REGION_1, REGION_2, UNDERLAY_2},
    lab::{bin, run, unique, Netns},
    say, teardown,
};

/// Ping interval of the steady flows.
const PING_INTERVAL: f64 = 0.05;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const CHURN_EVERY: Duration = Duration::from_secs(5);
const AGENT_KILL_EVERY: Duration = Duration::from_secs(30);
const CONTROLLER_RESTART_EVERY: Duration = Duration::from_secs(45);
const FLOOD_EVERY: Duration = Duration::from_secs(20);
/// Datagrams per flood burst and the seconds it is spread over.
const FLOOD_COUNT: &str = "20000";
const FLOOD_SECS: &str = "2";
/// The supervisor's restart delay (the shipped unit's `RestartSec=`).
const RESTART_SEC: Duration = Duration::from_millis(100);
/// Loss within this long after an agent kill is the restart's.
const RESTART_WINDOW: f64 = 3.0;
/// Samples before this are warm-up.
const WARM_UP: Duration = Duration::from_secs(10);

struct Args {
    minutes: f64,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        minutes: 5.0,
        verbose: std::env::var_os("PEERING_TEST_VERBOSE").is_some(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--minutes" => {
                let v = it.next().ok_or("--minutes needs a value")?;
                a.minutes = v
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0 && *m <= 24.0 * 60.0)
                    .ok_or_else(|| format!("--minutes: not a number of minutes: {v:.40}"))?;
            }
            "--verbose" => a.verbose = true,
            "-h" | "--help" => {
                say!("usage: soak [--minutes N (default 5)] [--verbose]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:.40}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let ok = soak(&args);
    // Everything the lab started is gone by now (its drop ran in `soak`).
    std::process::exit(if ok { 0 } else { 1 });
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// VmRSS in KiB and the number of open descriptors of `pid`.
fn resources(pid: Option<u32>) -> (u64, u64) {
    let Some(pid) = pid else { return (0, 0) };
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

/// Entries of the route and neighbour maps of a gateway's pinned dataplane.
fn map_entries(ns: &Netns, pins: &Path) -> u64 {
    let out = run(Command::new(bin("peering-agent"))
        .args(["--netns", &ns.name, "--pin-dir"])
        .arg(pins)
        .args(["show", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    ["routes", "neighbours"]
        .iter()
        .map(|k| v[k].as_array().map_or(0, |a| a.len() as u64))
        .sum()
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// One resource series: every sample, and which are after the warm-up.
#[derive(Default)]
struct Series {
    name: String,
    values: Vec<(Duration, u64)>,
}

impl Series {
    fn named(name: &str) -> Self {
        Series {
            name: name.into(),
            values: Vec::new(),
        }
    }

    fn first_after_warm_up(&self) -> Option<u64> {
        self.values
            .iter()
            .find(|(t, _)| *t >= WARM_UP)
            .or(self.values.first())
            .map(|(_, v)| *v)
    }

    fn last(&self) -> Option<u64> {
        self.values.last().map(|(_, v)| *v)
    }

    fn max(&self) -> Option<u64> {
        self.values.iter().map(|(_, v)| *v).max()
    }
}

/// Whether a series grew without bound: descriptors, map entries and stats
/// files must not double (plus a little slack for small counts); RSS may
/// grow (allocator, caches) but not triple.
fn grew(name: &str, first: u64, last: u64) -> bool {
    let bound = if name.contains("rss") {
        first * 3 + 4096
    } else {
        first * 2 + 2
    };
    last > bound
}

/// A steady ping whose output (with receive timestamps) goes to a file.
struct Flow {
    name: &'static str,
    proc: Option<Proc>,
    out: PathBuf,
}

impl Flow {
    fn start(name: &'static str, ns: &Netns, dst: &str, secs: f64, dir: &Path) -> Flow {
        let out = dir.join(format!("{}.txt", name.replace(['→', ' '], "-")));
        let file = std::fs::File::create(&out).expect("ping output file");
        let count = ((secs / PING_INTERVAL) as u64).to_string();
        let deadline = (secs.ceil() as u64 + 3).to_string();
        let interval = PING_INTERVAL.to_string();
        let proc = teardown::spawn(
            ns.cmd(&[
                "ping", "-n", "-D", "-i", &interval, "-W", "1", "-c", &count, "-w", &deadline, dst,
            ])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null()),
        )
        .expect("start ping");
        Flow {
            name,
            proc: Some(proc),
            out,
        }
    }

    /// Waits for ping's own end (bounded by its -w deadline) and reads the
    /// output.
    fn finish(&mut self) -> String {
        if let Some(p) = self.proc.take() {
            let _ = p.wait();
        }
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// Sent, received and the send times (estimated) of the lost pings.
struct Loss {
    sent: u64,
    received: u64,
    lost_at: Vec<f64>,
}

fn loss(out: &str) -> Loss {
    let mut sent = 0;
    let mut replies: Vec<(u64, f64)> = Vec::new();
    for l in out.lines() {
        if let Some((tx, _)) = l.split_once(" packets transmitted") {
            sent = tx.trim().parse().unwrap_or(0);
        }
        if !l.contains("bytes from") || l.contains("DUP") {
            continue;
        }
        let ts = l
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .and_then(|t| t.parse().ok());
        let seq = l
            .split("icmp_seq=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|s| s.parse().ok());
        if let (Some(ts), Some(seq)) = (ts, seq) {
            replies.push((seq, ts));
        }
    }
    replies.sort_by_key(|r| r.0);
    replies.dedup_by_key(|r| r.0);
    let received = replies.len() as u64;
    // A lost ping's send time, interpolated between the replies around it.
    let mut lost_at = Vec::new();
    let mut prev: Option<(u64, f64)> = None;
    for &(seq, ts) in &replies {
        let (s0, t0) = prev.unwrap_or((0, ts - seq as f64 * PING_INTERVAL));
        let first = if prev.is_some() { s0 + 1 } else { 1 };
        for s in first..seq {
            let frac = (s - s0) as f64 / (seq - s0).max(1) as f64;
            lost_at.push(t0 + frac * (ts - t0));
        }
        prev = Some((seq, ts));
    }
    let (s_last, t_last) = prev.unwrap_or((0, unix_now()));
    for s in s_last + 1..=sent {
        lost_at.push(t_last + (s - s_last) as f64 * PING_INTERVAL);
    }
    Loss {
        sent,
        received,
        lost_at,
    }
}

/// The directory of the ping outputs, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("soak"));
        teardown::add_path(&dir);
        std::fs::create_dir_all(&dir).expect("soak directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        teardown::remove_path(&self.0);
    }
}

/// The A↔B peering that comes and goes.
struct Churn {
    pcx: Option<String>,
    route_on: bool,
    creates: u32,
    deletes: u32,
    route_changes: u32,
}

/// Runs a `peerctl` call that must succeed (its output is not needed).
fn peerctl_ok(
    lab: &InterRegionLab,
    who: &peering_tests::control_lab::Account,
    region: &str,
    args: &[&str],
) {
    let out = run(&mut lab.cp.peerctl_cmd(who, region, args));
    assert!(
        out.status.success(),
        "peerctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Churn {
    /// Alternately creates and routes, or unroutes and deletes, A↔B.
    fn peering_step(&mut self, lab: &InterRegionLab, v: &Vpcs) {
        match self.pcx.take() {
            None => {
                self.pcx = Some(lab.peer(
                    (&lab.acct_a, REGION_1, &v.a, &v.rtb_a, "10.1.0.0/16"),
                    (&lab.acct_b, REGION_2, &v.b, &v.rtb_b, "10.2.0.0/16"),
                ));
                self.creates += 1;
            }
            Some(pcx) => {
                for (who, region, rtb, dst) in [
                    (&lab.acct_a, REGION_1, &v.rtb_a, "10.2.0.0/16"),
                    (&lab.acct_b, REGION_2, &v.rtb_b, "10.1.0.0/16"),
                ] {
                    let args = [
                        "delete-route",
                        "--route-table-id",
                        rtb,
                        "--destination-cidr-block",
                        dst,
                    ];
                    peerctl_ok(lab, who, region, &args);
                }
                lab.cp
                    .peering_action(&lab.acct_a, REGION_1, "delete-vpc-peering-connection", &pcx);
                self.deletes += 1;
            }
        }
    }

    /// Adds or removes a more specific route on C's table (to the A↔C
    /// peering; the steady flow's /16 route stays).
    fn route_step(&mut self, lab: &InterRegionLab, v: &Vpcs, pcx_ac: &str) {
        let dst = "10.1.128.0/17";
        if self.route_on {
            let args = [
                "delete-route",
                "--route-table-id",
                &v.rtb_c,
                "--destination-cidr-block",
                dst,
            ];
            peerctl_ok(lab, &lab.acct_c, REGION_2, &args);
        } else {
            lab.cp
                .create_route(&lab.acct_c, REGION_2, &v.rtb_c, dst, pcx_ac);
        }
        self.route_on = !self.route_on;
        self.route_changes += 1;
    }
}

fn soak(args: &Args) -> bool {
    let secs = args.minutes * 60.0;
    say!("soak: {:.1} min, key rotation every 2 s", args.minutes);
    let mut lab = InterRegionLab::new(args.verbose, &["--key-rotation", "2s"]);
    let dir = TempDir::new();
    let dir = dir.0.as_path();
    let (v, pcx_ac, _) = lab.peer_a_c_and_b_c();
    assert!(
        eventually(Duration::from_secs(10), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C"
    );
    assert!(
        eventually(Duration::from_secs(10), || lab.b.ping("10.3.0.10", 1)),
        "B reaches C"
    );
    lab.supervise_agent(1, RESTART_SEC);
    lab.supervise_agent(2, RESTART_SEC);
    assert!(
        eventually(Duration::from_secs(10), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C under the supervised agents"
    );

    let mut flows = [
        Flow::start("A→C", &lab.a, "10.3.0.10", secs, dir),
        Flow::start("B→C", &lab.b, "10.3.0.10", secs, dir),
    ];
    let start = Instant::now();
    let start_unix = unix_now();
    let end = start + Duration::from_secs_f64(secs);
    let first_epoch = lab.gw1.tunnel_stats().current_epoch.unwrap_or(0);
    let mut last_epoch = first_epoch;

    let names = [
        "agent1 rss KiB",
        "agent1 fds",
        "agent2 rss KiB",
        "agent2 fds",
        "controld rss KiB",
        "controld fds",
        "gw1 map entries",
        "gw2 map entries",
        "gw1 stats bytes",
        "gw2 stats bytes",
    ];
    let mut series: Vec<Series> = names.iter().map(|n| Series::named(n)).collect();
    let mut churn = Churn {
        pcx: None,
        route_on: false,
        creates: 0,
        deletes: 0,
        route_changes: 0,
    };
    let mut kills: Vec<f64> = Vec::new();
    let mut controller_restarts = 0u32;
    let mut ctl_at: Vec<f64> = Vec::new();
    let mut floods = 0u32;
    let mut flood: Option<Proc> = None;
    let (mut next_sample, mut next_churn) = (start + SAMPLE_EVERY, start + CHURN_EVERY);
    let (mut next_kill, mut next_ctl) =
        (start + AGENT_KILL_EVERY, start + CONTROLLER_RESTART_EVERY);
    let mut next_flood = start + FLOOD_EVERY;
    let mut churn_tick = 0u32;

    say!(
        "{:>6} {:>9} {:>4} {:>9} {:>4} {:>9} {:>4} {:>5} {:>5} {:>7} {:>7} {:>6} {:>8}",
        "t s",
        "ag1 KiB",
        "fds",
        "ag2 KiB",
        "fds",
        "ctl KiB",
        "fds",
        "map1",
        "map2",
        "stats1",
        "stats2",
        "epoch",
        "restarts"
    );
    loop {
        let now = Instant::now();
        // The last pass only takes a final sample.
        let done = now >= end;
        if let Some(e) = lab.gw1.tunnel_stats().current_epoch {
            last_epoch = last_epoch.max(e);
        }
        if !done && now >= next_churn {
            next_churn += CHURN_EVERY;
            if churn_tick.is_multiple_of(2) {
                churn.peering_step(&lab, &v);
            }
            churn.route_step(&lab, &v, &pcx_ac);
            churn_tick += 1;
        }
        if !done && now >= next_kill {
            next_kill += AGENT_KILL_EVERY;
            let gw = if kills.len().is_multiple_of(2) {
                &lab.gw1
            } else {
                &lab.gw2
            };
            if let Some(s) = &gw.supervisor {
                s.kill9();
                kills.push(unix_now());
            }
        }
        if !done && now >= next_ctl {
            next_ctl += CONTROLLER_RESTART_EVERY;
            ctl_at.push(unix_now());
            lab.cp.restart();
            controller_restarts += 1;
        }
        if !done && now >= next_flood {
            next_flood += FLOOD_EVERY;
            if let Some(p) = flood.take() {
                let _ = p.wait();
            }
            let epoch = lab
                .gw2
                .tunnel_stats()
                .current_epoch
                .unwrap_or(0)
                .to_string();
            let to = format!("{UNDERLAY_2}:51900");
            flood = Some(
                teardown::spawn(
                    lab.wan
                        .cmd(&[])
                        .arg(bin("udp-flood"))
                        .args([&to, FLOOD_COUNT, "header", "--epoch", &epoch])
                        .args(["--secs", FLOOD_SECS])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )
                .expect("start udp-flood"),
            );
            floods += 1;
        }
        if done || now >= next_sample {
            next_sample += SAMPLE_EVERY;
            let t = now - start;
            let pid = |g: &peering_tests::inter_region::Gateway| {
                g.supervisor.as_ref().and_then(|s| s.pid())
            };
            let (r1, f1) = resources(pid(&lab.gw1));
            let (r2, f2) = resources(pid(&lab.gw2));
            let (rc, fc) = resources(lab.cp.pid());
            let m1 = map_entries(&lab.gw1.ns, &lab.gw1.pins.path);
            let m2 = map_entries(&lab.gw2.ns, &lab.gw2.pins.path);
            let s1 = file_size(&lab.gw1.stats_path());
            let s2 = file_size(&lab.gw2.stats_path());
            let row = [r1, f1, r2, f2, rc, fc, m1, m2, s1, s2];
            for (s, v) in series.iter_mut().zip(row) {
                s.values.push((t, v));
            }
            say!(
                "{:>6} {:>9} {:>4} {:>9} {:>4} {:>9} {:>4} {:>5} {:>5} {:>7} {:>7} {:>6} {:>8}",
                t.as_secs(),
                r1,
                f1,
                r2,
                f2,
                rc,
                fc,
                m1,
                m2,
                s1,
                s2,
                last_epoch,
                kills.len() as u32 + controller_restarts
            );
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    if let Some(p) = flood.take() {
        let _ = p.wait();
    }
    let outputs: Vec<(&str, String)> = flows.iter_mut().map(|f| (f.name, f.finish())).collect();

    say!("\nsummary");
    say!("  duration             {:.1} s", elapsed.as_secs_f64());
    say!(
        "  key rotations        {} (epoch {first_epoch} -> {last_epoch})",
        last_epoch.saturating_sub(first_epoch)
    );
    let at = |ts: &[f64]| -> String {
        let t: Vec<String> = ts
            .iter()
            .map(|t| format!("{:.0}", t - start_unix))
            .collect();
        t.join(", ")
    };
    say!(
        "  agent kills          {} (SIGKILL, supervisor restart; at t = {} s)",
        kills.len(),
        at(&kills)
    );
    say!(
        "  controller restarts  {controller_restarts} (at t = {} s)",
        at(&ctl_at)
    );
    say!("  flood bursts         {floods} x {FLOOD_COUNT} datagrams");
    say!(
        "  peering A<->B        {} created, {} deleted; route changes {}",
        churn.creates,
        churn.deletes,
        churn.route_changes
    );
    let mut ok = true;
    for (name, out) in &outputs {
        let l = loss(out);
        let outside: Vec<f64> = l
            .lost_at
            .iter()
            .filter(|t| {
                !kills
                    .iter()
                    .any(|k| **t >= k - 0.5 && **t <= k + RESTART_WINDOW)
            })
            .map(|t| t - start_unix)
            .collect();
        let lost = l.sent.saturating_sub(l.received);
        let shown: Vec<String> = outside.iter().take(10).map(|t| format!("{t:.1}")).collect();
        say!(
            "  flow {name}: sent {}, received {}, lost {lost} ({} outside agent-restart windows{})",
            l.sent,
            l.received,
            outside.len(),
            if shown.is_empty() {
                String::new()
            } else {
                format!(", at t = {} s", shown.join(", "))
            }
        );
        if *name == "B→C" && (lost > 0 || l.sent == 0) {
            say!("  FAIL: the intra-region flow lost packets");
            ok = false;
        }
    }
    say!(
        "  {:<18} {:>10} {:>10} {:>10} {:>10}",
        "series",
        "first*",
        "last",
        "max",
        ""
    );
    for s in &series {
        let (Some(first), Some(last), Some(max)) = (s.first_after_warm_up(), s.last(), s.max())
        else {
            continue;
        };
        let verdict = if grew(&s.name, first, last) {
            ok = false;
            "GREW"
        } else {
            "flat"
        };
        say!(
            "  {:<18} {:>10} {:>10} {:>10} {:>10}",
            s.name,
            first,
            last,
            max,
            verdict
        );
    }
    say!(
        "  (first*: the first sample after {} s of warm-up)",
        WARM_UP.as_secs()
    );
    say!("soak: {}", if ok { "ok" } else { "FAILED" });
    drop(lab);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
PING 10.3.0.10 (10.3.0.10) 56(84) bytes of data.
[100.000] 64 bytes from 10.3.0.10: icmp_seq=1 ttl=62 time=1.0 ms
[100.050] 64 bytes from 10.3.0.10: icmp_seq=2 ttl=62 time=1.0 ms
[100.200] 64 bytes from 10.3.0.10: icmp_seq=5 ttl=62 time=1.0 ms
[100.200] 64 bytes from 10.3.0.10: icmp_seq=5 ttl=62 time=1.0 ms (DUP!)
[100.250] 64 bytes from 10.3.0.10: icmp_seq=6 ttl=62 time=1.0 ms

--- 10.3.0.10 ping statistics ---
7 packets transmitted, 4 received, 42% packet loss, time 300ms
";

    #[test]
    fn lost_pings_are_placed_between_the_replies_around_them() {
        let l = loss(OUT);
        assert_eq!((l.sent, l.received), (7, 4));
        let at: Vec<String> = l.lost_at.iter().map(|t| format!("{t:.3}")).collect();
        assert_eq!(at, ["100.100", "100.150", "100.300"]);
    }

    #[test]
    fn growth_bounds() {
        assert!(!grew("agent1 fds", 27, 56));
        assert!(grew("agent1 fds", 27, 57));
        assert!(!grew("gw1 map entries", 1, 4));
        assert!(!grew("agent1 rss KiB", 30_000, 94_096));
        assert!(grew("agent1 rss KiB", 30_000, 94_097));
    }
}
