//! Control-store write latency against the number of stored objects:
//! CreateVpc and CreateRoute through the controller over the SQLite Kv
//! (objects under their own keys), next to the schema-1 path it replaced
//! (the whole state as one JSON document, every region's view recomputed
//! per write), which this binary reproduces for comparison.
//!
//! ```text
//! cargo run --release -p peering-tests --bin store-bench [-- --sizes 1000,10000,100000 --samples 200]
//! ```
//!
//! Objects: half VPCs, half their main route tables, spread over two
//! accounts and two regions; they are loaded directly into a fresh
//! database (bulk), then each measured write is one API-level operation
//! committed on its own (fsync included, WAL mode).

use anyhow::{Context, Result};
use peering_userspace::control::account::{AccountId, Call};
use peering_userspace::control::config::Config;
use peering_userspace::control::controller::Controller;
use peering_userspace::control::error::ApiError;
use peering_userspace::control::ids::SequentialIds;
use peering_userspace::control::peering::CreatePeering;
use peering_userspace::control::state::State;
use peering_userspace::control::store::codec::state_entries;
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
        state
            .create_vpc(&call(i), ids, &cidr)
            .map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let c = call(0);
    let a = state.create_vpc(&c, ids, "172.16.0.0/16").map_err(err)?;
    let b = state.create_vpc(&c, ids, "172.17.0.0/16").map_err(err)?;
    let req = CreatePeering {
        vpc_id: a.vpc_id.clone(),
        peer_vpc_id: b.vpc_id.clone(),
        peer_owner_id: None,
        peer_region: None,
    };
    let pcx = state
        .create_vpc_peering_connection(&c, ids, &req)
        .map_err(err)?
        .vpc_peering_connection_id;
    state.accept_vpc_peering_connection(&c, &pcx).map_err(err)?;
    let mut tables = Vec::new();
    for _ in 0..8 {
        tables.push(
            state
                .create_route_table(&c, ids, &a.vpc_id)
                .map_err(err)?
                .route_table_id,
        );
    }
    state.take_changes(state.config.clone(), state.next_dp_id());
    Ok((state, tables, pcx))
}

fn err(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
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

fn main() -> Result<()> {
    let mut sizes = vec![1_000, 10_000, 100_000];
    let mut samples = 200;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .context("--sizes needs a value")?
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?
            }
            "--samples" => samples = args.next().context("--samples needs a value")?.parse()?,
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("peering-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir, &sizes, samples);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(dir: &Path, sizes: &[usize], samples: usize) -> Result<()> {
    println!("write latency in ms (p50 / p99), SQLite in WAL mode, {samples} writes per cell");
    println!(
        "{:>8} | {:>17} | {:>17} | {:>19} | {:>19}",
        "objects",
        "CreateVpc (keys)",
        "CreateRoute (keys)",
        "CreateVpc (document)",
        "CreateRoute (doc.)"
    );
    for &n in sizes {
        let mut ids = SequentialIds(1 << 100);
        let (state, tables, pcx) = build(n, &mut ids)?;
        let path = dir.join(format!("keys-{n}.db"));
        let kv = SqliteKv::open(&path, || state_entries(&state))?;
        let mut objects = Objects(Controller::new(Arc::new(kv))?);
        let keys = measure(&mut objects, samples, &mut ids, &tables, &pcx)?;
        drop(objects);
        // The document path is slow at scale: fewer writes there.
        let doc_samples = if n >= 50_000 {
            samples.min(20)
        } else {
            samples
        };
        let mut doc = Document::create(&dir.join(format!("doc-{n}.db")), &state)?;
        let docs = measure(&mut doc, doc_samples, &mut ids, &tables, &pcx)?;
        println!(
            "{:>8} | {:>7.2} / {:>7.2} | {:>7.2} / {:>7.2} | {:>8.2} / {:>8.2} | {:>8.2} / {:>8.2}",
            n, keys[0], keys[1], keys[2], keys[3], docs[0], docs[1], docs[2], docs[3]
        );
    }
    Ok(())
}
