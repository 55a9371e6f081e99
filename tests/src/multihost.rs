//! The multi-host lab: the two-region lab of [`crate::inter_region`] whose
//! control plane is two `peering-controld` processes on a real 3-member
//! etcd cluster ([`EtcdCluster`]), each controller and each etcd member in
//! a network namespace of its own (a "host") on the etcd lab bridge. etcd
//! is TLS-only ([`EtcdCluster::start_tls`]): members reach each other and
//! the controllers reach them over TLS, every end with a certificate of the
//! cluster's CA (`--etcd-cacert`, `--etcd-cert`, `--etcd-key`). The
//! controllers serve TLS on their lab address with a certificate from
//! [`Pki`]; admin commands, `peerctl` and the agents' control connections
//! run in the operator's host (client 0) and reach the controllers only
//! over TLS (`--controller https://c1,https://c2 --ca-file`). No database
//! path anywhere: everything is in etcd, and nothing crosses the lab bridge
//! in clear.
//!
//! ```text
//!   e0 .10   e1 .11   e2 .12     ops .100    ctl-1 .101    ctl-2 .102
//!      \        |       /           |            |            /
//!       +-------------- br0 (198.18.250.0/24) ---------------+
//!   agents: control connections from `ops`, dataplane in gw1/gw2
//! ```
//!
//! Everything is registered with [`crate::teardown`]; the lab (agents,
//! controllers) stops before the etcd cluster (field order).

use std::net::IpAddr;

use crate::{
    control_lab::{ControlPlane, Remote},
    etcd::EtcdCluster,
    inter_region::InterRegionLab,
    lab::unique,
    pki::Pki,
};

/// The controllers' TLS port.
pub const CONTROLLER_PORT: u16 = 7780;
/// Controllers of the lab.
pub const CONTROLLERS: usize = 2;

pub struct MultiHostLab {
    // Field order is drop order.
    pub lab: InterRegionLab,
    pub etcd: EtcdCluster,
    pub pki: Pki,
    /// The store URL every controller opens.
    pub store: String,
}

impl MultiHostLab {
    /// Starts the etcd cluster (3 members), two controllers on it with
    /// `controld_args` (e.g. `--key-rotation 2s`), and the two-region lab
    /// with both agents.
    pub fn new(verbose: bool, controld_args: &[&str]) -> Self {
        let mut etcd = EtcdCluster::start_tls(3);
        // Client 0 (made by `start`) is the operator's and agents' host;
        // one more host per controller.
        let hosts: Vec<(String, String)> = (0..CONTROLLERS)
            .map(|_| {
                let i = etcd.add_client();
                (
                    etcd.client(i).name.clone(),
                    format!("{}:{CONTROLLER_PORT}", etcd.client_ip(i)),
                )
            })
            .collect();
        let ips: Vec<IpAddr> = hosts
            .iter()
            .map(|(_, listen)| {
                listen
                    .parse::<std::net::SocketAddr>()
                    .expect("listen address")
                    .ip()
            })
            .collect();
        let pki = Pki::new("multihost", &[], &ips);
        // A prefix of its own: nothing left by another run is read.
        let store = format!(
            "etcd://{}/{}",
            etcd.endpoints().join(","),
            unique("mh").replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let remote = Remote::new(
            &etcd.client(0).name,
            (&store, etcd.tls_args()),
            (pki.ca.clone(), pki.cert.clone(), pki.key.clone()),
            hosts,
        );
        let lab = InterRegionLab::with_control_plane("af-xdp", || {
            ControlPlane::start_remote(verbose, controld_args, remote)
        });
        MultiHostLab {
            lab,
            etcd,
            pki,
            store,
        }
    }

    /// The controller whose log last says it took the singleton duties
    /// (key rotation) and has not given them up since, among those
    /// running.
    pub fn rotation_leader(&self) -> Option<usize> {
        let cp = &self.lab.cp;
        (0..cp.controller_count()).find(|&i| {
            cp.controller_pid(i).is_some()
                && std::fs::read_to_string(cp.controller_log(i))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .find(|l| l.contains("singleton duties"))
                    .is_some_and(|l| l.contains("taken"))
        })
    }
}
