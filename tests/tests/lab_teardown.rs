//! Labs leave nothing behind: `peering-demo --up` (the two-region lab of
//! the demo: namespaces, peering-controld, two agents) is interrupted by a
//! signal sent to its pid alone, and within a few seconds no process it
//! started is left, nor its namespaces, pin directories or temporary
//! files. Killed with SIGKILL, its processes still die with it. A fixture
//! that panics cleans up as it unwinds.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use peering_tests::{
    control_lab::eventually,
    inter_region::InterRegionLab,
    lab::{bin, run},
    teardown,
};

/// How long the lab may take to come up on a loaded 2-CPU machine.
const UP_WITHIN: Duration = Duration::from_secs(90);
/// How long the teardown may take after the signal.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// Start time (clock ticks since boot) of `pid` when it is alive, not a
/// zombie: a pid that is reused afterwards has another start time.
fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f.first() != Some(&"Z")).then(|| f.get(19)?.parse().ok())?
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every living descendant of `root`, with its start time.
fn descendants(root: u32) -> BTreeMap<u32, u64> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut found = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !found.contains_key(&child) {
                if let Some(t) = started(child) {
                    found.insert(child, t);
                    frontier.push(child);
                }
            }
        }
    }
    found
}

/// Living processes whose command line mentions `prefix` (the demo's
/// namespaces, pin and state directories all carry it).
fn mentioning(prefix: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| {
            started(p).is_some()
                && std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(prefix))
        })
        .collect()
}

fn netns_with(prefix: &str) -> Vec<String> {
    let out = run(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn entries_with(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// What carries `prefix` (processes, namespaces, pins, temp files).
#[derive(Debug, Default, PartialEq)]
struct Traces {
    procs: Vec<u32>,
    netns: Vec<String>,
    pins: Vec<String>,
    temp: Vec<String>,
}

fn traces(prefix: &str) -> Traces {
    Traces {
        procs: mentioning(prefix),
        netns: netns_with(prefix),
        pins: entries_with(Path::new("/sys/fs/bpf"), prefix),
        temp: entries_with(&std::env::temp_dir(), prefix),
    }
}

/// Removes whatever a failed run left with `prefix`, so a failing test
/// does not leave the machine dirty either.
struct Sweep(String);

impl Drop for Sweep {
    fn drop(&mut self) {
        let t = traces(&self.0);
        for p in t.procs {
            // SAFETY: plain kill(2) of a process found above.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
        for n in t.netns {
            let _ = Command::new("ip").args(["netns", "del", &n]).status();
        }
        for p in t.pins {
            let _ = std::fs::remove_dir_all(Path::new("/sys/fs/bpf").join(p));
        }
        for f in t.temp {
            let p = std::env::temp_dir().join(f);
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
}

/// Starts `peering-demo --up` and waits for its "lab up" line.
fn demo_up() -> (teardown::Proc, Sweep) {
    let mut proc = teardown::spawn(
        Command::new(bin("peering-demo"))
            .arg("--up")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .expect("start peering-demo");
    let sweep = Sweep(format!("pt{}-", proc.pid()));
    let stdout = proc.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("lab up:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(UP_WITHIN)
        .expect("peering-demo --up did not come up");
    (proc, sweep)
}

/// Waits for the demo to exit; returns its exit code or killing signal.
fn exit_of(proc: &mut teardown::Proc) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        if let Some(s) = proc.0.try_wait().expect("try_wait") {
            return (s.code(), s.signal());
        }
        assert!(Instant::now() < deadline, "peering-demo did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_signalled_or_killed_demo_leaves_nothing_behind() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let (mut demo, sweep) = demo_up();
        let prefix = sweep.0.clone();
        let kids = descendants(demo.pid());
        let before = traces(&prefix);
        // The controller and two agents; six namespaces; the store's
        // directory (the agents create their pins and state as they start).
        assert!(kids.len() >= 3, "{signal}: children {kids:?}");
        assert!(before.procs.len() >= 3, "{signal}: {before:?}");
        assert!(before.netns.len() >= 6, "{signal}: {before:?}");
        assert!(!before.temp.is_empty(), "{signal}: {before:?}");

        // SAFETY: signalling our own child, by pid (not its group).
        unsafe { libc::kill(demo.pid() as libc::pid_t, signal) };
        let (code, killed_by) = exit_of(&mut demo);
        let still = |kids: &BTreeMap<u32, u64>| -> Vec<u32> {
            kids.iter()
                .filter(|(&p, &t)| started(p) == Some(t))
                .map(|(&p, _)| p)
                .collect()
        };
        let gone = eventually(GONE_WITHIN, || {
            still(&kids).is_empty() && mentioning(&prefix).is_empty()
        });
        assert!(
            gone,
            "signal {signal}: left running: {:?} {:?}",
            still(&kids),
            mentioning(&prefix)
        );
        if signal == libc::SIGKILL {
            // Nothing of the demo runs any more to remove the rest: the
            // sweep does.
            assert_eq!(killed_by, Some(libc::SIGKILL));
        } else {
            assert_eq!(code, Some(teardown::EXIT_INTERRUPTED), "signal {signal}");
            assert_eq!(traces(&prefix), Traces::default(), "signal {signal}");
        }
        drop(sweep);
    }
}

#[test]
fn a_lab_that_panics_removes_everything_while_unwinding() {
    let prefix = format!("pt{}-", std::process::id());
    let _sweep = Sweep(prefix.clone());
    let mut seen = Traces::default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _lab = InterRegionLab::new(false, &[]);
        seen = traces(&prefix);
        panic!("a test failing with the lab up");
    }));
    assert!(result.is_err());
    assert!(
        seen.procs.len() >= 3 && seen.netns.len() >= 6,
        "the lab was up: {seen:?}"
    );
    assert_eq!(traces(&prefix), Traces::default());
}
