//! Tunnel data in the SQLite store: gateway registry, settings, keys,
//! erasure and rotation requests.

use super::store::temp_db;
use crate::control::config::Config;
use crate::control::store::codec;
use crate::control::store::kv::{Commit, Op};
use crate::control::store::migrate::fixture;
use crate::control::store::{SqliteStore, Store, StoreError, TunnelSettings};
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial, KEY_LEN};
use crate::tunnel::schedule::{PublishedEpoch, RotationPolicy};
use crate::tunnel::Millis;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, Config::default()).unwrap()
}

fn addr(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, last), port)
}

fn key(epoch: u32, activate_at: Millis, fill: u8) -> EpochKey {
    EpochKey {
        epoch,
        algorithm: Algorithm::Aes256Gcm,
        activate_at,
        material: KeyMaterial::from_bytes([fill; KEY_LEN]),
    }
}

/// Interval 1 s, lead and overlap 100 ms.
fn settings() -> TunnelSettings {
    TunnelSettings {
        policy: RotationPolicy::new(1000, 100, 100).unwrap(),
        algorithm: Algorithm::Aes256Gcm,
    }
}

fn epochs(store: &SqliteStore) -> Vec<u32> {
    store
        .tunnel_keys()
        .unwrap()
        .iter()
        .map(|k| k.epoch)
        .collect()
}

#[test]
fn gateway_ids_stable_and_unique_per_region() {
    let (_dir, path) = temp_db("gw-ids");
    let store = open(&path);
    let east = store
        .register_gateway("us-east-1", addr(1, 51900), 10)
        .unwrap();
    let west = store
        .register_gateway("us-west-2", addr(2, 51900), 11)
        .unwrap();
    let eu = store
        .register_gateway("eu-west-1", addr(3, 51900), 12)
        .unwrap();
    assert!(east >= 1 && west >= 1 && eu >= 1);
    assert!(east != west && west != eu && east != eu);
    // Re-registering keeps the id, also from another handle after a restart.
    assert_eq!(
        store
            .register_gateway("us-east-1", addr(1, 51900), 20)
            .unwrap(),
        east
    );
    drop(store);
    let store = open(&path);
    assert_eq!(
        store
            .register_gateway("us-west-2", addr(2, 51900), 30)
            .unwrap(),
        west
    );
    let listed: Vec<(String, u32)> = store
        .gateways()
        .unwrap()
        .into_iter()
        .map(|g| (g.region, g.gateway_id))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("us-east-1".to_owned(), east),
            ("us-west-2".to_owned(), west),
            ("eu-west-1".to_owned(), eu),
        ]
    );
}

#[test]
fn gateway_endpoint_update() {
    let (_dir, path) = temp_db("gw-endpoint");
    let store = open(&path);
    assert_eq!(store.gateways().unwrap(), vec![]);
    let id = store
        .register_gateway("us-east-1", addr(1, 51900), 100)
        .unwrap();
    let id2 = store
        .register_gateway("us-east-1", addr(9, 4000), 200)
        .unwrap();
    assert_eq!(id, id2);
    let gateways = store.gateways().unwrap();
    assert_eq!(gateways.len(), 1);
    assert_eq!(gateways[0].region, "us-east-1");
    assert_eq!(gateways[0].gateway_id, id);
    assert_eq!(gateways[0].endpoint, addr(9, 4000));
    assert_eq!(gateways[0].updated_at, 200);
}

#[test]
fn tunnel_settings_roundtrip() {
    let (_dir, path) = temp_db("settings");
    let store = open(&path);
    assert_eq!(store.tunnel_settings().unwrap(), None);
    store.set_tunnel_settings(&settings()).unwrap();
    assert_eq!(store.tunnel_settings().unwrap(), Some(settings()));
    let chacha = TunnelSettings {
        policy: RotationPolicy::default(),
        algorithm: Algorithm::ChaCha20Poly1305,
    };
    store.set_tunnel_settings(&chacha).unwrap();
    assert_eq!(open(&path).tunnel_settings().unwrap(), Some(chacha));
}

