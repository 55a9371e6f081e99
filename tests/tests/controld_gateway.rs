//! The gateway API of the real `peering-controld` (its Controller as the
//! Feed) over TLS, read with the agent's client: credentials from
//! `create-gateway`, revocation, account tokens refused without leaking,
//! the long-poll, a full view after a restart (history gone), and failover
//! between two controllers of one store when the one in use is killed.
//! Controllers listen on 127.0.0.1 with TLS; the lab-address variant is in
//! `controld_tls.rs`.

use peering_tests::control_lab::{daemon_log, wait_listening};
use peering_tests::lab::{bin, run, TempPath};
use peering_tests::pki::Pki;
use peering_tests::teardown::{self, Proc};
use peering_userspace::api::gateway::wire::ViewUpdate;
use peering_userspace::control::remote::{ControllerClient, Credential, RemoteError, Sync};
use peering_userspace::https::{agent, Timeouts};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const E1: &str = "us-east-1";
const ACCOUNT: &str = "111111111111";

struct Store {
    dir: TempPath,
    db: PathBuf,
    pki: Pki,
}

impl Store {
    fn new(tag: &str) -> Store {
        let dir = TempPath::new(tag);
        std::fs::create_dir_all(&dir.path).unwrap();
        let db = dir.path.join("peering.db");
        Store {
            db,
            dir,
            pki: Pki::new(tag, &[], &[]),
        }
    }

