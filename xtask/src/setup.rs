//! `cargo xtask setup`: each step checks first and only acts when needed,
//! so running it again is cheap. A step that cannot be completed says what
//! is missing and how to fix it.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

/// Debian packages: LLVM for bpf-linker, and the tools the tests and demo
/// run (ip, ping, iperf3, tcpdump, ethtool, `dig` for the DNS labs, and
/// `systemd-analyze` to verify the shipped units; installing `systemd`
/// starts nothing where it is not PID 1). etcd: the server the etcd store's tests run (one process per
/// lab namespace), `etcdctl`, and protoc with the well-known `.proto`
/// files, which the `etcd-client` crate's build needs.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "iputils-ping",
    "iperf3",
    "tcpdump",
    "ethtool",
    "bind9-dnsutils",
    "systemd",
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
    "libprotobuf-dev",
];
/// Debian's `etcd-server` enables a system `etcd` service on the root
/// namespace's ports 2379/2380; the tests start their own members.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The bpf-linker release known to work with LLVM 22 and aya 0.14.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The boringtun release the comparison benchmark runs (issue 11 names it).
const BORINGTUN_VERSION: &str = "0.7.1";
/// Debian packages of the userspace WireGuard the benchmark compares with.
const BENCH_PACKAGES: &[&str] = &["wireguard-go", "wireguard-tools"];
/// The cargo-fuzz release `cargo xtask fuzz` is used with (builds with
/// `--locked` on the stable toolchain; runs targets on nightly).
const CARGO_FUZZ_VERSION: &str = "0.13.1";

pub fn run() -> Result<()> {
    if euid() != 0 {
        bail!(
            "setup installs packages and the tests create network namespaces: run as root \
             (e.g. sudo -E cargo xtask ...)"
        );
    }
    apt_packages()?;
    system_etcd_off()?;
    nightly_rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    bpffs()?;
    println!("setup: everything is in place");
    Ok(())
}

fn euid() -> u32 {
    // Reading our effective uid; `id -u` keeps this crate free of libc.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> Result<()> {
    apt_install(PACKAGES)
}

/// What `cargo xtask bench --compare` measures peering against:
/// wireguard-go and `wg` from Debian, boringtun-cli from crates.io.
pub fn bench_peers() -> Result<()> {
    apt_install(BENCH_PACKAGES)?;
    if quiet(Command::new("boringtun-cli").arg("--version")) {
        println!("setup: boringtun-cli present");
        return Ok(());
    }
    println!("setup: building boringtun-cli {BORINGTUN_VERSION} (a few minutes)");
    let status = Command::new("cargo")
        .args([
            "install",
            "boringtun-cli",
            "--version",
            BORINGTUN_VERSION,
            "--locked",
        ])
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install boringtun-cli failed");
    }
    if !quiet(Command::new("boringtun-cli").arg("--version")) {
        bail!("boringtun-cli installed but not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("setup: packages present");
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !apt(&["update", "-q"]) {
        bail!("apt-get update failed: check network access to the Debian mirrors");
    }
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    // No package may start a service while it installs (etcd-server would
    // start etcd): a policy-rc.d that refuses, unless one is there already.
    let policy = NoServiceStarts::install()?;
    let installed = apt(&args);
    drop(policy);
    if !installed {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// A temporary `policy-rc.d` answering 101 ("action forbidden"), which
/// `invoke-rc.d` and `deb-systemd-invoke` obey; removed on drop.
struct NoServiceStarts {
    ours: bool,
}

impl NoServiceStarts {
    fn install() -> Result<Self> {
        let path = std::path::Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(Self { ours: false });
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# cargo xtask setup: no service starts while installing\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {POLICY_RC_D}"))?;
        Ok(Self { ours: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.ours {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// Stops, disables and masks the system etcd service that Debian's
/// package enables, so nothing binds etcd's ports in the root namespace,
/// now or at the next boot. Under systemd and under SysV init alike.
fn system_etcd_off() -> Result<()> {
    let unit = std::path::Path::new("/lib/systemd/system/etcd.service");
    let init = std::path::Path::new("/etc/init.d/etcd");
    if !unit.exists() && !init.exists() {
        return Ok(());
    }
    if std::path::Path::new("/run/systemd/system").exists() {
        quiet(Command::new("systemctl").args(["stop", "etcd.service"]));
    } else if init.exists() {
        // Straight to the script: invoke-rc.d would ask policy-rc.d.
        quiet(Command::new(init).arg("stop"));
    }
    if init.exists() {
        quiet(Command::new("update-rc.d").args(["etcd", "disable"]));
    }
    // `systemctl mask` works without a running systemd (it only links the
    // unit to /dev/null).
    if unit.exists() && !quiet(Command::new("systemctl").args(["mask", "etcd.service"])) {
        bail!("systemctl mask etcd.service failed: the system etcd service would start at boot");
    }
    println!("setup: system etcd service stopped, disabled and masked (tests run their own)");
    Ok(())
}

fn nightly_rust_src() -> Result<()> {
    let has_nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("nightly"))
        .context("rustup not found: install Rust with rustup")?;
    if !has_nightly {
        println!("setup: installing the nightly toolchain (the eBPF crate needs -Z build-std)");
        let ok = quiet(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--no-self-update",
        ]));
        if !ok {
            bail!("rustup toolchain install nightly failed");
        }
    }
    let has_src = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false);
    if !has_src {
        println!("setup: adding rust-src to nightly");
        let ok = quiet(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]));
        if !ok {
            bail!("rustup component add rust-src --toolchain nightly failed");
        }
    } else {
        println!("setup: nightly with rust-src present");
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    if quiet(Command::new("bpf-linker").arg("--version")) {
        println!("setup: bpf-linker present");
        return Ok(());
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)");
    let status = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed; it needs llvm-22-dev (LLVM_PREFIX={LLVM_PREFIX})");
    }
    if !quiet(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker installed but not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

fn cargo_fuzz() -> Result<()> {
    if crate::fuzz::available() {
        println!("setup: cargo-fuzz present");
        return Ok(());
    }
    println!("setup: building cargo-fuzz {CARGO_FUZZ_VERSION} (a few minutes)");
    let status = Command::new("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ])
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed");
    }
    if !crate::fuzz::available() {
        bail!("cargo-fuzz installed but `cargo fuzz` does not run: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

fn bpffs() -> Result<()> {
    if quiet(Command::new("mountpoint").args(["-q", "/sys/fs/bpf"])) {
        println!("setup: bpffs mounted");
        return Ok(());
    }
    if !quiet(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"])) {
        bail!("mounting bpffs failed: mount -t bpf bpf /sys/fs/bpf");
    }
    println!("setup: mounted bpffs on /sys/fs/bpf");
    Ok(())
}
