//! Tunnel data in the control store: the deployment-wide tunnel keys, the
//! rotation settings, the gateway registry and early-rotation requests.
//!
//! None of this lives in the [`crate::control::state::State`] document: keys
//! are secret and change every few minutes, and the state is customer-facing
//! and versioned by revision (a key rotation must not bump the revision that
//! agents watch for dataplane changes). Each kind of record has its own
//! table instead (see [`TUNNEL_SCHEMA`]).
//!
//! Secrets: key material is a BLOB in `tunnel_keys`; the connection runs
//! with `PRAGMA secure_delete = ON` (set in [`SqliteStore::open`]), so an
//! erased key's bytes are overwritten in the database pages, and erasing
//! keys ends with a `wal_checkpoint(TRUNCATE)` so older copies leave the
//! write-ahead log too. Nothing here logs, formats or returns key bytes in
//! an error.

use crate::control::store::{SqliteStore, StoreError};
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial, KEY_LEN};
use crate::tunnel::schedule::{PublishedEpoch, RotationPolicy};
use crate::tunnel::Millis;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::net::SocketAddrV4;

/// Tables added to the SQLite schema. Purely additive (created if missing
/// on every open), so databases created before them open unchanged and
/// gain the tables; programs that predate them ignore them.
///
/// - `gateways`: `AUTOINCREMENT` makes SQLite never hand out an id twice,
///   even if rows were deleted: a gateway id is half of every nonce the
///   gateway seals with, so reuse across regions would be a nonce reuse.
/// - `tunnel_settings` and `tunnel_rotation_request` hold at most one row.
pub(super) const TUNNEL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS gateways (
    gateway_id INTEGER PRIMARY KEY AUTOINCREMENT,
    region     TEXT    NOT NULL UNIQUE,
    endpoint   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tunnel_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    interval_ms INTEGER NOT NULL,
    lead_ms     INTEGER NOT NULL,
    overlap_ms  INTEGER NOT NULL,
    algorithm   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS tunnel_keys (
    epoch       INTEGER PRIMARY KEY,
    algorithm   TEXT    NOT NULL,
    activate_at INTEGER NOT NULL,
    material    BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS tunnel_rotation_request (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
";

/// The gateway serving one region, as registered by its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRecord {
    pub region: String,
    /// Unique in the deployment, stable for the region, >= 1.
    pub gateway_id: u32,
    /// Underlay address peers send tunnel datagrams to.
    pub endpoint: SocketAddrV4,
    /// When the gateway last registered (Unix milliseconds).
    pub updated_at: Millis,
}

/// Deployment-wide tunnel configuration, written by `peering-controld`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSettings {
    pub policy: RotationPolicy,
    /// Algorithm of newly generated keys (each key carries its own).
    pub algorithm: Algorithm,
}

/// Stored (and command-line) name of an algorithm.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Aes256Gcm => "aes-256-gcm",
        Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
    }
}

/// Inverse of [`algorithm_name`].
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "aes-256-gcm" => Some(Algorithm::Aes256Gcm),
        "chacha20-poly1305" => Some(Algorithm::ChaCha20Poly1305),
        _ => None,
    }
}