    fn admin(&self, args: &[&str]) -> String {
        let out = run(Command::new(bin("peering-controld"))
            .args(args)
            .arg("--db")
            .arg(&self.db));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn credential(&self, name: &str) -> (PathBuf, Credential) {
        let path = self.dir.path.join(format!("{name}.json"));
        self.admin(&[
            "create-gateway",
            "--region",
            E1,
            "--out",
            path.to_str().unwrap(),
        ]);
        let cred = Credential::read(&path).expect("credential file");
        (path, cred)
    }

    fn account_token(&self) -> String {
        self.admin(&["create-account", "--account", ACCOUNT])
    }

    /// Starts a controller on a free 127.0.0.1 port with TLS; returns it
    /// and its URL once it accepts connections.
    fn start(&self) -> (Proc, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.start_on(port)
    }

    fn start_on(&self, port: u16) -> (Proc, String) {
        let listen = format!("127.0.0.1:{port}");
        let proc = teardown::spawn(
            Command::new(bin("peering-controld"))
                .args([
                    "serve",
                    "--regions",
                    "us-east-1,us-west-2",
                    "--listen",
                    &listen,
                ])
                .arg("--tls-cert")
                .arg(&self.pki.cert)
                .arg("--tls-key")
                .arg(&self.pki.key)
                .arg("--db")
                .arg(&self.db)
                .stdout(Stdio::null())
                .stderr(daemon_log()),
        )
        .expect("start peering-controld");
        wait_listening(&listen);
        (proc, format!("https://localhost:{port}"))
    }
}

fn client(urls: &[String], ca: &Path, cred: Credential) -> ControllerClient {
    ControllerClient::new(urls, Some(ca), cred).expect("client")
}

/// Syncs until `done` holds, at most `within`; returns the last sync.
fn sync_until(
    c: &mut ControllerClient,
    since: &mut Option<u64>,
    within: Duration,
    done: impl Fn(&Sync) -> bool,
) -> Sync {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "condition not met within {within:?}");
        match c.sync(*since, left.min(Duration::from_secs(5))) {
            Ok(s) => {
                *since = Some(s.revision);
                if done(&s) {
                    return s;
                }
            }
            Err(e) => {
                assert!(!e.is_auth(), "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// An HTTPS client trusting the lab CA only.
fn https(ca: &Path) -> ureq::Agent {
    agent(
        Some(ca),
        Timeouts {
            connect: Duration::from_secs(5),
            global: Some(Duration::from_secs(10)),
        },
    )
    .unwrap()
}

/// POSTs an account action over HTTPS; (status, body).
fn call(url: &str, ca: &Path, token: &str, action: &str, body: &str) -> (u16, String) {
    let agent = https(ca);
    let mut r = agent
        .post(format!("{url}/v1/{action}"))
        .header("Authorization", format!("Bearer {token}"))
        .header("X-Peering-Region", E1)
        .send(body)
        .expect("an answer");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn get(url: &str, ca: &Path, token: &str) -> (u16, String) {
    let agent = https(ca);
    let mut r = agent
        .get(url)
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .expect("an answer");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn has_vpc(s: &Sync, cidr: &str) -> bool {
    let cidr: ipnet::Ipv4Net = cidr.parse().unwrap();
    match &s.view {
        ViewUpdate::Full(v) => v.vpcs.iter().any(|v| v.cidrs.contains(&cidr)),
        ViewUpdate::Delta(d) => d.upserts.iter().any(|e| {
            matches!(e, peering_userspace::control::delta::ViewEntry::Vpc(v) if v.cidrs.contains(&cidr))
        }),
    }
}

#[test]
fn real_controller_serves_gateways_and_refuses_everyone_else() {
    let store = Store::new("gwreal");
    let token = store.account_token();
    let (_, cred) = store.credential("gw-e1");
    let cred_id = cred.credential_id.clone();
    let secret = cred.secret().to_owned();
    let (daemon, url) = store.start();
    let ca = &store.pki.ca;
    let mut c = client(std::slice::from_ref(&url), ca, cred);

    // A first full view, with the first key (published within ~2 s).
    let mut since = None;
    let s = sync_until(&mut c, &mut since, Duration::from_secs(10), |s| {
        !s.keys.is_empty()
    });
    let keys: Vec<String> = s.keys.iter().map(|k| hex(k.material.as_bytes())).collect();

    // An account token on the gateway API: 403, no key in the answer.
    let (status, body) = get(&format!("{url}/v1/gateway/sync"), ca, &token);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("GatewayCredentialRequired"), "{body}");
    assert!(keys.iter().all(|k| !body.contains(k.as_str())), "{body}");
    // A gateway credential on an account action: 403.
    let (status, body) = call(&url, ca, &secret, "DescribeVpcs", "{}");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccountTokenRequired"), "{body}");

    // Registration appears in the registry.
    let id = c.register("198.18.0.1:51900".parse().unwrap()).unwrap();
    let s = sync_until(&mut c, &mut since, Duration::from_secs(5), |s| {
        s.gateways.iter().any(|g| g.gateway_id == id)
    });
    assert_eq!(s.gateways[0].region, E1);
    c.request_rotation().unwrap();

    // Nothing changes: the long-poll answers after its wait. (Key
    // rotation commits may end it early; retry until one full wait.)
    let mut waited_full = false;
    for _ in 0..5 {
        let at = since.unwrap();
        let started = Instant::now();
        let s = c.sync(Some(at), Duration::from_secs(2)).unwrap();
        since = Some(s.revision);
        if s.revision == at {
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(1900), "{took:?}");
            assert!(took < Duration::from_secs(5), "{took:?}");
            waited_full = true;
            break;
        }
    }
    assert!(waited_full, "the revision kept moving");

    // A commit ends the long-poll at once.
    let creator = {
        let (url, ca, token) = (url.clone(), ca.clone(), token.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            call(
                &url,
                &ca,
                &token,
                "CreateVpc",
                r#"{"CidrBlock":"10.1.0.0/16"}"#,
            )
        })
    };
    let started = Instant::now();
    sync_until(&mut c, &mut since, Duration::from_secs(20), |s| {
        has_vpc(s, "10.1.0.0/16")
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(creator.join().unwrap().0, 200);

    // A change the gateway has not seen, then a restart: the controller
    // no longer holds the changes since the gateway's revision, and
    // answers with the full view.
    let before = since.unwrap();
    let (status, body) = call(
        &url,
        ca,
        &token,
        "CreateVpc",
        r#"{"CidrBlock":"10.2.0.0/16"}"#,
    );
    assert_eq!(status, 200, "{body}");
    drop(daemon);
    let (daemon, _) = store.start_on(port_of(&url));
    let mut from = Some(before);
    let s = sync_until(&mut c, &mut from, Duration::from_secs(10), |_| true);
    let ViewUpdate::Full(view) = &s.view else {
        panic!("a full view after the restart: {:?}", s.view)
    };
    assert_eq!(view.vpcs.len(), 2);

    // Revoked: refused as such (not as unreachable), and stays refused.
    store.admin(&["revoke-gateway", "--credential-id", &cred_id]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match c.sync(None, Duration::ZERO) {
            Err(e) if e.is_auth() => break e,
            _ => assert!(Instant::now() < deadline, "revocation not seen within 5 s"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        matches!(err, RemoteError::Auth { status: 401, .. }),
        "{err}"
    );
    drop(daemon);
}

#[test]
fn agent_client_fails_over_when_its_controller_is_killed() {
    let store = Store::new("gwfail");
    let token = store.account_token();
    let (_, cred) = store.credential("gw-e1");
    let (a, url_a) = store.start();
    let (_b, url_b) = store.start();
    let ca = &store.pki.ca;
    let mut c = client(&[url_a.clone(), url_b.clone()], ca, cred);
    let mut since = None;
    sync_until(&mut c, &mut since, Duration::from_secs(10), |_| true);
    assert_eq!(c.current(), url_a);

    // A is killed during a long-poll; a change is made through B 0.5 s
    // later. The client reaches B and gets it within 5 s of the kill.
    let killer = {
        let (url_b, ca, token) = (url_b.clone(), ca.clone(), token.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let killed = Instant::now();
            drop(a);
            std::thread::sleep(Duration::from_millis(500));
            let r = call(
                &url_b,
                &ca,
                &token,
                "CreateVpc",
                r#"{"CidrBlock":"10.3.0.0/16"}"#,
            );
            (killed, r)
        })
    };
    sync_until(&mut c, &mut since, Duration::from_secs(20), |s| {
        has_vpc(s, "10.3.0.0/16")
    });
    let (killed, (status, body)) = killer.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let took = killed.elapsed();
    println!("failover: the change arrived {took:?} after the kill");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(c.current(), url_b);
}

#[test]
fn a_stopped_controller_does_not_wait_for_long_polls() {
    let store = Store::new("gwstop");
    let (_, cred) = store.credential("gw-e1");
    let (daemon, url) = store.start();
    let mut c = client(std::slice::from_ref(&url), &store.pki.ca, cred);
    let mut since = None;
    sync_until(&mut c, &mut since, Duration::from_secs(10), |_| true);
    let at = since.unwrap();
    let poll = std::thread::spawn(move || c.sync(Some(at), Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGTERM) }, 0);
    let stopped = Instant::now();
    let status = daemon.wait().unwrap();
    let took = stopped.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    // The gateway sees the controller go (and would move to another one).
    let _ = poll.join().unwrap();
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
