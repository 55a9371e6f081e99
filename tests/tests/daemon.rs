//! The `peering-controld` binary: token issuing and serving, driven as a
//! child process, with `peerctl` talking to it.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn daemon_bin() -> std::path::PathBuf {
    peering_tests::lab::bin("peering-controld")
}

/// Kills the daemon if a test fails before stopping it.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn create_account_then_serve_and_call() {
    let dir = TempDir::new("daemon");
    let db = dir.path().join("state.db");
    let out = Command::new(daemon_bin())
        .args(["create-account", "--account", A, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    let bad = Command::new(daemon_bin())
        .args(["create-token", "--account", "12", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let port = closed_port();
    // Dies with the test even if the test process is killed.
    let child = peering_tests::teardown::die_with_parent(&mut Command::new(daemon_bin()))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--regions",
            "us-east-1,ap-south-1",
            "--db",
        ])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(Some(child));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&url, "/v1/healthz", None).status, 200);

    let run = |args: &[&str]| {
        Command::new(peering_tests::lab::bin("peerctl"))
            .env_clear()
            .env("PEERING_ENDPOINT", &url)
            .env("PEERING_TOKEN", &token)
            .env("PEERING_REGION", "ap-south-1")
            .env("PEERING_CONFIG_FILE", dir.path().join("none"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["create-vpc", "--cidr-block", "10.0.0.0/16"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["describe-regions"]);
    let regions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(regions.to_string().contains("ap-south-1"));

    // Stop it and check the log never contains the token.
    let mut child = daemon.0.take().unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("CreateVpc"), "{log}");
    assert!(!log.contains(&token));
}
