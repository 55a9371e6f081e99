//! Every object of the control plane under its own key of a [`Kv`], and
//! back: sans-IO, so the layout is tested without a store.
//!
//! Key layout (values are JSON unless said otherwise):
//!
//! | key                              | value                                        |
//! |----------------------------------|----------------------------------------------|
//! | `head`                           | nonce of the last commit (raw bytes)         |
//! | `model-head`                     | nonce of the last commit that changed the model: its mod revision is the model's revision |
//! | `config`                         | [`Config`]                                   |
//! | `counters/dp-id`                 | next dataplane id (u32)                      |
//! | `counters/gateway-id`            | highest gateway id ever handed out (u32)     |
//! | `tokens/<sha256 hex>`            | account id of an API token                   |
//! | `vpcs/<vpc-id>`                  | [`Vpc`]                                      |
//! | `subnets/<subnet-id>`            | [`Subnet`]                                   |
//! | `route-tables/<rtb-id>`          | [`RouteTable`] without its routes            |
//! | `routes/<rtb-id>/<destination>`  | [`Route`]                                    |
//! | `peerings/<pcx-id>`              | [`Peering`]                                  |
//! | `security-groups/<sg-id>`        | [`SecurityGroup`] with its rules             |
//! | `network-interfaces/<eni-id>`    | [`NetworkInterface`]                         |
//! | `gateway-credentials/<sha256>`   | {credential_id, region}                      |
//! | `gateway-ids/<region>`           | the region's gateway id (never reused)       |
//! | `gateways/<region>`              | live registration, leased (see [`REGISTRATION_TTL`]) |
//! | `tunnel/settings`                | rotation policy and algorithm                |
//! | `tunnel/keys/<epoch, 10 digits>` | key epoch, binary (see [`encode_key`])       |
//! | `tunnel/rotation-request`        | empty: an early rotation is asked for        |
//!
//! Stores written before security groups existed have no `security-groups/`
//! keys and VPCs without a default group: the controller's first model
//! write gives each such VPC one (`State::adopt_default_groups`).
//!
//! `route-tables/` sorts before `routes/`, so in key order (snapshots) a
//! table comes before its routes; [`apply`] also accepts them in any order
//! within a batch ([`sort_for_apply`]). Keys under [`SECRET_PREFIX`] hold key
//! material: backends must not keep their values after deletion.

use crate::control::account::AccountId;
use crate::control::config::Config;
use crate::control::feed::GatewayIdentity;
use crate::control::network_interface::NetworkInterface;
use crate::control::peering::Peering;
use crate::control::route_table::{Route, RouteTable};
use crate::control::security_group::SecurityGroup;
use crate::control::state::{Changes, State};
use crate::control::store::kv::Op;
use crate::control::store::tunnel::{algorithm_name, parse_algorithm};
use crate::control::store::{StoreError, TunnelSettings};
use crate::control::subnet::Subnet;
use crate::control::vpc::Vpc;
use crate::tunnel::key::{Algorithm, EpochKey, KeyMaterial, KEY_LEN};
use crate::tunnel::schedule::RotationPolicy;
use crate::tunnel::Millis;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::SocketAddrV4;
use std::time::Duration;

pub const HEAD: &str = "head";
pub const MODEL_HEAD: &str = "model-head";
pub const CONFIG: &str = "config";
pub const DP_ID: &str = "counters/dp-id";
pub const GATEWAY_ID_COUNTER: &str = "counters/gateway-id";
pub const TOKENS: &str = "tokens/";
pub const VPCS: &str = "vpcs/";
pub const SUBNETS: &str = "subnets/";
pub const ROUTE_TABLES: &str = "route-tables/";
pub const ROUTES: &str = "routes/";
pub const PEERINGS: &str = "peerings/";
pub const SECURITY_GROUPS: &str = "security-groups/";
pub const NETWORK_INTERFACES: &str = "network-interfaces/";
pub const CREDENTIALS: &str = "gateway-credentials/";
pub const GATEWAY_IDS: &str = "gateway-ids/";
pub const REGISTRATIONS: &str = "gateways/";
pub const SETTINGS: &str = "tunnel/settings";
pub const SECRET_PREFIX: &str = "tunnel/keys/";
pub const ROTATION_REQUEST: &str = "tunnel/rotation-request";

