//! Which program a VPC port runs: the XDP program (`peering_vpc`) or the
//! TC one (`peering_vpc_tc`, tcx ingress). Sans-IO: the caller reads the
//! port's driver.
//!
//! A veth has no hardware: its frames are skbs, often GSO super-packets
//! with partial checksums (a host's TCP with offloads on). An XDP redirect
//! turns them into plain frames and loses both (the receiver drops the
//! packets), and generic XDP linearises every one. At TC ingress the skb
//! keeps its GSO and checksum state and `bpf_redirect_peer` hands it to the
//! host's namespace as it is, so `auto` puts veth ports on TC and every
//! other port (a NIC, where native XDP runs before any skb exists) on XDP.

use serde::Serialize;

/// The driver name of a veth (ETHTOOL_GDRVINFO).
pub const VETH_DRIVER: &str = "veth";

/// `--port-path`: how ports are chosen a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PortPathChoice {
    /// TC for veth ports, XDP for the others.
    #[default]
    Auto,
    /// XDP on every port.
    Xdp,
    /// TC on every port.
    Tc,
}

/// The path a port takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortPath {
    Xdp,
    Tc,
}

impl PortPath {
    pub fn as_str(self) -> &'static str {
        match self {
            PortPath::Xdp => "xdp",
            PortPath::Tc => "tc",
        }
    }
}

impl std::fmt::Display for PortPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for a veth's driver name.
pub fn is_veth(driver: Option<&str>) -> bool {
    driver == Some(VETH_DRIVER)
}

impl PortPathChoice {
    /// The path of a port whose driver is `driver` (None: it could not be
    /// read, as for a device without ethtool driver information).
    pub fn resolve(self, driver: Option<&str>) -> PortPath {
        match self {
            PortPathChoice::Xdp => PortPath::Xdp,
            PortPathChoice::Tc => PortPath::Tc,
            PortPathChoice::Auto if is_veth(driver) => PortPath::Tc,
            PortPathChoice::Auto => PortPath::Xdp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_puts_veths_on_tc_and_everything_else_on_xdp() {
        let auto = PortPathChoice::Auto;
        assert_eq!(auto.resolve(Some("veth")), PortPath::Tc);
        for other in [Some("mlx5_core"), Some("ice"), Some("virtio_net"), Some("")] {
            assert_eq!(auto.resolve(other), PortPath::Xdp, "{other:?}");
        }
        assert_eq!(auto.resolve(None), PortPath::Xdp, "unknown driver");
        // Names are compared exactly.
        assert_eq!(auto.resolve(Some("veth0")), PortPath::Xdp);
        assert_eq!(auto.resolve(Some("VETH")), PortPath::Xdp);
    }

    #[test]
    fn a_forced_path_ignores_the_driver() {
        for driver in [Some("veth"), Some("ice"), None] {
            assert_eq!(PortPathChoice::Xdp.resolve(driver), PortPath::Xdp);
            assert_eq!(PortPathChoice::Tc.resolve(driver), PortPath::Tc);
        }
    }

    #[test]
    fn paths_print_as_the_flag_spells_them() {
        assert_eq!(PortPath::Tc.to_string(), "tc");
        assert_eq!(PortPath::Xdp.to_string(), "xdp");
        assert_eq!(serde_json::to_string(&PortPath::Tc).unwrap(), "\"tc\"");
    }
}
