//! What the agent makes of each answer of its controllers, without IO:
//! which view change to apply, which keys are new, whether the gateway
//! registry moved. The IO edge (`agent::run`) dumps maps, applies plans
//! and talks to the tunnel thread.

use std::{collections::BTreeMap, net::SocketAddrV4};

use crate::control::store::TunnelSettings;
use crate::control::view::RegionView;
use crate::dataplane::incremental::{Programmed, Resolve, Step};
use crate::tunnel::key::EpochKey;

use super::source::{Sync, ViewUpdate};

/// Registered gateways: (region, id, endpoint), sorted.
pub type Gateways = Vec<(String, u32, SocketAddrV4)>;

/// How long a gateway that left the registry is still used while its
/// region has no other, counted from the first answer without it:
/// registrations lapse when the controllers were unreachable for longer
/// than their lease (a controller restart after an outage), and come back
/// within seconds of their gateways' next renewal. Dropping the gateway
/// meanwhile would stop traffic to its region.
pub const GATEWAY_GRACE_MS: u64 = 30_000;

/// The agent's picture of its controllers' state.
#[derive(Default)]
pub struct Follower {
    /// The view held and what was programmed from it (None until the
    /// first full reconciliation).
    pub programmed: Option<Programmed>,
    /// Every key epoch the controllers hold (the tunnel takes the new
    /// ones).
    pub keys: Vec<EpochKey>,
    pub gateways: Gateways,
    pub settings: Option<TunnelSettings>,
    /// Gateways known, and since when (Unix ms) each is missing from the
    /// registry (None: in it).
    seen: BTreeMap<(String, u32), (SocketAddrV4, Option<u64>)>,
}

/// What to do with the view part of an answer.
#[derive(Debug)]
pub enum ViewAction {
    /// Nothing held yet: reconcile fully (dump the maps) from this view.
    Full(RegionView),
    /// Program this step; `repair`: follow with a full reconciliation
    /// (the answer came after a gap).
    Step { step: Step, repair: bool },
    /// The delta did not fit the view held: ask for the full view.
    Resync,
}

/// What one answer asks of the agent.
#[derive(Debug)]
pub struct Outcome {
    pub view: ViewAction,
    /// The gateway registry changed (the tunnel table depends on it).
    pub gateways: bool,
}

impl Follower {
    /// Takes one answer of the controllers, received at `now` (Unix ms).
    pub fn on_sync(&mut self, sync: Sync, resolve: Resolve, now: u64) -> Outcome {
        self.keys = sync.keys;
        self.keys.sort_by_key(|k| k.epoch);
        self.settings = sync.settings.or(self.settings);
        let registry: Gateways = sync
            .gateways
            .into_iter()
            .map(|g| (g.region, g.gateway_id, g.endpoint))
            .collect();
        let gateways = self.with_grace(registry, now);
        let gateways_moved = gateways != self.gateways;
        self.gateways = gateways;
        let view = match (self.programmed.as_mut(), sync.view) {
            (None, ViewUpdate::Full(v)) => ViewAction::Full(v),
            (None, ViewUpdate::Delta(_)) => ViewAction::Resync,
            (Some(p), ViewUpdate::Full(v)) => match p.replace(&v, resolve) {
                Ok(step) => ViewAction::Step { step, repair: true },
                Err(_) => ViewAction::Full(v),
            },
            (Some(p), ViewUpdate::Delta(d)) => match p.apply(&d, resolve) {
                Ok(step) => ViewAction::Step {
                    step,
                    repair: false,
                },
                Err(_) => ViewAction::Resync,
            },
        };
        Outcome {
            view,
            gateways: gateways_moved,
        }
    }

    /// The registry, plus gateways that left it less than
    /// [`GATEWAY_GRACE_MS`] ago and whose region has no other.
    fn with_grace(&mut self, registry: Gateways, now: u64) -> Gateways {
        for (_, missing) in self.seen.values_mut() {
            missing.get_or_insert(now);
        }
        for (region, id, endpoint) in &registry {
            self.seen.insert((region.clone(), *id), (*endpoint, None));
        }
        self.seen.retain(|_, (_, missing)| {
            missing.is_none_or(|since| now.saturating_sub(since) < GATEWAY_GRACE_MS)
        });
        let mut out = registry;
        for ((region, id), (endpoint, _)) in &self.seen {
            if !out.iter().any(|(r, _, _)| r == region) {
                out.push((region.clone(), *id, *endpoint));
            }
        }
        out.sort();
        out
    }

    /// The id under which `endpoint` serves `region` in the registry (a
    /// restarted agent finds its registration there before renewing it).
    pub fn registered_as(&self, region: &str, endpoint: SocketAddrV4) -> Option<u32> {
        self.gateways
            .iter()
            .find(|(r, _, e)| r == region && *e == endpoint)
            .map(|(_, id, _)| *id)
    }

