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

/// `create-gateway` writes the credential file gateways read (JSON, mode
/// 0600); the controller authenticates its secret until `revoke-gateway`.
#[test]
fn create_and_revoke_gateway_credentials() {
    use peering_userspace::control::store::SqliteStore;
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("daemon-gw");
    let db = dir.path().join("state.db");
    let file = dir.path().join("gw.json");
    let run = |args: &[&str]| {
        Command::new(daemon_bin())
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap()
    };
    // The default regions are us-east-1 and us-west-2.
    let out = run(&["create-gateway", "--region", "mars-1"]);
    assert!(!out.status.success());
    let out = run(&[
        "create-gateway",
        "--region",
        "us-east-1",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let cred: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let id = cred["credential_id"].as_str().unwrap().to_owned();
    let secret = cred["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("gwc-"), "{id}");
    assert_eq!(cred["region"], "us-east-1");
    let printed = run(&["create-gateway", "--region", "us-west-2"]);
    let other: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(other["region"], "us-west-2");

    let store = SqliteStore::open(&db, Default::default()).unwrap();
    let who = store.authenticate_gateway(&secret).unwrap().unwrap();
    assert_eq!(
        (who.credential_id.as_str(), who.region.as_str()),
        (id.as_str(), "us-east-1")
    );
    let out = run(&["revoke-gateway", "--credential-id", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!run(&["revoke-gateway", "--credential-id", &id])
        .status
        .success());
    // A running controller learns of the revocation from its change
    // thread within milliseconds; catching up makes it immediate.
    store.catch_up().unwrap();
    assert_eq!(store.authenticate_gateway(&secret).unwrap(), None);
}
