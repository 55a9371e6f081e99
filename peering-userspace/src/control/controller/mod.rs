//! The controller: the model in memory, kept in step with a [`Kv`] store.
//!
//! A controller holds a cache (the [`State`], tokens, gateway credentials
//! and registrations, tunnel settings and keys) built from a snapshot and
//! fed by [`Kv::changes`] from a background thread, so it also learns the
//! commits of other controllers (and processes) on the same store. On
//! [`StoreError::Compacted`] it takes a new snapshot.
//!
//! Writes run the model's operation on the cache with change tracking
//! ([`State::take_changes`]), turn what changed into [`Op`]s (one key per
//! touched object), undo the change on the cache and commit on the cache's
//! revision. The cache then catches up from the store, which applies the
//! write (and anything committed before it): every change reaches the
//! cache through one path, which is also where per-region view deltas are
//! computed ([`ViewIndex`]). On a conflict the controller catches up and
//! runs the operation again (at most [`MAX_ATTEMPTS`] times). An error from
//! the store leaves the outcome unknown: every commit carries a random
//! nonce in the `head` key, and the controller looks for it in the changes
//! after its base before it acknowledges or retries (see `commit_ops`).
//!
//! Reads borrow the cache under a read lock ([`Store::read`]); nothing
//! clones the whole state except [`Store::load`].

mod cache;
mod feed;
pub mod tunnel;

use crate::control::account::AccountId;
use crate::control::config::Config;
use crate::control::error::ApiError;
use crate::control::ids::RngIds;
use crate::control::state::State;
use crate::control::store::codec::{self, HEAD, MODEL_HEAD};
use crate::control::store::kv::{Batch, Commit, Kv, Op};
use crate::control::store::sqlite_kv::SqliteKv;
use crate::control::store::{hash_token, new_token, Change, Store, StoreError};
use cache::Cache;
use rand::RngCore;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::Duration;

/// Attempts of one write against conflicting writers before giving up with
/// [`StoreError::Busy`].
pub const MAX_ATTEMPTS: usize = 16;
/// Attempts to settle one commit whose outcome the store left unknown.
const UNKNOWN_ATTEMPTS: usize = 5;
/// How long the change thread waits in one [`Kv::changes`] call (also how
/// long a dropped controller's thread may outlive it).
const CHANGES_WAIT: Duration = Duration::from_secs(1);
/// Pause after a store error in the change thread or an unknown outcome.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub(crate) struct Inner {
    kv: Arc<dyn Kv>,
    cache: RwLock<Cache>,
    /// One write at a time per controller (others wait, instead of
    /// conflicting with each other).
    writer: Mutex<()>,
    revisions: tokio::sync::watch::Sender<u64>,
    /// When a failed authentication last made the controller catch up
    /// (Unix ms): at most one such catch-up per [`MISS_CATCH_UP_EVERY`].
    last_miss_catch_up: AtomicU64,
    /// Signalled after every [`Inner::apply`] (with `applied_lock` taken, so
    /// a writer checking the revision under it cannot miss the wake-up).
    applied: Condvar,
    applied_lock: Mutex<()>,
}

/// How long a writer waits for the change thread to apply its own commit
/// before reading the store itself. The change thread's read is already
/// under way (an etcd watch that is current delivers at once), while a
/// fresh read from an old revision may be slow (etcd serves a watch that
/// starts in the past from a loop that runs every 100 ms).
const OWN_COMMIT_WAIT: Duration = Duration::from_millis(50);

/// How often an unknown token or credential may make the controller read
/// the store (an unauthenticated caller must not be able to drive store
/// reads at its own rate; the change thread catches up anyway).
const MISS_CATCH_UP_EVERY: u64 = 100;

/// See the module documentation. Clones share one controller.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("revision", &self.inner.read().revision)
            .finish()
    }
}

impl Controller {
    /// A controller over `kv`, from a snapshot; starts the change thread.
    pub fn new(kv: Arc<dyn Kv>) -> Result<Self, StoreError> {
        let cache = Cache::from_snapshot(&*kv)?;
        let (revisions, _) = tokio::sync::watch::channel(cache.revision);
        let inner = Arc::new(Inner {
            kv,
            cache: RwLock::new(cache),
            writer: Mutex::new(()),
            revisions,
            last_miss_catch_up: AtomicU64::new(0),
            applied: Condvar::new(),
            applied_lock: Mutex::new(()),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("controller-changes".into())
            .spawn(move || follow(weak))
            .map_err(|e| StoreError::Corrupt(format!("starting the change thread: {e}")))?;
        Ok(Controller { inner })
    }

    /// A controller over the SQLite database at `path` (created, or
    /// migrated from schema 1, if needed). A new database starts from an
    /// empty state with `config`; an existing one keeps its own.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Self, StoreError> {
        let kv = SqliteKv::open(path, || codec::state_entries(&State::new(config)))?;
        Controller::new(Arc::new(kv))
    }

    /// The store revision the controller's copy is at (every commit moves
    /// it, unlike [`Store::revision`]).
    pub fn store_revision(&self) -> u64 {
        self.cache().revision
    }

    /// The store under this controller.
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.inner.kv
    }