#[test]
fn publish_list_and_erase_in_order() {
    let (_dir, path) = temp_db("keys-order");
    let store = open(&path);
    store.set_tunnel_settings(&settings()).unwrap();
    assert_eq!(store.latest_epoch().unwrap(), None);
    assert!(store.tunnel_keys().unwrap().is_empty());
    store.publish_key(&key(1, 1000, 0x11)).unwrap();
    store.publish_key(&key(2, 2000, 0x22)).unwrap();
    let mut chacha = key(3, 3000, 0x33);
    chacha.algorithm = Algorithm::ChaCha20Poly1305;
    store.publish_key(&chacha).unwrap();

    let keys = store.tunnel_keys().unwrap();
    let summary: Vec<(u32, Millis, Algorithm, u8)> = keys
        .iter()
        .map(|k| {
            (
                k.epoch,
                k.activate_at,
                k.algorithm,
                k.material.as_bytes()[0],
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 1000, Algorithm::Aes256Gcm, 0x11),
            (2, 2000, Algorithm::Aes256Gcm, 0x22),
            (3, 3000, Algorithm::ChaCha20Poly1305, 0x33),
        ]
    );
    assert_eq!(keys[1].material.as_bytes(), &[0x22; KEY_LEN]);
    assert_eq!(
        store.latest_epoch().unwrap(),
        Some(PublishedEpoch {
            epoch: 3,
            activate_at: 3000
        })
    );

    // Epoch 1 goes at its successor's activation (2000) + overlap (100).
    assert_eq!(store.erase_expired_keys(2099).unwrap(), 0);
    assert_eq!(epochs(&store), vec![1, 2, 3]);
    assert_eq!(store.erase_expired_keys(2100).unwrap(), 1);
    assert_eq!(epochs(&store), vec![2, 3]);
    assert_eq!(store.erase_expired_keys(3100).unwrap(), 1);
    assert_eq!(epochs(&store), vec![3]);
    // The newest key has no successor: never erased, so the latest epoch
    // survives.
    assert_eq!(store.erase_expired_keys(u64::MAX / 2).unwrap(), 0);
    assert_eq!(epochs(&store), vec![3]);
    assert_eq!(store.latest_epoch().unwrap().map(|l| l.epoch), Some(3));
    // Several expired keys go in one call.
    store.publish_key(&key(4, 4000, 0x44)).unwrap();
    store.publish_key(&key(5, 5000, 0x55)).unwrap();
    store.publish_key(&key(6, 6000, 0x66)).unwrap();
    assert_eq!(store.erase_expired_keys(6100).unwrap(), 3);
    assert_eq!(epochs(&store), vec![6]);
}

#[test]
fn erase_waits_for_settings() {
    let (_dir, path) = temp_db("keys-no-settings");
    let store = open(&path);
    store.publish_key(&key(1, 1000, 1)).unwrap();
    store.publish_key(&key(2, 2000, 2)).unwrap();
    assert_eq!(store.erase_expired_keys(1_000_000).unwrap(), 0);
    store.set_tunnel_settings(&settings()).unwrap();
    assert_eq!(store.erase_expired_keys(1_000_000).unwrap(), 1);
}

