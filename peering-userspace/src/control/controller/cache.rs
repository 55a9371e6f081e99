//! A controller's copy of the store, and the log of per-region view
//! deltas it derives from every batch it applies.

use crate::control::account::AccountId;
use crate::control::delta::RegionDelta;
use crate::control::feed::GatewayIdentity;
use crate::control::state::State;
use crate::control::store::codec::{self, Object, Registration};
use crate::control::store::kv::{Batch, Kv};
use crate::control::store::{Change, StoreError, TunnelSettings, CHANGE_LOG_LEN};
use crate::control::view_index::{merge, RegionChanges, ViewIndex};
use crate::tunnel::key::{EpochKey, KeyMaterial};
use std::collections::{BTreeMap, HashMap, VecDeque};

pub(crate) struct Cache {
    /// The store revision the cache reflects.
    pub revision: u64,
    /// The revision of the latest commit that changed the model (the
    /// `model-head` key's); `state.revision` is this one.
    pub model_revision: u64,
    pub state: State,
    /// Token hash → account.
    pub tokens: HashMap<String, AccountId>,
    /// Credential hash → identity.
    pub credentials: HashMap<String, GatewayIdentity>,
    /// Region → gateway id (permanent).
    pub gateway_ids: BTreeMap<String, u32>,
    /// Highest gateway id handed out.
    pub gateway_counter: u32,
    /// Region → live registration.
    pub registrations: BTreeMap<String, Registration>,
    pub settings: Option<TunnelSettings>,
    pub keys: BTreeMap<u32, EpochKey>,
    pub rotation_requested: bool,
    /// Keys whose value does not decode, with why (never key bytes).
    pub corrupt: BTreeMap<String, String>,
    index: ViewIndex,
    /// Per revision, what changed in each region's view (oldest first).
    /// (revision, whether it changed the model, the changes per region)
    deltas: VecDeque<(u64, bool, BTreeMap<String, RegionChanges>)>,
    /// Deltas are known for revisions above this one.
    delta_floor: u64,
    /// Every VPC had a default security group at the last model write
    /// (false after a snapshot: an old store may have VPCs without one).
    pub default_groups_adopted: bool,
}

impl Cache {
    pub fn from_snapshot(kv: &dyn Kv) -> Result<Self, StoreError> {
        let (revision, entries) = kv.snapshot()?;
        let model_revision = entries
            .iter()
            .find(|e| e.key == codec::MODEL_HEAD)
            .map_or(0, |e| e.mod_revision);
        let mut cache = Cache {
            revision,
            model_revision,
            state: State::default(),
            tokens: HashMap::new(),
            credentials: HashMap::new(),
            gateway_ids: BTreeMap::new(),
            gateway_counter: 0,
            registrations: BTreeMap::new(),
            settings: None,
            keys: BTreeMap::new(),
            rotation_requested: false,
            corrupt: BTreeMap::new(),
            index: ViewIndex::default(),
            deltas: VecDeque::new(),
            delta_floor: revision,
            default_groups_adopted: false,
        };
        let mut changes: Vec<(String, Option<Vec<u8>>)> = entries
            .into_iter()
            .map(|e| (e.key, Some(e.value)))
            .collect();
        codec::sort_for_apply(&mut changes);
        for (key, value) in changes {
            cache.apply_one(&key, value.as_deref());
        }
        let state = &mut cache.state;
        state.take_changes(state.config.clone(), state.next_dp_id());
        state.revision = model_revision;
        cache.index = ViewIndex::new(state);
        Ok(cache)
    }

    fn apply_one(&mut self, key: &str, value: Option<&[u8]>) {
        match codec::decode(key, value) {
            Ok(obj) => {
                self.corrupt.remove(key);
                if let Some(other) = codec::apply(&mut self.state, obj) {
                    self.apply_other(other);
                }
            }
            Err(e) => {
                tracing::error!(key, error = %e, "stored value does not decode; ignored");
                self.corrupt.insert(key.to_owned(), e.to_string());
            }
        }
    }

