//! The [`Kv`] contract on an embedded SQLite database: one machine, several
//! processes.
//!
//! Schema (version 2):
//! - `kv (key, value, mod_revision, expires_at)`: the live keys; a leased
//!   key has an expiry time (Unix ms), others NULL.
//! - `kv_log (revision, key, value)`: the changes of the last
//!   [`CHANGE_LOG_LEN`] revisions (value NULL: deleted), for
//!   [`Kv::changes`]; older revisions are pruned and asking for them is
//!   [`StoreError::Compacted`].
//! - `kv_meta`: the head revision, the revision of the last commit (which
//!   is what [`Kv::commit`] compares `base` with: lease expiry moves the
//!   head, not the last commit) and the oldest revision `changes` can start
//!   from.
//!
//! Leases: an expired key is deleted, as a batch of its own at a new
//! revision, by the next `commit` or `changes` call of any process that
//! notices it (an indexed lookup on `expires_at`); `snapshot` hides expired
//! keys not yet deleted. Every controller's change thread calls `changes`
//! at least once a second, so a lapsed registration disappears within about
//! a second of its expiry.
//!
//! Secrets: keys under [`codec::SECRET_PREFIX`] hold key material. When one
//! is deleted, its older rows in `kv_log` are deleted too, the connection
//! runs with `secure_delete` (freed pages are zeroed), and the WAL is
//! checkpointed with TRUNCATE so older copies leave the log file as well.
//!
//! Concurrency: WAL mode, `busy_timeout`, and every write in a
//! `BEGIN IMMEDIATE` transaction that re-reads the head, so two processes
//! never both commit on the same base. Commits of this process wake its
//! waiting `changes` calls at once; other processes' commits are seen by
//! polling the head every [`POLL`].

use crate::control::clock::unix_ms;
use crate::control::store::codec::{self, SECRET_PREFIX};
use crate::control::store::kv::{Batch, Commit, Entry, Kv, Op};
use crate::control::store::{StoreError, CHANGE_LOG_LEN};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a writer waits for another process's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting [`Kv::changes`] re-reads the head for commits of
/// other processes.
pub const POLL: Duration = Duration::from_millis(25);
/// At most this many revisions per [`Kv::changes`] answer (the caller asks
/// again for the rest).
const MAX_REVISIONS_PER_CALL: u64 = 1024;