#[test]
fn publish_refuses_non_increasing_keys() {
    let (_dir, path) = temp_db("keys-refuse");
    let store = open(&path);
    store.set_tunnel_settings(&settings()).unwrap();
    store.publish_key(&key(5, 5000, 5)).unwrap();
    for (epoch, activate_at) in [(5, 6000), (4, 6000), (6, 5000), (6, 4000)] {
        let err = store.publish_key(&key(epoch, activate_at, 9)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::KeyNotNewer {
                    latest: 5,
                    latest_activate_at: 5000,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(epochs(&store), vec![5]);
    assert_eq!(store.tunnel_keys().unwrap()[0].material.as_bytes()[0], 5);
    // Still refused after the older keys are erased.
    store.publish_key(&key(6, 6000, 6)).unwrap();
    assert_eq!(store.erase_expired_keys(7000).unwrap(), 1);
    assert!(store.publish_key(&key(5, 9000, 9)).is_err());
    store.publish_key(&key(7, 7000, 7)).unwrap();
    assert_eq!(epochs(&store), vec![6, 7]);
}

#[test]
fn rotation_request_flag() {
    let (_dir, path) = temp_db("rotation-flag");
    let store = open(&path);
    assert!(!store.take_rotation_request().unwrap());
    store.request_rotation().unwrap();
    store.request_rotation().unwrap();
    assert!(store.take_rotation_request().unwrap());
    assert!(!store.take_rotation_request().unwrap());
}

/// Writes a raw value under `key`, as a broken or hostile writer might.
fn poke(store: &SqliteStore, key: &str, value: &[u8]) {
    let base = store.store_revision();
    let op = Op::Put {
        key: key.into(),
        value: value.to_vec(),
    };
    assert!(matches!(
        store.kv().commit(base, &[op]).unwrap(),
        Commit::Done(_)
    ));
    store.catch_up().unwrap();
}

#[test]
fn garbage_values_are_errors() {
    let (_dir, path) = temp_db("garbage");
    let store = open(&path);
    let assert_corrupt = |res: Result<Vec<EpochKey>, StoreError>| {
        let err = res.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        err.to_string()
    };
    let good = codec::encode_key(&key(1, 1000, 7));
    let k1 = codec::key_epoch_key(1);
    let mut bad_alg = good.clone();
    bad_alg[1] = 77;
    poke(&store, &k1, &bad_alg);
    let msg = assert_corrupt(store.tunnel_keys());
    assert!(msg.contains("algorithm"), "{msg}");
    assert!(!msg.contains("0707"), "no key bytes in errors");
    poke(&store, &k1, &good[..good.len() - 1]);
    let msg = assert_corrupt(store.tunnel_keys());
    assert!(msg.contains("31 bytes"), "{msg}");
    poke(&store, &k1, b"not a key");
    assert_corrupt(store.tunnel_keys());
    assert!(matches!(store.latest_epoch(), Err(StoreError::Corrupt(_))));
    poke(&store, &k1, &good);
    assert_eq!(epochs(&store), vec![1]);
    poke(&store, "tunnel/keys/-3", &good);
    assert_corrupt(store.tunnel_keys());

    poke(
        &store,
        codec::SETTINGS,
        br#"{"interval_ms":1000,"lead_ms":100,"overlap_ms":100,"algorithm":"des"}"#,
    );
    assert!(matches!(
        store.tunnel_settings(),
        Err(StoreError::Corrupt(_))
    ));
    poke(
        &store,
        codec::SETTINGS,
        br#"{"interval_ms":10,"lead_ms":100,"overlap_ms":100,"algorithm":"aes-256-gcm"}"#,
    );
    assert!(matches!(
        store.tunnel_settings(),
        Err(StoreError::Corrupt(_))
    ));
    poke(
        &store,
        &codec::registration_key("r"),
        br#"{"gateway_id":3,"endpoint":"[::1]:5","updated_at":0}"#,
    );
    assert!(matches!(store.gateways(), Err(StoreError::Corrupt(_))));
    // A reopened controller finds the same problems in its snapshot.
    let again = open(&path);
    assert!(matches!(again.gateways(), Err(StoreError::Corrupt(_))));
}

#[test]
fn two_handles_see_each_others_keys() {
    let (_dir, path) = temp_db("two-handles");
    let controld = open(&path);
    let agent = open(&path);
    controld.set_tunnel_settings(&settings()).unwrap();
    // Each handle is a controller with its own cache: it sees the other's
    // commits once it has read them (its change thread does so within
    // milliseconds; `catch_up` does it now).
    agent.catch_up().unwrap();
    assert_eq!(agent.tunnel_settings().unwrap(), Some(settings()));
    controld.publish_key(&key(1, 1000, 0xa1)).unwrap();
    controld.publish_key(&key(2, 2000, 0xa2)).unwrap();
    agent.catch_up().unwrap();
    let seen = agent.tunnel_keys().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].material.as_bytes(), &[0xa1; KEY_LEN]);
    assert_eq!(seen[1].material.as_bytes(), &[0xa2; KEY_LEN]);
    assert_eq!(agent.latest_epoch().unwrap().map(|l| l.epoch), Some(2));

    agent.request_rotation().unwrap();
    controld.catch_up().unwrap();
    assert!(controld.take_rotation_request().unwrap());
    agent.catch_up().unwrap();
    assert!(!agent.take_rotation_request().unwrap());

    let id = agent.register_gateway("us-east-1", addr(1, 1), 5).unwrap();
    controld.catch_up().unwrap();
    assert_eq!(controld.gateways().unwrap()[0].gateway_id, id);

    assert_eq!(controld.erase_expired_keys(2100).unwrap(), 1);
    agent.catch_up().unwrap();
    assert_eq!(epochs(&agent), vec![2]);
    // The agent's stale view cannot publish behind the controld's back.
    assert!(agent.publish_key(&key(2, 3000, 0)).is_err());
}

/// A schema-1 database (the whole state as one JSON document, tokens and
/// tunnel tables), as the previous version wrote it, is converted on open:
/// the model, tokens, gateway ids (and the id counter), registrations,
/// settings, keys and the rotation request carry over, at the same
/// revision.
#[test]
fn schema_1_databases_are_migrated_once() {
    use crate::control::account::{AccountId, Call};
    use crate::control::ids::SequentialIds;
    use crate::control::store::hash_token;
    let (_dir, path) = temp_db("migrate");
    let mut state = crate::control::state::State::default();
    let call = Call::at(AccountId::parse("111111111111").unwrap(), "us-east-1", 5);
    let mut ids = SequentialIds(0);
    let vpc = state.create_vpc(&call, &mut ids, "10.1.0.0/16").unwrap();
    state.revision = 17;
    fixture::write_v1(&path, &state, &hash_token("tok"), "111111111111");

    let store = open(&path);
    assert_eq!(store.revision().unwrap(), 17);
    let loaded = store.load().unwrap();
    assert_eq!(loaded, state);
    assert!(loaded.vpc(&vpc.vpc_id).is_some());
    assert_eq!(
        store.authenticate("tok").unwrap(),
        Some(AccountId::parse("111111111111").unwrap())
    );
    let gws = store.gateways().unwrap();
    let regions: Vec<(&str, u32)> = gws
        .iter()
        .map(|g| (g.region.as_str(), g.gateway_id))
        .collect();
    assert_eq!(regions, [("us-east-1", 2), ("us-west-2", 3)]);
    assert_eq!(
        store.tunnel_settings().unwrap().unwrap().algorithm,
        Algorithm::ChaCha20Poly1305
    );
    let keys = store.tunnel_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].material.as_bytes(), &[0x22; KEY_LEN]);
    assert_eq!(keys[1].activate_at, 2000);
    assert!(store.take_rotation_request().unwrap());
    // Ids are never reused: the deleted gateway's id 1 is not handed out.
    assert_eq!(
        store.register_gateway("eu-west-1", addr(3, 3), 9).unwrap(),
        4
    );
    assert_eq!(
        store.register_gateway("us-east-1", addr(1, 1), 9).unwrap(),
        2
    );
    drop(store);

    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let old: i64 = raw
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('state', 'tunnel_keys', 'tokens')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the schema-1 tables are gone");
    drop(raw);
    // Opening again changes nothing.
    let again = open(&path);
    assert_eq!(again.load().unwrap().vpcs().count(), 1);
    assert_eq!(again.tunnel_keys().unwrap().len(), 2);
    // Once erased, key 1's material lingers neither in the new keys nor in
    // the pages of the dropped schema-1 table.
    assert_eq!(again.erase_expired_keys(3000).unwrap(), 1);
    drop(again);
    for file in [path.clone(), path.with_extension("db-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(32).any(|w| w == [0x11; 32]),
            "{}",
            file.display()
        );
    }
}

/// A schema-1 database from before the tunnel tables existed migrates too.
#[test]
fn schema_1_without_tunnel_tables_migrates() {
    let (_dir, path) = temp_db("migrate-old");
    fixture::write_v1(
        &path,
        &crate::control::state::State::default(),
        "h",
        "111111111111",
    );
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP TABLE gateways; DROP TABLE tunnel_settings;
             DROP TABLE tunnel_keys; DROP TABLE tunnel_rotation_request;",
        )
        .unwrap();
    }
    let store = open(&path);
    assert_eq!(
        store.register_gateway("us-east-1", addr(1, 1), 1).unwrap(),
        1
    );
    store.publish_key(&key(1, 1000, 1)).unwrap();
    assert_eq!(epochs(&store), vec![1]);
}
