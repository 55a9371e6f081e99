//! The VPC routers' addresses on the gateway's ports, through rtnetlink.
//!
//! Every subnet has a router at its first host address (AWS: the base
//! plus one). The agent puts that address on the subnet's port, so hosts
//! can resolve their gateway and the gateway's kernel can resolve hosts
//! (an ARP request needs a source address on the link). Addresses the
//! agent adds carry the address protocol [`ROUTER_ADDR_PROTO`]
//! (`IFA_PROTO`, Linux 5.18+; `ip address` shows `proto 80`), so it
//! removes only its own and leaves an operator's alone.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage, AddressProtocol, AddressScope},
    AddressFamily, RouteNetlinkMessage,
};

use super::nexthop::Resolver;

/// `IFA_PROTO` of the addresses the agent manages.
pub const ROUTER_ADDR_PROTO: u8 = 80;

/// `IFA_PROTO` of the resolver addresses (each VPC's base + 2) the agent
/// puts on its DNS interface: apart from the router addresses, so neither
/// sync removes the other's.
pub const DNS_ADDR_PROTO: u8 = 81;

/// An IPv4 address on an interface: (ifindex, address, prefix length).
pub type IfAddr = (u32, Ipv4Addr, u8);

/// An IPv4 address the kernel holds, and whether the agent added it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAddr {
    pub addr: IfAddr,
    pub ours: bool,
}

fn message(addr: IfAddr) -> AddressMessage {
    let (ifindex, ip, prefix_len) = addr;
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix_len;
    msg.header.index = ifindex;
    msg.header.scope = AddressScope::Universe;
    msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(ip)));
    msg
}

impl Resolver {
    /// Every IPv4 address of the namespace (RTM_GETADDR dump).
    pub fn addresses(&mut self) -> Result<Vec<KernelAddr>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self
            .request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?
            .map_err(|e| anyhow!("RTM_GETADDR: {e}"))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => kernel_addr(a),
                _ => None,
            })
            .collect())
    }

    /// The IPv4 addresses of the namespace that carry address protocol
    /// `proto` (`IFA_PROTO`).
    pub fn addresses_of_proto(&mut self, proto: u8) -> Result<Vec<IfAddr>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self
            .request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?
            .map_err(|e| anyhow!("RTM_GETADDR: {e}"))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if has_proto(a, proto) => {
                    kernel_addr(a).map(|k| k.addr)
                }
                _ => None,
            })
            .collect())
    }

    /// Adds `addr` marked as the agent's. An address that exists already
    /// (the agent's or another's) is left as it is.
    pub fn add_router_addr(&mut self, addr: IfAddr) -> Result<()> {
        self.add_addr(addr, ROUTER_ADDR_PROTO)
    }

    /// Adds `addr` with address protocol `proto`; one that exists already
    /// is left as it is.
    pub fn add_addr(&mut self, addr: IfAddr, proto: u8) -> Result<()> {
        let mut msg = message(addr);
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(proto)));
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )? {
            Ok(_) => Ok(()),
            Err(e) if e.errno == libc::EEXIST => Ok(()),
            Err(e) => Err(anyhow!(
                "RTM_NEWADDR {}/{} on ifindex {}: {e}",
                addr.1,
                addr.2,
                addr.0
            )),
        }
    }

    /// Removes `addr`; one already gone is not an error.
    pub fn del_addr(&mut self, addr: IfAddr) -> Result<()> {
        match self.request(RouteNetlinkMessage::DelAddress(message(addr)), NLM_F_ACK)? {
            Ok(_) => Ok(()),
            Err(e) if e.errno == libc::EADDRNOTAVAIL || e.errno == libc::ENODEV => Ok(()),
            Err(e) => Err(anyhow!(
                "RTM_DELADDR {}/{} on ifindex {}: {e}",
                addr.1,
                addr.2,
                addr.0
            )),
        }
    }
}

/// An IPv4 address from an `RTM_NEWADDR` message.
pub fn kernel_addr(msg: &AddressMessage) -> Option<KernelAddr> {
    let ip = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })?;
    let ours = has_proto(msg, ROUTER_ADDR_PROTO);
    Some(KernelAddr {
        addr: (msg.header.index, ip, msg.header.prefix_len),
        ours,
    })
}

fn has_proto(msg: &AddressMessage, proto: u8) -> bool {
    msg.attributes
        .iter()
        .any(|a| matches!(a, AddressAttribute::Protocol(AddressProtocol::Other(p)) if *p == proto))
}

/// What to add and what to remove so the agent's addresses are `want`:
/// add what no address of the kernel covers yet (the same address and
/// length on the same interface, whoever added it), remove the agent's
/// that are no longer wanted.
pub fn plan(want: &[IfAddr], have: &[KernelAddr]) -> (Vec<IfAddr>, Vec<IfAddr>) {
    let add = want
        .iter()
        .filter(|w| !have.iter().any(|h| h.addr == **w))
        .copied()
        .collect();
    let del = have
        .iter()
        .filter(|h| h.ours && !want.contains(&h.addr))
        .map(|h| h.addr)
        .collect();
    (add, del)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ifindex: u32, ip: &str, len: u8) -> IfAddr {
        (ifindex, ip.parse().unwrap(), len)
    }

    #[test]
    fn plan_adds_missing_and_removes_only_its_own() {
        let want = [a(3, "10.1.0.1", 24), a(4, "10.2.0.1", 24)];
        let have = [
            // An operator's address that happens to be wanted: kept, not re-added.
            KernelAddr {
                addr: a(3, "10.1.0.1", 24),
                ours: false,
            },
            // Ours, no longer wanted: removed.
            KernelAddr {
                addr: a(4, "10.9.0.1", 24),
                ours: true,
            },
            // An operator's, not wanted: left alone.
            KernelAddr {
                addr: a(5, "192.0.2.1", 24),
                ours: false,
            },
        ];
        let (add, del) = plan(&want, &have);
        assert_eq!(add, vec![a(4, "10.2.0.1", 24)]);
        assert_eq!(del, vec![a(4, "10.9.0.1", 24)]);
        let (add, del) = plan(&[], &[]);
        assert!(add.is_empty() && del.is_empty());
    }

    #[test]
    fn messages_round_trip_the_marker() {
        let mut msg = message(a(7, "10.1.0.1", 24));
        assert_eq!(kernel_addr(&msg).map(|k| k.ours), Some(false));
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                ROUTER_ADDR_PROTO,
            )));
        assert_eq!(
            kernel_addr(&msg),
            Some(KernelAddr {
                addr: a(7, "10.1.0.1", 24),
                ours: true
            })
        );
    }
}