/// How long a gateway registration lives without renewal. Agents renew
/// every few seconds (a third of this or more often).
pub const REGISTRATION_TTL: Duration = Duration::from_secs(15);

/// A live gateway registration (value of `gateways/<region>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub gateway_id: u32,
    pub endpoint: SocketAddrV4,
    pub updated_at: Millis,
}

#[derive(Serialize, Deserialize)]
struct TableMeta {
    id: String,
    dp_id: u32,
    vpc_id: String,
}

#[derive(Serialize, Deserialize)]
struct CredentialValue {
    credential_id: String,
    region: String,
}

#[derive(Serialize, Deserialize)]
struct SettingsValue {
    interval_ms: Millis,
    lead_ms: Millis,
    overlap_ms: Millis,
    algorithm: String,
}

/// One decoded key (with its value, None: deleted).
#[derive(Debug)]
pub enum Object {
    Head,
    Config(Option<Config>),
    DpId(Option<u32>),
    GatewayIdCounter(Option<u32>),
    Token(String, Option<AccountId>),
    Vpc(String, Option<Vpc>),
    Subnet(String, Option<Subnet>),
    /// A table without its routes.
    RouteTable(String, Option<RouteTable>),
    Route(String, Ipv4Net, Option<Route>),
    Peering(String, Option<Peering>),
    SecurityGroup(String, Option<SecurityGroup>),
    NetworkInterface(String, Option<NetworkInterface>),
    Credential(String, Option<GatewayIdentity>),
    GatewayId(String, Option<u32>),
    Registration(String, Option<Registration>),
    Settings(Option<TunnelSettings>),
    Key(u32, Option<EpochKey>),
    RotationRequest(bool),
    /// A key this version does not know (written by a newer one): ignored.
    Unknown,
}

fn corrupt(key: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("key {key:?}: {what}"))
}

fn json<'a, T: Deserialize<'a>>(key: &str, value: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own types always serialize (string keys, no floats).
    serde_json::to_vec(value).expect("model types serialize")
}

/// Decodes one key and its value (None: deleted).
pub fn decode(key: &str, value: Option<&[u8]>) -> Result<Object, StoreError> {
    let obj = match key {
        HEAD | MODEL_HEAD => Object::Head,
        CONFIG => Object::Config(value.map(|v| json(key, v)).transpose()?),
        DP_ID => Object::DpId(value.map(|v| json(key, v)).transpose()?),
        GATEWAY_ID_COUNTER => Object::GatewayIdCounter(value.map(|v| json(key, v)).transpose()?),
        SETTINGS => Object::Settings(value.map(|v| decode_settings(key, v)).transpose()?),
        ROTATION_REQUEST => Object::RotationRequest(value.is_some()),
        _ => return decode_prefixed(key, value),
    };
    Ok(obj)
}

