//! The whole control-plane state and the helpers every operation shares.
//!
//! Operations are methods on [`State`], spread over the noun modules
//! (`vpc.rs`, `subnet.rs`, `route_table.rs`, `peering.rs`). Each one takes a
//! [`Call`] (caller account, region, time) and either applies completely or
//! returns an error leaving the state untouched: all validation happens first,
//! and the only fallible step after it (`take_dp_ids`) fails before mutating.

use crate::control::account::Call;
use crate::control::config::Config;
use crate::control::error::{ApiError, ErrorCode};
use crate::control::ids::{self, IdSource, Kind};
use crate::control::network_interface::NetworkInterface;
use crate::control::peering::Peering;
use crate::control::route_table::RouteTable;
use crate::control::security_group::SecurityGroup;
use crate::control::subnet::Subnet;
use crate::control::tracked::{Log, Tracked};
use crate::control::vpc::Vpc;
use serde::{Deserialize, Serialize};

/// How many fresh ids to draw before giving up. With 68 random bits a single
/// collision is already unlikely; repeated ones mean a broken id source.
const MAX_ID_ATTEMPTS: usize = 64;

/// Everything the control plane knows. Serializable so a store can persist it
/// as one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub config: Config,
    /// The store revision this state was committed at (0 before any commit).
    /// Set by the store, never by operations.
    pub revision: u64,
    /// Next dataplane id. Monotonic and never reused, so the dataplane can key
    /// maps by it without confusing a deleted object with a new one.
    pub(crate) next_dp_id: u32,
    pub(crate) vpcs: Tracked<Vpc>,
    pub(crate) subnets: Tracked<Subnet>,
    pub(crate) route_tables: Tracked<RouteTable>,
    pub(crate) peerings: Tracked<Peering>,
    /// Absent in states written before security groups existed.
    #[serde(default)]
    pub(crate) security_groups: Tracked<SecurityGroup>,
    #[serde(default)]
    pub(crate) network_interfaces: Tracked<NetworkInterface>,
}

/// What a write changed in a [`State`]: the previous value of every object
/// it touched (None: the object did not exist), and the previous config and
/// dataplane-id counter when they changed. The new values are in the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub vpcs: Log<Vpc>,
    pub subnets: Log<Subnet>,
    pub route_tables: Log<RouteTable>,
    pub peerings: Log<Peering>,
    pub security_groups: Log<SecurityGroup>,
    pub network_interfaces: Log<NetworkInterface>,
    pub config: Option<Config>,
    pub next_dp_id: Option<u32>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.vpcs.is_empty()
            && self.subnets.is_empty()
            && self.route_tables.is_empty()
            && self.peerings.is_empty()
            && self.security_groups.is_empty()
            && self.network_interfaces.is_empty()
            && self.config.is_none()
            && self.next_dp_id.is_none()
    }
}

impl Default for State {
    fn default() -> Self {
        State::new(Config::default())
    }
}

impl State {
    pub fn new(config: Config) -> Self {
        State {
            config,
            revision: 0,
            next_dp_id: 1,
            vpcs: Tracked::default(),
            subnets: Tracked::default(),
            route_tables: Tracked::default(),
            peerings: Tracked::default(),
            security_groups: Tracked::default(),
            network_interfaces: Tracked::default(),
        }
    }

    // ----- change tracking (see `tracked.rs`) -----

    /// The objects touched since the last call, with their previous values;
    /// `config` and `next_dp_id` are the values before the write, reported
    /// only if they differ from the current ones. Touched objects whose
    /// value did not change are left out.
    pub fn take_changes(&mut self, config: Config, next_dp_id: u32) -> Changes {
        fn real<V: PartialEq>(log: Log<V>, now: &Tracked<V>) -> Log<V> {
            log.into_iter()
                .filter(|(k, prev)| prev.as_ref() != now.get(k))
                .collect()
        }
        let vpcs = self.vpcs.take_log();
        let subnets = self.subnets.take_log();
        let route_tables = self.route_tables.take_log();
        let peerings = self.peerings.take_log();
        let security_groups = self.security_groups.take_log();
        let network_interfaces = self.network_interfaces.take_log();
        Changes {
            vpcs: real(vpcs, &self.vpcs),
            subnets: real(subnets, &self.subnets),
            route_tables: real(route_tables, &self.route_tables),
            peerings: real(peerings, &self.peerings),
            security_groups: real(security_groups, &self.security_groups),
            network_interfaces: real(network_interfaces, &self.network_interfaces),
            config: (config != self.config).then_some(config),
            next_dp_id: (next_dp_id != self.next_dp_id).then_some(next_dp_id),
        }
    }

