//! The systemd units shipped in `peering-userspace/systemd/` pass
//! `systemd-analyze verify` (pointed at the built binaries), restart what
//! crashes, and keep their hardening.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use peering_tests::lab::{bin, unique};

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../peering-userspace/systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(unit_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Values of `key=` in a unit, in order.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = TempDir(std::env::temp_dir().join(unique("units")));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let bin_dir = bin("peering-agent")
        .parent()
        .expect("binary directory")
        .to_string_lossy()
        .into_owned();
    // The template is checked as an instance, as systemd would load it.
    let files = [
        ("peering-controld.service", "peering-controld.service"),
        ("peering-agent@.service", "peering-agent@us-east-1.service"),
    ];
    let mut paths = Vec::new();
    for (src, dst) in files {
        let text = unit(src).replace("/usr/local/bin", &bin_dir);
        let path = dir.0.join(dst);
        std::fs::write(&path, text).expect("write unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("systemd-analyze: {e} (install the systemd package: cargo xtask setup)"),
    };
    // verify reports unknown keys and unparsable values but still exits 0.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn units_restart_on_any_exit_and_are_hardened() {
    for name in ["peering-controld.service", "peering-agent@.service"] {
        let u = unit(name);
        assert_eq!(values(&u, "Restart"), ["always"], "{name}");
        assert_eq!(values(&u, "RestartSec"), ["100ms"], "{name}");
        assert_eq!(values(&u, "StartLimitIntervalSec"), ["0"], "{name}");
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("AmbientCapabilities", ""),
        ] {
            assert_eq!(values(&u, key), [value], "{name}: {key}");
        }
        assert!(
            values(&u, "EnvironmentFile")
                .iter()
                .all(|f| f.trim_start_matches('-').starts_with("/etc/peering/")),
            "{name}"
        );
    }
    let controld = unit("peering-controld.service");
    assert_eq!(values(&controld, "CapabilityBoundingSet"), [""]);
    let agent = unit("peering-agent@.service");
    let mut caps: Vec<&str> = values(&agent, "CapabilityBoundingSet")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    caps.sort_unstable();
    assert_eq!(
        caps,
        [
            "CAP_BPF",
            "CAP_IPC_LOCK",
            "CAP_NET_ADMIN",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
            "CAP_PERFMON",
            "CAP_SYS_ADMIN"
        ]
    );
    // The agent opens no database: it writes only its pins, and reads its
    // gateway credential from /etc/peering.
    assert_eq!(values(&agent, "ReadWritePaths"), ["/sys/fs/bpf"]);
    assert!(!agent.contains("PEERING_DB"), "the agent takes no --db");
    assert!(
        values(&agent, "Environment").contains(&"PEERING_CREDENTIAL=/etc/peering/gateway-%i.json"),
        "the agent's credential"
    );
}

/// The example environment files name only variables the binaries read.
#[test]
fn the_agent_example_names_controllers_and_no_database() {
    let env = std::fs::read_to_string(unit_dir().join("examples/agent-us-east-1.env"))
        .expect("example env file");
    assert!(!env.contains("PEERING_DB"));
    assert!(env
        .lines()
        .any(|l| l.starts_with("PEERING_CONTROLLER=https://")));
    let help = Command::new(bin("peering-agent"))
        .args(["run", "--help"])
        .output()
        .expect("peering-agent run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "PEERING_CONTROLLER",
        "PEERING_CREDENTIAL",
        "PEERING_CA_FILE",
    ] {
        assert!(help.contains(var), "run --help names {var}: {help}");
    }
    assert!(!help.contains("--db"), "{help}");
}