fn decode_prefixed(key: &str, value: Option<&[u8]>) -> Result<Object, StoreError> {
    let name = |prefix: &str| key.strip_prefix(prefix).map(str::to_owned);
    if let Some(hash) = name(TOKENS) {
        let account = value
            .map(|v| {
                let s: String = json(key, v)?;
                AccountId::parse(&s).map_err(|e| corrupt(key, e.message))
            })
            .transpose()?;
        return Ok(Object::Token(hash, account));
    }
    if let Some(id) = name(VPCS) {
        return Ok(Object::Vpc(id, value.map(|v| json(key, v)).transpose()?));
    }
    if let Some(id) = name(SUBNETS) {
        return Ok(Object::Subnet(id, value.map(|v| json(key, v)).transpose()?));
    }
    if let Some(id) = name(ROUTE_TABLES) {
        let table = value
            .map(|v| {
                let m: TableMeta = json(key, v)?;
                Ok::<_, StoreError>(RouteTable::new(m.id, m.dp_id, m.vpc_id))
            })
            .transpose()?;
        return Ok(Object::RouteTable(id, table));
    }
    if let Some(rest) = key.strip_prefix(ROUTES) {
        let (rtb, dest) = rest
            .split_once('/')
            .ok_or_else(|| corrupt(key, "no destination"))?;
        let dest: Ipv4Net = dest.parse().map_err(|e| corrupt(key, e))?;
        let route = value.map(|v| json(key, v)).transpose()?;
        return Ok(Object::Route(rtb.to_owned(), dest, route));
    }
    if let Some(id) = name(PEERINGS) {
        return Ok(Object::Peering(
            id,
            value.map(|v| json(key, v)).transpose()?,
        ));
    }
    if let Some(id) = name(SECURITY_GROUPS) {
        return Ok(Object::SecurityGroup(
            id,
            value.map(|v| json(key, v)).transpose()?,
        ));
    }
    if let Some(id) = name(NETWORK_INTERFACES) {
        return Ok(Object::NetworkInterface(
            id,
            value.map(|v| json(key, v)).transpose()?,
        ));
    }
    if let Some(hash) = name(CREDENTIALS) {
        let identity = value
            .map(|v| {
                let c: CredentialValue = json(key, v)?;
                Ok::<_, StoreError>(GatewayIdentity {
                    credential_id: c.credential_id,
                    region: c.region,
                })
            })
            .transpose()?;
        return Ok(Object::Credential(hash, identity));
    }
    if let Some(region) = name(GATEWAY_IDS) {
        let id: Option<u32> = value.map(|v| json(key, v)).transpose()?;
        if id == Some(0) {
            return Err(corrupt(key, "gateway id 0"));
        }
        return Ok(Object::GatewayId(region, id));
    }
    if let Some(region) = name(REGISTRATIONS) {
        let reg: Option<Registration> = value.map(|v| json(key, v)).transpose()?;
        if reg.as_ref().is_some_and(|r| r.gateway_id == 0) {
            return Err(corrupt(key, "gateway id 0"));
        }
        return Ok(Object::Registration(region, reg));
    }
    if let Some(epoch) = key.strip_prefix(SECRET_PREFIX) {
        let epoch: u32 = epoch.parse().map_err(|_| corrupt(key, "bad epoch"))?;
        let k = value.map(|v| decode_key(epoch, v)).transpose()?;
        return Ok(Object::Key(epoch, k));
    }
    Ok(Object::Unknown)
}

// ----- keys -----

pub fn vpc_key(id: &str) -> String {
    format!("{VPCS}{id}")
}
pub fn subnet_key(id: &str) -> String {
    format!("{SUBNETS}{id}")
}
pub fn route_table_key(id: &str) -> String {
    format!("{ROUTE_TABLES}{id}")
}
pub fn route_key(rtb: &str, dest: &Ipv4Net) -> String {
    format!("{ROUTES}{rtb}/{dest}")
}
pub fn peering_key(id: &str) -> String {
    format!("{PEERINGS}{id}")
}
pub fn security_group_key(id: &str) -> String {
    format!("{SECURITY_GROUPS}{id}")
}
pub fn network_interface_key(id: &str) -> String {
    format!("{NETWORK_INTERFACES}{id}")
}
pub fn token_key(hash: &str) -> String {
    format!("{TOKENS}{hash}")
}
pub fn credential_key(hash: &str) -> String {
    format!("{CREDENTIALS}{hash}")
}
pub fn gateway_id_key(region: &str) -> String {
    format!("{GATEWAY_IDS}{region}")
}
pub fn registration_key(region: &str) -> String {
    format!("{REGISTRATIONS}{region}")
}
pub fn key_epoch_key(epoch: u32) -> String {
    format!("{SECRET_PREFIX}{epoch:010}")
}