    /// Puts back what `changes` (from [`State::take_changes`]) recorded.
    pub fn undo(&mut self, changes: Changes) {
        self.vpcs.undo(changes.vpcs);
        self.subnets.undo(changes.subnets);
        self.route_tables.undo(changes.route_tables);
        self.peerings.undo(changes.peerings);
        self.security_groups.undo(changes.security_groups);
        self.network_interfaces.undo(changes.network_interfaces);
        if let Some(c) = changes.config {
            self.config = c;
        }
        if let Some(n) = changes.next_dp_id {
            self.next_dp_id = n;
        }
    }

    /// The dataplane-id counter (for stores).
    pub fn next_dp_id(&self) -> u32 {
        self.next_dp_id
    }

    /// Sets the dataplane-id counter (stores loading a state).
    pub fn set_next_dp_id(&mut self, next: u32) {
        self.next_dp_id = next;
    }

    // ----- unauthenticated read access (views, admin tools, tests) -----

    pub fn vpc(&self, id: &str) -> Option<&Vpc> {
        self.vpcs.get(id)
    }

    pub fn vpcs(&self) -> impl Iterator<Item = &Vpc> {
        self.vpcs.values()
    }

    pub fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.get(id)
    }

    pub fn subnets(&self) -> impl Iterator<Item = &Subnet> {
        self.subnets.values()
    }

    pub fn route_table(&self, id: &str) -> Option<&RouteTable> {
        self.route_tables.get(id)
    }

    pub fn route_tables(&self) -> impl Iterator<Item = &RouteTable> {
        self.route_tables.values()
    }

    pub fn peering(&self, id: &str) -> Option<&Peering> {
        self.peerings.get(id)
    }

    pub fn peerings(&self) -> impl Iterator<Item = &Peering> {
        self.peerings.values()
    }

    // ----- helpers shared by operations -----

    /// Validates the call context itself.
    pub(crate) fn check_call(&self, call: &Call) -> Result<(), ApiError> {
        self.config.check_region(&call.region)
    }

    /// Draws an id of `kind` that no live object uses.
    pub(crate) fn new_id(&self, kind: Kind, src: &mut dyn IdSource) -> Result<String, ApiError> {
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = ids::format_id(kind, src.next_bits());
            if !self.id_in_use(kind, &id) {
                return Ok(id);
            }
        }
        Err(ApiError::new(
            ErrorCode::InternalError,
            "could not allocate a unique resource id",
        ))
    }

    fn id_in_use(&self, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Vpc => self.vpcs.contains_key(id),
            Kind::Subnet => self.subnets.contains_key(id),
            Kind::RouteTable => self.route_tables.contains_key(id),
            Kind::Peering => self.peerings.contains_key(id),
            Kind::RouteTableAssociation => self
                .subnets
                .values()
                .any(|s| s.association.as_ref().is_some_and(|a| a.id == id)),
            Kind::SecurityGroup => self.security_groups.contains_key(id),
            Kind::SecurityGroupRule => self
                .security_groups
                .values()
                .any(|g| g.rules().any(|r| r.id == id)),
            Kind::NetworkInterface => self.network_interfaces.contains_key(id),
        }
    }

    /// Reserves `n` consecutive dataplane ids and returns the first. Call it
    /// after all validation: it is the last fallible step of an operation.
    pub(crate) fn take_dp_ids(&mut self, n: u32) -> Result<u32, ApiError> {
        let first = self.next_dp_id;
        self.next_dp_id = first.checked_add(n).ok_or_else(|| {
            ApiError::new(ErrorCode::InternalError, "dataplane id space exhausted")
        })?;
        Ok(first)
    }

    /// The VPC `id` if the caller owns it and it lives in the call's region.
    /// Anything else is reported as not found: callers must not learn about
    /// resources they cannot see.
    pub(crate) fn owned_vpc(&self, call: &Call, id: &str) -> Result<&Vpc, ApiError> {
        ids::check_id(Kind::Vpc, id)?;
        self.vpcs
            .get(id)
            .filter(|v| v.owner == call.account && v.region == call.region)
            .ok_or_else(|| ApiError::vpc_not_found(id))
    }

    pub(crate) fn owned_subnet(&self, call: &Call, id: &str) -> Result<&Subnet, ApiError> {
        ids::check_id(Kind::Subnet, id)?;
        self.subnets
            .get(id)
            .filter(|s| self.owned_vpc(call, &s.vpc_id).is_ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::SubnetNotFound,
                    format!("The subnet ID '{id}' does not exist"),
                )
            })
    }

    pub(crate) fn owned_route_table(&self, call: &Call, id: &str) -> Result<&RouteTable, ApiError> {
        ids::check_id(Kind::RouteTable, id)?;
        self.route_tables
            .get(id)
            .filter(|t| self.owned_vpc(call, &t.vpc_id).is_ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::RouteTableNotFound,
                    format!("The routeTable ID '{id}' does not exist"),
                )
            })
    }
}