/// The schema of this module.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key          TEXT    PRIMARY KEY,
    value        BLOB    NOT NULL,
    mod_revision INTEGER NOT NULL,
    expires_at   INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS kv_log (
    revision INTEGER NOT NULL,
    key      TEXT    NOT NULL,
    value    BLOB,
    PRIMARY KEY (revision, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    head        INTEGER NOT NULL,
    last_commit INTEGER NOT NULL,
    oldest      INTEGER NOT NULL
);
";

pub struct SqliteKv {
    /// Commits and sweeps. Reads use `reader`, so a write waiting for the
    /// database lock (or a checkpoint) never holds up this process's reads
    /// of changes.
    conn: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Bumped (and notified) on every commit of this process.
    commits: (Mutex<u64>, Condvar),
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteKv")
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    head: u64,
    last_commit: u64,
    oldest: u64,
}

impl SqliteKv {
    /// Opens (creating or migrating if needed) the database at `path`. A
    /// new database starts with `initial()` (e.g. the first config) at
    /// revision 0; a database of schema version 1 (one JSON state document
    /// and tunnel tables) is converted in one transaction, at the
    /// revision its state was at.
    pub fn open(
        path: impl AsRef<Path>,
        initial: impl FnOnce() -> Vec<(String, Vec<u8>)>,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut initial = Some(initial);
        let mut entries = None;
        let mut first = move || -> Vec<(String, Vec<u8>)> {
            entries
                .get_or_insert_with(|| initial.take().map(|f| f()).unwrap_or_default())
                .clone()
        };
        // Two processes creating the same database at once can see
        // SQLITE_BUSY where SQLite calls no busy handler (switching a new
        // file to WAL, reading a WAL index another process is building):
        // the whole open is retried, within the same bound as a write.
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::open_once(path, &mut first) {
                Err(StoreError::Sqlite(e)) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn open_once(
        path: &Path,
        initial: &mut dyn FnMut() -> Vec<(String, Vec<u8>)>,
    ) -> Result<Self, StoreError> {
        let mut conn = connect(path)?;
        if !up_to_date(&conn)? {
            let mut migrated = false;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew(version));
            }
            if version == 1 {
                let old = super::migrate::read_v1(&tx)?;
                tx.execute_batch(SCHEMA)?;
                init(&tx, old.revision, &old.entries)?;
                for (key, value) in &old.leased {
                    init_leased(&tx, key, value, codec::REGISTRATION_TTL)?;
                }
                super::migrate::drop_v1(&tx)?;
                migrated = true;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            } else if version < SCHEMA_VERSION {
                tx.execute_batch(SCHEMA)?;
                init(&tx, 0, &initial())?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            tx.commit()?;
            if migrated {
                checkpoint_truncate(&conn)?;
            }
        }
        Ok(SqliteKv {
            conn: Mutex::new(conn),
            reader: Mutex::new(connect(path)?),
            commits: (Mutex::new(0), Condvar::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic drops any open transaction (rolling it back): still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        let (count, cv) = &self.commits;
        *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        cv.notify_all();
    }

    /// Deletes expired leases now, if any (one batch at a new revision).
    pub fn sweep(&self) -> Result<(), StoreError> {
        if !any_expired(&self.lock_reader(), unix_ms())? {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut meta = read_meta(&tx)?;
        let swept = sweep_expired(&tx, &mut meta, unix_ms())?;
        if swept {
            write_meta(&tx, &meta)?;
        }
        tx.commit()?;
        drop(conn);
        if swept {
            self.notify();
        }
        Ok(())
    }

    fn read_batches(&self, since: u64) -> Result<Option<Vec<Batch>>, StoreError> {
        let mut conn = self.lock_reader();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let meta = read_meta(&tx)?;
        if since < meta.oldest {
            return Err(StoreError::Compacted {
                oldest: meta.oldest + 1,
            });
        }
        if meta.head <= since {
            return Ok(None);
        }
        let upto = since.saturating_add(MAX_REVISIONS_PER_CALL);
        let mut stmt = tx.prepare_cached(
            "SELECT revision, key, value FROM kv_log
             WHERE revision > ?1 AND revision <= ?2 ORDER BY revision, key",
        )?;
        let mut rows = stmt.query(params![to_i64(since), to_i64(upto)])?;
        let mut out: Vec<Batch> = Vec::new();
        while let Some(row) = rows.next()? {
            let rev = to_u64(row.get(0)?);
            let change = (row.get::<_, String>(1)?, row.get::<_, Option<Vec<u8>>>(2)?);
            match out.last_mut() {
                Some(b) if b.revision == rev => b.changes.push(change),
                _ => out.push(Batch {
                    revision: rev,
                    changes: vec![change],
                }),
            }
        }
        Ok(Some(out))
    }
}

impl Kv for SqliteKv {
    fn snapshot(&self) -> Result<(u64, Vec<Entry>), StoreError> {
        let mut conn = self.lock_reader();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let meta = read_meta(&tx)?;
        let mut stmt = tx.prepare_cached(
            "SELECT key, value, mod_revision FROM kv
             WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY key",
        )?;
        let mut rows = stmt.query(params![to_i64(unix_ms())])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Entry {
                key: row.get(0)?,
                value: row.get(1)?,
                mod_revision: to_u64(row.get(2)?),
            });
        }
        Ok((meta.head, out))
    }

    fn commit(&self, base: u64, ops: &[Op]) -> Result<Commit, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut meta = read_meta(&tx)?;
        if meta.last_commit > base {
            return Ok(Commit::Conflict);
        }
        let now = unix_ms();
        sweep_expired(&tx, &mut meta, now)?;
        if ops.is_empty() {
            write_meta(&tx, &meta)?;
            tx.commit()?;
            return Ok(Commit::Done(meta.head));
        }
        let rev = meta.head + 1;
        let mut secret_deleted = false;
        for op in ops {
            let (key, value, expires) = match op {
                Op::Put { key, value } => (key, Some(value), None),
                Op::PutLeased { key, value, ttl } => {
                    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                    (key, Some(value), Some(to_i64(now.saturating_add(ms))))
                }
                Op::Delete { key } => (key, None, None),
            };
            match value {
                Some(v) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO kv (key, value, mod_revision, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![key, v, to_i64(rev), expires])?;
                }
                None => {
                    tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                        .execute(params![key])?;
                    if key.starts_with(SECRET_PREFIX) {
                        tx.prepare_cached("DELETE FROM kv_log WHERE key = ?1")?
                            .execute(params![key])?;
                        secret_deleted = true;
                    }
                }
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO kv_log (revision, key, value) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![to_i64(rev), key, value])?;
        }
        meta.head = rev;
        meta.last_commit = rev;
        prune(&tx, &mut meta)?;
        write_meta(&tx, &meta)?;
        tx.commit()?;
        if secret_deleted {
            checkpoint_truncate(&conn)?;
        }
        drop(conn);
        self.notify();
        Ok(Commit::Done(rev))
    }

    fn changes(&self, since: u64, wait: Duration) -> Result<Vec<Batch>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            self.sweep()?;
            let seen = *self
                .commits
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(batches) = self.read_batches(since)? {
                return Ok(batches);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let (count, cv) = &self.commits;
            let guard = count.lock().unwrap_or_else(PoisonError::into_inner);
            if *guard == seen {
                let timeout = POLL.min(deadline - now);
                let _ = cv
                    .wait_timeout(guard, timeout)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// One machine: every process may run the singleton duties; they are
    /// written to be safe when several do (each step is a transaction that
    /// re-reads what it decides on).
    fn lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED, whatever the extended code.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A connection with the settings every one of ours has.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // Deleted key material is overwritten with zeros (per connection).
    conn.pragma_update(None, "secure_delete", true)?;
    Ok(conn)
}

/// True when the schema is in place at [`SCHEMA_VERSION`], so opening needs
/// no write (a write waits for the lock and an fsync).
fn up_to_date(conn: &Connection) -> Result<bool, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version != SCHEMA_VERSION {
        return Ok(false);
    }
    Ok(conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv_meta'")?
        .exists([])?)
}

fn init(
    tx: &Transaction<'_>,
    revision: u64,
    entries: &[(String, Vec<u8>)],
) -> Result<(), StoreError> {
    let rev = to_i64(revision);
    tx.execute(
        "INSERT OR IGNORE INTO kv_meta (id, head, last_commit, oldest) VALUES (1, ?1, ?1, ?1)",
        params![rev],
    )?;
    let mut stmt = tx.prepare(
        "INSERT OR REPLACE INTO kv (key, value, mod_revision, expires_at) VALUES (?1, ?2, ?3, NULL)",
    )?;
    for (key, value) in entries {
        stmt.execute(params![key, value, rev])?;
    }
    Ok(())
}

/// Like [`init`] for one leased key (migrated registrations).
fn init_leased(
    tx: &Transaction<'_>,
    key: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<(), StoreError> {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    tx.execute(
        "INSERT OR REPLACE INTO kv (key, value, mod_revision, expires_at)
         VALUES (?1, ?2, (SELECT head FROM kv_meta WHERE id = 1), ?3)",
        params![key, value, to_i64(unix_ms().saturating_add(ms))],
    )?;
    Ok(())
}

fn read_meta(conn: &Connection) -> Result<Meta, StoreError> {
    let (head, last_commit, oldest): (i64, i64, i64) = conn.query_row(
        "SELECT head, last_commit, oldest FROM kv_meta WHERE id = 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    Ok(Meta {
        head: to_u64(head),
        last_commit: to_u64(last_commit),
        oldest: to_u64(oldest),
    })
}

fn write_meta(tx: &Transaction<'_>, meta: &Meta) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE kv_meta SET head = ?1, last_commit = ?2, oldest = ?3 WHERE id = 1")?
        .execute(params![
            to_i64(meta.head),
            to_i64(meta.last_commit),
            to_i64(meta.oldest)
        ])?;
    Ok(())
}

fn any_expired(conn: &Connection, now: u64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1",
        )?
        .exists(params![to_i64(now)])?)
}

/// Deletes expired leases as one batch at `meta.head + 1` (which does not
/// count as a commit). Returns whether there were any.
fn sweep_expired(tx: &Transaction<'_>, meta: &mut Meta, now: u64) -> Result<bool, StoreError> {
    let keys: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map(params![to_i64(now)], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if keys.is_empty() {
        return Ok(false);
    }
    let rev = meta.head + 1;
    for key in &keys {
        tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
            .execute(params![key])?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO kv_log (revision, key, value) VALUES (?1, ?2, NULL)",
        )?
        .execute(params![to_i64(rev), key])?;
    }
    meta.head = rev;
    prune(tx, meta)?;
    Ok(true)
}

/// Keeps the log to the last [`CHANGE_LOG_LEN`] revisions.
fn prune(tx: &Transaction<'_>, meta: &mut Meta) -> Result<(), StoreError> {
    let floor = meta.head.saturating_sub(CHANGE_LOG_LEN);
    if floor > meta.oldest {
        tx.prepare_cached("DELETE FROM kv_log WHERE revision <= ?1")?
            .execute(params![to_i64(floor)])?;
        meta.oldest = floor;
    }
    Ok(())
}

/// See the module doc (secrets). A reader may keep the checkpoint from
/// completing; the frames then leave at a later checkpoint.
fn checkpoint_truncate(conn: &Connection) -> Result<(), StoreError> {
    let _busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    Ok(())
}

/// SQLite integers are i64; revisions and times never get near the sign bit.
pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::test_dir::TempDir;

    fn put(key: &str, value: &[u8]) -> Op {
        Op::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    /// Several processes starting at once on a database nobody has created
    /// yet (a daemon and `create-account`, say) all open it: the loser of
    /// every race waits instead of failing with "database is locked".
    #[test]
    fn concurrent_first_opens_all_succeed() {
        for round in 0..20 {
            let dir = TempDir::new("kv-race");
            let path = dir.path().join(format!("s{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let threads: Vec<_> = (0..6)
                .map(|_| {
                    let path = path.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteKv::open(&path, || vec![("config".into(), b"c".to_vec())])
                            .map(|kv| kv.snapshot().unwrap().0)
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(t.join().unwrap().unwrap(), 0, "round {round}");
            }
        }
    }

    #[test]
    fn commit_compares_the_base_and_logs_changes() {
        let dir = TempDir::new("kv-commit");
        let kv = SqliteKv::open(dir.path().join("s.db"), || {
            vec![("config".into(), b"c".to_vec())]
        })
        .unwrap();
        let (rev, entries) = kv.snapshot().unwrap();
        assert_eq!((rev, entries.len()), (0, 1));
        assert_eq!(
            kv.commit(0, &[put("a", b"1"), put("b", b"2")]).unwrap(),
            Commit::Done(1)
        );
        assert_eq!(kv.commit(0, &[put("a", b"x")]).unwrap(), Commit::Conflict);
        assert_eq!(
            kv.commit(1, &[Op::Delete { key: "a".into() }]).unwrap(),
            Commit::Done(2)
        );
        let batches = kv.changes(0, Duration::ZERO).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].revision, 1);
        assert_eq!(
            batches[0].changes,
            vec![
                ("a".into(), Some(b"1".to_vec())),
                ("b".into(), Some(b"2".to_vec()))
            ]
        );
        assert_eq!(batches[1].changes, vec![("a".into(), None)]);
        assert!(kv.changes(2, Duration::ZERO).unwrap().is_empty());
        let (rev, entries) = kv.snapshot().unwrap();
        assert_eq!(rev, 2);
        let keys: Vec<_> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.mod_revision))
            .collect();
        assert_eq!(keys, [("b", 1), ("config", 0)]);
    }

    #[test]
    fn leases_expire_as_deletes_that_are_not_commits() {
        let dir = TempDir::new("kv-lease");
        let kv = SqliteKv::open(dir.path().join("s.db"), Vec::new).unwrap();
        let lease = |v: &[u8], ms| Op::PutLeased {
            key: "gw".into(),
            value: v.to_vec(),
            ttl: Duration::from_millis(ms),
        };
        assert_eq!(kv.commit(0, &[lease(b"1", 50)]).unwrap(), Commit::Done(1));
        assert_eq!(kv.snapshot().unwrap().1.len(), 1);
        std::thread::sleep(Duration::from_millis(80));
        // Hidden from snapshots before the sweep; deleted by it.
        assert!(kv.snapshot().unwrap().1.is_empty());
        let batches = kv.changes(1, Duration::ZERO).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(
            (batches[0].revision, batches[0].changes.clone()),
            (2, vec![("gw".into(), None)])
        );
        // The expiry is not a commit: base 1 still commits.
        assert_eq!(
            kv.commit(1, &[lease(b"2", 60_000)]).unwrap(),
            Commit::Done(3)
        );
        assert_eq!(kv.snapshot().unwrap().1.len(), 1);
    }

    #[test]
    fn changes_wait_for_a_commit_and_compact() {
        let dir = TempDir::new("kv-wait");
        let path = dir.path().join("s.db");
        let kv = SqliteKv::open(&path, Vec::new).unwrap();
        let t = std::thread::spawn(move || {
            let other = SqliteKv::open(&path, Vec::new).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            other.commit(0, &[put("x", b"1")]).unwrap()
        });
        let batches = kv.changes(0, Duration::from_secs(5)).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(t.join().unwrap(), Commit::Done(1));
        assert!(kv.changes(1, Duration::from_millis(30)).unwrap().is_empty());
        for i in 1..=CHANGE_LOG_LEN + 1 {
            kv.commit(i, &[put("x", &i.to_be_bytes())]).unwrap();
        }
        assert!(matches!(
            kv.changes(0, Duration::ZERO),
            Err(StoreError::Compacted { oldest: 3 })
        ));
        assert_eq!(
            kv.changes(2, Duration::ZERO).unwrap().len() as u64,
            MAX_REVISIONS_PER_CALL
        );
    }

    #[test]
    fn deleted_secrets_leave_the_log_and_the_files() {
        let dir = TempDir::new("kv-secret");
        let path = dir.path().join("s.db");
        let kv = SqliteKv::open(&path, Vec::new).unwrap();
        let secret = [0x5au8; 48];
        let key = format!("{SECRET_PREFIX}0000000001");
        kv.commit(0, &[put(&key, &secret)]).unwrap();
        kv.commit(1, &[Op::Delete { key: key.clone() }]).unwrap();
        let batches = kv.changes(0, Duration::ZERO).unwrap();
        assert_eq!(batches.len(), 1, "the put is gone from the log");
        assert_eq!(batches[0].changes, vec![(key, None)]);
        drop(kv);
        for file in [path.clone(), path.with_extension("db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{}",
                file.display()
            );
        }
    }
}
