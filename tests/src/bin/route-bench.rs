//! Routes at scale, end to end (`cargo xtask bench --convergence`): one
//! region whose view holds N routes, served by a real `peering-controld`
//! (SQLite, HTTPS with a certificate of the test PKI) to a real
//! `peering-agent run` (gateway credential, XDP program, pinned maps) in
//! the gateway namespace of the intra-region lab.
//!
//! ```text
//! cargo run --release -p peering-tests --bin route-bench [-- --routes 1000,100000
//!     --samples 200 --restarts 5 --cold 3 --quiet-vpc]
//! ```
//!
//! Per size it measures:
//! - **convergence**: from spawning the agent until its log says
//!   `start-up: first view programmed` (written after the full
//!   reconciliation's last map write and the attachments), cold (no pins:
//!   a new gateway host) and after `kill -9` with the pinned maps in place;
//!   after each, the bench reads the pinned route map and checks it holds
//!   every route of the view;
//! - **create-route to dataplane**: a `CreateRoute` through the JSON API
//!   (peerctl's client code: a new TLS connection per call) until the
//!   route is in the pinned route map, polled by exact LPM lookups from
//!   this process (a read under RCU: the agent is not disturbed). The last
//!   route created is VPC A's route to VPC B, and a ping from A to B
//!   through it checks the path end to end.
//!
//! The state is seeded straight into the SQLite store (the controller's
//! key codec, one bulk load): N routes one API call at a time would take
//! minutes. It stays within AWS's default quotas (50 routes per table,
//! 200 tables per VPC): 50 routes in each of N / 50 tables over as many
//! VPCs as needed, each VPC peered with VPC B, starting with VPC A, where
//! the measured routes go (194 tables of 50: A is as full as the quotas
//! allow), or, with `--quiet-vpc`, leaving A alone.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use aya::maps::{lpm_trie::Key, LpmTrie, Map, MapData};
use ipnet::Ipv4Net;
use peering_common::{maps as names, scoped_prefix_len, RouteValue, ScopedAddr};
use peering_tests::{
    lab::{announce, bin, run, IntraRegionLab, TempPath},
    model::active_peering,
    pki::Pki,
    teardown::{self, Proc},
};
use peering_userspace::{
    cli::{args::Request, client},
    control::{
        account::{AccountId, Call},
        config::Config,
        ids::SequentialIds,
        state::State,
        store::{codec::state_entries, SqliteKv},
        subnet::CreateSubnet,
    },
    dataplane::Dataplane,
};
use serde_json::json;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "111111111111";
/// AWS defaults (`control::config::Limits`), which the seed stays within.
const ROUTES_PER_TABLE: usize = 50;
const TABLES_PER_VPC: usize = 200;
/// Empty tables of VPC A kept for the measured creates.
const SPARE_TABLES: usize = 5;
/// How long a convergence or a route may take before the bench gives up.
const GIVE_UP: Duration = Duration::from_secs(600);

/// Agent convergence and CreateRoute to the dataplane against the number
/// of routes in a region.
#[derive(clap::Parser)]
struct Opts {
    /// Routes in the region's view, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    routes: Vec<usize>,
    /// No filler routes in VPC A (where the measured routes go).
    #[arg(long = "quiet-vpc")]
    quiet_a: bool,
    /// CreateRoute calls per row.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Restarts (kill -9) per row.
    #[arg(long, default_value_t = 5)]
    restarts: usize,
    /// Cold starts per row.
    #[arg(long, default_value_t = 3)]
    cold: usize,
}

