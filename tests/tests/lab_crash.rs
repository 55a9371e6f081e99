//! A crashed agent costs cross-region traffic less than a second and
//! intra-region traffic nothing, with no operator action: the test plays
//! systemd's part (`Restart=always`, `RestartSec=` of the shipped unit) and
//! kills the agent with SIGKILL under a 10 ms ping. And `ip netns exec`,
//! which hides the host's bpffs, is refused with what to do instead.

use std::{process::Stdio, time::Duration};

use peering_tests::{
    control_lab::{eventually, Proc},
    inter_region::{InterRegionLab, REGION_2},
    lab::{agent_bin, Netns, PinDir},
    teardown,
};

/// `RestartSec=` of the shipped unit, which the test's supervisor honours.
fn restart_sec() -> Duration {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../peering-userspace/systemd/peering-agent@.service"
    );
    let unit = std::fs::read_to_string(path).expect("the agent's unit");
    let ms = unit
        .lines()
        .find_map(|l| {
            l.strip_prefix("RestartSec=")?
                .strip_suffix("ms")?
                .parse()
                .ok()
        })
        .expect("RestartSec=<n>ms in the agent's unit");
    Duration::from_millis(ms)
}
/// The ping interval, and how many crashes one run sees.
const INTERVAL_MS: f64 = 10.0;
const KILLS: usize = 3;
/// Longest acceptable outage of cross-region traffic per crash.
const MAX_OUTAGE_MS: f64 = 1000.0;

static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn verbose() -> bool {
    std::env::var_os("PEERING_TEST_VERBOSE").is_some()
}

