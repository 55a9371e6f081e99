//! The agent's controllers over the network: gateway API clients behind
//! [`ControlSource`], one per control thread.

use std::{
    net::SocketAddrV4,
    path::{Path, PathBuf},
};

use anyhow::{bail, Result};

use super::source::Link;

/// Starts the control threads for `region` against `urls`.
pub fn link(
    region: &str,
    urls: &[String],
    credential: &Path,
    ca_file: Option<&Path>,
    underlay: Option<SocketAddrV4>,
) -> Result<Link> {
    let _ = (region, urls, PathBuf::from(credential), ca_file, underlay);
    bail!("the controller client is not wired yet")
}
