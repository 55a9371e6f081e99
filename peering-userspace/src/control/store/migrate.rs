//! Conversion of a schema-1 database (the whole state as one JSON document,
//! plus token and tunnel tables) to the key layout of [`super::codec`], run
//! once by [`super::sqlite_kv::SqliteKv::open`] inside its transaction.

use crate::control::account::AccountId;
use crate::control::state::State;
use crate::control::store::codec::{self, Registration};
use crate::control::store::sqlite_kv::to_u64;
use crate::control::store::tunnel::parse_algorithm;
use crate::control::store::{StoreError, TunnelSettings};
use crate::tunnel::key::{EpochKey, KeyMaterial};
use crate::tunnel::schedule::RotationPolicy;
use rusqlite::{Connection, OptionalExtension};

/// What a schema-1 database holds, as keys.
pub(super) struct V1 {
    pub revision: u64,
    pub entries: Vec<(String, Vec<u8>)>,
    /// Gateway registrations: leased from the time of migration.
    pub leased: Vec<(String, Vec<u8>)>,
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([name])?)
}

fn bad(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("schema-1 database: {what}"))
}

pub(super) fn read_v1(conn: &Connection) -> Result<V1, StoreError> {
    let mut out = V1 {
        revision: 0,
        entries: Vec::new(),
        leased: Vec::new(),
    };
    if table_exists(conn, "state")? {
        let row: Option<(i64, String)> = conn
            .query_row("SELECT revision, body FROM state WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((revision, body)) = row {
            let state: State = serde_json::from_str(&body)?;
            out.revision = to_u64(revision);
            out.entries = codec::state_entries(&state);
        }
    }
    if table_exists(conn, "tokens")? {
        let mut stmt = conn.prepare("SELECT hash, account FROM tokens")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let hash: String = row.get(0)?;
            let account: String = row.get(1)?;
            // A row that no longer parses could never authenticate: dropped.
            if let Ok(a) = AccountId::parse(&account) {
                out.entries
                    .push((codec::token_key(&hash), codec::token_value(&a)));
            }
        }
    }
    read_tunnel(conn, &mut out)?;
    Ok(out)
}

fn read_tunnel(conn: &Connection, out: &mut V1) -> Result<(), StoreError> {
    if table_exists(conn, "gateways")? {
        let mut highest: u64 = 0;
        if table_exists(conn, "sqlite_sequence")? {
            let seq: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'gateways'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            highest = seq.map_or(0, to_u64);
        }
        let mut stmt =
            conn.prepare("SELECT gateway_id, region, endpoint, updated_at FROM gateways")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id = u32::try_from(row.get::<_, i64>(0)?).map_err(bad)?;
            let region: String = row.get(1)?;
            let endpoint: String = row.get(2)?;
            let endpoint = endpoint.parse().map_err(|_| bad("gateway endpoint"))?;
            highest = highest.max(u64::from(id));
            out.entries
                .push((codec::gateway_id_key(&region), serde_json::to_vec(&id)?));
            let reg = Registration {
                gateway_id: id,
                endpoint,
                updated_at: to_u64(row.get(3)?),
            };
            out.leased
                .push((codec::registration_key(&region), serde_json::to_vec(&reg)?));
        }
        let highest = u32::try_from(highest).map_err(bad)?;
        out.entries.push((
            codec::GATEWAY_ID_COUNTER.to_owned(),
            serde_json::to_vec(&highest)?,
        ));
    }
    if table_exists(conn, "tunnel_settings")? {
        let row: Option<(i64, i64, i64, String)> = conn
            .query_row(
                "SELECT interval_ms, lead_ms, overlap_ms, algorithm FROM tunnel_settings WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((i, l, o, a)) = row {
            let policy = RotationPolicy::new(to_u64(i), to_u64(l), to_u64(o)).map_err(bad)?;
            let algorithm = parse_algorithm(&a).ok_or_else(|| bad("algorithm"))?;
            let settings = TunnelSettings { policy, algorithm };
            out.entries
                .push((codec::SETTINGS.to_owned(), codec::settings_value(&settings)));
        }
    }
    if table_exists(conn, "tunnel_keys")? {
        let mut stmt =
            conn.prepare("SELECT epoch, algorithm, activate_at, material FROM tunnel_keys")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let epoch = u32::try_from(row.get::<_, i64>(0)?).map_err(bad)?;
            let algorithm: String = row.get(1)?;
            let algorithm = parse_algorithm(&algorithm).ok_or_else(|| bad("key algorithm"))?;
            let material = row
                .get_ref(3)?
                .as_blob()
                .ok()
                .and_then(KeyMaterial::from_slice)
                .ok_or_else(|| bad(format!("key epoch {epoch} material")))?;
            let key = EpochKey {
                epoch,
                algorithm,
                activate_at: to_u64(row.get(2)?),
                material,
            };
            out.entries
                .push((codec::key_epoch_key(epoch), codec::encode_key(&key)));
        }
    }
    if table_exists(conn, "tunnel_rotation_request")?
        && conn
            .prepare("SELECT 1 FROM tunnel_rotation_request")?
            .exists([])?
    {
        out.entries
            .push((codec::ROTATION_REQUEST.to_owned(), Vec::new()));
    }
    Ok(())
}

