//! Making hosts reachable without their help: the agent puts each subnet's
//! router address on its port, and asks the gateway's kernel to resolve a
//! host as soon as a packet for it finds no MAC.
//!
//! Requests come from the XDP program (the `RESOLVE` ring buffer, rate
//! limited per CPU in the kernel) and from the tunnel's delivery side. The
//! agent asks the kernel with `NTF_USE` (an ARP request goes out, as if
//! the kernel were sending to the host); the reply lands in the kernel's
//! neighbour table, from which the agent's reconciliation installs the MAC
//! in the dataplane on its next poll.
//!
//! [`ResolveQueue`] is the pure part: which requests lead to a netlink
//! message, at most one per host per [`RETRY`], from a bounded table.

use std::{
    collections::{BTreeSet, HashMap},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use log::{debug, info, warn};

use crate::gateway::{
    addr::{self, IfAddr},
    nexthop::Resolver,
};

/// A host on a port: (ifindex, address).
pub type Host = (u32, Ipv4Addr);

/// A host is asked for at most once per this interval: the kernel itself
/// retries an unanswered ARP request (`mcast_solicit`, 3 probes, 1 s apart).
pub const RETRY: Duration = Duration::from_secs(1);
/// Hosts remembered for [`RETRY`]; requests beyond are refused (counted).
pub const MAX_TRACKED: usize = 4096;
/// Requests read from the ring per poll; the rest wait for the next poll
/// (the ring is bounded, and a full ring is counted by the XDP program).
pub const MAX_PER_POLL: usize = 256;

/// Which resolution requests to pass on to the kernel.
#[derive(Debug, Default)]
pub struct ResolveQueue {
    asked: HashMap<Host, Instant>,
    /// Requests refused because [`MAX_TRACKED`] hosts were asked for
    /// within [`RETRY`].
    pub refused: u64,
}

impl ResolveQueue {
    /// True when `host` should be asked for now.
    pub fn admit(&mut self, host: Host, now: Instant) -> bool {
        if let Some(at) = self.asked.get(&host) {
            if now.saturating_duration_since(*at) < RETRY {
                return false;
            }
        } else if self.asked.len() >= MAX_TRACKED {
            self.asked
                .retain(|_, at| now.saturating_duration_since(*at) < RETRY);
            if self.asked.len() >= MAX_TRACKED {
                self.refused += 1;
                return false;
            }
        }
        self.asked.insert(host, now);
        true
    }
}

/// A `NeighKey` record of the ring: ifindex (native endian), address.
pub fn parse_request(record: &[u8]) -> Option<Host> {
    let ifindex = u32::from_ne_bytes(record.get(0..4)?.try_into().ok()?);
    let addr: [u8; 4] = record.get(4..8)?.try_into().ok()?;
    Some((ifindex, Ipv4Addr::from(addr)))
}

/// The agent's IO edge for host reachability.
pub struct Hosts {
    netlink: Resolver,
    ring: RingBuf<MapData>,
    queue: ResolveQueue,
    /// The last failure to configure addresses, logged once.
    addr_problem: Option<String>,
}

impl Hosts {
    pub fn new(ring: RingBuf<MapData>) -> Result<Self> {
        Ok(Hosts {
            netlink: Resolver::new()?,
            ring,
            queue: ResolveQueue::default(),
            addr_problem: None,
        })
    }

    /// Asks the kernel to resolve the hosts the XDP program and `more`
    /// (the tunnel's) asked for. Returns how many were asked for.
    pub fn resolve(&mut self, more: impl IntoIterator<Item = Host>) -> usize {
        let mut wanted = BTreeSet::new();
        for _ in 0..MAX_PER_POLL {
            let Some(record) = self.ring.next() else {
                break;
            };
            if let Some(host) = parse_request(&record) {
                wanted.insert(host);
            }
        }
        wanted.extend(more);
        let now = Instant::now();
        let mut asked = 0;
        for host in wanted {
            if !self.queue.admit(host, now) {
                continue;
            }
            match self.netlink.nudge(host.0, host.1) {
                Ok(()) => asked += 1,
                Err(e) => debug!("resolving {} on ifindex {}: {e:#}", host.1, host.0),
            }
        }
        asked
    }

    /// Puts `want` on the ports and removes the agent's addresses that are
    /// no longer wanted.
    pub fn sync_router_addrs(&mut self, want: &BTreeSet<IfAddr>) {
        let want: Vec<IfAddr> = want.iter().copied().collect();
        let result = self.netlink.addresses().and_then(|have| {
            let (add, del) = addr::plan(&want, &have);
            for a in add {
                self.netlink.add_router_addr(a)?;
                info!("router address {}/{} on ifindex {}", a.1, a.2, a.0);
            }
            for a in del {
                self.netlink.del_addr(a)?;
                info!(
                    "removed router address {}/{} from ifindex {}",
                    a.1, a.2, a.0
                );
            }
            Ok(())
        });
        let problem = result.err().map(|e| format!("{e:#}"));
        if problem.is_some() && problem != self.addr_problem {
            warn!(
                "router addresses: {}",
                problem.as_deref().unwrap_or_default()
            );
        }
        self.addr_problem = problem;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u32) -> Host {
        (3, Ipv4Addr::from(0x0a01_0000 + n))
    }

    #[test]
    fn a_host_is_asked_for_once_per_retry_interval() {
        let mut q = ResolveQueue::default();
        let t0 = Instant::now();
        assert!(q.admit(host(1), t0));
        assert!(!q.admit(host(1), t0 + Duration::from_millis(999)));
        assert!(q.admit(host(2), t0), "another host is independent");
        assert!(q.admit(host(1), t0 + RETRY));
        assert_eq!(q.refused, 0);
    }

    #[test]
    fn the_table_is_bounded_and_refusals_are_counted() {
        let mut q = ResolveQueue::default();
        let t0 = Instant::now();
        for n in 0..MAX_TRACKED as u32 {
            assert!(q.admit(host(n), t0));
        }
        assert!(!q.admit(host(MAX_TRACKED as u32), t0));
        assert_eq!(q.refused, 1);
        assert_eq!(q.asked.len(), MAX_TRACKED);
        // Once the interval passed, old entries make room.
        assert!(q.admit(host(MAX_TRACKED as u32), t0 + RETRY));
        assert_eq!(q.asked.len(), 1);
    }

    #[test]
    fn ring_records_parse() {
        let mut rec = 7u32.to_ne_bytes().to_vec();
        rec.extend([10, 1, 0, 20]);
        assert_eq!(parse_request(&rec), Some((7, "10.1.0.20".parse().unwrap())));
        assert_eq!(parse_request(&rec[..7]), None);
    }
}
