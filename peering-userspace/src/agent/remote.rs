//! The agent's controllers over the network: the gateway API client
//! ([`ControllerClient`]) behind [`ControlSource`], one client per control
//! thread, each with the gateway credential read from its file.

use std::{
    net::SocketAddrV4,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Result};

use super::source::{ControlSource, Link, MakeSource, Sync};
use crate::control::remote::{ControllerClient, Credential};

impl ControlSource for ControllerClient {
    fn sync(&mut self, since: Option<u64>, wait: Duration) -> Result<Sync> {
        Ok(ControllerClient::sync(self, since, wait)?)
    }

    fn register(&mut self, endpoint: SocketAddrV4) -> Result<u32> {
        Ok(ControllerClient::register(self, endpoint)?)
    }

    fn request_rotation(&mut self) -> Result<()> {
        Ok(ControllerClient::request_rotation(self)?)
    }

    fn current(&self) -> String {
        ControllerClient::current(self).to_owned()
    }
}

/// Checks the credential and the URLs, then starts the control threads
/// for `region` against `urls`.
pub fn link(
    region: &str,
    urls: &[String],
    credential: &Path,
    ca_file: Option<&Path>,
    underlay: Option<SocketAddrV4>,
) -> Result<Link> {
    let cred = Credential::read(credential)?;
    if cred.region != region {
        bail!(
            "{} is a credential of region {}, not {region}",
            credential.display(),
            cred.region
        );
    }
    // Refuses bad URLs (plain HTTP off loopback, https without a CA) now.
    drop(ControllerClient::new(urls, ca_file, cred)?);
    let urls = urls.to_vec();
    let path = credential.to_path_buf();
    let ca: Option<PathBuf> = ca_file.map(Path::to_path_buf);
    let make: MakeSource = Box::new(move || {
        let cred = Credential::read(&path)?;
        let client = ControllerClient::new(&urls, ca.as_deref(), cred)?;
        Ok(Box::new(client) as Box<dyn ControlSource>)
    });
    Link::spawn(make, underlay)
}
