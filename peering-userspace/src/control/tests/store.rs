//! Stores: transactions, revisions, change log, tokens, multi-handle SQLite.

use super::support::*;
use crate::control::account::Call;
use crate::control::config::Config;
use crate::control::error::ApiError;
use crate::control::ids::SequentialIds;
use crate::control::state::State;
use crate::control::store::{check_compaction, MemoryStore, SqliteStore, Store, StoreError};
use std::path::PathBuf;

/// Removes the test's directory when dropped.
pub(super) struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh database path under the system temp dir, unique per test.
pub(super) fn temp_db(name: &str) -> (TempDir, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "peering-control-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    (TempDir(dir), path)
}

fn create_vpc(
    store: &impl Store,
    ids: &mut SequentialIds,
    account: &str,
    region: &str,
    cidr: &str,
) -> (String, u64) {
    let call = Call::at(acct(account), region, T0);
    let (v, rev) = store.transact(|s| s.create_vpc(&call, ids, cidr)).unwrap();
    (v.vpc_id, rev)
}

fn exercise(store: &impl Store) {
    let mut ids = SequentialIds(0);
    assert_eq!(store.revision().unwrap(), 0);
    let (a, r1) = create_vpc(store, &mut ids, A, E1, "10.0.0.0/16");
    assert_eq!(r1, 1);
    let (b, r2) = create_vpc(store, &mut ids, B, W2, "10.1.0.0/16");
    assert_eq!(r2, 2);
    assert_eq!(store.load().unwrap().revision, 2);

    // A refused operation writes nothing and keeps the revision.
    let before = store.load().unwrap();
    let call = Call::at(acct(A), E1, T0);
    let err = store
        .transact(|s| s.create_vpc(&call, &mut ids, "10.0.0.0/8"))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Api(e) if e.code() == "InvalidVpc.Range"),
        "{err}"
    );
    // Even when the closure mutated before failing.
    let err = store
        .transact(|s: &mut State| -> Result<(), ApiError> {
            s.create_vpc(&call, &mut ids, "10.9.0.0/16")?;
            Err(ApiError::invalid("changed my mind"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Api(_)));
    assert_eq!(store.load().unwrap(), before);
    assert_eq!(store.revision().unwrap(), 2);

    // A read-only transaction does not create a revision.
    let (vpcs, rev) = store.transact(|s| s.describe_vpcs(&call, &[])).unwrap();
    assert_eq!((vpcs.len(), rev), (1, 2));

    // A pending request changes no dataplane view; acceptance changes both.
    let req = crate::control::peering::CreatePeering {
        vpc_id: a.clone(),
        peer_vpc_id: b.clone(),
        peer_owner_id: Some(B.into()),
        peer_region: Some(W2.into()),
    };
    let (p, r3) = store
        .transact(|s| s.create_vpc_peering_connection(&call, &mut ids, &req))
        .unwrap();
    let acc = Call::at(acct(B), W2, T0);
    let pcx = p.vpc_peering_connection_id;
    let (_, r4) = store
        .transact(|s| s.accept_vpc_peering_connection(&acc, &pcx))
        .unwrap();
    assert_eq!((r3, r4), (3, 4));
    let changes = store.changes_since(0).unwrap();
    let revs: Vec<u64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(revs, [1, 2, 3, 4]);
    assert_eq!(changes[0].regions, [E1]);
    assert_eq!(changes[1].regions, [W2]);
    assert!(changes[2].regions.is_empty());
    assert_eq!(changes[3].regions, [E1, W2]);
    assert_eq!(store.changes_since(3).unwrap().len(), 1);
    assert!(store.changes_since(4).unwrap().is_empty());
    assert!(store.changes_since(99).unwrap().is_empty());
    let loaded = store.load().unwrap();
    assert_eq!(
        crate::control::view::region_view(&loaded, E1, T0).revision,
        4
    );

    // Tokens.
    let t = store.create_token(&acct(A)).unwrap();
    assert_eq!(t.len(), 64);
    assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
    let t2 = store.create_token(&acct(A)).unwrap();
    assert_ne!(t, t2);
    assert_eq!(store.authenticate(&t).unwrap(), Some(acct(A)));
    assert_eq!(store.authenticate("").unwrap(), None);
    assert_eq!(store.authenticate(&t.to_uppercase()).unwrap(), None);
    assert_eq!(store.revoke_tokens(&acct(A)).unwrap(), 2);
    assert_eq!(store.authenticate(&t2).unwrap(), None);
    assert_eq!(store.revision().unwrap(), 4, "tokens are not model state");
    assert!(store.changes_since(4).unwrap().is_empty());
}

#[test]
fn memory_store_contract() {
    exercise(&MemoryStore::new(State::default()));
}

#[test]
fn sqlite_store_contract() {
    let (_dir, path) = temp_db("contract");
    exercise(&SqliteStore::open(&path, Config::default()).unwrap());
    // Reopening sees the same state; the stored config wins.
    let other = Config {
        regions: vec!["ap-south-1".into()],
        ..Config::default()
    };
    let again = SqliteStore::open(&path, other).unwrap();
    assert_eq!(again.revision().unwrap(), 4);
    assert_eq!(again.load().unwrap().config, Config::default());
    assert_eq!(again.load().unwrap().vpcs().count(), 2);
}

#[test]
fn tokens_are_stored_hashed() {
    let (_dir, path) = temp_db("tokens");
    let store = SqliteStore::open(&path, Config::default()).unwrap();
    let token = store.create_token(&acct(B)).unwrap();
    drop(store);
    let raw = std::fs::read(&path).unwrap();
    let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext token on disk"
        );
    }
}

