//! What a controller offers the gateways of its deployment: the seam
//! between the control plane (which implements [`Feed`]) and the gateway
//! API that serves it over TLS to remote agents.
//!
//! Everything here is reachable only with a gateway credential, never with
//! an account token: region views span all accounts, and the tunnel keys
//! protect every peering of the deployment.

use crate::control::delta::RegionDelta;
use crate::control::store::{GatewayRecord, StoreError, TunnelSettings};
use crate::control::view::RegionView;
use crate::tunnel::key::EpochKey;
use crate::tunnel::Millis;
use std::net::SocketAddrV4;

/// Who a gateway credential was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayIdentity {
    /// Names the credential (for revocation, logs); not secret.
    pub credential_id: String,
    /// The only region whose view the credential may read and for which it
    /// may register an endpoint.
    pub region: String,
}

/// A credential as issued: the secret is shown once and only its hash is
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredential {
    pub identity: GatewayIdentity,
    pub secret: String,
}

/// Region views, their changes, tunnel keys and the gateway registry.
/// Methods block (call them off async threads); [`Feed::revisions`] is the
/// way to wait for a change without polling.
pub trait Feed: Send + Sync + 'static {
    /// The region's full view at the controller's latest revision.
    fn view(&self, region: &str) -> Result<RegionView, StoreError>;

    /// One delta taking the region's view from revision `since` to the
    /// latest (possibly empty). [`StoreError::Compacted`] when the
    /// controller no longer holds changes that far back: the gateway then
    /// reads the full [`Feed::view`] (and diffs it with what it holds).
    fn changes(&self, region: &str, since: u64) -> Result<RegionDelta, StoreError>;

    /// The latest revision, updated on every commit this controller learns
    /// of (its own or another controller's).
    fn revisions(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Every key epoch still held (the newest may not be active yet).
    fn tunnel_keys(&self) -> Result<Vec<EpochKey>, StoreError>;

    /// The deployment's tunnel settings (None until a controller wrote
    /// them).
    fn tunnel_settings(&self) -> Result<Option<TunnelSettings>, StoreError>;

    /// The registered (live) gateways of every region.
    fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError>;

    /// Registers or renews the endpoint of the gateway serving `region`;
    /// returns its gateway id (stable for the region, never reused). The
    /// registration lapses if not renewed.
    fn register_gateway(
        &self,
        region: &str,
        endpoint: SocketAddrV4,
        now: Millis,
    ) -> Result<u32, StoreError>;

    /// Asks the rotation leader to rotate the tunnel key early.
    fn request_rotation(&self) -> Result<(), StoreError>;

    /// The identity behind a gateway credential's secret, if it is valid
    /// and not revoked.
    fn authenticate_gateway(&self, secret: &str) -> Result<Option<GatewayIdentity>, StoreError>;
}