// ----- values -----

pub fn put(key: String, value: Vec<u8>) -> Op {
    Op::Put { key, value }
}

pub fn json_put<T: Serialize>(key: String, value: &T) -> Op {
    put(key, to_json(value))
}

pub fn token_value(account: &AccountId) -> Vec<u8> {
    to_json(&account.as_str())
}

pub fn credential_value(identity: &GatewayIdentity) -> Vec<u8> {
    to_json(&CredentialValue {
        credential_id: identity.credential_id.clone(),
        region: identity.region.clone(),
    })
}

pub fn settings_value(settings: &TunnelSettings) -> Vec<u8> {
    to_json(&SettingsValue {
        interval_ms: settings.policy.interval(),
        lead_ms: settings.policy.lead(),
        overlap_ms: settings.policy.overlap(),
        algorithm: algorithm_name(settings.algorithm).to_owned(),
    })
}

fn decode_settings(key: &str, value: &[u8]) -> Result<TunnelSettings, StoreError> {
    let s: SettingsValue = json(key, value)?;
    let policy = RotationPolicy::new(s.interval_ms, s.lead_ms, s.overlap_ms)
        .map_err(|e| StoreError::Corrupt(format!("tunnel settings: {e}")))?;
    let algorithm = parse_algorithm(&s.algorithm).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "tunnel settings: unknown algorithm {:?}",
            s.algorithm
        ))
    })?;
    Ok(TunnelSettings { policy, algorithm })
}

/// Version byte of the key encoding.
const KEY_FORMAT: u8 = 1;

/// A key epoch as stored: format byte, algorithm byte (1 AES-256-GCM, 2
/// ChaCha20-Poly1305), activation time (u64 big endian), then the
/// material. Binary, so the secret is never formatted into text.
pub fn encode_key(key: &EpochKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 8 + KEY_LEN);
    out.push(KEY_FORMAT);
    out.push(match key.algorithm {
        Algorithm::Aes256Gcm => 1,
        Algorithm::ChaCha20Poly1305 => 2,
    });
    out.extend_from_slice(&key.activate_at.to_be_bytes());
    out.extend_from_slice(key.material.as_bytes());
    out
}

/// Inverse of [`encode_key`]; errors never contain key bytes.
pub fn decode_key(epoch: u32, value: &[u8]) -> Result<EpochKey, StoreError> {
    let bad = |what: String| StoreError::Corrupt(format!("key epoch {epoch}: {what}"));
    if value.len() < 10 || value[0] != KEY_FORMAT {
        return Err(bad("unknown format".into()));
    }
    let algorithm = match value[1] {
        1 => Algorithm::Aes256Gcm,
        2 => Algorithm::ChaCha20Poly1305,
        _ => return Err(bad("unknown algorithm".into())),
    };
    let mut at = [0u8; 8];
    at.copy_from_slice(&value[2..10]);
    let material = KeyMaterial::from_slice(&value[10..]).ok_or_else(|| {
        bad(format!(
            "material is {} bytes, expected {KEY_LEN}",
            value.len() - 10
        ))
    })?;
    Ok(EpochKey {
        epoch,
        algorithm,
        activate_at: u64::from_be_bytes(at),
        material,
    })
}

// ----- the model -----

fn table_meta(t: &RouteTable) -> Vec<u8> {
    to_json(&TableMeta {
        id: t.id.clone(),
        dp_id: t.dp_id,
        vpc_id: t.vpc_id.clone(),
    })
}

fn object_ops<V: Serialize>(
    ops: &mut Vec<Op>,
    log: &crate::control::tracked::Log<V>,
    now: &std::collections::BTreeMap<String, V>,
    key: fn(&str) -> String,
) {
    for id in log.keys() {
        ops.push(match now.get(id) {
            Some(v) => json_put(key(id), v),
            None => Op::Delete { key: key(id) },
        });
    }
}

