//! The controller as the [`Feed`] gateways read.

use super::Controller;
use crate::control::clock::unix_ms;
use crate::control::delta::RegionDelta;
use crate::control::feed::{Feed, GatewayIdentity};
use crate::control::store::{GatewayRecord, StoreError, TunnelSettings};
use crate::control::view::{region_view, RegionView};
use crate::tunnel::key::EpochKey;
use crate::tunnel::Millis;
use std::net::SocketAddrV4;

impl Feed for Controller {
    fn view(&self, region: &str) -> Result<RegionView, StoreError> {
        let cache = self.cache();
        cache.state.config.check_region(region)?;
        let mut view = region_view(&cache.state, region, unix_ms());
        // Valid at the latest revision (later commits changed no model).
        view.revision = cache.revision;
        Ok(view)
    }

    fn changes(&self, region: &str, since: u64) -> Result<RegionDelta, StoreError> {
        let cache = self.cache();
        cache.state.config.check_region(region)?;
        cache.region_delta(region, since)
    }

    fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revisions.subscribe()
    }

    fn tunnel_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
        Controller::tunnel_keys(self)
    }

    fn tunnel_settings(&self) -> Result<Option<TunnelSettings>, StoreError> {
        Controller::tunnel_settings(self)
    }

    fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        Controller::gateways(self)
    }

    fn register_gateway(
        &self,
        region: &str,
        endpoint: SocketAddrV4,
        now: Millis,
    ) -> Result<u32, StoreError> {
        self.cache().state.config.check_region(region)?;
        Controller::register_gateway(self, region, endpoint, now)
    }

    fn request_rotation(&self) -> Result<(), StoreError> {
        Controller::request_rotation(self)
    }

    fn authenticate_gateway(&self, secret: &str) -> Result<Option<GatewayIdentity>, StoreError> {
        Controller::authenticate_gateway(self, secret)
    }
}