/// A ping every 10 ms from `ns` to `dst`, `count` of them, with reply
/// timestamps (-D); waits for it and returns its output.
fn ping_run(ns: &Netns, dst: &str, count: u32) -> Proc {
    let count = count.to_string();
    teardown::spawn(
        ns.cmd(&[
            "ping", "-n", "-D", "-i", "0.01", "-W", "1", "-c", &count, dst,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    )
    .expect("start ping")
}

fn output(mut p: Proc) -> String {
    use std::io::Read as _;
    let mut out = String::new();
    if let Some(mut s) = p.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    let _ = p.0.wait();
    out
}

/// (icmp_seq, receive time in seconds) of every echo reply ping printed.
fn replies(out: &str) -> Vec<(u32, f64)> {
    let mut r: Vec<(u32, f64)> = out
        .lines()
        .filter(|l| l.contains("bytes from") && !l.contains("DUP"))
        .filter_map(|l| {
            let ts = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((seq, ts))
        })
        .collect();
    r.sort_by_key(|(seq, _)| *seq);
    r
}

/// One run of lost pings: how many, and the time from the last reply before
/// it to the first after it, less one interval (the outage as the ping
/// stream saw it).
#[derive(Debug)]
struct Gap {
    lost: u32,
    outage_ms: f64,
    /// Unix time of the first reply after it.
    to: f64,
}

fn gaps(replies: &[(u32, f64)]) -> Vec<Gap> {
    replies
        .windows(2)
        .filter(|w| w[1].0 > w[0].0 + 1)
        .map(|w| Gap {
            lost: w[1].0 - w[0].0 - 1,
            outage_ms: (w[1].1 - w[0].1) * 1000.0 - INTERVAL_MS,
            to: w[1].1,
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Lines of the supervised agent's log that show its start-up steps.
fn startup_log(lab: &InterRegionLab) -> String {
    std::fs::read_to_string(lab.gw2.agent_log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            ["start-up", "AF_XDP", "installed", "bound at"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_killed_agent_is_restarted_and_cross_region_traffic_resumes_within_a_second() {
    let _serial = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = InterRegionLab::new(verbose(), &[]);
    lab.peer_a_c_and_b_c();
    lab.supervise_agent(2, restart_sec());
    assert!(
        eventually(Duration::from_secs(15), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C across regions"
    );
    assert!(
        eventually(Duration::from_secs(5), || lab.b.ping("10.3.0.10", 1)),
        "B reaches C in region 2"
    );

    // Kills one and a half seconds into the stream and every two seconds
    // after; the stream runs two seconds past the last.
    let count = ((1.5 + 2.0 * KILLS as f64) * 1000.0 / INTERVAL_MS) as u32;
    let across = ping_run(&lab.a, "10.3.0.10", count);
    let within = ping_run(&lab.b, "10.3.0.10", count);
    std::thread::sleep(Duration::from_millis(1500));
    let sup = lab.gw2.supervisor.as_ref().expect("supervised agent");
    let mut kills = Vec::new();
    for k in 0..KILLS {
        let at = sup.kill9();
        kills.push((at, unix_now()));
        if k + 1 < KILLS {
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let across = replies(&output(across));
    let within = replies(&output(within));
    let starts = sup.starts();
    let log = startup_log(&lab);

    let g = gaps(&across);
    println!("cross-region A -> C, {KILLS} kill -9 of the us-west-2 agent, ping every 10 ms:");
    for gap in &g {
        println!(
            "  {} lost ({:.0} ms at 10 ms each), outage {:.0} ms",
            gap.lost,
            f64::from(gap.lost) * INTERVAL_MS,
            gap.outage_ms
        );
    }
    for ((at, wall), start) in kills.iter().zip(starts.iter().skip(1)) {
        let back = g
            .iter()
            .find(|gap| *wall <= gap.to)
            .map(|gap| format!("{:.0} ms", (gap.to - wall) * 1000.0));
        println!(
            "  kill at {wall:.3}: agent started again after {} ms, first reply after {}",
            start.duration_since(*at).as_millis(),
            back.as_deref().unwrap_or("(no gap seen)")
        );
    }
    println!("the agent's start-up, every start:\n{log}");
    assert_eq!(
        starts.len(),
        KILLS + 1,
        "the supervisor restarted every kill"
    );
    assert_eq!(
        within.len() as u32,
        count,
        "intra-region B -> C lost {} of {count}: {:?}",
        count - within.len() as u32,
        gaps(&within)
    );
    assert!(
        across.last().is_some_and(|(seq, _)| *seq > count - 100),
        "A -> C resumed after the last kill: {g:?}\n{log}"
    );
    for gap in &g {
        assert!(
            gap.outage_ms < MAX_OUTAGE_MS && f64::from(gap.lost) * INTERVAL_MS < MAX_OUTAGE_MS,
            "outage {gap:?} of {g:?}\n{log}"
        );
    }
}

/// `ip netns exec NS peering-agent …` cannot see the host's bpffs (ip
/// remounts /sys): it is refused before anything is loaded, naming the
/// way that works, and that way works.
#[test]
fn ip_netns_exec_is_refused_with_what_to_do_instead() {
    let gw = Netns::new("gw");
    let pins = PinDir::new("pins");
    let pin_dir = pins.path.to_string_lossy().into_owned();
    let agent = agent_bin();
    let agent = agent.to_string_lossy();
    let credential = std::env::temp_dir().join("peering-no-such-credential.json");
    let credential = credential.to_string_lossy();
    for args in [
        vec!["show"],
        vec!["load"],
        vec![
            "run",
            "--region",
            REGION_2,
            "--controller",
            "http://127.0.0.1:9",
            "--credential",
            &credential,
        ],
    ] {
        let mut argv = vec![&*agent, "--pin-dir", &pin_dir];
        argv.extend(&args);
        let out = peering_tests::lab::run(&mut gw.cmd(&argv));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains(&format!("peering-agent --netns {} …", gw.name)),
            "{args:?}: {err}"
        );
        assert!(!err.contains("mount -t bpf"), "{args:?}: {err}");
        assert!(!pins.path.exists(), "{args:?} created pins");
    }
    let load = peering_tests::lab::Agent {
        ns: &gw,
        pins: &pins,
        verbose: false,
    };
    assert!(load.ok(&["load"]).contains("dataplane loaded"));
}