/// The writes that store `changes` (previous values) of `state` (new
/// values): one key per object that changed, one per route.
pub fn state_ops(changes: &Changes, state: &State) -> Vec<Op> {
    let mut ops = Vec::new();
    if changes.config.is_some() {
        ops.push(json_put(CONFIG.into(), &state.config));
    }
    if changes.next_dp_id.is_some() {
        ops.push(json_put(DP_ID.into(), &state.next_dp_id()));
    }
    object_ops(&mut ops, &changes.vpcs, &state.vpcs, vpc_key);
    object_ops(&mut ops, &changes.subnets, &state.subnets, subnet_key);
    object_ops(&mut ops, &changes.peerings, &state.peerings, peering_key);
    object_ops(
        &mut ops,
        &changes.security_groups,
        &state.security_groups,
        security_group_key,
    );
    object_ops(
        &mut ops,
        &changes.network_interfaces,
        &state.network_interfaces,
        network_interface_key,
    );
    for (id, prev) in &changes.route_tables {
        let now = state.route_tables.get(id);
        let meta_changed = match (prev, now) {
            (Some(p), Some(n)) => (p.dp_id, &p.vpc_id) != (n.dp_id, &n.vpc_id),
            (None, None) => false,
            _ => true,
        };
        if meta_changed {
            ops.push(match now {
                Some(t) => put(route_table_key(id), table_meta(t)),
                None => Op::Delete {
                    key: route_table_key(id),
                },
            });
        }
        let empty = std::collections::BTreeMap::new();
        let before = prev.as_ref().map_or(&empty, |t| &t.routes);
        let after = now.map_or(&empty, |t| &t.routes);
        for (dest, r) in after {
            if before.get(dest) != Some(r) {
                ops.push(json_put(route_key(id, dest), r));
            }
        }
        for dest in before.keys().filter(|d| !after.contains_key(*d)) {
            ops.push(Op::Delete {
                key: route_key(id, dest),
            });
        }
    }
    ops
}

/// Every key of a whole state (a new or migrated store).
pub fn state_entries(state: &State) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        (MODEL_HEAD.to_owned(), Vec::new()),
        (CONFIG.to_owned(), to_json(&state.config)),
        (DP_ID.to_owned(), to_json(&state.next_dp_id())),
    ];
    out.extend(state.vpcs().map(|v| (vpc_key(&v.id), to_json(v))));
    out.extend(state.subnets().map(|s| (subnet_key(&s.id), to_json(s))));
    out.extend(state.peerings().map(|p| (peering_key(&p.id), to_json(p))));
    out.extend(
        state
            .security_groups()
            .map(|g| (security_group_key(&g.id), to_json(g))),
    );
    out.extend(
        state
            .network_interfaces()
            .map(|n| (network_interface_key(&n.id), to_json(n))),
    );
    for t in state.route_tables() {
        out.push((route_table_key(&t.id), table_meta(t)));
        out.extend(
            t.routes
                .iter()
                .map(|(d, r)| (route_key(&t.id, d), to_json(r))),
        );
    }
    out
}

/// Whether `key` holds part of the model ([`State`]).
pub fn is_model_key(key: &str) -> bool {
    key == CONFIG
        || key == DP_ID
        || [
            VPCS,
            SUBNETS,
            ROUTE_TABLES,
            ROUTES,
            PEERINGS,
            SECURITY_GROUPS,
            NETWORK_INTERFACES,
        ]
        .iter()
        .any(|p| key.starts_with(p))
}

/// Orders a batch so tables come before their routes (and routes of a
/// deleted table after it): every non-route key first, then routes.
pub fn sort_for_apply(changes: &mut [(String, Option<Vec<u8>>)]) {
    changes.sort_by_key(|(k, _)| k.starts_with(ROUTES));
}

