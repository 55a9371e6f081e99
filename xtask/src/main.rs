//! `cargo xtask`: one-command setup, build, test, fuzzing, benchmark, soak and demo.
//!
//! This crate depends on nothing that needs the eBPF toolchain, so it
//! builds on a fresh machine and can install that toolchain itself.

mod fuzz;
mod setup;

use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "peering development tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building, testing and the demo need (idempotent).
    Setup {
        /// Also install the peers `cargo xtask bench --compare` measures
        /// against: wireguard-go and wireguard-tools (Debian) and
        /// boringtun-cli 0.7.1 (cargo).
        #[arg(long)]
        bench: bool,
    },
    /// Build every crate, the eBPF object included.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Set up if needed, then run every test, privileged ones included.
    Test {
        /// Skip the setup step.
        #[arg(long)]
        no_setup: bool,
        /// Seconds each fuzz target runs after the test suite (0: none).
        #[arg(long, default_value_t = 5)]
        fuzz_secs: u64,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the fuzz targets (cargo-fuzz, nightly) and run each for a while;
    /// fails if any finds a crash, naming the reproducer.
    Fuzz {
        #[arg(long)]
        no_setup: bool,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Run only this target (default: every target `cargo fuzz list` shows).
        target: Option<String>,
    },
    /// Set up if needed, then report dataplane performance figures.
    Bench {
        #[arg(long)]
        no_setup: bool,
        /// Object counts for store-bench (SQLite and a real etcd), e.g.
        /// 1000,10000 for a quicker run.
        #[arg(long, default_value = "1000,10000,100000")]
        store_sizes: String,
        /// Route counts for route-bench (agent convergence after a restart,
        /// CreateRoute to the dataplane), e.g. 1000 for a quicker run.
        #[arg(long, default_value = "1000,100000")]
        route_sizes: String,
        /// Run route-bench alone (a few minutes).
        #[arg(long)]
        convergence: bool,
        /// Run compare-bench alone: peering beside Linux forwarding,
        /// wireguard-go and boringtun on the same labs (about 10 minutes).
        #[arg(long, conflicts_with = "convergence")]
        compare: bool,
        /// Runs per cell of compare-bench (median and min–max).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Set up if needed, build (debug), and run the two-region lab under
    /// churn, restarts and floods for a while, measuring steady flows and
    /// resources; fails if a resource grows or intra-region traffic is lost.
    Soak {
        #[arg(long)]
        no_setup: bool,
        /// How long to run.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
    },
    /// Set up if needed, build, and run the lab demo.
    Demo {
        #[arg(long)]
        no_setup: bool,
        /// Keep the lab up until Ctrl-C.
        #[arg(long)]
        hold: bool,
        /// `etcd`: the multi-host story (3 etcd members, 2 controllers over
        /// TLS, failures on screen) instead of the SQLite one.
        #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "etcd"])]
        store: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Setup { bench } => {
            setup::run()?;
            if bench {
                setup::bench_peers()?;
            }
            Ok(())
        }
        Cmd::Build { release } => build(release),
        Cmd::Test {
            no_setup,
            fuzz_secs,
            args,
        } => {
            if !no_setup {
                setup::run()?;
            }
            test(&args, fuzz_secs)
        }
        Cmd::Fuzz {
            no_setup,
            secs,
            target,
        } => {
            if !no_setup {
                setup::run()?;
            }
            let outcomes = fuzz::run(secs, target.as_deref())?;
            let failed = fuzz::failed(&outcomes);
            println!(
                "{} passed, {} failed",
                outcomes.len() - failed.len(),
                failed.len()
            );
            if !failed.is_empty() {
                bail!("fuzz targets crashed: {}", failed.join(", "));
            }
            Ok(())
        }
        Cmd::Bench {
            no_setup,
            store_sizes,
            route_sizes,
            convergence,
            compare,
            runs,
        } => {
            if !no_setup {
                setup::run()?;
                setup::bench_peers()?;
            }
            build(true)?;
            let all = [
                "compare-bench",
                "peering-bench",
                "tunnel-bench",
                "underlay-bench",
                "store-bench",
                "route-bench",
            ];
            let benches: &[&str] = match (convergence, compare) {
                (true, _) => &["route-bench"],
                (_, true) => &["compare-bench"],
                _ => &all,
            };
            let runs = runs.to_string();
            for &bench in benches {
                println!("\n== {bench}");
                let mut args = vec![
                    "run",
                    "-q",
                    "--release",
                    "-p",
                    "peering-tests",
                    "--bin",
                    bench,
                ];
                match bench {
                    "store-bench" => args.extend(["--", "--sizes", &store_sizes]),
                    "route-bench" => args.extend(["--", "--routes", &route_sizes]),
                    "compare-bench" => args.extend(["--", "--runs", &runs]),
                    _ => {}
                }
                cargo(&args)?;
            }
            Ok(())
        }
        Cmd::Soak { no_setup, minutes } => {
            if !no_setup {
                setup::run()?;
            }
            build(false)?;
            let minutes = minutes.to_string();
            cargo(&[
                "run",
                "-q",
                "-p",
                "peering-tests",
                "--bin",
                "soak",
                "--",
                "--minutes",
                &minutes,
            ])
        }
        Cmd::Demo {
            no_setup,
            hold,
            store,
        } => {
            if !no_setup {
                setup::run()?;
            }
            build(false)?;
            let mut args = vec!["run", "-q", "-p", "peering-tests", "--bin", "peering-demo"];
            args.push("--");
            if hold {
                args.push("--hold");
            }
            args.extend(["--store", &store]);
            cargo(&args)
        }
    }
}

fn build(release: bool) -> Result<()> {
    let mut args = vec!["build", "--workspace", "--bins"];
    if release {
        args.push("--release");
    }
    cargo(&args)
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Builds the binaries the end-to-end tests drive, runs the whole suite,
/// then each fuzz target for `fuzz_secs` seconds (each counts as one test),
/// and closes with one summary line over all of it.
fn test(extra: &[String], fuzz_secs: u64) -> Result<()> {
    // A test run builds everything once; incremental state would only add
    // gigabytes to the target directory (a developer's own setting wins).
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    build(false)?;
    sweep_stale_labs();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(&cargo)
        .args(["test", "--workspace"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut totals = Totals::default();
    use std::io::BufRead as _;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    println!(
        "\nall test binaries: {} passed, {} failed, {} ignored",
        totals.passed, totals.failed, totals.ignored
    );
    if fuzz_secs > 0 {
        totals.add_fuzz(fuzz_secs);
    }
    println!("{} passed, {} failed", totals.passed, totals.failed);
    if !status.success() || totals.failed > 0 {
        bail!("tests failed");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Removes lab namespaces left by test processes that no longer exist (a
/// killed run cannot clean up after itself). Lab names are `pt<pid>-…`.
fn sweep_stale_labs() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = lab_pid(name) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            println!("xtask: removing stale lab namespace {name}");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The owning process of a lab namespace name `pt<pid>-<n>-<role>`.
fn lab_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("pt")?;
    let (pid, tail) = rest.split_once('-')?;
    tail.contains('-').then_some(())?;
    pid.parse().ok()
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Runs every fuzz target briefly; each counts as one test, and a
    /// build failure as one failed test.
    fn add_fuzz(&mut self, secs: u64) {
        println!("\nfuzz targets, {secs} s each:");
        match fuzz::run(secs, None) {
            Ok(outcomes) => {
                let failed = fuzz::failed(&outcomes);
                let (n, bad) = (outcomes.len() as u64, failed.len() as u64);
                println!("fuzz targets: {} passed, {bad} failed {failed:?}", n - bad);
                self.passed += n - bad;
                self.failed += bad;
            }
            Err(e) => {
                println!("fuzz targets: not run: {e:#}");
                self.failed += 1;
            }
        }
    }

    /// Adds a libtest summary: `test result: ok. 3 passed; 0 failed; 1 ignored; …`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn lab_names_carry_their_pid() {
        assert_eq!(super::lab_pid("pt1234-0-gw"), Some(1234));
        assert_eq!(super::lab_pid("pt1234-gw"), None);
        assert_eq!(super::lab_pid("prod-ns"), None);
        assert_eq!(super::lab_pid("ptx-0-gw"), None);
    }

    #[test]
    fn summary_lines_are_summed() {
        let mut t = Totals::default();
        t.add("test result: ok. 11 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.64s");
        t.add("test result: FAILED. 2 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (13, 1, 3));
    }
}
