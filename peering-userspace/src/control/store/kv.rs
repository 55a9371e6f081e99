//! The contract between the control plane and a distributed store: a
//! versioned key-value space with one global compare-and-swap.
//!
//! Every object of the model (account token, VPC, subnet, route table,
//! route, peering, gateway credential, gateway registration, key epoch...)
//! lives under its own key, so a write stores only what changed. The model's
//! invariants span many objects (non-overlapping CIDRs, one peering per VPC
//! pair, quotas); they are checked by a controller against its in-memory
//! copy, and a commit only lands if no other commit landed since the
//! revision that copy is at ([`Kv::commit`]'s `base`). Two controllers can
//! therefore never both pass a check against the same revision and both
//! commit: the second one sees a conflict, catches up and re-checks.
//!
//! Backends: SQLite (one machine, embedded) and etcd (v3 API). Revisions are
//! the backend's (etcd: the cluster revision, so they may skip numbers);
//! they only ever grow, and a batch of changes is reported at the revision
//! it was committed at.
//!
//! All methods block; call them from a thread that may block (not from
//! inside an async task: use `spawn_blocking`).

use crate::control::store::StoreError;
use std::time::Duration;

/// One key with its value and the revision that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: u64,
}

/// One write of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// A put that disappears by itself (a delete in [`Kv::changes`]) once
    /// `ttl` has passed without the same key being put again: how a dead
    /// gateway leaves the registry.
    PutLeased {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    Delete {
        key: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::PutLeased { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// A change as committed: every key it wrote, with the value written (None:
/// deleted, including a lease that expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub revision: u64,
    pub changes: Vec<(String, Option<Vec<u8>>)>,
}

/// The outcome of [`Kv::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Applied, at this revision.
    Done(u64),
    /// Something else was committed after `base`; nothing was written.
    Conflict,
}

pub trait Kv: Send + Sync {
    /// Every key under the backend's prefix at one revision: (that revision,
    /// the entries in key order).
    fn snapshot(&self) -> Result<(u64, Vec<Entry>), StoreError>;

    /// Writes `ops` atomically if and only if no commit landed after
    /// `base` (the revision of the caller's copy). Expired leases do not
    /// count as commits. An error means the outcome is unknown (the request
    /// may or may not have been applied): the caller catches up with
    /// [`Kv::changes`] and looks for its own write before saying anything.
    fn commit(&self, base: u64, ops: &[Op]) -> Result<Commit, StoreError>;

    /// The batches committed after `since`, oldest first, waiting up to
    /// `wait` for the first one when there is none yet (an empty result
    /// means none arrived). [`StoreError::Compacted`] when the backend no
    /// longer holds that history: take a new [`Kv::snapshot`].
    fn changes(&self, since: u64, wait: Duration) -> Result<Vec<Batch>, StoreError>;

    /// Campaigns for the deployment's singleton duties (key rotation,
    /// expiry, purging): true while this process holds them. Cheap to call
    /// often; a holder that stops calling (or dies) loses them within a few
    /// seconds and another process's next call takes over.
    fn lead(&self) -> Result<bool, StoreError>;
}