/// Applies a model object to `state` through its tracked maps (so the
/// caller can take the [`Changes`]). Non-model objects are returned for the
/// caller to apply to its own caches.
pub fn apply(state: &mut State, obj: Object) -> Option<Object> {
    match obj {
        Object::Config(Some(c)) => state.config = c,
        Object::DpId(Some(n)) => state.set_next_dp_id(n),
        Object::Config(None) | Object::DpId(None) => {}
        Object::Vpc(id, v) => set(&mut state.vpcs, id, v),
        Object::Subnet(id, s) => set(&mut state.subnets, id, s),
        Object::Peering(id, p) => set(&mut state.peerings, id, p),
        Object::SecurityGroup(id, g) => set(&mut state.security_groups, id, g),
        Object::NetworkInterface(id, n) => set(&mut state.network_interfaces, id, n),
        Object::RouteTable(id, None) => {
            state.route_tables.remove(&id);
        }
        Object::RouteTable(id, Some(meta)) => match state.route_tables.get_mut(&id) {
            Some(t) => {
                t.dp_id = meta.dp_id;
                t.vpc_id = meta.vpc_id;
            }
            None => {
                state.route_tables.insert(id, meta);
            }
        },
        Object::Route(rtb, dest, route) => {
            if let Some(t) = state.route_tables.get_mut(&rtb) {
                match route {
                    Some(r) => t.routes.insert(dest, r),
                    None => t.routes.remove(&dest),
                };
            }
        }
        other => return Some(other),
    }
    None
}

