//! Embedded SQLite [`Store`], safe for several processes on one host.
//!
//! Schema choice: the whole [`State`] is one JSON document in one row, next
//! to its revision. The model's invariants (overlaps, quotas, one peering per
//! VPC pair) span many objects and are checked in memory by the model, so a
//! transaction is "read the document, apply the operation, write it back":
//! no object-relational mapping to keep in sync with the model, and the same
//! shape as a single etcd key updated by compare-and-swap. The state of a
//! peering deployment is small (thousands of objects at most), so rewriting
//! it per change is cheap.
//!
//! Concurrency: WAL mode lets readers proceed during a write; writes start
//! with `BEGIN IMMEDIATE`, taking the write lock *before* reading the state,
//! so two processes can never both read revision N and both write N+1.
//! `busy_timeout` makes a second writer wait instead of failing at once.

use crate::control::account::AccountId;
use crate::control::config::Config;
use crate::control::error::ApiError;
use crate::control::state::State;
use crate::control::store::tunnel::TUNNEL_SCHEMA;
use crate::control::store::{
    check_compaction, hash_token, new_token, touched_regions, Change, Store, StoreError,
    CHANGE_LOG_LEN,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a writer waits for another process's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bumped when the schema changes incompatibly. Additive changes (new
/// tables created with `IF NOT EXISTS`, such as the tunnel tables of
/// [`super::tunnel`]) keep the version: older databases gain the tables when
/// opened, and older programs, which ignore them, can still open newer
/// databases.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    body     TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    regions  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash    TEXT PRIMARY KEY,
    account TEXT NOT NULL
);
";

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A new database
    /// starts from an empty state with `config`; an existing one keeps its
    /// stored configuration.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        debug_assert!(mode.eq_ignore_ascii_case("wal") || mode == "memory");
        // Deleted content (erased tunnel keys) is overwritten with zeros
        // instead of lingering in free space. In WAL mode the zeroed pages
        // are new WAL frames; they overwrite the database file's pages at
        // checkpoint (see `tunnel::checkpoint_truncate`). Per connection.
        conn.pragma_update(None, "secure_delete", true)?;
        if up_to_date(&conn)? {
            return Ok(SqliteStore {
                conn: Mutex::new(conn),
            });
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew(version));
        }
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(TUNNEL_SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let body = serde_json::to_string(&State::new(config))?;
        tx.execute(
            "INSERT OR IGNORE INTO state (id, revision, body) VALUES (1, 0, ?1)",
            params![body],
        )?;
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        // An unwinding panic drops any open transaction, rolling it back, so
        // the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// True when the schema (every table of [`SCHEMA`] and [`TUNNEL_SCHEMA`],
/// at [`SCHEMA_VERSION`]) and the state row are in place, so opening needs
/// no write: a write waits for the lock and an fsync, which on a busy host
/// took hundreds of milliseconds of an agent's restart.
fn up_to_date(conn: &Connection) -> Result<bool, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version != SCHEMA_VERSION {
        return Ok(false);
    }
    let mut table =
        conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?;
    for name in schema_tables(SCHEMA).chain(schema_tables(TUNNEL_SCHEMA)) {
        if !table.exists(params![name])? {
            return Ok(false);
        }
    }
    Ok(conn
        .prepare("SELECT 1 FROM state WHERE id = 1")?
        .exists([])?)
}

/// Names of the tables a schema creates (`CREATE TABLE IF NOT EXISTS name`).
fn schema_tables(schema: &str) -> impl Iterator<Item = &str> {
    schema
        .split("CREATE TABLE IF NOT EXISTS")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == '(')
                .find(|w| !w.is_empty())
        })
}

fn read_state(conn: &Connection) -> Result<State, StoreError> {
    let (revision, body): (i64, String) =
        conn.query_row("SELECT revision, body FROM state WHERE id = 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    let mut state: State = serde_json::from_str(&body)?;
    state.revision = to_u64(revision);
    Ok(state)
}

fn read_revision(conn: &Connection) -> Result<u64, StoreError> {
    let rev: i64 = conn.query_row("SELECT revision FROM state WHERE id = 1", [], |row| {
        row.get(0)
    })?;
    Ok(to_u64(rev))
}

/// SQLite integers are i64; revisions never get near the sign bit.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store for SqliteStore {
    fn load(&self) -> Result<State, StoreError> {
        read_state(&self.lock())
    }

    fn revision(&self) -> Result<u64, StoreError> {
        read_revision(&self.lock())
    }

    fn transact<T, F>(&self, f: F) -> Result<(T, u64), StoreError>
    where
        F: FnOnce(&mut State) -> Result<T, ApiError>,
    {
        let mut conn = self.lock();
        // Dropping `tx` without commit (early returns below) rolls back.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = read_state(&tx)?;
        let mut after = before.clone();
        let out = f(&mut after)?;
        after.revision = before.revision;
        if after == before {
            return Ok((out, before.revision));
        }
        let regions = touched_regions(&before, &after);
        let rev = before.revision + 1;
        after.revision = rev;
        tx.execute(
            "UPDATE state SET revision = ?1, body = ?2 WHERE id = 1",
            params![to_i64(rev), serde_json::to_string(&after)?],
        )?;
        tx.execute(
            "INSERT INTO changes (revision, regions) VALUES (?1, ?2)",
            params![to_i64(rev), serde_json::to_string(&regions)?],
        )?;
        tx.execute(
            "DELETE FROM changes WHERE revision <= ?1",
            params![to_i64(rev.saturating_sub(CHANGE_LOG_LEN))],
        )?;
        tx.commit()?;
        Ok((out, rev))
    }

    fn changes_since(&self, revision: u64) -> Result<Vec<Change>, StoreError> {
        let mut conn = self.lock();
        // A read transaction gives a consistent snapshot of both tables.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let current = read_revision(&tx)?;
        let oldest: Option<i64> =
            tx.query_row("SELECT MIN(revision) FROM changes", [], |row| row.get(0))?;
        check_compaction(revision, current, oldest.map(to_u64))?;
        let mut stmt = tx.prepare(
            "SELECT revision, regions FROM changes WHERE revision > ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map(params![to_i64(revision)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (rev, regions) = row?;
            out.push(Change {
                revision: to_u64(rev),
                regions: serde_json::from_str(&regions)?,
            });
        }
        Ok(out)
    }

    fn create_token(&self, account: &AccountId) -> Result<String, StoreError> {
        let token = new_token();
        self.lock().execute(
            "INSERT INTO tokens (hash, account) VALUES (?1, ?2)",
            params![hash_token(&token), account.as_str()],
        )?;
        Ok(token)
    }

    fn authenticate(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        let account: Option<String> = self
            .lock()
            .query_row(
                "SELECT account FROM tokens WHERE hash = ?1",
                params![hash_token(token)],
                |row| row.get(0),
            )
            .optional()?;
        // A row that no longer parses is treated as no match, not an error.
        Ok(account.and_then(|a| AccountId::parse(&a).ok()))
    }

    fn revoke_tokens(&self, account: &AccountId) -> Result<usize, StoreError> {
        let n = self.lock().execute(
            "DELETE FROM tokens WHERE account = ?1",
            params![account.as_str()],
        )?;
        Ok(n)
    }
}