#[test]
fn two_handles_never_lose_updates() {
    const PER_THREAD: usize = 40;
    let (_dir, path) = temp_db("concurrency");
    SqliteStore::open(&path, Config::default()).unwrap();
    let handles: Vec<_> = (0..2u128)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = SqliteStore::open(&path, Config::default()).unwrap();
                let mut ids = SequentialIds(t << 40);
                let mut revs = vec![];
                for i in 0..PER_THREAD {
                    let account = if t == 0 { A } else { B };
                    let (_, rev) =
                        create_vpc(&store, &mut ids, account, E1, &format!("10.{i}.0.0/16"));
                    revs.push(rev);
                    // Interleave reads and a refused write.
                    store.load().unwrap();
                    let call = Call::at(acct(account), E1, T0);
                    assert!(store
                        .transact(|s| s.create_vpc(&call, &mut ids, "bad"))
                        .is_err());
                }
                revs
            })
        })
        .collect();
    let mut all: Vec<u64> = vec![];
    for h in handles {
        let revs = h.join().unwrap();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "per-handle revisions increase"
        );
        all.extend(revs);
    }
    all.sort();
    let expected: Vec<u64> = (1..=(2 * PER_THREAD) as u64).collect();
    assert_eq!(all, expected, "every commit got its own revision");
    let store = SqliteStore::open(&path, Config::default()).unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.vpcs().count(), 2 * PER_THREAD, "no lost update");
    assert_eq!(state.revision, 2 * PER_THREAD as u64);
    let revs: Vec<u64> = store
        .kv()
        .changes(0, std::time::Duration::ZERO)
        .unwrap()
        .iter()
        .map(|b| b.revision)
        .collect();
    assert_eq!(revs, expected);
}

#[test]
fn compaction_rule() {
    assert!(check_compaction(5, 5, None).is_ok());
    assert!(check_compaction(4, 5, Some(5)).is_ok());
    assert!(matches!(
        check_compaction(3, 5, Some(5)),
        Err(StoreError::Compacted { oldest: 5 })
    ));
    assert!(matches!(
        check_compaction(0, 5, None),
        Err(StoreError::Compacted { oldest: 6 })
    ));
}

/// Opening a store whose schema is in place writes nothing (an agent's
/// restart would wait for the write lock and an fsync); one missing a table
/// gains it.
#[test]
fn opening_an_up_to_date_store_writes_nothing() {
    let (_dir, path) = temp_db("reopen");
    let first = SqliteStore::open(&path, Config::default()).unwrap();
    first.create_token(&acct(A)).unwrap();
    let wal = path.with_extension("db-wal");
    let before = std::fs::metadata(&wal).unwrap().len();
    let _again = SqliteStore::open(&path, Config::default()).unwrap();
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), before, "WAL grew");
}

