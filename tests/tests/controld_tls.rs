//! `peering-controld serve` over TLS on a lab address, and `peerctl`
//! verifying it: the real binaries, inside a network namespace this test
//! creates (the address 198.18.77.1 exists only there).

use peering_tests::lab::{bin, run, Netns, TempPath};
use peering_tests::pki::Pki;
use peering_tests::teardown;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADDR: &str = "198.18.77.1";
const PORT: &str = "7780";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let dir = TempPath::new("ctl-notls");
    std::fs::create_dir_all(&dir.path).unwrap();
    let db = dir.path.join("peering.db");
    for listen in ["0.0.0.0:0", "198.18.0.1:7780", "[::]:0"] {
        let out = run(Command::new(bin("peering-controld"))
            .args(["serve", "--listen", listen, "--db"])
            .arg(&db));
        assert!(!out.status.success(), "{listen}");
        let err = stderr(&out);
        assert!(err.contains("without TLS"), "{listen}: {err}");
        assert!(err.contains("--tls-cert"), "{err}");
        assert!(!db.exists(), "nothing is created before the refusal");
    }
    // A certificate without its key is a usage error.
    let out = run(Command::new(bin("peering-controld"))
        .args(["serve", "--tls-cert", "x.pem", "--db"])
        .arg(&db));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

struct Setup {
    ns: Netns,
    pki: Pki,
    dir: TempPath,
    token: String,
    _daemon: teardown::Proc,
}

impl Setup {
    fn new() -> Setup {
        let ns = Netns::new("ctl");
        ns.exec_ok(&["ip", "addr", "add", &format!("{ADDR}/32"), "dev", "lo"]);
        let pki = Pki::new("ctl", &["ctl.test"], &[ADDR.parse().unwrap()]);
        let dir = TempPath::new("ctl-tls");
        std::fs::create_dir_all(&dir.path).unwrap();
        let db = dir.path.join("peering.db");
        let listen = format!("{ADDR}:{PORT}");
        let daemon = teardown::spawn(
            ns.cmd(&[
                bin("peering-controld").to_str().unwrap(),
                "serve",
                "--listen",
            ])
            .arg(&listen)
            .arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key)
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(peering_tests::control_lab::daemon_log()),
        )
        .expect("start peering-controld");
        let out = run(Command::new(bin("peering-controld"))
            .args(["create-account", "--account", "111111111111", "--db"])
            .arg(&db));
        assert!(out.status.success(), "{}", stderr(&out));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let s = Setup {
            ns,
            pki,
            dir,
            token,
            _daemon: daemon,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !s
            .peerctl(&s.endpoint(), &[], &["describe-vpcs"])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "peering-controld did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn endpoint(&self) -> String {
        format!("https://{ADDR}:{PORT}")
    }

    /// peerctl inside the namespace, with PEERING_CA_FILE set to our CA
    /// unless `env` says otherwise (an empty value unsets a variable).
    fn peerctl(&self, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.ns.cmd(&[bin("peerctl").to_str().unwrap()]);
        c.args(args)
            .env("PEERING_ENDPOINT", endpoint)
            .env("PEERING_REGION", "us-east-1")
            .env("PEERING_TOKEN", &self.token)
            .env("PEERING_CA_FILE", &self.pki.ca)
            .env("PEERING_CONFIG_FILE", self.dir.path.join("no-config"));
        for (k, v) in env {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        run(&mut c)
    }
}

#[test]
fn peerctl_verifies_the_controller_certificate() {
    let s = Setup::new();
    let ep = s.endpoint();

    // Trusted: calls work.
    let out = s.peerctl(&ep, &[], &["create-vpc", "--cidr-block", "10.1.0.0/16"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Another CA: refused, saying why.
    let other = s.pki.other_ca.to_str().unwrap();
    let out = s.peerctl(&ep, &[("PEERING_CA_FILE", other)], &["describe-vpcs"]);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(stderr(&out).contains("not trusted"), "{}", stderr(&out));
    // The --ca-file flag beats the environment.
    let out = s.peerctl(
        &ep,
        &[("PEERING_CA_FILE", other)],
        &["--ca-file", s.pki.ca.to_str().unwrap(), "describe-vpcs"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A self-signed certificate is not trusted either.
    let out = s.peerctl(
        &ep,
        &[("PEERING_CA_FILE", s.pki.self_signed_cert.to_str().unwrap())],
        &["describe-vpcs"],
    );
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));

    // No CA file: a configuration error before any connection.
    let out = s.peerctl(&ep, &[("PEERING_CA_FILE", "")], &["describe-vpcs"]);
    assert_eq!(out.status.code(), Some(253), "{}", stderr(&out));
    assert!(stderr(&out).contains("CA file"), "{}", stderr(&out));

    // A CA file that cannot be read: a configuration error too.
    let out = s.peerctl(
        &ep,
        &[("PEERING_CA_FILE", "/nonexistent/ca.pem")],
        &["describe-vpcs"],
    );
    assert_eq!(out.status.code(), Some(253), "{}", stderr(&out));
    assert!(stderr(&out).contains("CA file"), "{}", stderr(&out));

    // Plain HTTP to a lab address: refused by peerctl, the token never
    // leaves.
    let out = s.peerctl(&format!("http://{ADDR}:{PORT}"), &[], &["describe-vpcs"]);
    assert_eq!(out.status.code(), Some(253), "{}", stderr(&out));
    assert!(stderr(&out).contains("in clear"), "{}", stderr(&out));

    // The profile's ca_file.
    let config = s.dir.path.join("config");
    std::fs::write(
        &config,
        format!(
            "[default]\nendpoint_url = {ep}\nca_file = {}\nregion = us-east-1\n",
            s.pki.ca.display()
        ),
    )
    .unwrap();
    let out = s.peerctl(
        &ep,
        &[
            ("PEERING_CA_FILE", ""),
            ("PEERING_ENDPOINT", ""),
            ("PEERING_CONFIG_FILE", config.to_str().unwrap()),
        ],
        &["describe-vpcs"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_plain_server_refuses_a_non_loopback_listener() {
    let ns = Netns::new("plain");
    ns.exec_ok(&["ip", "addr", "add", "198.18.77.2/32", "dev", "lo"]);
    let path = format!("/var/run/netns/{}", ns.name);
    // A thread of our own enters the namespace; the test thread stays.
    let result = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with a namespace fd we hold.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("198.18.77.2:0")
                .await
                .unwrap();
            let router = axum::Router::new();
            peering_userspace::api::serve(l, router, async {}).await
        })
    })
    .join()
    .unwrap();
    let err = result.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("loopback"), "{err}");
}
