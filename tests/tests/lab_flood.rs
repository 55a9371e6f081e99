//! An unauthenticated flood on the underlay: forged datagrams from the
//! router namespace to gateway 2's tunnel port must neither grow the
//! gateway's state nor stall the tunnel (see `peering_tests::inter_region`
//! for the lab, `src/bin/udp-flood.rs` for the sender).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use peering_tests::{
    control_lab::eventually,
    inter_region::{Gateway, InterRegionLab, REGION_1, REGION_2, UNDERLAY_2},
};

/// Datagrams per flood: header-shaped first, then random bytes.
const FLOOD: u64 = 60_000;
/// Seconds each flood is spread over.
const FLOOD_SECS: &str = "3";
/// Generous: a stalled tunnel answers in seconds, a working one in
/// milliseconds. Not a speed benchmark.
const NORMAL_RTT_MS: f64 = 100.0;
/// A stats file with a handful of peerings and gateways is a few KiB; the
/// unbounded map reached megabytes.
const MAX_STATS_BYTES: u64 = 64 * 1024;

fn verbose() -> bool {
    std::env::var_os("PEERING_TEST_VERBOSE").is_some()
}

/// Received count and the round-trip summary (min, avg, max ms) of ping.
#[derive(Debug, Default)]
struct PingSummary {
    sent: u32,
    received: u32,
    rtt: Option<(f64, f64, f64)>,
}

fn summary(out: &str) -> PingSummary {
    let mut s = PingSummary::default();
    for line in out.lines() {
        if let Some((tx, rest)) = line.split_once(" packets transmitted, ") {
            s.sent = tx.trim().parse().unwrap_or(0);
            s.received = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
        if let Some((_, v)) = line.split_once(" = ") {
            if line.starts_with("rtt") {
                let n: Vec<f64> = v.split(['/', ' ']).filter_map(|x| x.parse().ok()).collect();
                if n.len() >= 3 {
                    s.rtt = Some((n[0], n[1], n[2]));
                }
            }
        }
    }
    s
}

/// A child process killed if the test ends before it is waited for.
struct Reaped(Option<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ping_c(lab: &InterRegionLab, count: u32) -> Command {
    let count = count.to_string();
    let mut c = lab.a.cmd(&[
        "ping",
        "-n",
        "-q",
        "-i",
        "0.05",
        "-W",
        "2",
        "-c",
        &count,
        "10.3.0.10",
    ]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn peer_a_with_c(lab: &InterRegionLab) {
    let v = lab.vpcs();
    lab.wait_for_keys();
    lab.peer(
        (&lab.acct_a, REGION_1, &v.a, &v.rtb_a, "10.1.0.0/16"),
        (&lab.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
    );
    assert!(
        eventually(Duration::from_secs(5), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C"
    );
}

/// Sends one flood from the router namespace; returns how many left.
fn flood(lab: &InterRegionLab, mode: &str, epoch: u32) -> u64 {
    let to = format!("{UNDERLAY_2}:51900");
    let count = FLOOD.to_string();
    let epoch = epoch.to_string();
    let out = lab.wan.exec_ok(&[
        env!("CARGO_BIN_EXE_udp-flood"),
        &to,
        &count,
        mode,
        "--epoch",
        &epoch,
        "--secs",
        FLOOD_SECS,
    ]);
    out.trim()
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("udp-flood said {out:?}"))
}

/// CPU time (clock ticks) of the agent's thread named `tunnel`.
fn tunnel_ticks(gw: &Gateway) -> Option<u64> {
    let pid = gw.agent_pid()?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        if comm.trim() != "tunnel" {
            return None;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        // Fields after the command's closing parenthesis start at field 3;
        // utime and stime are fields 14 and 15.
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    })
}

/// Forged datagrams with random claimed sender ids (header-shaped, so each
/// meets the AEAD) and uniformly random ones: the stats keep only
/// registered gateways and stay small, the flood shows in the fixed
/// counters of failures before authentication, and a ping across regions
/// is answered while it runs and, without loss, after it.
#[test]
fn an_underlay_flood_grows_no_state_and_stalls_nothing() {
    let lab = InterRegionLab::new(verbose(), &[]);
    peer_a_with_c(&lab);
    let epoch = lab.gw2.tunnel_stats().current_epoch.expect("a current key");
    let before = lab.gw2.tunnel_stats();
    let ticks_before = tunnel_ticks(&lab.gw2);
    let started = Instant::now();

    // 8 s of pings at 20/s cover both floods.
    let mut pinger = Reaped(Some(ping_c(&lab, 160).spawn().expect("ping")));
    let sent_header = flood(&lab, "header", epoch);
    let sent_random = flood(&lab, "random", epoch);
    let flood_secs = started.elapsed().as_secs_f64();
    let ticks_after = tunnel_ticks(&lab.gw2);
    let during = {
        let child = pinger.0.take().expect("ping running");
        let out = child.wait_with_output().expect("ping output");
        summary(&String::from_utf8_lossy(&out.stdout))
    };

    let out = peering_tests::lab::run(&mut ping_c(&lab, 40));
    let after = summary(&String::from_utf8_lossy(&out.stdout));
    // Let the exporter write counters that include the whole flood.
    std::thread::sleep(Duration::from_millis(600));
    let stats = lab.gw2.tunnel_stats();
    let stats_bytes = std::fs::metadata(lab.gw2.stats_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let ticks_per_sec = 100.0; // USER_HZ
    let cpu = ticks_before
        .zip(ticks_after)
        .map(|(b, a)| (a - b) as f64 / ticks_per_sec / flood_secs * 100.0);
    let pre_auth = stats.drops_before_auth() - before.drops_before_auth();
    let forged = stats.drop_count("auth_failed") - before.drop_count("auth_failed");
    eprintln!(
        "flood: sent {sent_header} header-shaped + {sent_random} random in {flood_secs:.1} s; \
         tunnel thread CPU {cpu:?} %; during: {during:?}; after: {after:?}; \
         stats file {stats_bytes} bytes, {} gateway entries; \
         dropped before auth {pre_auth} (auth_failed {forged}); socket counters {:?}",
        stats.gateways.len(),
        stats.sockets
    );

    assert_eq!(after.received, after.sent, "no loss after the flood");
    let (_, _, max) = after.rtt.expect("rtt after");
    assert!(max < NORMAL_RTT_MS, "rtt after the flood: {after:?}");
    assert!(
        during.received * 2 >= during.sent,
        "the tunnel answered while flooded: {during:?}"
    );
    assert!(stats_bytes < MAX_STATS_BYTES, "stats file: {stats_bytes}");
    let registered = [REGION_1, REGION_2];
    assert!(
        stats
            .gateways
            .keys()
            .all(|g| registered.contains(&g.as_str())),
        "only registered gateways: {:?}",
        stats.gateways.keys()
    );
    // The veth and the AF_XDP ring may lose part of a flood, not most.
    assert!(
        pre_auth >= (sent_header + sent_random) / 2,
        "flood counted before authentication: {pre_auth} of {}",
        sent_header + sent_random
    );
    assert!(
        forged >= sent_header / 2,
        "header-shaped met the AEAD: {forged}"
    );
    let from_1 = |s: &peering_userspace::gateway::TunnelStats| {
        s.gateways.get(REGION_1).copied().unwrap_or_default()
    };
    assert!(from_1(&stats).opened > from_1(&before).opened);
}
