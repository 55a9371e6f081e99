//! In-memory [`Store`], for tests and single-process tools.

use crate::control::account::AccountId;
use crate::control::error::ApiError;
use crate::control::state::State;
use crate::control::store::{
    check_compaction, hash_token, new_token, touched_regions, Change, Store, StoreError,
    CHANGE_LOG_LEN,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
struct Inner {
    state: State,
    changes: VecDeque<Change>,
    tokens: HashMap<String, AccountId>,
}

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new(state: State) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                state,
                changes: VecDeque::new(),
                tokens: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside `transact` leaves the committed state untouched
        // (the closure works on a copy), so a poisoned lock is still sound.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<State, StoreError> {
        Ok(self.lock().state.clone())
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.lock().state.revision)
    }

    fn transact<T, F>(&self, f: F) -> Result<(T, u64), StoreError>
    where
        F: FnMut(&mut State) -> Result<T, ApiError>,
    {
        let mut inner = self.lock();
        let mut next = inner.state.clone();
        let mut f = f;
        let out = f(&mut next)?;
        let current = inner.state.revision;
        next.revision = current;
        if next == inner.state {
            return Ok((out, current));
        }
        let regions = touched_regions(&inner.state, &next);
        next.revision = current + 1;
        inner.state = next;
        inner.changes.push_back(Change {
            revision: current + 1,
            regions,
        });
        while inner.changes.len() as u64 > CHANGE_LOG_LEN {
            inner.changes.pop_front();
        }
        Ok((out, current + 1))
    }

    fn changes_since(&self, revision: u64) -> Result<Vec<Change>, StoreError> {
        let inner = self.lock();
        let oldest = inner.changes.front().map(|c| c.revision);
        check_compaction(revision, inner.state.revision, oldest)?;
        Ok(inner
            .changes
            .iter()
            .filter(|c| c.revision > revision)
            .cloned()
            .collect())
    }

    fn create_token(&self, account: &AccountId) -> Result<String, StoreError> {
        let token = new_token();
        self.lock()
            .tokens
            .insert(hash_token(&token), account.clone());
        Ok(token)
    }

    fn authenticate(&self, token: &str) -> Result<Option<AccountId>, StoreError> {
        Ok(self.lock().tokens.get(&hash_token(token)).cloned())
    }

    fn revoke_tokens(&self, account: &AccountId) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|_, a| a != account);
        Ok(before - inner.tokens.len())
    }
}