impl SqliteStore {
    /// Registers (or updates the endpoint of) the gateway serving `region`;
    /// returns its gateway id, stable for the region across restarts,
    /// unique in the deployment, >= 1.
    pub fn register_gateway(
        &self,
        region: &str,
        endpoint: SocketAddrV4,
        now: Millis,
    ) -> Result<u32, StoreError> {
        let now = to_sql(now, "gateway update time")?;
        let endpoint = endpoint.to_string();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT gateway_id FROM gateways WHERE region = ?1",
                params![region],
                |row| row.get(0),
            )
            .optional()?;
        let id = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE gateways SET endpoint = ?2, updated_at = ?3 WHERE gateway_id = ?1",
                    params![id, endpoint, now],
                )?;
                gateway_id(id)?
            }
            None => {
                tx.execute(
                    "INSERT INTO gateways (region, endpoint, updated_at) VALUES (?1, ?2, ?3)",
                    params![region, endpoint, now],
                )?;
                // Dropping `tx` rolls the insert back.
                u32::try_from(tx.last_insert_rowid())
                    .ok()
                    .filter(|&id| id >= 1)
                    .ok_or(StoreError::GatewayIdsExhausted)?
            }
        };
        tx.commit()?;
        Ok(id)
    }

    /// Every registered gateway, ascending gateway id.
    pub fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT region, gateway_id, endpoint, updated_at FROM gateways ORDER BY gateway_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let region: String = row.get(0)?;
            let endpoint: String = row.get(2)?;
            let endpoint = endpoint.parse().map_err(|_| {
                StoreError::Corrupt(format!(
                    "gateway of region {region:?} has endpoint {endpoint:?}, not an IPv4 address:port"
                ))
            })?;
            out.push(GatewayRecord {
                gateway_id: gateway_id(row.get(1)?)?,
                endpoint,
                updated_at: from_sql(row.get(3)?, "gateway update time")?,
                region,
            });
        }
        Ok(out)
    }

    /// Stores the deployment's tunnel settings, replacing earlier ones.
    pub fn set_tunnel_settings(&self, settings: &TunnelSettings) -> Result<(), StoreError> {
        let policy = &settings.policy;
        self.lock().execute(
            "INSERT OR REPLACE INTO tunnel_settings
                 (id, interval_ms, lead_ms, overlap_ms, algorithm)
             VALUES (1, ?1, ?2, ?3, ?4)",
            params![
                to_sql(policy.interval(), "rotation interval")?,
                to_sql(policy.lead(), "rotation lead")?,
                to_sql(policy.overlap(), "rotation overlap")?,
                algorithm_name(settings.algorithm),
            ],
        )?;
        Ok(())
    }

    /// The deployment's tunnel settings; None until a controld has
    /// configured it.
    pub fn tunnel_settings(&self) -> Result<Option<TunnelSettings>, StoreError> {
        read_settings(&self.lock())
    }

    /// Stores a newly generated key. Refuses (with
    /// [`StoreError::KeyNotNewer`]) a key whose epoch or activation time is
    /// not above the newest stored key's: epochs and activation times must
    /// grow together for gateways and for [`Self::erase_expired_keys`].
    pub fn publish_key(&self, key: &EpochKey) -> Result<(), StoreError> {
        let activate_at = to_sql(key.activate_at, "key activation time")?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(latest) = read_latest(&tx)? {
            if key.epoch <= latest.epoch || key.activate_at <= latest.activate_at {
                return Err(StoreError::KeyNotNewer {
                    epoch: key.epoch,
                    activate_at: key.activate_at,
                    latest: latest.epoch,
                    latest_activate_at: latest.activate_at,
                });
            }
        }
        // SQLite copies the bound bytes into its own buffers (which it does
        // not zeroize); that copy is outside our control.
        tx.execute(
            "INSERT INTO tunnel_keys (epoch, algorithm, activate_at, material)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                key.epoch,
                algorithm_name(key.algorithm),
                activate_at,
                &key.material.as_bytes()[..],
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every key still held, ascending epoch: one indexed read of at most a
    /// few rows through a cached statement, cheap enough to poll every
    /// 200 ms.
    pub fn tunnel_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT epoch, algorithm, activate_at, material FROM tunnel_keys ORDER BY epoch",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(key_from_row(row)?);
        }
        Ok(out)
    }

    /// The newest published epoch (for `KeySchedule::new` after a restart).
    /// Erasure never removes the newest key, so this survives erasure.
    pub fn latest_epoch(&self) -> Result<Option<PublishedEpoch>, StoreError> {
        read_latest(&self.lock())
    }

    /// Deletes every key whose erase time (its successor's `activate_at`
    /// plus the stored policy's overlap) is <= `now`; returns how many. The
    /// newest key has no successor and is never erased. Erases nothing
    /// while no tunnel settings are stored.
    pub fn erase_expired_keys(&self, now: Millis) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(settings) = read_settings(&tx)? else {
            return Ok(0);
        };
        let mut held = Vec::new();
        {
            let mut stmt =
                tx.prepare_cached("SELECT epoch, activate_at FROM tunnel_keys ORDER BY epoch")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let epoch: i64 = row.get(0)?;
                held.push((epoch, from_sql(row.get(1)?, "key activation time")?));
            }
        }
        let mut erased = 0;
        for pair in held.windows(2) {
            let ((epoch, _), (_, successor_activate_at)) = (pair[0], pair[1]);
            if settings.policy.erase_at(successor_activate_at) <= now {
                erased += tx.execute("DELETE FROM tunnel_keys WHERE epoch = ?1", params![epoch])?;
            }
        }
        tx.commit()?;
        if erased > 0 {
            checkpoint_truncate(&conn)?;
        }
        Ok(erased)
    }

    /// A gateway asks for an early rotation (its key usage limit is near);
    /// controld takes the request. Requests before it is taken coalesce.
    pub fn request_rotation(&self) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR IGNORE INTO tunnel_rotation_request (id) VALUES (1)",
            [],
        )?;
        Ok(())
    }

    /// Whether a rotation was requested since the last call; clears the
    /// request (atomically: one DELETE).
    pub fn take_rotation_request(&self) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .execute("DELETE FROM tunnel_rotation_request WHERE id = 1", [])?;
        Ok(n > 0)
    }
}