/// Groups, rules and interfaces survive a reopen of a SQLite store, one
/// key per object.
#[test]
fn security_groups_round_trip_through_sqlite() {
    use crate::control::network_interface::CreateNetworkInterface;
    use crate::control::security_group::CreateSecurityGroup;
    use crate::control::sg_rules::{Direction, IpPermission, IpRange};
    let (_dir, path) = temp_db("sg-round-trip");
    let store = SqliteStore::open(&path, Config::default()).unwrap();
    let mut ids = SequentialIds(0);
    let call = Call::at(acct(A), E1, T0);
    let (vpc, _) = create_vpc(&store, &mut ids, A, E1, "10.0.0.0/16");
    let (subnet, _) = store
        .transact(|s| {
            s.create_subnet(
                &call,
                &mut ids,
                &crate::control::subnet::CreateSubnet {
                    vpc_id: vpc.clone(),
                    cidr_block: "10.0.1.0/24".into(),
                    interface: "eth1".into(),
                    vlan: None,
                },
            )
        })
        .unwrap();
    let (sg, _) = store
        .transact(|s| {
            s.create_security_group(
                &call,
                &mut ids,
                &CreateSecurityGroup {
                    group_name: "web".into(),
                    description: "web".into(),
                    vpc_id: vpc.clone(),
                },
            )
        })
        .unwrap();
    let perm = IpPermission {
        ip_protocol: "tcp".into(),
        from_port: Some(443),
        to_port: Some(443),
        ip_ranges: vec![IpRange {
            cidr_ip: "10.1.0.0/16".into(),
            description: Some("peer".into()),
        }],
        ..Default::default()
    };
    store
        .transact(|s| {
            s.authorize_security_group(
                &call,
                &mut ids,
                Direction::Ingress,
                &sg,
                std::slice::from_ref(&perm),
            )
        })
        .unwrap();
    store
        .transact(|s| {
            s.create_network_interface(
                &call,
                &mut ids,
                &CreateNetworkInterface {
                    subnet_id: subnet.subnet_id.clone(),
                    groups: vec![sg.clone()],
                    ..Default::default()
                },
            )
        })
        .unwrap();
    let before = store.load().unwrap();
    assert_eq!(before.security_groups().count(), 2);
    drop(store);
    let again = SqliteStore::open(&path, Config::default()).unwrap();
    let after = again.load().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.next_dp_id(), before.next_dp_id());
}

/// A store written before security groups existed loads as it is; the
/// first model write gives its VPCs their default group.
#[test]
fn old_stores_get_default_groups_on_first_write() {
    use crate::control::store::codec;
    use crate::control::store::sqlite_kv::SqliteKv;
    use std::sync::Arc;
    let (_dir, path) = temp_db("sg-adopt");
    let mut ids = SequentialIds(0);
    let mut legacy = State::default();
    let call = Call::at(acct(A), E1, T0);
    let vpc = legacy
        .create_vpc(&call, &mut ids, "10.0.0.0/16")
        .unwrap()
        .vpc_id;
    let sg = legacy.vpc(&vpc).unwrap().default_group_id.clone().unwrap();
    legacy.security_groups.remove(&sg);
    legacy.vpcs.get_mut(&vpc).unwrap().default_group_id = None;
    legacy.take_changes(legacy.config.clone(), legacy.next_dp_id());
    // The VPC as an old version wrote it: no default_group_id field.
    let entries = codec::state_entries(&legacy);
    let vpc_json = &entries
        .iter()
        .find(|(k, _)| k.starts_with("vpcs/"))
        .unwrap()
        .1;
    assert!(!String::from_utf8_lossy(vpc_json).contains("default_group"));
    let kv = SqliteKv::open(&path, || entries.clone()).unwrap();
    let store = crate::control::controller::Controller::new(Arc::new(kv)).unwrap();
    assert_eq!(store.load().unwrap(), legacy);
    // Any model write adopts, here an unrelated VPC.
    create_vpc(&store, &mut ids, A, E1, "10.1.0.0/16");
    let state = store.load().unwrap();
    let adopted = state.vpc(&vpc).unwrap().default_group_id.clone().unwrap();
    assert_eq!(state.security_group(&adopted).unwrap().name, "default");
    assert_eq!(state.security_groups().count(), 2);
}
