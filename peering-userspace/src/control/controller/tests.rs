//! The controller over SQLite: feed, several controllers on one store,
//! writes whose outcome the store left unknown.

use super::*;
use crate::control::account::Call;
use crate::control::feed::Feed;
use crate::control::ids::SequentialIds;
use crate::control::store::kv::Entry;
use crate::control::store::test_dir::TempDir;
use crate::control::view::region_view;
use std::sync::atomic::{AtomicUsize, Ordering};

const E1: &str = "us-east-1";
const W2: &str = "us-west-2";

fn config() -> Config {
    Config {
        regions: vec![E1.into(), W2.into()],
        ..Config::default()
    }
}

fn call(region: &str) -> Call {
    Call::at(AccountId::parse("111111111111").unwrap(), region, 1_000)
}

fn create_vpc(c: &Controller, ids: &mut SequentialIds, region: &str, cidr: &str) -> String {
    c.transact(|s| s.create_vpc(&call(region), ids, cidr))
        .unwrap()
        .0
        .vpc_id
}

#[test]
fn feed_deltas_take_a_view_to_the_latest() {
    let dir = TempDir::new("ctl-feed");
    let c = Controller::open(dir.path().join("s.db"), config()).unwrap();
    let mut ids = SequentialIds(0);
    let mut watch = c.revisions();
    let start = Feed::view(&c, E1).unwrap();
    assert_eq!(start.revision, 0);
    let a = create_vpc(&c, &mut ids, E1, "10.1.0.0/16");
    let b = create_vpc(&c, &mut ids, W2, "10.2.0.0/16");
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), 2);
    let req = crate::control::peering::CreatePeering {
        vpc_id: a.clone(),
        peer_vpc_id: b.clone(),
        peer_owner_id: None,
        peer_region: Some(W2.into()),
    };
    let (p, _) = c
        .transact(|s| s.create_vpc_peering_connection(&call(E1), &mut ids, &req))
        .unwrap();
    let pcx = p.vpc_peering_connection_id;
    c.transact(|s| s.accept_vpc_peering_connection(&call(W2), &pcx))
        .unwrap();
    let rtb = c
        .read(|s| s.vpc(&a).unwrap().main_route_table_id.clone())
        .unwrap();
    c.transact(|s| s.create_route(&call(E1), &rtb, "10.2.0.0/16", &pcx))
        .unwrap();
    for region in [E1, W2] {
        let full = Feed::view(&c, region).unwrap();
        let mut v = region_view(&State::new(config()), region, 0);
        v.apply(&Feed::changes(&c, region, 0).unwrap()).unwrap();
        assert_eq!(v, full, "{region}");
        // From the middle too.
        let mut mid = full.clone();
        let d = Feed::changes(&c, region, full.revision).unwrap();
        assert!(d.is_empty());
        mid.apply(&d).unwrap();
        assert_eq!(mid, full);
    }
    assert_eq!(Feed::view(&c, E1).unwrap().routes.len(), 1);
    assert!(matches!(Feed::view(&c, "mars-1"), Err(StoreError::Api(_))));
    // A controller started later has no deltas before its snapshot.
    let late = Controller::open(dir.path().join("s.db"), config()).unwrap();
    assert!(matches!(
        Feed::changes(&late, E1, 0),
        Err(StoreError::Compacted { .. })
    ));
    assert!(Feed::changes(&late, E1, late.store_revision())
        .unwrap()
        .is_empty());
}

