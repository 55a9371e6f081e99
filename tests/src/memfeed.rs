//! A [`Feed`] held in memory, for tests of the gateway API that need no
//! controller: regions with a view history, keys, credentials that can be
//! revoked, and compaction on demand.

use peering_userspace::control::delta::RegionDelta;
use peering_userspace::control::feed::{Feed, GatewayIdentity};
use peering_userspace::control::store::{GatewayRecord, StoreError, TunnelSettings};
use peering_userspace::control::view::{RegionView, VpcView};
use peering_userspace::tunnel::key::{Algorithm, EpochKey, KeyMaterial, KEY_LEN};
use peering_userspace::tunnel::Millis;
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::Mutex;
use tokio::sync::watch;

#[derive(Default)]
struct Inner {
    revision: u64,
    /// Per region, its view after each revision that changed it.
    history: BTreeMap<String, Vec<RegionView>>,
    compacted_before: u64,
    keys: Vec<(u32, Millis, [u8; KEY_LEN])>,
    settings: Option<TunnelSettings>,
    gateways: BTreeMap<String, GatewayRecord>,
    next_gateway_id: u32,
    /// secret -> (identity, revoked)
    credentials: BTreeMap<String, (GatewayIdentity, bool)>,
    rotation_requests: u32,
}

pub struct MemFeed {
    inner: Mutex<Inner>,
    revisions: watch::Sender<u64>,
}

impl MemFeed {
    pub fn new(regions: &[&str]) -> Self {
        let mut inner = Inner {
            next_gateway_id: 1,
            ..Default::default()
        };
        for r in regions {
            inner.history.insert(
                r.to_string(),
                vec![RegionView {
                    revision: 0,
                    region: r.to_string(),
                    vpcs: vec![],
                    subnets: vec![],
                    routes: vec![],
                    peerings: vec![],
                    security_groups: vec![],
                    interfaces: vec![],
                }],
            );
        }
        MemFeed {
            inner: Mutex::new(inner),
            revisions: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits a new revision adding a VPC (`dp_id`) to `region`; returns
    /// the revision.
    pub fn add_vpc(&self, region: &str, dp_id: u32, cidr: &str) -> u64 {
        let mut inner = self.lock();
        inner.revision += 1;
        let revision = inner.revision;
        let views = inner.history.get_mut(region).expect("known region");
        let mut view = views.last().expect("a view").clone();
        view.revision = revision;
        view.vpcs.push(VpcView {
            vpc_id: format!("vpc-{dp_id:08x}"),
            dp_id,
            cidrs: vec![cidr.parse().expect("cidr")],
            default_group_dp_id: 0,
        });
        view.sort();
        views.push(view);
        drop(inner);
        self.revisions.send_replace(revision);
        revision
    }

    /// Commits a revision that changes no region view.
    pub fn bump(&self) -> u64 {
        let mut inner = self.lock();
        inner.revision += 1;
        let revision = inner.revision;
        drop(inner);
        self.revisions.send_replace(revision);
        revision
    }

    /// Forgets the history before the current revision.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.compacted_before = inner.revision;
    }

    /// Issues a credential for `region`; returns its secret.
    pub fn issue(&self, credential_id: &str, region: &str) -> String {
        let secret = format!("gws-{credential_id}-0123456789abcdef0123456789abcdef");
        self.lock().credentials.insert(
            secret.clone(),
            (
                GatewayIdentity {
                    credential_id: credential_id.into(),
                    region: region.into(),
                },
                false,
            ),
        );
        secret
    }

    pub fn revoke(&self, credential_id: &str) {
        for (id, revoked) in self.lock().credentials.values_mut() {
            if id.credential_id == credential_id {
                *revoked = true;
            }
        }
    }

    pub fn add_key(&self, epoch: u32, activate_at: Millis, byte: u8) {
        self.lock().keys.push((epoch, activate_at, [byte; KEY_LEN]));
    }

    pub fn set_settings(&self, settings: TunnelSettings) {
        self.lock().settings = Some(settings);
    }

    pub fn rotation_requests(&self) -> u32 {
        self.lock().rotation_requests
    }
}

impl Feed for MemFeed {
    fn view(&self, region: &str) -> Result<RegionView, StoreError> {
        let inner = self.lock();
        let mut view = inner
            .history
            .get(region)
            .and_then(|h| h.last())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("no region {region}")))?;
        view.revision = inner.revision;
        Ok(view)
    }

    fn changes(&self, region: &str, since: u64) -> Result<RegionDelta, StoreError> {
        let inner = self.lock();
        if since < inner.compacted_before {
            return Err(StoreError::Compacted {
                oldest: inner.compacted_before,
            });
        }
        let history = inner
            .history
            .get(region)
            .ok_or_else(|| StoreError::Corrupt(format!("no region {region}")))?;
        let mut old = history
            .iter()
            .rev()
            .find(|v| v.revision <= since)
            .cloned()
            .expect("revision 0 is held");
        old.revision = since;
        let mut new = history.last().cloned().expect("a view");
        new.revision = inner.revision;
        Ok(old.diff(&new))
    }

    fn revisions(&self) -> watch::Receiver<u64> {
        self.revisions.subscribe()
    }

    fn tunnel_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
        Ok(self
            .lock()
            .keys
            .iter()
            .map(|(epoch, activate_at, bytes)| EpochKey {
                epoch: *epoch,
                algorithm: Algorithm::Aes256Gcm,
                activate_at: *activate_at,
                material: KeyMaterial::from_bytes(*bytes),
            })
            .collect())
    }

    fn tunnel_settings(&self) -> Result<Option<TunnelSettings>, StoreError> {
        Ok(self.lock().settings)
    }

    fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        Ok(self.lock().gateways.values().cloned().collect())
    }

    fn register_gateway(
        &self,
        region: &str,
        endpoint: SocketAddrV4,
        now: Millis,
    ) -> Result<u32, StoreError> {
        let mut inner = self.lock();
        let id = match inner.gateways.get(region) {
            Some(g) => g.gateway_id,
            None => {
                inner.next_gateway_id += 1;
                inner.next_gateway_id - 1
            }
        };
        inner.gateways.insert(
            region.to_owned(),
            GatewayRecord {
                region: region.to_owned(),
                gateway_id: id,
                endpoint,
                updated_at: now,
            },
        );
        Ok(id)
    }

    fn request_rotation(&self) -> Result<(), StoreError> {
        self.lock().rotation_requests += 1;
        Ok(())
    }

    fn authenticate_gateway(&self, secret: &str) -> Result<Option<GatewayIdentity>, StoreError> {
        Ok(self
            .lock()
            .credentials
            .get(secret)
            .filter(|(_, revoked)| !revoked)
            .map(|(id, _)| id.clone()))
    }
}
