//! The gateway API over HTTPS, from the agent's client: TLS refusals,
//! credentials, the long-poll, compaction, failover between controllers.
//! Servers run in this process on 127.0.0.1 over an in-memory [`MemFeed`];
//! account tokens come from a real SQLite store.

mod common;

use common::TempDir;
use peering_tests::memfeed::MemFeed;
use peering_tests::pki::Pki;
use peering_userspace::api::gateway::wire::ViewUpdate;
use peering_userspace::api::tls::{TlsListener, TlsStats, HANDSHAKE_TIMEOUT};
use peering_userspace::api::{gateway, listener, router, App};
use peering_userspace::control::account::AccountId;
use peering_userspace::control::config::Config;
use peering_userspace::control::remote::{ControllerClient, Credential, RemoteError};
use peering_userspace::control::store::{SqliteStore, Store};
use peering_userspace::tunnel::key::KEY_LEN;
use peering_userspace::tunnel::schedule::RotationPolicy;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const E1: &str = "us-east-1";
const W2: &str = "us-west-2";

/// A controller: account API and gateway API over one feed, on 127.0.0.1,
/// with or without TLS. Dropping it stops it at once, dropping open
/// connections (as a crash would).
struct Ctl {
    addr: SocketAddr,
    tls_stats: Option<Arc<TlsStats>>,
    store: Arc<SqliteStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl Ctl {
    fn start(feed: Arc<MemFeed>, pki: Option<&Pki>) -> Ctl {
        let dir = TempDir::new("gwapi");
        let config = Config {
            regions: vec![E1.into(), W2.into()],
            ..Config::default()
        };
        let store = Arc::new(SqliteStore::open(dir.path().join("state.db"), config).unwrap());
        let app = router(App::new(store.clone()));
        let routes = gateway::compose(app, feed, store.clone());
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let addr = tcp.local_addr().unwrap();
        let tls = pki.map(|p| {
            peering_userspace::api::tls::server_config(&p.cert, &p.key).expect("server config")
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (stats_tx, stats_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
                match tls {
                    Some(config) => {
                        let l = TlsListener::new(tcp, config, listener::MAX_CONNECTIONS).unwrap();
                        stats_tx.send(Some(l.stats.clone())).unwrap();
                        tokio::select! {
                            r = axum::serve(l, routes) => r.unwrap(),
                            _ = stopped => {}
                        }
                    }
                    None => {
                        stats_tx.send(None).unwrap();
                        let l = listener::Limited::new(tcp, listener::MAX_CONNECTIONS);
                        tokio::select! {
                            r = axum::serve(l, routes) => r.unwrap(),
                            _ = stopped => {}
                        }
                    }
                }
            });
            rt.shutdown_background();
        });
        Ctl {
            addr,
            tls_stats: stats_rx.recv().unwrap(),
            store,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn https(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    fn account_token(&self, account: &str) -> String {
        self.store
            .create_token(&AccountId::parse(account).unwrap())
            .unwrap()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cred(feed: &MemFeed, id: &str, region: &str) -> Credential {
    Credential::new(id.into(), region.into(), feed.issue(id, region))
}

fn client(urls: &[String], ca: Option<&Path>, cred: Credential) -> ControllerClient {
    ControllerClient::new(urls, ca, cred).expect("client")
}

/// An HTTP exchange with ureq trusting `ca`: (status, body text).
fn raw(url: &str, ca: Option<&Path>, bearer: &str, post: bool) -> (u16, String) {
    let agent = peering_userspace::https::agent(
        ca,
        peering_userspace::https::Timeouts {
            connect: Duration::from_secs(5),
            global: Some(Duration::from_secs(10)),
        },
    )
    .unwrap();
    let auth = format!("Bearer {bearer}");
    let resp = if post {
        agent
            .post(url)
            .header("Authorization", &auth)
            .header("X-Peering-Region", E1)
            .send("{}")
    } else {
        agent.get(url).header("Authorization", &auth).call()
    };
    let mut resp = resp.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

fn feed_with_keys() -> Arc<MemFeed> {
    let feed = Arc::new(MemFeed::new(&[E1, W2]));
    feed.add_key(1, 1000, 0xa5);
    feed.add_key(2, 2000, 0x5a);
    feed.set_settings(peering_userspace::control::store::TunnelSettings {
        policy: RotationPolicy::with_interval(2000).unwrap(),
        algorithm: peering_userspace::tunnel::key::Algorithm::Aes256Gcm,
    });
    feed
}

#[test]
fn sync_over_https_gives_view_keys_and_deltas() {
    let pki = Pki::new("sync", &[], &[]);
    let feed = feed_with_keys();
    let ctl = Ctl::start(feed.clone(), Some(&pki));
    feed.add_vpc(E1, 1, "10.1.0.0/16");
    feed.add_vpc(W2, 2, "10.2.0.0/16");
    let mut c = client(&[ctl.https()], Some(&pki.ca), cred(&feed, "gwc-e1", E1));

    // First sync: the full view of the credential's region only.
    let s = c.sync(None, Duration::ZERO).unwrap();
    assert_eq!(s.revision, 2);
    let ViewUpdate::Full(view) = &s.view else {
        panic!("first sync is full: {:?}", s.view)
    };
    assert_eq!(view.region, E1);
    assert_eq!(view.vpcs.len(), 1);
    assert_eq!(view.vpcs[0].dp_id, 1);
    let epochs: Vec<(u32, u8)> = s
        .keys
        .iter()
        .map(|k| (k.epoch, k.material.as_bytes()[0]))
        .collect();
    assert_eq!(epochs, vec![(1, 0xa5), (2, 0x5a)]);
    assert!(s
        .keys
        .iter()
        .all(|k| k.material.as_bytes() != &[0; KEY_LEN]));
    assert_eq!(s.settings.unwrap().policy.interval(), 2000);

    // From there on, deltas.
    feed.add_vpc(E1, 3, "10.3.0.0/16");
    let s = c.sync(Some(2), Duration::ZERO).unwrap();
    let ViewUpdate::Delta(d) = &s.view else {
        panic!("delta expected: {:?}", s.view)
    };
    assert_eq!((d.from, d.revision, d.upserts.len()), (2, 3, 1));
    assert!(d.removals.is_empty());

    // A change in another region moves the revision, not the view.
    feed.add_vpc(W2, 4, "10.4.0.0/16");
    let s = c.sync(Some(3), Duration::ZERO).unwrap();
    let ViewUpdate::Delta(d) = &s.view else {
        panic!("delta expected")
    };
    assert_eq!((d.revision, d.len()), (4, 0));

    // Compacted history, and a revision from the future: the full view.
    feed.compact();
    let s = c.sync(Some(1), Duration::ZERO).unwrap();
    assert!(matches!(&s.view, ViewUpdate::Full(v) if v.vpcs.len() == 2 && v.revision == 4));
    let s = c.sync(Some(99), Duration::from_secs(10)).unwrap();
    assert!(matches!(s.view, ViewUpdate::Full(_)));

    // Registration and rotation requests, in the credential's region.
    let id = c.register("198.18.0.1:51900".parse().unwrap()).unwrap();
    assert_eq!(c.register("198.18.0.1:51901".parse().unwrap()).unwrap(), id);
    let s = c.sync(None, Duration::ZERO).unwrap();
    assert_eq!(s.gateways.len(), 1);
    assert_eq!(s.gateways[0].region, E1);
    assert_eq!(s.gateways[0].endpoint.port(), 51901);
    c.request_rotation().unwrap();
    assert_eq!(feed.rotation_requests(), 1);
    let bad = raw(
        &format!("{}/v1/gateway/register", ctl.https()),
        Some(&pki.ca),
        c.credential().secret(),
        true,
    );
    assert_eq!(bad.0, 400, "{}", bad.1);
}

#[test]
fn long_poll_returns_on_commit_and_after_wait() {
    let pki = Pki::new("poll", &[], &[]);
    let feed = feed_with_keys();
    let ctl = Ctl::start(feed.clone(), Some(&pki));
    let mut c = client(&[ctl.https()], Some(&pki.ca), cred(&feed, "gwc-e1", E1));
    let at = c.sync(None, Duration::ZERO).unwrap().revision;

    // Nothing happens: the answer comes after `wait`, empty.
    let started = Instant::now();
    let s = c.sync(Some(at), Duration::from_secs(2)).unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(matches!(&s.view, ViewUpdate::Delta(d) if d.is_empty() && d.revision == at));

    // A commit during the wait ends it.
    let committer = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            feed.add_vpc(E1, 7, "10.7.0.0/16")
        })
    };
    let started = Instant::now();
    let s = c.sync(Some(at), Duration::from_secs(20)).unwrap();
    let took = started.elapsed();
    let committed = committer.join().unwrap();
    assert!(took < Duration::from_secs(5), "long-poll took {took:?}");
    assert_eq!(s.revision, committed);
    assert!(matches!(&s.view, ViewUpdate::Delta(d) if d.upserts.len() == 1));
}

#[test]
fn credentials_and_tokens_stay_on_their_side() {
    let pki = Pki::new("auth", &[], &[]);
    let feed = feed_with_keys();
    let ctl = Ctl::start(feed.clone(), Some(&pki));
    let account = ctl.account_token("111111111111");
    let gw = feed.issue("gwc-e1", E1);
    let sync = format!("{}/v1/gateway/sync", ctl.https());
    let key_hex = [hex(0xa5), hex(0x5a)];

    // An account token on the gateway API: 403, with a clear code.
    let (status, body) = raw(&sync, Some(&pki.ca), &account, false);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("GatewayCredentialRequired"), "{body}");
    for k in &key_hex {
        assert!(!body.contains(k.as_str()));
    }
    let (status, body) = raw(
        &format!("{}/v1/gateway/rotation-request", ctl.https()),
        Some(&pki.ca),
        &account,
        true,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(feed.rotation_requests(), 0);

    // A gateway credential on an account action: 403 too.
    let (status, body) = raw(
        &format!("{}/v1/DescribeVpcs", ctl.https()),
        Some(&pki.ca),
        &gw,
        true,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccountTokenRequired"), "{body}");
    // The account token still works there.
    let (status, body) = raw(
        &format!("{}/v1/DescribeVpcs", ctl.https()),
        Some(&pki.ca),
        &account,
        true,
    );
    assert_eq!(status, 200, "{body}");

    // Unknown and missing secrets: 401.
    let (status, body) = raw(&sync, Some(&pki.ca), "gws-not-a-credential", false);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("AuthFailure"), "{body}");

    // Revoked: the client reports an auth refusal (not "unreachable").
    let mut c = client(
        &[ctl.https()],
        Some(&pki.ca),
        Credential::new("gwc-e1".into(), E1.into(), gw.clone()),
    );
    c.sync(None, Duration::ZERO).unwrap();
    feed.revoke("gwc-e1");
    let err = c.sync(None, Duration::ZERO).unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert!(
        matches!(&err, RemoteError::Auth { status: 401, .. }),
        "{err}"
    );
    for k in &key_hex {
        assert!(!err.to_string().contains(k.as_str()));
    }
    assert!(c
        .register("198.18.0.1:1".parse().unwrap())
        .unwrap_err()
        .is_auth());
}

/// Waits up to 2 s for `cond` (server-side counters move after the
/// client saw the connection end).
#[track_caller]
fn eventually(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within 2 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(KEY_LEN)
}

#[test]
fn tls_refuses_plain_http_and_untrusted_certificates() {
    let pki = Pki::new("tls", &[], &[]);
    let feed = feed_with_keys();
    let ctl = Ctl::start(feed.clone(), Some(&pki));
    let stats = ctl.tls_stats.clone().unwrap();

    // Plain HTTP to the TLS port: a clear 400, counted, no panic.
    let (status, body) = raw(&format!("{}/v1/healthz", ctl.http()), None, "x", false);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("PlainHttpToTlsPort"), "{body}");
    assert_eq!(stats.plain_http.load(Ordering::Relaxed), 1);
    // peerctl says the same.
    let out = std::process::Command::new(peering_tests::lab::bin("peerctl"))
        .args(["--endpoint", &ctl.http(), "--region", E1, "describe-vpcs"])
        .env("PEERING_TOKEN", "x")
        .env("PEERING_CONFIG_FILE", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "{err}");
    assert!(err.contains("(PlainHttpToTlsPort)"), "{err}");
    assert!(err.contains("https://"), "{err}");
    // And with https:// to the same port, it works.
    let out = std::process::Command::new(peering_tests::lab::bin("peerctl"))
        .args(["--endpoint", &ctl.https(), "--region", E1, "describe-vpcs"])
        .env("PEERING_TOKEN", ctl.account_token("111111111111"))
        .env("PEERING_CA_FILE", &pki.ca)
        .env("PEERING_CONFIG_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A client trusting another CA refuses the server.
    let mut c = client(
        &[ctl.https()],
        Some(&pki.other_ca),
        cred(&feed, "gwc-1", E1),
    );
    let err = c.sync(None, Duration::ZERO).unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("not trusted"), "{err}");
    eventually(|| stats.failed.load(Ordering::Relaxed) >= 1);

    // Our CA works, and the server keeps serving after all that.
    let mut c = client(&[ctl.https()], Some(&pki.ca), cred(&feed, "gwc-2", E1));
    c.sync(None, Duration::ZERO).unwrap();

    // https:// to a plain-HTTP controller: named as such.
    let plain = Ctl::start(feed.clone(), None);
    let mut c = client(
        &[format!("https://localhost:{}", plain.addr.port())],
        Some(&pki.ca),
        cred(&feed, "gwc-3", E1),
    );
    let err = c.sync(None, Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("does not speak TLS"), "{err}");

    // A connection that never sends a ClientHello is closed after the
    // handshake timeout.
    let mut silent = std::net::TcpStream::connect(ctl.addr).unwrap();
    silent
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT + Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(started.elapsed() < HANDSHAKE_TIMEOUT + Duration::from_secs(3));
    eventually(|| stats.timed_out.load(Ordering::Relaxed) == 1);

    // Garbage that is not HTTP either: closed, counted, server fine.
    let mut junk = std::net::TcpStream::connect(ctl.addr).unwrap();
    junk.write_all(&[0u8; 64]).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(junk.read(&mut buf).unwrap_or(0), 0);
    c = client(&[ctl.https()], Some(&pki.ca), cred(&feed, "gwc-4", E1));
    c.sync(None, Duration::ZERO).unwrap();
}

#[test]
fn client_fails_over_between_controllers() {
    let pki = Pki::new("failover", &[], &[]);
    let feed = feed_with_keys();
    let a = Ctl::start(feed.clone(), Some(&pki));
    let b = Ctl::start(feed.clone(), Some(&pki));
    let dead = format!("https://localhost:{}", common::closed_port());

    // The first URL is down: the call goes to the next one.
    let mut c = client(
        &[dead.clone(), b.https()],
        Some(&pki.ca),
        cred(&feed, "gwc-e1", E1),
    );
    let started = Instant::now();
    let at = c.sync(None, Duration::ZERO).unwrap().revision;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(c.current(), b.https());

    // The controller in use dies during a long-poll: the client moves to
    // the other one within 5 s and gets the next change from it.
    let mut c = client(
        &[a.https(), b.https()],
        Some(&pki.ca),
        cred(&feed, "gwc-e1b", E1),
    );
    assert_eq!(c.current(), a.https());
    let killer = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let killed = Instant::now();
            drop(a);
            std::thread::sleep(Duration::from_millis(500));
            feed.add_vpc(E1, 9, "10.9.0.0/16");
            killed
        })
    };
    let s = c.sync(Some(at), Duration::from_secs(20)).unwrap();
    let killed = killer.join().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(c.current(), b.https());
    assert!(matches!(&s.view, ViewUpdate::Delta(d) if d.upserts.len() == 1));

    // Every controller down: unreachable, naming each.
    let mut c = client(
        &[dead.clone(), dead.clone()],
        Some(&pki.ca),
        cred(&feed, "gwc-e1c", E1),
    );
    let err = c.sync(None, Duration::ZERO).unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable(_)), "{err}");
    assert!(!err.is_auth());
}

#[test]
fn loopback_http_is_allowed_for_tests_on_one_host() {
    let feed = feed_with_keys();
    let ctl = Ctl::start(feed.clone(), None);
    let mut c = client(&[ctl.http()], None, cred(&feed, "gwc-e1", E1));
    assert_eq!(c.sync(None, Duration::ZERO).unwrap().keys.len(), 2);
}
