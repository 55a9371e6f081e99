//! Control-store write latency against the number of stored objects:
//! CreateVpc and CreateRoute through the controller over the SQLite Kv and
//! over a real etcd cluster (objects under their own keys), next to the
//! schema-1 path it replaced (the whole state as one JSON document, every
//! region's view recomputed per write), which this binary reproduces for
//! comparison.
//!
//! ```text
//! cargo run --release -p peering-tests --bin store-bench [-- --sizes 1000,10000,100000
//!     --samples 200 --stores sqlite,etcd,document --etcd-members 1 [--etcd-tls]]
//! ```
//!
//! `--etcd-tls` runs the cluster TLS-only with client-certificate auth
//! (`EtcdCluster::start_tls`), the way the multi-host lab runs it.
//!
//! Objects: half VPCs, half their main route tables, spread over two
//! accounts and two regions; they are loaded directly into a fresh store
//! (bulk: SQLite's initial load; on etcd, commits of 1,000 keys each
//! straight through the `Kv`, with the controller's key codec), then each
//! measured write is one API-level operation through the controller,
//! committed on its own (fsync included). At the largest size, one more
//! figure: a CreateRoute until a second controller on the same store
//! returns its region delta (`Feed::changes`). etcd runs as `EtcdCluster` of the
//! tests: members and the client in network namespaces of their own, a
//! fresh cluster per size, everything removed on every exit path.

use anyhow::Result;
use peering_tests::etcd::EtcdCluster;
use peering_tests::lab::TempPath;
use peering_tests::model::active_peering;
use peering_userspace::control::account::{AccountId, Call};
use peering_userspace::control::config::Config;
use peering_userspace::control::controller::Controller;
use peering_userspace::control::error::ApiError;
use peering_userspace::control::feed::Feed;
use peering_userspace::control::ids::SequentialIds;
use peering_userspace::control::state::State;
use peering_userspace::control::store::codec::state_entries;
use peering_userspace::control::store::kv::{Commit, Kv, Op};
use peering_userspace::control::store::{SqliteKv, Store};
use peering_userspace::control::view::region_view;
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGIONS: [&str; 2] = ["us-east-1", "us-west-2"];
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const T0: u64 = 1_700_000_000;

fn call(i: usize) -> Call {
    Call::at(
        AccountId::parse(ACCOUNTS[i % 2]).expect("valid account"),
        REGIONS[(i / 2) % 2],
        T0,
    )
}

/// A state of `objects` objects, plus the VPC pair the routes go through:
/// (state, route tables of the first VPC, the peering).
fn build(objects: usize, ids: &mut SequentialIds) -> Result<(State, Vec<String>, String)> {
    let mut state = State::new(Config {
        regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        ..Config::default()
    });
    for i in 0..objects / 2 {
        let cidr = format!("10.{}.{}.0/24", (i / 256) % 256, i % 256);
        state.create_vpc(&call(i), ids, &cidr)?;
    }
    let c = call(0);
    let a = state.create_vpc(&c, ids, "172.16.0.0/16")?;
    let b = state.create_vpc(&c, ids, "172.17.0.0/16")?;
    let pcx = active_peering(&mut state, &c, ids, &a.vpc_id, &b.vpc_id)?;
    let mut tables = Vec::new();
    for _ in 0..8 {
        tables.push(state.create_route_table(&c, ids, &a.vpc_id)?.route_table_id);
    }
    state.take_changes(state.config.clone(), state.next_dp_id());
    Ok((state, tables, pcx))
}

/// The write path under test.
trait Writer {
    fn write(&mut self, f: &mut dyn FnMut(&mut State) -> Result<(), ApiError>) -> Result<()>;
}

struct Objects(Controller);

impl Writer for Objects {
    fn write(&mut self, f: &mut dyn FnMut(&mut State) -> Result<(), ApiError>) -> Result<()> {
        self.0.transact(f)?;
        Ok(())
    }
}