/// Moves erased keys out of the write-ahead log. With `secure_delete`, the
/// DELETE wrote zeroed versions of the key's pages as new WAL frames; the
/// database file still holds the old pages until a checkpoint copies the
/// new frames over them, and the WAL may still hold frames with the key
/// from when it was inserted. A TRUNCATE checkpoint does both: it
/// overwrites the pages in the database file and truncates the WAL to zero
/// bytes. If a reader keeps it from completing (it waits up to the busy
/// timeout), the frames stay until a later checkpoint or until the WAL is
/// rewritten from its start; that is not an error.
fn checkpoint_truncate(conn: &Connection) -> Result<(), StoreError> {
    let _busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    Ok(())
}

fn read_settings(conn: &Connection) -> Result<Option<TunnelSettings>, StoreError> {
    let row = conn
        .query_row(
            "SELECT interval_ms, lead_ms, overlap_ms, algorithm FROM tunnel_settings WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((interval, lead, overlap, algorithm)) = row else {
        return Ok(None);
    };
    let policy = RotationPolicy::new(
        from_sql(interval, "rotation interval")?,
        from_sql(lead, "rotation lead")?,
        from_sql(overlap, "rotation overlap")?,
    )
    .map_err(|e| StoreError::Corrupt(format!("tunnel settings: {e}")))?;
    let algorithm = parse_algorithm(&algorithm).ok_or_else(|| {
        StoreError::Corrupt(format!("tunnel settings: unknown algorithm {algorithm:?}"))
    })?;
    Ok(Some(TunnelSettings { policy, algorithm }))
}

fn read_latest(conn: &Connection) -> Result<Option<PublishedEpoch>, StoreError> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT epoch, activate_at FROM tunnel_keys ORDER BY epoch DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    row.map(|(epoch, activate_at)| {
        Ok(PublishedEpoch {
            epoch: epoch_from_sql(epoch)?,
            activate_at: from_sql(activate_at, "key activation time")?,
        })
    })
    .transpose()
}

/// Decodes one `tunnel_keys` row. The BLOB is borrowed from SQLite's row
/// buffer (no intermediate `Vec`) and copied exactly once, straight into
/// the [`KeyMaterial`], which zeroizes itself on drop.
fn key_from_row(row: &Row<'_>) -> Result<EpochKey, StoreError> {
    let epoch = epoch_from_sql(row.get(0)?)?;
    let algorithm = row
        .get_ref(1)?
        .as_str()
        .ok()
        .and_then(parse_algorithm)
        .ok_or_else(|| StoreError::Corrupt(format!("key epoch {epoch}: unknown algorithm")))?;
    let activate_at = from_sql(row.get(2)?, "key activation time")?;
    let blob = row
        .get_ref(3)?
        .as_blob()
        .map_err(|_| StoreError::Corrupt(format!("key epoch {epoch}: material is not a blob")))?;
    let material = KeyMaterial::from_slice(blob).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "key epoch {epoch}: material is {} bytes, expected {KEY_LEN}",
            blob.len()
        ))
    })?;
    Ok(EpochKey {
        epoch,
        algorithm,
        activate_at,
        material,
    })
}

fn gateway_id(id: i64) -> Result<u32, StoreError> {
    u32::try_from(id)
        .ok()
        .filter(|&id| id >= 1)
        .ok_or_else(|| StoreError::Corrupt(format!("gateway id {id} is not in 1..=u32::MAX")))
}

fn epoch_from_sql(epoch: i64) -> Result<u32, StoreError> {
    u32::try_from(epoch).map_err(|_| StoreError::Corrupt(format!("key epoch {epoch} is not a u32")))
}

fn to_sql(value: Millis, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what))
}

fn from_sql(value: i64, what: &str) -> Result<Millis, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is negative")))
}
