//! Fixtures on the in-memory control model (`State`), for the benchmarks
//! that seed it directly.

use peering_userspace::control::{
    account::Call, error::ApiError, ids::SequentialIds, peering::CreatePeering, state::State,
};

/// Requests a peering of `vpc` with `peer_vpc` (same owner and region)
/// and accepts it; returns the peering's id.
pub fn active_peering(
    state: &mut State,
    call: &Call,
    ids: &mut SequentialIds,
    vpc: &str,
    peer_vpc: &str,
) -> Result<String, ApiError> {
    let req = CreatePeering {
        vpc_id: vpc.to_owned(),
        peer_vpc_id: peer_vpc.to_owned(),
        peer_owner_id: None,
        peer_region: None,
    };
    let pcx = state
        .create_vpc_peering_connection(call, ids, &req)?
        .vpc_peering_connection_id;
    state.accept_vpc_peering_connection(call, &pcx)?;
    Ok(pcx)
}
