//! Shared helpers of the end-to-end tests: a real API server on an ephemeral
//! 127.0.0.1 port over a temporary SQLite file, and a small HTTP client.
#![allow(dead_code)]

use peering_userspace::api::{router, serve, App};
use peering_userspace::control::account::AccountId;
use peering_userspace::control::clock::FakeClock;
use peering_userspace::control::config::{Config, Limits};
use peering_userspace::control::store::{SqliteStore, Store};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const A: &str = "111111111111";
pub const B: &str = "222222222222";
pub const E1: &str = "us-east-1";
pub const W2: &str = "us-west-2";
/// Start of the fake clock (2023-11-14).
pub const T0: u64 = 1_700_000_000;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "peering-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running API server. Dropping it stops the server.
pub struct Server {
    pub addr: SocketAddr,
    pub url: String,
    pub store: Arc<SqliteStore>,
    pub clock: Arc<FakeClock>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub dir: TempDir,
}

impl Server {
    /// Regions us-east-1 and us-west-2, default limits.
    pub fn start() -> Self {
        Server::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Server::with_config(Config {
            regions: vec![E1.into(), W2.into()],
            limits,
        })
    }

    pub fn with_config(config: Config) -> Self {
        let dir = TempDir::new("api");
        let store = Arc::new(SqliteStore::open(dir.path().join("state.db"), config).unwrap());
        let clock = Arc::new(FakeClock::new(T0));
        let mut app = App::new(store.clone());
        app.clock = clock.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                serve(listener, router(app), async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            addr,
            url: format!("http://{addr}"),
            store,
            clock,
            shutdown: Some(tx),
            thread: Some(thread),
            dir,
        }
    }

    /// Issues a token for `account`.
    pub fn token(&self, account: &str) -> String {
        self.store
            .create_token(&AccountId::parse(account).unwrap())
            .unwrap()
    }

    pub fn revision(&self) -> u64 {
        self.store.revision().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Do not wait for the server thread: graceful shutdown waits for
        // open connections, and a test failing mid-request should not hang.
        drop(self.thread.take());
    }
}

/// An HTTP answer: status and JSON body (Null if the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The AWS error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["Error"]["Code"].as_str().unwrap_or("")
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = resp.expect("request reaches the server");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

/// POSTs raw bytes to `path` with optional token and region headers.
pub fn post_raw(
    base: &str,
    path: &str,
    token: Option<&str>,
    region: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut req = agent().post(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(r) = region {
        req = req.header("X-Peering-Region", r);
    }
    finish(req.content_type("application/json").send(body))
}

pub fn get(base: &str, path: &str, token: Option<&str>) -> Reply {
    let mut req = agent().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    finish(req.call())
}

/// A caller: an account's token, calling in one region.
#[derive(Clone)]
pub struct Caller {
    pub url: String,
    pub token: String,
    pub region: String,
}

impl Caller {
    pub fn new(server: &Server, account: &str, region: &str) -> Self {
        Caller {
            url: server.url.clone(),
            token: server.token(account),
            region: region.to_owned(),
        }
    }

    /// The same account calling in another region.
    pub fn in_region(&self, region: &str) -> Self {
        Caller {
            region: region.to_owned(),
            ..self.clone()
        }
    }

    pub fn call(&self, action: &str, body: Value) -> Reply {
        post_raw(
            &self.url,
            &format!("/v1/{action}"),
            Some(&self.token),
            Some(&self.region),
            body.to_string().as_bytes(),
        )
    }

    /// Calls `action` and requires success.
    pub fn ok(&self, action: &str, body: Value) -> Value {
        let r = self.call(action, body);
        assert_eq!(r.status, 200, "{action}: {}", r.text);
        r.body
    }

    pub fn create_vpc(&self, cidr: &str) -> String {
        let v = self.ok("CreateVpc", serde_json::json!({"CidrBlock": cidr}));
        v["Vpc"]["VpcId"].as_str().unwrap().to_owned()
    }

    /// The main route table of `vpc`.
    pub fn main_route_table(&self, vpc: &str) -> String {
        let v = self.ok(
            "DescribeRouteTables",
            serde_json::json!({"Filters": [
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "association.main", "Values": ["true"]}
            ]}),
        );
        v["RouteTables"][0]["RouteTableId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Requests a peering from `vpc` to `peer_vpc` of `peer_owner` in
    /// `peer_region`; returns its id.
    pub fn request_peering(
        &self,
        vpc: &str,
        peer_vpc: &str,
        peer_owner: &str,
        peer_region: &str,
    ) -> String {
        let v = self.ok(
            "CreateVpcPeeringConnection",
            serde_json::json!({"VpcId": vpc, "PeerVpcId": peer_vpc,
                "PeerOwnerId": peer_owner, "PeerRegion": peer_region}),
        );
        v["VpcPeeringConnection"]["VpcPeeringConnectionId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn peering_status(&self, pcx: &str) -> String {
        let v = self.ok(
            "DescribeVpcPeeringConnections",
            serde_json::json!({"VpcPeeringConnectionIds": [pcx]}),
        );
        v["VpcPeeringConnections"][0]["Status"]["Code"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Asserts that `r` is an AWS-style error with `status` and `code`.
#[track_caller]
pub fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    assert!(
        r.body["Error"]["Message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
