//! `cargo xtask fuzz`: builds the cargo-fuzz targets of
//! `peering-userspace/fuzz` on the nightly toolchain and runs each for a
//! fixed time, one after the other (one core each, the machine is shared).
//! A target that finds a crash fails the run; libFuzzer leaves the input
//! under `peering-userspace/fuzz/artifacts/TARGET/`.
//!
//! The targets are whatever `cargo fuzz list` reports, so adding one is a
//! file and a `[[bin]]` entry in the fuzz crate, nothing here.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

/// The fuzz crate, relative to the workspace root.
pub const FUZZ_DIR: &str = "peering-userspace/fuzz";
/// Longest input libFuzzer makes: above the largest tunnel datagram (1544
/// bytes) and API scripts of a few dozen calls.
const MAX_LEN: u32 = 4096;
/// A single input taking longer than this is reported as a hang (seconds).
const TIMEOUT: u32 = 10;

/// How a run of one target ended.
pub struct Outcome {
    pub target: String,
    pub passed: bool,
}

/// Names of the targets that crashed.
pub fn failed(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.target.as_str())
        .collect()
}

/// The flags every build and run shares, so `run` reuses the build:
/// release with debug assertions and overflow checks, no sanitizer (the
/// code under test is safe Rust: panics and overflows are what we look
/// for, and ASan would double build and run times).
const BUILD_FLAGS: [&str; 4] = ["-O", "-a", "-s", "none"];

fn cargo_fuzz(root: &Path) -> Command {
    // `rustup run nightly` rather than `cargo +nightly`: under `cargo
    // xtask`, CARGO points at the stable cargo, which cargo-fuzz would use.
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(root)
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        // The fuzz targets never load the XDP object: skip building it.
        .env("AYA_BUILD_SKIP", "1");
    cmd
}

/// Whether `cargo fuzz` can be run.
pub fn available() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn root() -> Result<PathBuf> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("run through `cargo xtask`")?;
    Ok(Path::new(&manifest)
        .parent()
        .context("xtask has a parent directory")?
        .to_path_buf())
}

/// The targets `cargo fuzz list` reports.
pub fn targets() -> Result<Vec<String>> {
    let out = cargo_fuzz(&root()?)
        .args(["list", "--fuzz-dir", FUZZ_DIR])
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Builds all targets (or one).
pub fn build(target: Option<&str>) -> Result<()> {
    let root = root()?;
    let mut cmd = cargo_fuzz(&root);
    cmd.args(["build", "--fuzz-dir", FUZZ_DIR])
        .args(BUILD_FLAGS);
    cmd.args(target);
    let status = cmd.status().context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    Ok(())
}

/// Builds, then runs each target (all, or `only`) for `secs` seconds.
pub fn run(secs: u64, only: Option<&str>) -> Result<Vec<Outcome>> {
    if !available() {
        bail!("cargo-fuzz is not installed: run `cargo xtask setup`");
    }
    let all = targets()?;
    let chosen: Vec<String> = match only {
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_owned()],
        Some(t) => bail!("no fuzz target {t} (have: {})", all.join(", ")),
        None => all,
    };
    build(only)?;
    let mut outcomes = Vec::new();
    for target in chosen {
        let passed = run_one(&target, secs)?;
        outcomes.push(Outcome { target, passed });
    }
    Ok(outcomes)
}

/// Where new corpus entries of a run go: outside the repository, so the
/// committed corpus stays the small seed set (plus what is added on
/// purpose).
fn scratch(root: &Path, target: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    base.join("fuzz-corpus").join(target)
}

/// Runs one target; returns whether it survived. libFuzzer's output goes to
/// `target/fuzz-logs/TARGET.log`; a summary line is printed, and the log's
/// tail with the reproducer on failure.
fn run_one(target: &str, secs: u64) -> Result<bool> {
    let root = root()?;
    let scratch = scratch(&root, target);
    let corpus = root.join(FUZZ_DIR).join("corpus").join(target);
    let artifacts = root.join(FUZZ_DIR).join("artifacts").join(target);
    for dir in [&scratch, &corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_path = scratch
        .parent()
        .expect("has a parent")
        .join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = cargo_fuzz(&root)
        .args(["run", "--fuzz-dir", FUZZ_DIR])
        .args(BUILD_FLAGS)
        .arg(target)
        .arg(&scratch)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-timeout={TIMEOUT}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo fuzz run")?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut log = log;
    let mut reproducer = None;
    let mut runs = None;
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        writeln!(log, "{line}")?;
        if let Some(path) = line.split("Test unit written to ").nth(1) {
            reproducer = Some(path.trim().to_owned());
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            runs = Some(n.trim().to_owned());
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    }
    let status = child.wait()?;
    let runs = runs.unwrap_or_else(|| "?".into());
    if status.success() {
        println!("fuzz {target}: ok, {runs} runs in {secs} s");
        return Ok(true);
    }
    for line in &tail {
        println!("  | {line}");
    }
    println!("fuzz {target}: FAILED after {runs} runs ({status})");
    match reproducer {
        Some(path) => println!(
            "fuzz {target}: reproducer {path}\n  replay: cargo +nightly fuzz run --fuzz-dir {FUZZ_DIR} -O -a -s none {target} {path}"
        ),
        None => println!("fuzz {target}: no reproducer written; log {}", log_path.display()),
    }
    Ok(false)
}
