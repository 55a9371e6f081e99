//! Tunnel data through the controller: gateway ids and registrations,
//! gateway credentials, tunnel settings, key epochs and rotation requests.
//! Same methods (and meaning) as the schema-1 SQLite store had, so the
//! agent and the rotation loop did not change.

use super::Controller;
use crate::control::feed::{GatewayIdentity, IssuedCredential};
use crate::control::store::codec::{self, Registration, REGISTRATION_TTL, SECRET_PREFIX};
use crate::control::store::kv::Op;
use crate::control::store::{hash_token, new_token, GatewayRecord, StoreError, TunnelSettings};
use crate::tunnel::key::EpochKey;
use crate::tunnel::schedule::PublishedEpoch;
use crate::tunnel::Millis;
use rand::RngCore;
use std::net::SocketAddrV4;

/// Prefix of gateway credential ids.
pub const CREDENTIAL_PREFIX: &str = "gwc-";

impl Controller {
    /// Registers (or renews) the gateway serving `region` at `endpoint`;
    /// returns its gateway id: stable for the region, unique in the
    /// deployment, never reused, >= 1. The registration is leased: it
    /// lapses after [`REGISTRATION_TTL`] unless registered again.
    pub fn register_gateway(
        &self,
        region: &str,
        endpoint: SocketAddrV4,
        now: Millis,
    ) -> Result<u32, StoreError> {
        let (id, _) = self.write(|cache| {
            let mut ops = Vec::new();
            let id = match cache.gateway_ids.get(region) {
                Some(&id) => id,
                None => {
                    let id = cache
                        .gateway_counter
                        .checked_add(1)
                        .ok_or(StoreError::GatewayIdsExhausted)?;
                    ops.push(codec::json_put(codec::gateway_id_key(region), &id));
                    ops.push(codec::json_put(codec::GATEWAY_ID_COUNTER.into(), &id));
                    id
                }
            };
            let reg = Registration {
                gateway_id: id,
                endpoint,
                updated_at: now,
            };
            ops.push(Op::PutLeased {
                key: codec::registration_key(region),
                value: serde_json::to_vec(&reg)?,
                ttl: REGISTRATION_TTL,
            });
            Ok((id, ops))
        })?;
        Ok(id)
    }