#[test]
fn two_controllers_on_one_store_converge() {
    let dir = TempDir::new("ctl-two");
    let path = dir.path().join("s.db");
    let one = Arc::new(Controller::open(&path, config()).unwrap());
    let two = Arc::new(Controller::open(&path, config()).unwrap());
    let threads: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .enumerate()
        .map(|(t, c)| {
            std::thread::spawn(move || {
                let mut ids = SequentialIds((t as u128 + 1) << 40);
                for i in 0..25 {
                    create_vpc(&c, &mut ids, E1, &format!("10.{}.0.0/16", t * 100 + i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    one.catch_up().unwrap();
    two.catch_up().unwrap();
    let (a, b) = (one.load().unwrap(), two.load().unwrap());
    assert_eq!(a.vpcs().count(), 50);
    assert_eq!(a, b);
    assert_eq!(
        Feed::view(&*one, E1).unwrap(),
        Feed::view(&*two, E1).unwrap()
    );
    // Invariants are checked against the latest state: an overlapping VPC
    // created through the other controller is refused.
    let mut ids = SequentialIds(9 << 40);
    let err = two
        .transact(|s| s.create_vpc(&call(E1), &mut ids, "10.0.0.0/8"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Api(_)));
}

/// A store that loses the answer to some commits: `lose_after` commits
/// land and then report an error; `fail_before` commits fail without
/// landing.
struct Flaky {
    inner: SqliteKv,
    lose_after: AtomicUsize,
    fail_before: AtomicUsize,
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl Kv for Flaky {
    fn snapshot(&self) -> Result<(u64, Vec<Entry>), StoreError> {
        self.inner.snapshot()
    }
    fn commit(&self, base: u64, ops: &[Op]) -> Result<Commit, StoreError> {
        if take(&self.fail_before) {
            return Err(StoreError::Corrupt("connection reset".into()));
        }
        let out = self.inner.commit(base, ops)?;
        if take(&self.lose_after) {
            return Err(StoreError::Corrupt("reply lost".into()));
        }
        Ok(out)
    }
    fn changes(&self, since: u64, wait: Duration) -> Result<Vec<Batch>, StoreError> {
        self.inner.changes(since, wait)
    }
    fn lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[test]
fn unknown_outcomes_are_settled_by_the_nonce() {
    let dir = TempDir::new("ctl-unknown");
    let path = dir.path().join("s.db");
    let kv = Arc::new(Flaky {
        inner: SqliteKv::open(&path, || codec::state_entries(&State::new(config()))).unwrap(),
        lose_after: AtomicUsize::new(1),
        fail_before: AtomicUsize::new(0),
    });
    let c = Controller::new(kv.clone()).unwrap();
    let mut ids = SequentialIds(0);
    // Landed, answer lost: acknowledged once, not applied twice.
    let (_, rev) = c
        .transact(|s| s.create_vpc(&call(E1), &mut ids, "10.1.0.0/16"))
        .unwrap();
    assert_eq!(rev, 1);
    assert_eq!(c.load().unwrap().vpcs().count(), 1);
    // Failed before landing: retried, applied once.
    kv.fail_before.store(2, Ordering::SeqCst);
    let (_, rev) = c
        .transact(|s| s.create_vpc(&call(E1), &mut ids, "10.2.0.0/16"))
        .unwrap();
    assert_eq!(rev, 2);
    assert_eq!(c.load().unwrap().vpcs().count(), 2);
    // A store that never answers: an error, and nothing applied.
    kv.fail_before.store(usize::MAX, Ordering::SeqCst);
    assert!(c
        .transact(|s| s.create_vpc(&call(E1), &mut ids, "10.3.0.0/16"))
        .is_err());
    kv.fail_before.store(0, Ordering::SeqCst);
    c.catch_up().unwrap();
    assert_eq!(c.load().unwrap().vpcs().count(), 2);
    let fresh = Controller::open(&path, config()).unwrap();
    assert_eq!(fresh.load().unwrap(), c.load().unwrap());
}

#[test]
fn gateway_credentials_and_registrations() {
    let dir = TempDir::new("ctl-gw");
    let c = Controller::open(dir.path().join("s.db"), config()).unwrap();
    assert!(matches!(
        c.create_gateway_credential("mars-1"),
        Err(StoreError::Api(_))
    ));
    let issued = c.create_gateway_credential(E1).unwrap();
    assert!(issued.identity.credential_id.starts_with(CREDENTIAL_PREFIX));
    assert_eq!(issued.secret.len(), 64);
    assert_eq!(
        Feed::authenticate_gateway(&c, &issued.secret).unwrap(),
        Some(issued.identity.clone())
    );
    assert_eq!(Feed::authenticate_gateway(&c, "nope").unwrap(), None);
    assert!(c
        .revoke_gateway_credential(&issued.identity.credential_id)
        .unwrap());
    assert!(!c
        .revoke_gateway_credential(&issued.identity.credential_id)
        .unwrap());
    assert_eq!(
        Feed::authenticate_gateway(&c, &issued.secret).unwrap(),
        None
    );

    let ep = "198.18.0.1:4789".parse().unwrap();
    assert!(matches!(
        Feed::register_gateway(&c, "mars-1", ep, 1),
        Err(StoreError::Api(_))
    ));
    let id = Feed::register_gateway(&c, E1, ep, 1).unwrap();
    assert_eq!(Feed::register_gateway(&c, E1, ep, 2).unwrap(), id);
    let w = Feed::register_gateway(&c, W2, ep, 3).unwrap();
    assert_ne!(w, id);
    let gws = Feed::gateways(&c).unwrap();
    assert_eq!(gws.len(), 2);
    assert_eq!(gws[0].updated_at, 2);
    // Registration writes are not region view changes.
    assert_eq!(c.revision().unwrap(), 0, "no model change");
    let rev = c.store_revision();
    assert!(Feed::changes(&c, E1, rev - 2).unwrap().is_empty());
}

use super::tunnel::CREDENTIAL_PREFIX;