fn set<V: Clone>(map: &mut crate::control::tracked::Tracked<V>, id: String, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(id, v);
        }
        None => {
            map.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::account::Call;
    use crate::control::ids::SequentialIds;

    fn call(account: &str, region: &str) -> Call {
        Call::at(AccountId::parse(account).unwrap(), region, 1_000)
    }

    /// Runs `op` with tracking and returns the ops it stores.
    fn ops_of(state: &mut State, op: impl FnOnce(&mut State)) -> Vec<Op> {
        let (config, dp) = (state.config.clone(), state.next_dp_id());
        op(state);
        let changes = state.take_changes(config, dp);
        state_ops(&changes, state)
    }

    /// Replays ops onto a state rebuilt from entries.
    fn replay(mut from: State, ops: &[Op]) -> State {
        let mut changes: Vec<(String, Option<Vec<u8>>)> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } | Op::PutLeased { key, value, .. } => {
                    (key.clone(), Some(value.clone()))
                }
                Op::Delete { key } => (key.clone(), None),
            })
            .collect();
        sort_for_apply(&mut changes);
        for (k, v) in changes {
            let obj = decode(&k, v.as_deref()).unwrap();
            assert!(apply(&mut from, obj).is_none(), "{k}");
        }
        from.take_changes(from.config.clone(), from.next_dp_id());
        from
    }

    fn from_entries(entries: &[(String, Vec<u8>)]) -> State {
        let mut state = State::default();
        let mut changes: Vec<_> = entries
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        sort_for_apply(&mut changes);
        for (k, v) in changes {
            apply(&mut state, decode(&k, v.as_deref()).unwrap());
        }
        state.take_changes(state.config.clone(), state.next_dp_id());
        state
    }

    #[test]
    fn writes_store_only_what_changed_and_replay_exactly() {
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let a = call("111111111111", "us-east-1");
        let ops = ops_of(&mut state, |s| {
            s.create_vpc(&a, &mut ids, "10.1.0.0/16").unwrap();
        });
        // The VPC, its main table, its default group and the dp-id counter.
        let keys: Vec<&str> = ops.iter().map(Op::key).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys.contains(&DP_ID));
        let mut copy = replay(State::default(), &ops);
        assert_eq!(copy, state);

        let vpc = state.vpcs().next().unwrap().clone();
        let ops = ops_of(&mut state, |s| {
            s.create_vpc(&a, &mut ids, "10.2.0.0/16").unwrap();
        });
        copy = replay(copy, &ops);
        assert_eq!(copy, state);
        let other = state.vpcs().find(|v| v.id != vpc.id).unwrap().clone();
        let req = crate::control::peering::CreatePeering {
            vpc_id: vpc.id.clone(),
            peer_vpc_id: other.id.clone(),
            peer_owner_id: None,
            peer_region: None,
        };
        let mut pcx = String::new();
        let ops = ops_of(&mut state, |s| {
            pcx = s
                .create_vpc_peering_connection(&a, &mut ids, &req)
                .unwrap()
                .vpc_peering_connection_id;
            s.accept_vpc_peering_connection(&a, &pcx).unwrap();
        });
        copy = replay(copy, &ops);
        assert_eq!(copy, state);
        // One route: exactly one key, under the table.
        let rtb = vpc.main_route_table_id.clone();
        let ops = ops_of(&mut state, |s| {
            s.create_route(&a, &rtb, "10.2.0.0/16", &pcx).unwrap();
        });
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].key(), format!("routes/{rtb}/10.2.0.0/16"));
        copy = replay(copy, &ops);
        assert_eq!(copy, state);
        // Deleting the VPC deletes its table, its routes, ends the peering.
        let ops = ops_of(&mut state, |s| s.delete_vpc(&a, &other.id).unwrap());
        assert!(ops.iter().any(|o| o.key().starts_with(PEERINGS)));
        let ops = ops_of(&mut state, |s| {
            s.delete_route(&a, &rtb, "10.2.0.0/16").unwrap();
            s.delete_vpc(&a, &vpc.id).unwrap();
        })
        .into_iter()
        .chain(ops)
        .collect::<Vec<_>>();
        copy = replay(copy, &ops[ops.len() / 2..]);
        copy = replay(copy, &ops[..ops.len() / 2]);
        assert_eq!(copy, state);
        // A whole state round-trips through its entries.
        assert_eq!(from_entries(&state_entries(&state)), state);
    }

    #[test]
    fn groups_and_interfaces_store_one_key_each_and_replay() {
        use crate::control::network_interface::CreateNetworkInterface;
        use crate::control::security_group::CreateSecurityGroup;
        use crate::control::sg_rules::{Direction, IpPermission, IpRange};
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let a = call("111111111111", "us-east-1");
        let mut vpc = String::new();
        let ops = ops_of(&mut state, |s| {
            vpc = s.create_vpc(&a, &mut ids, "10.1.0.0/16").unwrap().vpc_id;
        });
        // The VPC, its main table, its default group and the counter.
        assert_eq!(ops.len(), 4, "{ops:?}");
        assert!(ops.iter().any(|o| o.key().starts_with(SECURITY_GROUPS)));
        let mut copy = replay(State::default(), &ops);
        assert_eq!(copy, state);
        let mut sg = String::new();
        let ops = ops_of(&mut state, |s| {
            let req = CreateSecurityGroup {
                group_name: "web".into(),
                description: "web".into(),
                vpc_id: vpc.clone(),
            };
            sg = s.create_security_group(&a, &mut ids, &req).unwrap();
        });
        copy = replay(copy, &ops);
        // One rule: the group's key and the counter.
        let perm = IpPermission {
            ip_protocol: "udp".into(),
            from_port: Some(53),
            to_port: Some(53),
            ip_ranges: vec![IpRange {
                cidr_ip: "10.2.0.0/16".into(),
                description: None,
            }],
            ..Default::default()
        };
        let ops = ops_of(&mut state, |s| {
            s.authorize_security_group(&a, &mut ids, Direction::Egress, &sg, &[perm])
                .unwrap();
        });
        let keys: Vec<&str> = ops.iter().map(Op::key).collect();
        assert_eq!(keys, [DP_ID.to_owned(), security_group_key(&sg)]);
        copy = replay(copy, &ops);
        let ops = ops_of(&mut state, |s| {
            let subnet = s
                .create_subnet(
                    &a,
                    &mut ids,
                    &crate::control::subnet::CreateSubnet {
                        vpc_id: vpc.clone(),
                        cidr_block: "10.1.1.0/24".into(),
                        interface: "eth1".into(),
                        vlan: None,
                    },
                )
                .unwrap()
                .subnet_id;
            let req = CreateNetworkInterface {
                subnet_id: subnet,
                groups: vec![sg.clone()],
                ..Default::default()
            };
            s.create_network_interface(&a, &mut ids, &req).unwrap();
        });
        assert!(ops.iter().any(|o| o.key().starts_with(NETWORK_INTERFACES)));
        copy = replay(copy, &ops);
        assert_eq!(copy, state);
        assert!(is_model_key(&security_group_key(&sg)));
        assert!(is_model_key(&network_interface_key("eni-1")));
        assert_eq!(from_entries(&state_entries(&state)), state);
        // Deleting removes the keys.
        let eni = state.network_interfaces().next().unwrap().id.clone();
        let ops = ops_of(&mut state, |s| {
            s.delete_network_interface(&a, &eni).unwrap();
            s.delete_security_group(&a, &sg).unwrap();
        });
        assert!(ops.iter().all(|o| matches!(o, Op::Delete { .. })));
        copy = replay(copy, &ops);
        assert_eq!(copy, state);
        assert!(matches!(
            decode(&security_group_key("sg-1"), Some(b"{}")),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_failed_write_undoes_exactly() {
        let mut ids = SequentialIds(0);
        let mut state = State::default();
        let a = call("111111111111", "us-east-1");
        state.create_vpc(&a, &mut ids, "10.1.0.0/16").unwrap();
        state.take_changes(state.config.clone(), state.next_dp_id());
        let before = state.clone();
        let (config, dp) = (state.config.clone(), state.next_dp_id());
        state.create_vpc(&a, &mut ids, "10.3.0.0/16").unwrap();
        state.config.regions.push("xx-1".into());
        let changes = state.take_changes(config, dp);
        assert!(!changes.is_empty());
        state.undo(changes);
        assert_eq!(state, before);
    }

    #[test]
    fn keys_and_tunnel_values_round_trip() {
        let key = EpochKey {
            epoch: 7,
            algorithm: Algorithm::ChaCha20Poly1305,
            activate_at: 123_456,
            material: KeyMaterial::from_bytes([9; KEY_LEN]),
        };
        let bytes = encode_key(&key);
        let Object::Key(7, Some(back)) = decode(&key_epoch_key(7), Some(&bytes)).unwrap() else {
            panic!("not a key");
        };
        assert_eq!(
            (back.algorithm, back.activate_at, back.material.as_bytes()),
            (key.algorithm, key.activate_at, key.material.as_bytes())
        );
        assert!(key_epoch_key(9) < key_epoch_key(10));
        for bad in [&bytes[..20], &[2u8; 42][..], &[][..]] {
            let err = decode(&key_epoch_key(7), Some(bad)).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)));
        }
        let mut wrong_alg = bytes.clone();
        wrong_alg[1] = 9;
        let msg = decode(&key_epoch_key(7), Some(&wrong_alg))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("algorithm"), "{msg}");
        let settings = TunnelSettings {
            policy: RotationPolicy::default(),
            algorithm: Algorithm::Aes256Gcm,
        };
        let v = settings_value(&settings);
        assert!(
            matches!(decode(SETTINGS, Some(&v)).unwrap(), Object::Settings(Some(s)) if s == settings)
        );
        assert!(matches!(
            decode("gateway-ids/us-east-1", Some(b"0")),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode("routes/rtb-1/notacidr", Some(b"{}")),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode("something/new", Some(b"x")).unwrap(),
            Object::Unknown
        ));
        assert!(ROUTE_TABLES < ROUTES);
    }
}