    /// The revision of the view held.
    pub fn revision(&self) -> Option<u64> {
        self.programmed.as_ref().map(|p| p.view().revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::GatewayRecord;
    use crate::control::view::RouteView;
    use crate::dataplane::{reconcile::Port, Snapshot};
    use crate::tunnel::key::{Algorithm, KeyMaterial};

    fn resolve(_: &str) -> Option<Port> {
        None
    }

    fn view(revision: u64, routes: &[&str]) -> RegionView {
        let mut v = RegionView {
            revision,
            region: "r1".into(),
            vpcs: vec![],
            subnets: vec![],
            security_groups: vec![],
            interfaces: vec![],
            routes: routes
                .iter()
                .map(|d| RouteView {
                    route_table_dp_id: 1,
                    destination: d.parse().unwrap(),
                    target: crate::control::view::RouteTarget::Blackhole {
                        pcx_id: "pcx-1".into(),
                    },
                })
                .collect(),
            peerings: vec![],
        };
        v.sort();
        v
    }

    fn key(epoch: u32) -> EpochKey {
        EpochKey {
            epoch,
            algorithm: Algorithm::Aes256Gcm,
            activate_at: 0,
            material: KeyMaterial::from_bytes([epoch as u8; 32]),
        }
    }

    fn sync(revision: u64, view: ViewUpdate, keys: &[u32], gw: &[(&str, u32)]) -> Sync {
        Sync {
            revision,
            view,
            keys: keys.iter().map(|e| key(*e)).collect(),
            settings: None,
            gateways: gw
                .iter()
                .map(|(r, id)| GatewayRecord {
                    region: r.to_string(),
                    gateway_id: *id,
                    endpoint: "198.18.0.1:51900".parse().unwrap(),
                    updated_at: 0,
                })
                .collect(),
        }
    }

    fn held(f: &mut Follower, v: RegionView) {
        let (p, _, _) = Programmed::full(v, &resolve, &[], &Snapshot::default());
        f.programmed = Some(p);
    }

    #[test]
    fn a_first_full_view_asks_for_a_full_reconciliation() {
        let mut f = Follower::default();
        let out = f.on_sync(
            sync(3, ViewUpdate::Full(view(3, &[])), &[1, 2], &[]),
            &resolve,
            0,
        );
        assert!(matches!(out.view, ViewAction::Full(v) if v.revision == 3));
        assert!(!out.gateways);
        let out = f.on_sync(
            sync(3, ViewUpdate::Full(view(3, &[])), &[3, 2], &[]),
            &resolve,
            0,
        );
        let epochs: Vec<_> = f.keys.iter().map(|k| k.epoch).collect();
        assert_eq!(epochs, [2, 3], "the latest list, oldest first");
        assert!(
            matches!(out.view, ViewAction::Full(_)),
            "still nothing held"
        );
    }

    #[test]
    fn deltas_step_and_a_gap_asks_for_the_full_view() {
        let mut f = Follower::default();
        held(&mut f, view(3, &[]));
        let d = view(3, &[]).diff(&view(4, &["10.2.0.0/16"]));
        let out = f.on_sync(
            sync(4, ViewUpdate::Delta(d), &[], &[("r2", 2)]),
            &resolve,
            0,
        );
        let ViewAction::Step { step, repair } = out.view else {
            panic!("a step");
        };
        assert_eq!(step.plan.set_routes.len(), 1);
        assert!(!repair);
        assert!(out.gateways);
        assert_eq!(f.revision(), Some(4));
        let at = "198.18.0.1:51900".parse().unwrap();
        assert_eq!(f.registered_as("r2", at), Some(2));
        assert_eq!(f.registered_as("r1", at), None);
        // A delta from elsewhere does not fit.
        let d = view(9, &[]).diff(&view(10, &[]));
        let out = f.on_sync(
            sync(10, ViewUpdate::Delta(d), &[], &[("r2", 2)]),
            &resolve,
            0,
        );
        assert!(matches!(out.view, ViewAction::Resync));
        assert!(!out.gateways);
        assert_eq!(f.revision(), Some(4));
        // The full view after the gap becomes a step, and a repair.
        let full = view(12, &["10.3.0.0/16"]);
        let out = f.on_sync(sync(12, ViewUpdate::Full(full), &[], &[]), &resolve, 0);
        let ViewAction::Step { step, repair } = out.view else {
            panic!("a step");
        };
        assert!(repair);
        assert_eq!(step.plan.len(), 2, "one route in, one out");
        assert!(
            !out.gateways,
            "r2 left the registry, kept for the grace period"
        );
        assert_eq!(f.revision(), Some(12));
    }

    #[test]
    fn a_gateway_that_left_the_registry_is_kept_for_a_grace_period() {
        let mut f = Follower::default();
        let full = |rev| ViewUpdate::Full(view(rev, &[]));
        f.on_sync(
            sync(1, full(1), &[], &[("r1", 1), ("r2", 2)]),
            &resolve,
            1_000,
        );
        // The registry lapsed (a controller back after an outage): r2's
        // gateway stays.
        let out = f.on_sync(sync(2, full(2), &[], &[("r1", 1)]), &resolve, 5_000);
        assert!(!out.gateways);
        assert_eq!(f.gateways.len(), 2);
        // Replaced by another registration of r2: the new one only.
        let out = f.on_sync(
            sync(3, full(3), &[], &[("r1", 1), ("r2", 7)]),
            &resolve,
            6_000,
        );
        assert!(out.gateways);
        let ids: Vec<u32> = f.gateways.iter().map(|g| g.1).collect();
        assert_eq!(ids, [1, 7]);
        // The grace counts from the first answer without it, however long
        // no answer came (an outage).
        let late = 60_000 + 2 * GATEWAY_GRACE_MS;
        let out = f.on_sync(sync(4, full(4), &[], &[("r1", 1)]), &resolve, late);
        assert!(!out.gateways, "kept: {:?}", f.gateways);
        // Gone for the grace: dropped.
        let later = late + GATEWAY_GRACE_MS;
        let out = f.on_sync(sync(5, full(5), &[], &[("r1", 1)]), &resolve, later);
        assert!(out.gateways);
        assert_eq!(f.gateways.len(), 1);
    }

    #[test]
    fn a_delta_before_any_view_asks_for_the_full_view() {
        let mut f = Follower::default();
        let d = view(1, &[]).diff(&view(2, &[]));
        let out = f.on_sync(sync(2, ViewUpdate::Delta(d), &[], &[]), &resolve, 0);
        assert!(matches!(out.view, ViewAction::Resync));
    }
}