/// Drops the schema-1 tables (key material is zeroed by `secure_delete`).
pub(super) fn drop_v1(conn: &Connection) -> Result<(), StoreError> {
    if table_exists(conn, "tunnel_keys")? {
        conn.execute("DELETE FROM tunnel_keys", [])?;
    }
    conn.execute_batch(
        "DROP TABLE IF EXISTS state;
         DROP TABLE IF EXISTS changes;
         DROP TABLE IF EXISTS tokens;
         DROP TABLE IF EXISTS gateways;
         DROP TABLE IF EXISTS tunnel_settings;
         DROP TABLE IF EXISTS tunnel_keys;
         DROP TABLE IF EXISTS tunnel_rotation_request;",
    )?;
    Ok(())
}

/// Test fixture: writes a database exactly as schema 1 did (the tables and
/// rows of the code this module replaced).
#[cfg(test)]
pub(crate) mod fixture {
    use crate::control::state::State;
    use rusqlite::{params, Connection};
    use std::path::Path;

    const V1_SCHEMA: &str = "
CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE changes (revision INTEGER PRIMARY KEY, regions TEXT NOT NULL);
CREATE TABLE tokens (hash TEXT PRIMARY KEY, account TEXT NOT NULL);
CREATE TABLE gateways (gateway_id INTEGER PRIMARY KEY AUTOINCREMENT, region TEXT NOT NULL UNIQUE,
                       endpoint TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE tunnel_settings (id INTEGER PRIMARY KEY CHECK (id = 1), interval_ms INTEGER NOT NULL,
                              lead_ms INTEGER NOT NULL, overlap_ms INTEGER NOT NULL, algorithm TEXT NOT NULL);
CREATE TABLE tunnel_keys (epoch INTEGER PRIMARY KEY, algorithm TEXT NOT NULL,
                          activate_at INTEGER NOT NULL, material BLOB NOT NULL);
CREATE TABLE tunnel_rotation_request (id INTEGER PRIMARY KEY CHECK (id = 1));
";

    /// A schema-1 database with `state`, one token (hash → account), two
    /// gateways (the first one deleted again, so the counter is ahead of
    /// the ids), settings, two keys and a rotation request.
    pub(crate) fn write_v1(path: &Path, state: &State, token_hash: &str, account: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO state (id, revision, body) VALUES (1, ?1, ?2)",
            params![state.revision as i64, serde_json::to_string(state).unwrap()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO tokens (hash, account) VALUES (?1, ?2)",
            params![token_hash, account],
        )
        .unwrap();
        for (region, endpoint) in [
            ("gone-1", "198.18.0.9:4789"),
            ("us-east-1", "198.18.0.1:4789"),
            ("us-west-2", "198.18.0.2:4789"),
        ] {
            conn.execute(
                "INSERT INTO gateways (region, endpoint, updated_at) VALUES (?1, ?2, 1000)",
                params![region, endpoint],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM gateways WHERE region = 'gone-1'", [])
            .unwrap();
        conn.execute(
            "INSERT INTO tunnel_settings VALUES (1, 2000, 500, 500, 'chacha20-poly1305')",
            [],
        )
        .unwrap();
        for (epoch, fill) in [(1i64, 0x11u8), (2, 0x22)] {
            conn.execute(
                "INSERT INTO tunnel_keys VALUES (?1, 'aes-256-gcm', ?2, ?3)",
                params![epoch, epoch * 1000, vec![fill; 32]],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO tunnel_rotation_request (id) VALUES (1)", [])
            .unwrap();
    }
}