    /// Whether this process holds the singleton duties (see [`Kv::lead`]).
    pub fn lead(&self) -> Result<bool, StoreError> {
        self.inner.kv.lead()
    }

    /// Reads new commits from the store now (instead of waiting for the
    /// change thread).
    pub fn catch_up(&self) -> Result<(), StoreError> {
        self.inner.catch_up()
    }

    fn cache(&self) -> RwLockReadGuard<'_, Cache> {
        self.inner.read()
    }

    /// Runs `plan` on the cache (under the write lock) to get a result and
    /// the ops that store it, commits them, and returns the result and the
    /// revision the store is at afterwards. `plan` must leave the cache as
    /// it found it: the cache changes only by applying committed changes.
    /// No ops: nothing is written.
    fn write<T>(
        &self,
        mut plan: impl FnMut(&mut Cache) -> Result<(T, Vec<Op>), StoreError>,
    ) -> Result<(T, u64), StoreError> {
        let _one = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for _ in 0..MAX_ATTEMPTS {
            let (out, mut ops, base) = {
                let mut cache = self.inner.write();
                let base = cache.revision;
                let (out, ops) = plan(&mut cache)?;
                (out, ops, base)
            };
            if ops.is_empty() {
                return Ok((out, self.cache().model_revision));
            }
            let nonce = new_nonce();
            // Model writes also move the model's own revision.
            if ops.iter().any(|op| codec::is_model_key(op.key())) {
                ops.push(codec::put(MODEL_HEAD.into(), nonce.clone()));
            }
            ops.push(codec::put(HEAD.into(), nonce.clone()));
            match self.commit_ops(base, &ops, &nonce)? {
                Some(rev) => {
                    // Acknowledged: a failure to catch up now only delays
                    // the cache (the change thread retries).
                    if self.inner.wait_applied(rev, OWN_COMMIT_WAIT) {
                        return Ok((out, rev));
                    }
                    if let Err(e) = self.inner.catch_up_to(rev) {
                        tracing::warn!(error = %e, revision = rev, "catching up after a commit");
                    }
                    return Ok((out, rev));
                }
                None => self.inner.catch_up()?,
            }
        }
        Err(StoreError::Busy)
    }

    /// Commits `ops` on `base`: Some(revision) once it landed, None if it
    /// did not and never will (another commit landed after `base`).
    fn commit_ops(&self, base: u64, ops: &[Op], nonce: &[u8]) -> Result<Option<u64>, StoreError> {
        let mut unknown: Option<StoreError> = None;
        for _ in 0..UNKNOWN_ATTEMPTS {
            match self.inner.kv.commit(base, ops) {
                Ok(Commit::Done(rev)) => return Ok(Some(rev)),
                Ok(Commit::Conflict) if unknown.is_none() => return Ok(None),
                // After an unknown outcome, a conflict may be our own
                // earlier attempt having landed.
                Ok(Commit::Conflict) => {}
                Err(e) => {
                    tracing::warn!(error = %e, base, "commit outcome unknown; checking");
                    unknown = Some(e);
                }
            }
            match find_nonce(&*self.inner.kv, base, nonce) {
                Ok(Found::Landed(rev)) => return Ok(Some(rev)),
                Ok(Found::Superseded) => return Ok(None),
                // Nothing committed since `base`: the same commit again
                // lands at most once (it compares the same base).
                Ok(Found::Nothing) => {}
                Err(e) => unknown = Some(e),
            }
            std::thread::sleep(RETRY_PAUSE);
        }
        Err(unknown.unwrap_or(StoreError::Busy))
    }

    /// Runs a model operation as one write (see [`Store::transact`]).
    /// Until none is left, the write also gives VPCs of an old store
    /// (written before security groups existed) their default group.
    fn model_write<T>(
        &self,
        mut f: impl FnMut(&mut State) -> Result<T, ApiError>,
    ) -> Result<(T, u64), StoreError> {
        self.write(|cache| {
            let state = &mut cache.state;
            let (config, dp) = (state.config.clone(), state.next_dp_id());
            if !cache.default_groups_adopted {
                match state.adopt_default_groups(&mut RngIds::from_os()) {
                    Ok(0) => cache.default_groups_adopted = true,
                    Ok(n) => tracing::info!(
                        vpcs = n,
                        "giving VPCs of an old store their default security group"
                    ),
                    Err(e) => tracing::warn!(error = %e, "adopting default security groups"),
                }
            }
            let result = f(state);
            let changes = state.take_changes(config, dp);
            let ops = match &result {
                Ok(_) => codec::state_ops(&changes, state),
                Err(_) => Vec::new(),
            };
            state.undo(changes);
            Ok((result?, ops))
        })
    }

    /// The regions of the deployment.
    pub fn regions(&self) -> Vec<String> {
        self.cache().state.config.regions.clone()
    }
}