    /// The live gateway registrations, ascending gateway id.
    pub fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        let cache = self.cache();
        cache.check_corrupt(codec::REGISTRATIONS)?;
        let mut out: Vec<GatewayRecord> = cache
            .registrations
            .iter()
            .map(|(region, r)| GatewayRecord {
                region: region.clone(),
                gateway_id: r.gateway_id,
                endpoint: r.endpoint,
                updated_at: r.updated_at,
            })
            .collect();
        out.sort_by_key(|g| g.gateway_id);
        Ok(out)
    }

    /// Stores the deployment's tunnel settings (no write if unchanged).
    pub fn set_tunnel_settings(&self, settings: &TunnelSettings) -> Result<(), StoreError> {
        self.write(|cache| {
            let ops = if cache.settings.as_ref() == Some(settings) {
                vec![]
            } else {
                vec![codec::put(
                    codec::SETTINGS.into(),
                    codec::settings_value(settings),
                )]
            };
            Ok(((), ops))
        })?;
        Ok(())
    }

    pub fn tunnel_settings(&self) -> Result<Option<TunnelSettings>, StoreError> {
        let cache = self.cache();
        cache.check_corrupt(codec::SETTINGS)?;
        Ok(cache.settings)
    }

    /// Stores a newly generated key; refuses ([`StoreError::KeyNotNewer`])
    /// one whose epoch or activation time is not above the newest held.
    pub fn publish_key(&self, key: &EpochKey) -> Result<(), StoreError> {
        self.write(|cache| {
            if let Some(latest) = cache.keys.values().next_back() {
                if key.epoch <= latest.epoch || key.activate_at <= latest.activate_at {
                    return Err(StoreError::KeyNotNewer {
                        epoch: key.epoch,
                        activate_at: key.activate_at,
                        latest: latest.epoch,
                        latest_activate_at: latest.activate_at,
                    });
                }
            }
            let op = codec::put(codec::key_epoch_key(key.epoch), codec::encode_key(key));
            Ok(((), vec![op]))
        })?;
        Ok(())
    }

    /// Every key still held, ascending epoch.
    pub fn tunnel_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
        let cache = self.cache();
        cache.check_corrupt(SECRET_PREFIX)?;
        Ok(cache.key_copies())
    }

    /// The newest published epoch (erasure never removes the newest key).
    pub fn latest_epoch(&self) -> Result<Option<PublishedEpoch>, StoreError> {
        let cache = self.cache();
        cache.check_corrupt(SECRET_PREFIX)?;
        Ok(cache.keys.values().next_back().map(|k| PublishedEpoch {
            epoch: k.epoch,
            activate_at: k.activate_at,
        }))
    }

    /// Deletes every key whose erase time (its successor's activation plus
    /// the stored overlap) is <= `now`; returns how many. Erases nothing
    /// while no settings are stored.
    pub fn erase_expired_keys(&self, now: Millis) -> Result<usize, StoreError> {
        let (n, _) = self.write(|cache| {
            let Some(settings) = cache.settings else {
                return Ok((0, vec![]));
            };
            let held: Vec<(u32, Millis)> = cache
                .keys
                .values()
                .map(|k| (k.epoch, k.activate_at))
                .collect();
            let ops: Vec<Op> = held
                .windows(2)
                .filter(|w| settings.policy.erase_at(w[1].1) <= now)
                .map(|w| Op::Delete {
                    key: codec::key_epoch_key(w[0].0),
                })
                .collect();
            Ok((ops.len(), ops))
        })?;
        Ok(n)
    }

    /// Asks for an early rotation; requests coalesce until taken.
    pub fn request_rotation(&self) -> Result<(), StoreError> {
        self.write(|cache| {
            let ops = if cache.rotation_requested {
                vec![]
            } else {
                vec![codec::put(codec::ROTATION_REQUEST.into(), Vec::new())]
            };
            Ok(((), ops))
        })?;
        Ok(())
    }

    /// Whether a rotation was requested since the last call; clears it.
    pub fn take_rotation_request(&self) -> Result<bool, StoreError> {
        let (taken, _) = self.write(|cache| {
            if !cache.rotation_requested {
                return Ok((false, vec![]));
            }
            let op = Op::Delete {
                key: codec::ROTATION_REQUEST.into(),
            };
            Ok((true, vec![op]))
        })?;
        Ok(taken)
    }

    /// Issues a credential for the gateway of `region`; only the secret's
    /// SHA-256 is stored, the secret is returned once.
    pub fn create_gateway_credential(&self, region: &str) -> Result<IssuedCredential, StoreError> {
        self.cache().state.config.check_region(region)?;
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let identity = GatewayIdentity {
            credential_id: format!("{CREDENTIAL_PREFIX}{}", hex::encode(id)),
            region: region.to_owned(),
        };
        let secret = new_token();
        let key = codec::credential_key(&hash_token(&secret));
        let value = codec::credential_value(&identity);
        self.write(|_| Ok(((), vec![codec::put(key.clone(), value.clone())])))?;
        Ok(IssuedCredential { identity, secret })
    }

    /// Revokes a gateway credential; false if there is none with that id.
    pub fn revoke_gateway_credential(&self, credential_id: &str) -> Result<bool, StoreError> {
        let (found, _) = self.write(|cache| {
            let ops: Vec<Op> = cache
                .credentials
                .iter()
                .filter(|(_, c)| c.credential_id == credential_id)
                .map(|(h, _)| Op::Delete {
                    key: codec::credential_key(h),
                })
                .collect();
            Ok((!ops.is_empty(), ops))
        })?;
        Ok(found)
    }

    /// The identity behind a credential's secret, if valid and not revoked.
    pub fn authenticate_gateway(
        &self,
        secret: &str,
    ) -> Result<Option<GatewayIdentity>, StoreError> {
        let hash = hash_token(secret);
        if let Some(c) = self.cache().credentials.get(&hash) {
            return Ok(Some(c.clone()));
        }
        if !self.inner.catch_up_after_miss()? {
            return Ok(None);
        }
        Ok(self.cache().credentials.get(&hash).cloned())
    }
}
