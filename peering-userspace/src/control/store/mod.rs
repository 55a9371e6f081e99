//! Persistence: the only I/O edge of the control plane.
//!
//! Backends implement [`kv::Kv`]: a versioned key-value space with one
//! global compare-and-swap, a change stream and leases; [`sqlite_kv`] is the
//! one-host backend. [`codec`] puts every object of the model under its own
//! key. The controller ([`crate::control::controller::Controller`]) keeps
//! the model in memory, fed by the change stream, and implements [`Store`]
//! (what the API and the agent use):
//! - every change is one commit of the keys it touched, on the revision the
//!   controller's copy is at (a conflict: catch up, check again);
//! - a global, strictly increasing revision numbers the commits;
//! - per revision, the controller knows which regions' dataplane views
//!   changed ([`Store::changes_since`]) and how
//!   ([`crate::control::feed::Feed::changes`]); `Compacted` when it no
//!   longer holds that history.
//!
//! [`MemoryStore`] is a plain in-memory [`Store`] for tests and fuzzing.

pub mod codec;
pub mod etcd;
pub mod kv;
pub mod memory;
pub(crate) mod migrate;
pub mod sqlite_kv;
pub mod tunnel;
pub mod url;

use crate::control::account::AccountId;
use crate::control::error::ApiError;
use crate::control::state::State;
use crate::control::view::region_view;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use memory::MemoryStore;
pub use sqlite_kv::SqliteKv;

/// The SQLite-backed store of one host: a [`Controller`] over a
/// [`SqliteKv`] (`SqliteStore::open(path, config)`).
pub type SqliteStore = crate::control::controller::Controller;
pub use tunnel::{GatewayRecord, TunnelSettings};

/// Tokens carry 32 random bytes (256 bits), hex encoded.
pub const TOKEN_BYTES: usize = 32;
/// How many change-log entries are kept; older ones are compacted.
pub const CHANGE_LOG_LEN: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The model refused the operation; nothing was written.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored state cannot be decoded: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("database schema version {0} is newer than this program supports")]
    SchemaTooNew(i64),
    /// The change log no longer reaches back to the requested revision:
    /// re-read the full view.
    #[error("changes before revision {oldest} have been compacted")]
    Compacted { oldest: u64 },
    /// A stored tunnel row (gateway, settings or key) does not parse. The
    /// message never contains key material.
    #[error("stored tunnel data is invalid: {0}")]
    Corrupt(String),
    /// A value cannot be stored (e.g. a time beyond SQLite's integer range).
    #[error("{0} is out of range for the store")]
    OutOfRange(&'static str),
    /// [`SqliteStore::publish_key`] refuses a key that is not newer (in
    /// epoch and in activation time) than the newest stored one.
    #[error(
        "key epoch {epoch} (activating at {activate_at}) is not newer than stored \
         epoch {latest} (activating at {latest_activate_at})"
    )]
    KeyNotNewer {
        epoch: u32,
        activate_at: u64,
        latest: u32,
        latest_activate_at: u64,
    },
    /// No gateway id is left (ids are never reused).
    #[error("gateway ids exhausted")]
    GatewayIdsExhausted,
    /// An etcd request failed or timed out (for a commit: its outcome is
    /// unknown), or an etcd store was misconfigured.
    #[error("etcd: {0}")]
    Etcd(String),
    /// The TLS settings for etcd are incomplete or unreadable, or would
    /// send the store in clear beyond loopback; nothing was opened.
    #[error(transparent)]
    EtcdTls(#[from] crate::control::store::etcd::tls::EtcdTlsError),
    /// A write kept conflicting with other controllers' writes.
    #[error("the store is busy with other writers; try again")]
    Busy,
}

/// One committed revision and the regions whose dataplane view it changed
/// (possibly none, e.g. for a pending peering request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub revision: u64,
    pub regions: Vec<String>,
}

pub trait Store {
    /// The latest committed state; `state.revision` is its revision.
    fn load(&self) -> Result<State, StoreError>;

    /// Runs `f` on the latest state without copying it.
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        Ok(f(&self.load()?))
    }

    /// The latest committed revision (0 before the first change).
    fn revision(&self) -> Result<u64, StoreError>;

    /// Runs `f` on the latest state inside one write transaction. If `f`
    /// fails, nothing is written and the error is `StoreError::Api`. If it
    /// succeeds and changed the state, the state is committed at the next
    /// revision; if it changed nothing, no revision is created. Returns
    /// `f`'s result and the revision the state is at afterwards. `f` may
    /// run more than once (after a conflict with another writer, on the
    /// newer state): only its last run counts.
    fn transact<T, F>(&self, f: F) -> Result<(T, u64), StoreError>
    where
        F: FnMut(&mut State) -> Result<T, ApiError>;

    /// The changes committed after `revision`, oldest first.
    fn changes_since(&self, revision: u64) -> Result<Vec<Change>, StoreError>;

    /// Issues a new API token for `account`. Only its SHA-256 is stored; the
    /// plaintext is returned once.
    fn create_token(&self, account: &AccountId) -> Result<String, StoreError>;

    /// The account a token belongs to, if any.
    fn authenticate(&self, token: &str) -> Result<Option<AccountId>, StoreError>;

    /// Revokes every token of `account`; returns how many there were.
    fn revoke_tokens(&self, account: &AccountId) -> Result<usize, StoreError>;
}

pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    // ThreadRng is a CSPRNG seeded (and periodically reseeded) from the OS.
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Tokens are high-entropy, so a plain (unsalted, fast) hash is enough: it
/// cannot be brute-forced, and it lets us look tokens up by hash.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The regions whose dataplane view differs between two states. Active
/// status does not depend on time (only pending requests expire), so the
/// views are compared at time 0.
pub(crate) fn touched_regions(before: &State, after: &State) -> Vec<String> {
    let mut regions: Vec<String> = before.config.regions.clone();
    for r in &after.config.regions {
        if !regions.contains(r) {
            regions.push(r.clone());
        }
    }
    regions.retain(|r| {
        let mut a = region_view(before, r, 0);
        let mut b = region_view(after, r, 0);
        a.revision = 0;
        b.revision = 0;
        a != b
    });
    regions
}

/// Checks a change log that starts at `oldest` (None: empty) against a
/// request for changes after `since`, when the store is at `current`.
pub(crate) fn check_compaction(
    since: u64,
    current: u64,
    oldest: Option<u64>,
) -> Result<(), StoreError> {
    if since >= current {
        return Ok(());
    }
    let oldest = oldest.unwrap_or(current + 1);
    if since + 1 < oldest {
        return Err(StoreError::Compacted { oldest });
    }
    Ok(())
}

/// A directory under the system temp dir, removed on drop (tests).
#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "peering-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
