//! The sans-IO control-plane model (AWS-style VPCs, subnets, route tables and
//! VPC peering connections) and its store.
//!
//! Operations are methods on [`state::State`]; each takes a [`account::Call`]
//! (caller account, region of the call, time) and, where it creates
//! something, an [`ids::IdSource`]. The model does no I/O: time and ids are
//! injected, and [`store`] is the only module that touches the outside world.

pub mod account;
pub mod cidr;
pub mod clock;
pub mod config;
pub mod controller;
pub mod delta;
pub mod error;
pub mod feed;
pub mod ids;
pub mod network_interface;
pub mod peering;
pub mod peering_describe;
pub mod peering_ops;
pub mod remote;
pub mod route_table;
pub mod security_group;
pub mod sg_region;
pub mod sg_rules;
pub mod sg_view;
pub mod state;
pub mod store;
pub mod subnet;
pub mod tracked;
pub mod view;
pub mod view_index;
pub mod vpc;

#[cfg(test)]
mod tests;

pub use account::{AccountId, Call};
pub use clock::{Clock, FakeClock, SystemClock};
pub use config::{Config, Limits};
pub use delta::{RegionDelta, ViewEntry, ViewKey};
pub use error::{ApiError, ErrorCode};
pub use ids::{IdSource, RngIds, SequentialIds};
pub use peering::{CreatePeering, ModifyPeeringOptions, PeeringStatus};
pub use peering_describe::{Filter, VpcPeeringConnection};
pub use state::State;
pub use store::{MemoryStore, SqliteStore, Store, StoreError};
pub use subnet::CreateSubnet;
pub use view::{region_view, RegionView};