    fn apply_other(&mut self, obj: Object) {
        match obj {
            Object::Token(h, Some(a)) => {
                self.tokens.insert(h, a);
            }
            Object::Token(h, None) => {
                self.tokens.remove(&h);
            }
            Object::Credential(h, Some(c)) => {
                self.credentials.insert(h, c);
            }
            Object::Credential(h, None) => {
                self.credentials.remove(&h);
            }
            Object::GatewayId(r, Some(id)) => {
                self.gateway_ids.insert(r, id);
            }
            Object::GatewayId(r, None) => {
                self.gateway_ids.remove(&r);
            }
            Object::GatewayIdCounter(n) => self.gateway_counter = n.unwrap_or(0),
            Object::Registration(r, Some(reg)) => {
                self.registrations.insert(r, reg);
            }
            Object::Registration(r, None) => {
                self.registrations.remove(&r);
            }
            Object::Settings(s) => self.settings = s,
            Object::Key(epoch, Some(k)) => {
                self.keys.insert(epoch, k);
            }
            Object::Key(epoch, None) => {
                self.keys.remove(&epoch);
            }
            Object::RotationRequest(on) => self.rotation_requested = on,
            // Model objects were applied by `codec::apply`.
            _ => {}
        }
    }

    /// Applies one committed batch (skipped if already applied) and records
    /// the view deltas it makes.
    pub fn apply(&mut self, batch: Batch) {
        if batch.revision <= self.revision {
            return;
        }
        let (config, dp) = (self.state.config.clone(), self.state.next_dp_id());
        let mut changes = batch.changes;
        let model = changes.iter().any(|(k, _)| k == codec::MODEL_HEAD);
        codec::sort_for_apply(&mut changes);
        for (key, value) in changes {
            self.apply_one(&key, value.as_deref());
        }
        let changes = self.state.take_changes(config, dp);
        let deltas = self.index.update(&self.state, &changes);
        self.revision = batch.revision;
        if model {
            self.model_revision = batch.revision;
            self.state.revision = batch.revision;
        }
        self.deltas.push_back((batch.revision, model, deltas));
        while self.deltas.len() as u64 > CHANGE_LOG_LEN {
            if let Some((rev, _, _)) = self.deltas.pop_front() {
                self.delta_floor = rev;
            }
        }
    }

    fn check_floor(&self, since: u64) -> Result<(), StoreError> {
        if since < self.delta_floor && since < self.revision {
            return Err(StoreError::Compacted {
                oldest: self.delta_floor + 1,
            });
        }
        Ok(())
    }

    /// One entry per model revision after `since`, with the regions it
    /// changed.
    pub fn changes_since(&self, since: u64) -> Result<Vec<Change>, StoreError> {
        self.check_floor(since)?;
        Ok(self
            .deltas
            .iter()
            .filter(|(rev, model, _)| *rev > since && *model)
            .map(|(rev, _, d)| Change {
                revision: *rev,
                regions: d
                    .iter()
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(r, _)| r.clone())
                    .collect(),
            })
            .collect())
    }

    /// The merged delta of `region` from `since` to the cache's revision.
    pub fn region_delta(&self, region: &str, since: u64) -> Result<RegionDelta, StoreError> {
        self.check_floor(since)?;
        let mut merged = RegionChanges::new();
        for (_, _, d) in self.deltas.iter().filter(|(rev, _, _)| *rev > since) {
            if let Some(c) = d.get(region) {
                merge(&mut merged, c);
            }
        }
        let mut delta = RegionDelta {
            region: region.to_owned(),
            from: since,
            revision: self.revision.max(since),
            upserts: Vec::new(),
            removals: Vec::new(),
        };
        for (key, entry) in merged {
            match entry {
                Some(e) => delta.upserts.push(e),
                None => delta.removals.push(key),
            }
        }
        Ok(delta)
    }

    /// Copies of the held keys (the material is copied once, into a value
    /// that zeroizes itself).
    pub fn key_copies(&self) -> Vec<EpochKey> {
        self.keys
            .values()
            .map(|k| EpochKey {
                epoch: k.epoch,
                algorithm: k.algorithm,
                activate_at: k.activate_at,
                material: KeyMaterial::from_bytes(*k.material.as_bytes()),
            })
            .collect()
    }

    /// Fails if a stored value under `prefix` does not decode.
    pub fn check_corrupt(&self, prefix: &str) -> Result<(), StoreError> {
        match self.corrupt.range(prefix.to_owned()..).next() {
            Some((k, why)) if k.starts_with(prefix) => Err(StoreError::Corrupt(why.clone())),
            _ => Ok(()),
        }
    }
}
