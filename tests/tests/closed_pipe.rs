//! No binary panics when the reader of its output has gone
//! (`peering-agent show | head -1`): each printing command runs with its
//! stdout on a pipe whose read end is already closed, and must end with
//! status 0 and no "panicked" on stderr.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    process::{Command, Stdio},
};

use peering_tests::{
    control_lab::ControlPlane,
    lab::{agent_bin, bin, run, Netns, PinDir, TempPath},
};
use peering_userspace::{agent::TUNNEL_STATS_FILE, gateway::TunnelStats};

/// The write end of a pipe whose read end is closed.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both are fresh descriptors of ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// Runs `cmd` printing into a closed pipe; it must exit 0 without a panic.
fn quiet_on_closed_pipe(what: &str, cmd: &mut Command) {
    let out = run(cmd
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
}

#[test]
fn printing_commands_end_quietly_when_the_reader_is_gone() {
    // peering-agent: load, show, stats on a pinned dataplane; tunnel-stats
    // from a state directory.
    let ns = Netns::new("pipe");
    let pins = PinDir::new("pipe-pins");
    let agent = |args: &[&str]| {
        let mut c = Command::new(agent_bin());
        c.arg("--netns")
            .arg(&ns.name)
            .arg("--pin-dir")
            .arg(&pins.path)
            .args(args);
        c
    };
    quiet_on_closed_pipe("peering-agent load", &mut agent(&["load"]));
    for args in [&["show"][..], &["show", "--json"], &["stats"]] {
        quiet_on_closed_pipe(&format!("peering-agent {args:?}"), &mut agent(args));
    }
    let state = TempPath::new("pipe-state");
    std::fs::create_dir_all(&state.path).unwrap();
    let stats = serde_json::to_vec(&TunnelStats::default()).unwrap();
    std::fs::write(state.path.join(TUNNEL_STATS_FILE), stats).unwrap();
    let dir = state.path.to_string_lossy().into_owned();
    quiet_on_closed_pipe(
        "peering-agent tunnel-stats",
        &mut agent(&["tunnel-stats", "--state-dir", &dir]),
    );

    // peering-controld create-account prints the token; peerctl a table.
    let cp = ControlPlane::start(false);
    quiet_on_closed_pipe(
        "peering-controld create-account",
        Command::new(bin("peering-controld"))
            .args(["create-account", "--account", "444444444444", "--db"])
            .arg(&cp.db),
    );
    let who = cp.account("111111111111");
    cp.create_vpc(&who, "us-east-1", "10.1.0.0/16");
    for output in ["table", "json"] {
        quiet_on_closed_pipe(
            &format!("peerctl describe-vpcs --output {output}"),
            &mut cp.peerctl_cmd(&who, "us-east-1", &["describe-vpcs", "--output", output]),
        );
    }
}