/// What the changes after a base say about a commit with a nonce.
enum Found {
    Landed(u64),
    /// Another commit landed on the base: ours never will.
    Superseded,
    Nothing,
}

fn find_nonce(kv: &dyn Kv, base: u64, nonce: &[u8]) -> Result<Found, StoreError> {
    let batches = kv.changes(base, Duration::ZERO)?;
    for b in &batches {
        for (key, value) in &b.changes {
            if key == HEAD {
                return Ok(if value.as_deref() == Some(nonce) {
                    Found::Landed(b.revision)
                } else {
                    Found::Superseded
                });
            }
        }
    }
    Ok(Found::Nothing)
}

fn new_nonce() -> Vec<u8> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes).into_bytes()
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a failed lookup of a token or credential: catches up, unless
    /// another miss did so within [`MISS_CATCH_UP_EVERY`]. True if it did.
    fn catch_up_after_miss(&self) -> Result<bool, StoreError> {
        let now = crate::control::clock::unix_ms();
        let last = self.last_miss_catch_up.load(Ordering::Relaxed);
        if now.saturating_sub(last) < MISS_CATCH_UP_EVERY
            || self
                .last_miss_catch_up
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(false);
        }
        self.catch_up()?;
        Ok(true)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, batches: Vec<Batch>) {
        if batches.is_empty() {
            return;
        }
        let revision = {
            let mut cache = self.write();
            for b in batches {
                cache.apply(b);
            }
            cache.revision
        };
        self.revisions.send_replace(revision);
        let _signal = self
            .applied_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.applied.notify_all();
    }

    /// Waits up to `within` for the cache to reach `revision`; true if it
    /// did.
    fn wait_applied(&self, revision: u64, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        let mut guard = self
            .applied_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.read().revision >= revision {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .applied
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn resnapshot(&self) -> Result<(), StoreError> {
        let fresh = Cache::from_snapshot(&*self.kv)?;
        let revision = fresh.revision;
        *self.write() = fresh;
        tracing::info!(revision, "controller cache reloaded from a snapshot");
        self.revisions.send_replace(revision);
        Ok(())
    }

    /// Applies every change committed since the cache's revision.
    fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let since = self.read().revision;
            match self.kv.changes(since, Duration::ZERO) {
                Ok(batches) if batches.is_empty() => return Ok(()),
                Ok(batches) => self.apply(batches),
                Err(StoreError::Compacted { .. }) => return self.resnapshot(),
                Err(e) => return Err(e),
            }
        }
    }

    fn catch_up_to(&self, revision: u64) -> Result<(), StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            self.catch_up()?;
            if self.read().revision >= revision {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The change thread: follows the store until the controller is dropped.
fn follow(weak: Weak<Inner>) {
    loop {
        let (kv, since) = match weak.upgrade() {
            Some(inner) => (inner.kv.clone(), inner.read().revision),
            None => return,
        };
        let result = kv.changes(since, CHANGES_WAIT);
        let Some(inner) = weak.upgrade() else { return };
        match result {
            Ok(batches) => inner.apply(batches),
            Err(StoreError::Compacted { .. }) => {
                if let Err(e) = inner.resnapshot() {
                    tracing::warn!(error = %e, "controller snapshot failed");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading store changes failed; retrying");
                drop(inner);
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

impl Store for Controller {
    fn load(&self) -> Result<State, StoreError> {
        Ok(self.cache().state.clone())
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        Ok(f(&self.cache().state))
    }

    /// The revision of the latest commit that changed the model (tokens,
    /// tunnel keys and gateway registrations do not move it).
    fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.cache().model_revision)
    }

    fn transact<T, F>(&self, f: F) -> Result<(T, u64), StoreError>
    where
        F: FnMut(&mut State) -> Result<T, ApiError>,
    {
        self.model_write(f)
    }

    fn changes_since(&self, revision: u64) -> Result<Vec<Change>, StoreError> {
        self.cache().changes_since(revision)
    }

    fn create_token(&self, account: &AccountId) -> Result<String, StoreError> {
        let token = new_token();
        let key = codec::token_key(&hash_token(&token));
        let value = codec::token_value(account);
        self.write(|_| Ok(((), vec![codec::put(key.clone(), value.clone())])))?;
        Ok(token)
    }

    fn authenticate(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        let hash = hash_token(token);
        if let Some(a) = self.cache().tokens.get(&hash) {
            return Ok(Some(a.clone()));
        }
        // Perhaps just issued by another process: look once more after
        // reading what it committed.
        if !self.inner.catch_up_after_miss()? {
            return Ok(None);
        }
        Ok(self.cache().tokens.get(&hash).cloned())
    }

    fn revoke_tokens(&self, account: &AccountId) -> Result<usize, StoreError> {
        let (n, _) = self.write(|cache| {
            let ops: Vec<Op> = cache
                .tokens
                .iter()
                .filter(|(_, a)| *a == account)
                .map(|(h, _)| Op::Delete {
                    key: codec::token_key(h),
                })
                .collect();
            Ok((ops.len(), ops))
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