/// The seeded deployment.
struct Seed {
    state: State,
    /// Routes in the region's view.
    routes: usize,
    /// VPC A's main table (id, dataplane id) and its peering with B.
    a_main: (String, u32),
    pcx_ab: String,
    /// VPC A's empty tables for the measured creates.
    spare: Vec<(String, u32)>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// VPC A (10.1.0.0/16, subnet on `vpc-a`) and B (10.2.0.0/16, on `vpc-b`)
/// peered; B routes to A; then `n` routes in tables of A and of further
/// VPCs peered with B, 50 per table.
fn seed(n: usize, quiet_a: bool) -> Result<Seed> {
    let mut ids = SequentialIds(1 << 100);
    let mut state = State::new(Config {
        regions: vec![REGION.to_owned()],
        ..Config::default()
    });
    let c = Call::at(AccountId::parse(ACCOUNT)?, REGION, unix_now());
    let vpc = |state: &mut State, ids: &mut SequentialIds, cidr: &str| -> Result<String> {
        Ok(state.create_vpc(&c, ids, cidr)?.vpc_id)
    };
    let a = vpc(&mut state, &mut ids, "10.1.0.0/16")?;
    let b = vpc(&mut state, &mut ids, "10.2.0.0/16")?;
    for (v, cidr, port) in [(&a, "10.1.0.0/24", "vpc-a"), (&b, "10.2.0.0/24", "vpc-b")] {
        let req = CreateSubnet {
            vpc_id: v.clone(),
            cidr_block: cidr.into(),
            interface: port.into(),
            vlan: None,
        };
        state.create_subnet(&c, &mut ids, &req)?;
    }
    let pcx_ab = active_peering(&mut state, &c, &mut ids, &a, &b)?;
    let main_of = |state: &State, v: &str| -> Result<(String, u32)> {
        let id = state.vpc(v).context("vpc")?.main_route_table_id.clone();
        let dp = state.route_table(&id).context("table")?.dp_id;
        Ok((id, dp))
    };
    let b_main = main_of(&state, &b)?.0;
    state.create_route(&c, &b_main, "10.1.0.0/16", &pcx_ab)?;
    let a_main = main_of(&state, &a)?;
    let mut spare = Vec::new();
    for _ in 0..SPARE_TABLES {
        let id = state.create_route_table(&c, &mut ids, &a)?.route_table_id;
        let dp = state.route_table(&id).context("table")?.dp_id;
        spare.push((id, dp));
    }
    // Filler: A's remaining tables, then VPCs 10.10/16, 10.11/16, ...
    let mut left = n;
    let mut room_in_a = if quiet_a {
        0
    } else {
        TABLES_PER_VPC - 1 - SPARE_TABLES
    };
    let (mut vpc_id, mut pcx, mut next_vpc) = (a.clone(), pcx_ab.clone(), 10);
    while left > 0 {
        if room_in_a == 0 {
            vpc_id = vpc(&mut state, &mut ids, &format!("10.{next_vpc}.0.0/16"))?;
            pcx = active_peering(&mut state, &c, &mut ids, &vpc_id, &b)?;
            next_vpc += 1;
            room_in_a = TABLES_PER_VPC;
        }
        let table = if room_in_a == TABLES_PER_VPC {
            main_of(&state, &vpc_id)?.0
        } else {
            state
                .create_route_table(&c, &mut ids, &vpc_id)?
                .route_table_id
        };
        room_in_a -= 1;
        for r in 0..ROUTES_PER_TABLE.min(left) {
            let dest = format!("172.20.{r}.0/24");
            state.create_route(&c, &table, &dest, &pcx)?;
        }
        left -= ROUTES_PER_TABLE.min(left);
    }
    state.take_changes(state.config.clone(), state.next_dp_id());
    Ok(Seed {
        state,
        routes: n + 1,
        a_main,
        pcx_ab,
        spare,
    })
}

/// The controller, the lab network, the credentials.
struct Lab {
    // Field order is drop order: processes before what they use.
    _controld: Proc,
    net: IntraRegionLab,
    pki: Pki,
    _dir: TempPath,
    endpoint: String,
    token: String,
    credential: PathBuf,
    agent_log: PathBuf,
}

fn admin(db: &Path, args: &[&str]) -> Result<String> {
    let out = run(Command::new(bin("peering-controld"))
        .args(args)
        .arg("--db")
        .arg(db));
    ensure!(
        out.status.success(),
        "peering-controld {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Lab {
    fn start(seed: &Seed) -> Result<Lab> {
        let dir = TempPath::new("route-bench");
        std::fs::create_dir_all(&dir.path)?;
        let db = dir.path.join("peering.db");
        let t = Instant::now();
        SqliteKv::open(&db, || state_entries(&seed.state))?;
        let token = admin(&db, &["create-account", "--account", ACCOUNT])?;
        let credential = dir.path.join("gateway.json");
        let cred = credential.to_string_lossy().into_owned();
        admin(&db, &["create-gateway", "--region", REGION, "--out", &cred])?;
        let pki = Pki::new("route-bench", &[], &[]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path.join("controld.log"))?;
        let controld = teardown::spawn(
            Command::new(bin("peering-controld"))
                .args(["serve", "--listen", &listen, "--db"])
                .arg(&db)
                .arg("--tls-cert")
                .arg(&pki.cert)
                .arg("--tls-key")
                .arg(&pki.key)
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(&listen).is_err() {
            ensure!(Instant::now() < deadline, "peering-controld did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "  store seeded and controller serving in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(Lab {
            _controld: controld,
            net: IntraRegionLab::network(false),
            agent_log: dir.path.join("agent.log"),
            pki,
            _dir: dir,
            endpoint: format!("https://{listen}"),
            token,
            credential,
        })
    }

    fn spawn_agent(&self) -> Result<Proc> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.agent_log)?;
        let mut cmd = Command::new(bin("peering-agent"));
        cmd.arg("--netns")
            .arg(&self.net.gw.name)
            .arg("--pin-dir")
            .arg(&self.net.pins.path)
            .args(["run", "--region", REGION, "--controller", &self.endpoint])
            .arg("--credential")
            .arg(&self.credential)
            .arg("--ca-file")
            .arg(&self.pki.ca)
            .stdout(Stdio::null())
            .stderr(log);
        Ok(teardown::spawn(&mut cmd)?)
    }

    /// Starts the agent and waits for its first full reconciliation:
    /// (time from spawn, the agent's own figure, map writes it made).
    fn converge(&self) -> Result<(Proc, Duration, u64, u64)> {
        let from = std::fs::metadata(&self.agent_log).map_or(0, |m| m.len());
        let t = Instant::now();
        let agent = self.spawn_agent()?;
        let mut text = String::new();
        loop {
            text.clear();
            let mut f = std::fs::File::open(&self.agent_log)?;
            f.seek(SeekFrom::Start(from))?;
            f.read_to_string(&mut text)?;
            if let Some(own) = after(&text, "start-up: first view programmed after ", " ms") {
                let writes = after(
                    &text,
                    "full reconciliation at revision ",
                    " dataplane writes",
                )
                .and_then(|s| s.rsplit(' ').next())
                .map_or(Ok(0), str::parse)?;
                return Ok((agent, t.elapsed(), own.parse()?, writes));
            }
            ensure!(t.elapsed() < GIVE_UP, "the agent did not converge: {text}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The pinned route map, opened afresh.
    fn route_map(&self) -> Result<LpmTrie<MapData, ScopedAddr, RouteValue>> {
        let data = MapData::from_pin(self.net.pins.path.join("maps").join(names::ROUTES))?;
        Ok(LpmTrie::try_from(Map::from_map_data(data)?)?)
    }

    /// The kernel's memory figure for the pinned route map (`memlock` in
    /// its fdinfo: the LPM trie's nodes as allocated).
    fn route_map_bytes(&self) -> Result<u64> {
        use std::os::fd::{AsFd, AsRawFd};
        let data = MapData::from_pin(self.net.pins.path.join("maps").join(names::ROUTES))?;
        let fd = data.fd().as_fd().as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .context("no memlock in the map's fdinfo")?;
        Ok(line.trim().parse()?)
    }

    /// Every route of the view is in the pinned map; how long the dump
    /// took (a walk of the route map: what every route write cost before
    /// the agent kept the routes' counter slots in memory).
    fn check_routes(&self, expected: usize) -> Result<Duration> {
        let maps = Dataplane::open_pinned(&self.net.pins.path)?;
        let t = Instant::now();
        let have = maps.snapshot()?.routes.len();
        let took = t.elapsed();
        ensure!(
            have == expected,
            "the route map holds {have} routes, the view {expected}"
        );
        Ok(took)
    }

    /// Removes every pin (maps, programs, links) while no agent runs:
    /// the XDP programs detach and the next agent starts as on a new host.
    fn unpin(&self) -> Result<()> {
        if self.net.pins.path.exists() {
            std::fs::remove_dir_all(&self.net.pins.path)?;
        }
        Ok(())
    }

    /// `CreateRoute` through the JSON API; time until the call returned.
    fn create_route(&self, table: &str, dest: &str, pcx: &str) -> Result<()> {
        let req = Request {
            action: "CreateRoute",
            body: json!({
                "RouteTableId": table,
                "DestinationCidrBlock": dest,
                "VpcPeeringConnectionId": pcx,
            }),
        };
        client::call(
            &self.endpoint,
            Some(&self.pki.ca),
            &self.token,
            Some(REGION),
            &req,
        )
        .map_err(|e| anyhow!("CreateRoute {dest}: {e:?}"))?;
        Ok(())
    }
}

/// The text between `start` and the next `end` in the first line holding
/// `start`.
fn after<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let rest = &text[i..];
    Some(&rest[..rest.find(end)?])
}

fn key(table: u32, net: Ipv4Net) -> Key<ScopedAddr> {
    Key::new(
        scoped_prefix_len(net.prefix_len()),
        ScopedAddr::new(table, net.addr().octets()),
    )
}

/// One create, timed: (until the API answered, until the route is in the
/// map). No other route of `table` covers `dest`, so an LPM lookup of it
/// finds it only once it is there.
fn timed_create(
    lab: &Lab,
    routes: &LpmTrie<MapData, ScopedAddr, RouteValue>,
    (table, dp): (&str, u32),
    dest: Ipv4Net,
    pcx: &str,
) -> Result<(Duration, Duration)> {
    let k = key(dp, dest);
    ensure!(routes.get(&k, 0).is_err(), "{dest} is covered in {table}");
    let t = Instant::now();
    lab.create_route(table, &dest.to_string(), pcx)?;
    let api = t.elapsed();
    while routes.get(&k, 0).is_err() {
        ensure!(t.elapsed() < GIVE_UP, "{dest} never reached the map");
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok((api, t.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// "median (min–max)" in ms, or seconds from 10 s.
fn spread(xs: &[Duration]) -> String {
    let mut s = xs.to_vec();
    s.sort();
    if s.is_empty() {
        return "-".into();
    }
    let f = |d: Duration| {
        if d >= Duration::from_secs(10) {
            format!("{:.1} s", d.as_secs_f64())
        } else {
            format!("{:.0} ms", ms(d))
        }
    };
    format!(
        "{} ({}–{})",
        f(percentile(&s, 0.5)),
        f(s[0]),
        f(s[s.len() - 1])
    )
}

struct Row {
    routes: usize,
    cold: Vec<Duration>,
    cold_writes: u64,
    warm: Vec<Duration>,
    warm_writes: u64,
    api: Vec<Duration>,
    dataplane: Vec<Duration>,
    ping: bool,
}

fn bench(n: usize, o: &Opts) -> Result<Row> {
    println!("\n== {n} routes");
    let t = Instant::now();
    let seed = seed(n, o.quiet_a)?;
    println!(
        "  state of {} routes built in {:.1} s",
        seed.routes,
        t.elapsed().as_secs_f64()
    );
    let lab = Lab::start(&seed)?;
    let mut row = Row {
        routes: n,
        cold: Vec::new(),
        cold_writes: 0,
        warm: Vec::new(),
        warm_writes: 0,
        api: Vec::new(),
        dataplane: Vec::new(),
        ping: false,
    };
    let mut agent = None;
    for i in 0..o.cold.max(1) {
        drop(agent.take());
        lab.unpin()?;
        let (a, took, own, writes) = lab.converge()?;
        let dump = lab.check_routes(seed.routes)?;
        println!(
            "  cold start {i}: {:.0} ms (agent's own count {own} ms), {writes} map writes; \
             a dump of the maps then took {:.0} ms",
            ms(took),
            ms(dump)
        );
        row.cold.push(took);
        row.cold_writes = writes;
        agent = Some(a);
    }
    println!(
        "  the route map takes {:.2} MiB of kernel memory",
        lab.route_map_bytes()? as f64 / (1 << 20) as f64
    );
    for i in 0..o.restarts {
        // kill -9 (Proc's drop), then the same pins.
        drop(agent.take());
        let (a, took, own, writes) = lab.converge()?;
        lab.check_routes(seed.routes)?;
        println!(
            "  restart {i}: {:.0} ms (agent's own count {own} ms), {writes} map writes",
            ms(took)
        );
        row.warm.push(took);
        row.warm_writes = row.warm_writes.max(writes);
        agent = Some(a);
    }
    let routes = lab.route_map()?;
    let samples = o.samples.min(SPARE_TABLES * ROUTES_PER_TABLE);
    for i in 0..samples {
        let (table, dp) = &seed.spare[i / ROUTES_PER_TABLE];
        let dest: Ipv4Net = format!("172.31.{}.{}/28", i / 16, (i % 16) * 16).parse()?;
        let (api, total) = timed_create(&lab, &routes, (table, *dp), dest, &seed.pcx_ab)?;
        row.api.push(api);
        row.dataplane.push(total);
    }
    // Last, A's route to B, then a ping through it.
    let (table, dp) = &seed.a_main;
    let to_b: Ipv4Net = "10.2.0.0/16".parse()?;
    let (api, total) = timed_create(&lab, &routes, (table, *dp), to_b, &seed.pcx_ab)?;
    row.api.push(api);
    row.dataplane.push(total);
    announce(&[(&lab.net.a, "10.1.0.1"), (&lab.net.b, "10.2.0.1")]);
    row.ping = (0..3).any(|_| lab.net.a.ping("10.2.0.10", 2));
    let agent_part: Vec<Duration> = row
        .api
        .iter()
        .zip(&row.dataplane)
        .map(|(a, d)| d.saturating_sub(*a))
        .collect();
    let (a, g) = (sorted(&row.api), sorted(&agent_part));
    println!(
        "  API answer p50 {:.1} ms, p99 {:.1} ms; from the answer to the map p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&a, 0.5)),
        ms(percentile(&a, 0.99)),
        ms(percentile(&g, 0.5)),
        ms(percentile(&g, 0.99)),
    );
    println!(
        "  {} creates: to the API's answer {}, to the route map p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; ping A to B through the last one: {}",
        row.api.len(),
        spread(&row.api),
        ms(percentile(&sorted(&row.dataplane), 0.5)),
        ms(percentile(&sorted(&row.dataplane), 0.99)),
        ms(*sorted(&row.dataplane).last().expect("samples")),
        if row.ping { "answered" } else { "LOST" }
    );
    let log = std::fs::read_to_string(&lab.agent_log).unwrap_or_default();
    for l in log.lines().filter(|l| l.contains("WARN")).take(5) {
        println!("  agent: {l}");
    }
    drop(agent);
    if !row.ping {
        bail!("no answer from B through the last route created");
    }
    Ok(row)
}

fn sorted(xs: &[Duration]) -> Vec<Duration> {
    let mut s = xs.to_vec();
    s.sort();
    s
}

fn main() -> Result<()> {
    let o = <Opts as clap::Parser>::parse();
    ensure!(o.samples > 0, "--samples must be at least 1");
    let mut rows = Vec::new();
    for &n in &o.routes {
        rows.push(bench(n, &o)?);
    }
    println!(
        "\n{:>8} | {:<26} | {:<26} | {:>9} | {:>9} | {:>9}",
        "routes",
        "cold start (median, range)",
        "restart (median, range)",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for r in &rows {
        let d = sorted(&r.dataplane);
        println!(
            "{:>8} | {:<26} | {:<26} | {:>9.1} | {:>9.1} | {:>9.1}",
            r.routes,
            format!("{} [{} writes]", spread(&r.cold), r.cold_writes),
            format!("{} [{} writes]", spread(&r.warm), r.warm_writes),
            ms(percentile(&d, 0.5)),
            ms(percentile(&d, 0.99)),
            ms(*d.last().expect("samples")),
        );
    }
    println!("(create-route: from the CreateRoute call until the route is in the agent's pinned LPM map)");
    Ok(())
}