/// The schema-1 write: read and decode the document, apply, compare every
/// region's view before and after, encode and write it back.
struct Document(Connection);

impl Document {
    fn create(path: &Path, state: &State) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.execute_batch(
            "CREATE TABLE state (id INTEGER PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE changes (revision INTEGER PRIMARY KEY, regions TEXT NOT NULL);",
        )?;
        conn.execute(
            "INSERT INTO state VALUES (1, 0, ?1)",
            params![serde_json::to_string(state)?],
        )?;
        Ok(Document(conn))
    }
}

impl Writer for Document {
    fn write(&mut self, f: &mut dyn FnMut(&mut State) -> Result<(), ApiError>) -> Result<()> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (rev, body): (i64, String) =
            tx.query_row("SELECT revision, body FROM state WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let before: State = serde_json::from_str(&body)?;
        let mut after = before.clone();
        f(&mut after)?;
        let touched: Vec<&str> = REGIONS
            .iter()
            .copied()
            .filter(|r| region_view(&before, r, 0) != region_view(&after, r, 0))
            .collect();
        let rev = rev + 1;
        tx.execute(
            "UPDATE state SET revision = ?1, body = ?2 WHERE id = 1",
            params![rev, serde_json::to_string(&after)?],
        )?;
        tx.execute(
            "INSERT INTO changes VALUES (?1, ?2)",
            params![rev, serde_json::to_string(&touched)?],
        )?;
        tx.execute(
            "DELETE FROM changes WHERE revision <= ?1",
            params![rev - 4096],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// (CreateVpc p50, p99, CreateRoute p50, p99) in ms.
fn measure(
    w: &mut dyn Writer,
    samples: usize,
    ids: &mut SequentialIds,
    tables: &[String],
    pcx: &str,
) -> Result<[f64; 4]> {
    let mut vpcs = Vec::with_capacity(samples);
    for i in 0..samples {
        let cidr = format!("192.168.{}.{}/28", i / 16 % 256, (i % 16) * 16);
        let c = call(i);
        let t = Instant::now();
        w.write(&mut |s| s.create_vpc(&c, ids, &cidr).map(|_| ()))?;
        vpcs.push(t.elapsed());
    }
    let mut routes = Vec::with_capacity(samples);
    for i in 0..samples.min(tables.len() * 50) {
        let table = &tables[i / 50];
        let dest = format!("172.17.{}.0/24", i % 50);
        let c = call(0);
        let t = Instant::now();
        w.write(&mut |s| s.create_route(&c, table, &dest, pcx))?;
        routes.push(t.elapsed());
    }
    vpcs.sort();
    routes.sort();
    Ok([
        percentile(&vpcs, 0.5),
        percentile(&vpcs, 0.99),
        percentile(&routes, 0.5),
        percentile(&routes, 0.99),
    ])
}

/// Keys per etcd commit while filling (the cluster allows 1,024 ops per
/// transaction; the commit adds its head key).
const FILL_CHUNK: usize = 1000;

/// Writes `entries` into an empty `kv` in commits of [`FILL_CHUNK`] keys.
fn fill(kv: &dyn Kv, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
    let (mut base, existing) = kv.snapshot()?;
    anyhow::ensure!(existing.is_empty(), "the bench needs an empty store");
    for chunk in entries.chunks(FILL_CHUNK) {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|(key, value)| Op::Put {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        match kv.commit(base, &ops)? {
            Commit::Done(rev) => base = rev,
            Commit::Conflict => anyhow::bail!("a concurrent writer while filling"),
        }
    }
    Ok(())
}

/// The p50 of `n` one-key commits straight through `kv` (a probe key,
/// deleted at the end): the store's own floor under a controller write.
fn raw_commits(kv: &dyn Kv, n: usize) -> Result<f64> {
    let (mut base, _) = kv.snapshot()?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let op = Op::Put {
            key: "bench-probe".into(),
            value: i.to_string().into_bytes(),
        };
        let t = Instant::now();
        match kv.commit(base, &[op])? {
            Commit::Done(rev) => base = rev,
            Commit::Conflict => anyhow::bail!("a concurrent writer while probing"),
        }
        times.push(t.elapsed());
    }
    let del = Op::Delete {
        key: "bench-probe".into(),
    };
    anyhow::ensure!(matches!(kv.commit(base, &[del])?, Commit::Done(_)));
    times.sort();
    Ok(percentile(&times, 0.5))
}

/// One CreateRoute committed by `writer`, until a second controller on
/// the same store (`other`) has seen it and `Feed::changes` returns the
/// region's delta: p50 / p99 over `samples` routes, printed.
fn delta_latency(
    name: &str,
    n: usize,
    writer: &Controller,
    other: &Controller,
    samples: usize,
    tables: &[String],
    pcx: &str,
) -> Result<()> {
    let region = REGIONS[0];
    let revisions = Feed::revisions(other);
    let mut times = Vec::with_capacity(samples);
    // A free slot in a table the write bench may have filled (untimed).
    let table = &tables[0];
    let _ = writer.transact(|s| s.delete_route(&call(0), table, "172.17.0.0/24"));
    for i in 0..samples {
        let since = *revisions.borrow();
        let dest = format!("172.17.{}.{}/28", 100 + i / 16 % 100, (i % 16) * 16);
        let c = call(0);
        let t = Instant::now();
        writer.transact(|s| s.create_route(&c, table, &dest, pcx))?;
        while *revisions.borrow() <= since {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(10),
                "the second controller did not see the write"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        let delta = Feed::changes(other, region, since)?;
        times.push(t.elapsed());
        anyhow::ensure!(!delta.upserts.is_empty(), "an empty delta");
        // Untimed: the route goes again (tables hold at most 50), and the
        // next write starts once the other controller has seen that too.
        let at = *revisions.borrow();
        writer.transact(|s| s.delete_route(&c, table, &dest))?;
        while *revisions.borrow() <= at {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(20),
                "the second controller did not see the delete"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    times.sort();
    println!(
        "  {name}: {n} objects, CreateRoute to another controller's view delta (Feed::changes): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Etcd,
    Document,
}

/// Write latency of the control store against the number of objects.
#[derive(clap::Parser)]
struct Opts {
    /// Objects already stored, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Writes per cell.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Stores to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,etcd,document"
    )]
    stores: Vec<Backend>,
    /// Members of the etcd cluster (1 to 9).
    #[arg(long = "etcd-members", default_value_t = 1)]
    members: usize,
    /// etcd TLS-only, with client certificates.
    #[arg(long)]
    etcd_tls: bool,
}

fn main() -> Result<()> {
    let o = <Opts as clap::Parser>::parse();
    anyhow::ensure!(o.samples > 0, "--samples must be at least 1");
    anyhow::ensure!((1..=9).contains(&o.members), "--etcd-members: 1 to 9");
    // Registered with the teardown: removed on an interrupt too.
    let dir = TempPath::new("store-bench");
    std::fs::create_dir_all(&dir.path)?;
    run(&dir.path, &o)
}

/// One cell: (store, objects, [CreateVpc p50, p99, CreateRoute p50, p99]).
type Row = (&'static str, usize, [f64; 4]);

fn run(dir: &Path, o: &Opts) -> Result<()> {
    let samples = o.samples;
    let etcd_name: &'static str = if o.members == 1 {
        "etcd (1 member)"
    } else {
        Box::leak(format!("etcd ({} members)", o.members).into_boxed_str())
    };
    println!(
        "write latency in ms, {samples} writes per cell (20 for the document from 50,000 objects)"
    );
    println!("SQLite in WAL mode; etcd {} member(s) in network namespaces{}, filled by commits of {FILL_CHUNK} keys straight through the Kv, measured writes through the controller", o.members, if o.etcd_tls { " (TLS, client certificates)" } else { " (plain gRPC)" });
    let mut rows: Vec<Row> = Vec::new();
    for &n in &o.sizes {
        let mut ids = SequentialIds(1 << 100);
        let (state, tables, pcx) = build(n, &mut ids)?;
        for &store in &o.stores {
            let t = Instant::now();
            let (name, cell) = match store {
                Backend::Sqlite => {
                    let path = dir.join(format!("keys-{n}.db"));
                    let kv = SqliteKv::open(&path, || state_entries(&state))?;
                    let mut w = Objects(Controller::new(Arc::new(kv))?);
                    let cell = measure(&mut w, samples, &mut ids, &tables, &pcx)?;
                    if Some(&n) == o.sizes.iter().max() {
                        let other = SqliteKv::open(&path, || state_entries(&state))?;
                        let other = Controller::new(Arc::new(other))?;
                        delta_latency("sqlite", n, &w.0, &other, samples, &tables, &pcx)?;
                    }
                    ("sqlite", cell)
                }
                Backend::Etcd => {
                    let cluster = if o.etcd_tls {
                        EtcdCluster::start_tls(o.members)
                    } else {
                        EtcdCluster::start(o.members)
                    };
                    let kv = cluster.kv("/bench/");
                    let filled = Instant::now();
                    fill(&kv, state_entries(&state))?;
                    println!(
                        "  etcd: {n} objects filled in {:.1} s",
                        filled.elapsed().as_secs_f64()
                    );
                    let raw = raw_commits(&kv, samples.min(50))?;
                    println!("  etcd: a bare Kv commit (one key) p50 {raw:.2} ms");
                    let mut w = Objects(Controller::new(Arc::new(kv))?);
                    let cell = measure(&mut w, samples, &mut ids, &tables, &pcx)?;
                    if Some(&n) == o.sizes.iter().max() {
                        let other = Controller::new(Arc::new(cluster.kv("/bench/")))?;
                        delta_latency(etcd_name, n, &w.0, &other, samples, &tables, &pcx)?;
                    }
                    // The controller (and its client) before the cluster.
                    drop(w);
                    drop(cluster);
                    (etcd_name, cell)
                }
                Backend::Document => {
                    // The document path is slow at scale: fewer writes there.
                    let doc_samples = if n >= 50_000 {
                        samples.min(20)
                    } else {
                        samples
                    };
                    let mut doc = Document::create(&dir.join(format!("doc-{n}.db")), &state)?;
                    let cell = measure(&mut doc, doc_samples, &mut ids, &tables, &pcx)?;
                    ("document (schema 1)", cell)
                }
            };
            println!(
                "  {name}: {n} objects measured in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            rows.push((name, n, cell));
        }
    }
    print_table(&rows);
    Ok(())
}

/// p50 and p99 per store, operation and size, with the ratio to the same
/// store's figure at 1,000 objects (or its smallest size measured).
fn print_table(rows: &[Row]) {
    println!(
        "\n{:<20} | {:>8} | {:<11} | {:>9} | {:>9} | {:>11} | {:>11}",
        "store", "objects", "write", "p50 ms", "p99 ms", "p50 / 1k", "p99 / 1k"
    );
    for (op, col) in [("CreateVpc", 0), ("CreateRoute", 2)] {
        for &(name, n, cell) in rows {
            let base = rows
                .iter()
                .filter(|r| r.0 == name)
                .min_by_key(|r| (r.1 != 1000, r.1))
                .map(|r| r.2)
                .unwrap_or(cell);
            println!(
                "{:<20} | {:>8} | {:<11} | {:>9.2} | {:>9.2} | {:>10.2}x | {:>10.2}x",
                name,
                n,
                op,
                cell[col],
                cell[col + 1],
                cell[col] / base[col],
                cell[col + 1] / base[col + 1]
            );
        }
    }
}
