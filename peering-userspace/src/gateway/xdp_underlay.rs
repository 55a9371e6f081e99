//! The underlay through AF_XDP: tunnel frames are written whole
//! (Ethernet/IPv4/UDP around the sealed datagram) into a UMEM and sent on
//! the first queue a tunnel worker owns, and the underlay XDP program hands
//! received tunnel datagrams to the socket of their receive queue (each
//! worker owns the sockets of its queues). Both skip the
//! kernel's UDP and IP layers; `cargo xtask bench` (underlay-bench,
//! tunnel-bench) measures the gain over sendmmsg/recvmmsg.
//!
//! The kernel still routes: the agent resolves each remote gateway's next
//! hop (route and neighbour, see [`super::nexthop`]) and hands the result
//! over. A datagram whose next hop is not known, or lies behind another
//! interface, goes through the UDP socket instead, which also makes the
//! kernel resolve the neighbour.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, XskMap};
use log::warn;
use peering_common::{UNDERLAY_XSK_BASE, UNDERLAY_XSK_SLOTS};
use serde::{Deserialize, Serialize};

use super::{
    frame::{self, Outer, OUTER_LEN},
    xsk::XskPort,
};

/// Where frames to one remote gateway go: the link-layer addresses on the
/// underlay interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// Counters of the underlay, by path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlayCounters {
    /// Datagrams sent as AF_XDP frames.
    pub tx_af_xdp: u64,
    /// Datagrams sent through the UDP socket.
    pub tx_socket: u64,
    /// Of those, because the next hop was not (yet) known.
    pub tx_socket_no_next_hop: u64,
    /// Datagrams refused: larger than the underlay MTU.
    pub tx_mtu_drops: u64,
    /// Datagrams received through AF_XDP.
    pub rx_af_xdp: u64,
    /// Datagrams received through the UDP socket.
    pub rx_socket: u64,
    /// AF_XDP frames that were not a consistent IPv4 UDP datagram.
    pub rx_malformed: u64,
}

impl UnderlayCounters {
    /// Adds another worker's counters.
    pub fn add(&mut self, other: &UnderlayCounters) {
        self.tx_af_xdp += other.tx_af_xdp;
        self.tx_socket += other.tx_socket;
        self.tx_socket_no_next_hop += other.tx_socket_no_next_hop;
        self.tx_mtu_drops += other.tx_mtu_drops;
        self.rx_af_xdp += other.rx_af_xdp;
        self.rx_socket += other.rx_socket;
        self.rx_malformed += other.rx_malformed;
    }
}

/// What [`XdpUnderlay::transmit`] did with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Transmit<E> {
    /// Staged for the next flush.
    Staged,
    /// No AF_XDP path to that gateway: use the socket.
    UseSocket,
    /// No free frame: the datagram is dropped (counted by the socket).
    RingFull,
    /// Larger than the underlay MTU.
    TooBig,
    /// `seal` failed; nothing was sent.
    Failed(E),
}

/// The AF_XDP sockets on the underlay interface.
pub struct XdpUnderlay {
    pub ifindex: u32,
    local: SocketAddrV4,
    /// Largest IPv4 packet the interface sends.
    mtu: usize,
    /// One socket per queue this worker owns; the first also transmits.
    sockets: Vec<XskPort>,
    links: HashMap<Ipv4Addr, Link>,
    ip_id: u16,
    pub counters: UnderlayCounters,
}

impl XdpUnderlay {
    /// Binds one socket per queue of `queues` (not empty; queues from
    /// [`UNDERLAY_XSK_SLOTS`] on are skipped: the XDP program passes their
    /// datagrams to the kernel) and puts them in their XSKMAP slots.
    pub fn open(
        ifindex: u32,
        local: SocketAddrV4,
        mtu: usize,
        queues: &[u32],
        xsk_map: &mut XskMap<MapData>,
    ) -> Result<Self> {
        let mut sockets = Vec::new();
        for &queue in queues.iter().filter(|q| **q < UNDERLAY_XSK_SLOTS) {
            let port = XskPort::bind(ifindex, queue)
                .with_context(|| format!("AF_XDP on the underlay, queue {queue}"))?;
            xsk_map
                .set(UNDERLAY_XSK_BASE + queue, port.fd(), 0)
                .with_context(|| format!("XSKMAP slot {}", UNDERLAY_XSK_BASE + queue))?;
            sockets.push(port);
        }
        anyhow::ensure!(!sockets.is_empty(), "no underlay queue among {queues:?}");
        Ok(XdpUnderlay {
            ifindex,
            local,
            mtu,
            sockets,
            links: HashMap::new(),
            ip_id: 0,
            counters: UnderlayCounters::default(),
        })
    }

    /// Replaces the next hops (by remote gateway address). Entries on other
    /// interfaces are ignored: those gateways are reached through the socket.
    pub fn set_links(&mut self, links: impl IntoIterator<Item = (Ipv4Addr, u32, Link)>) {
        self.links = links
            .into_iter()
            .filter(|(ip, ifindex, _)| {
                let here = *ifindex == self.ifindex;
                if !here {
                    warn!("gateway {ip} is reached through ifindex {ifindex}, not the underlay's {}: using the UDP socket", self.ifindex);
                }
                here
            })
            .map(|(ip, _, link)| (ip, link))
            .collect();
    }

    /// The sockets by queue, kernel counters refreshed.
    pub fn sockets(&mut self) -> impl Iterator<Item = &XskPort> + '_ {
        self.sockets.iter_mut().map(|s| {
            s.refresh_kernel_counters();
            &*s
        })
    }

    pub fn fds(&self) -> impl Iterator<Item = libc::c_int> + '_ {
        self.sockets.iter().map(|s| s.fd())
    }

    /// Seals a datagram for `to` straight into a TX frame, from UDP port
    /// `src_port`: `seal` writes the datagram into the buffer it is given
    /// and returns its length.
    pub fn transmit<E>(
        &mut self,
        to: SocketAddrV4,
        src_port: u16,
        seal: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Transmit<E> {
        let Some(link) = self.links.get(to.ip()).copied() else {
            self.counters.tx_socket_no_next_hop += 1;
            return Transmit::UseSocket;
        };
        let outer = Outer {
            src_mac: link.src_mac,
            dst_mac: link.dst_mac,
            src: SocketAddrV4::new(*self.local.ip(), src_port),
            dst: to,
        };
        let (mtu, ip_id) = (self.mtu, self.ip_id);
        let mut outcome = Transmit::Staged;
        let staged = self.sockets[0].stage(|buf| {
            let Some(room) = buf.get_mut(OUTER_LEN..) else {
                return 0;
            };
            let len = match seal(room) {
                Ok(len) => len,
                Err(e) => {
                    outcome = Transmit::Failed(e);
                    return 0;
                }
            };
            if len + OUTER_LEN - 14 > mtu {
                outcome = Transmit::TooBig;
                return 0;
            }
            frame::write_outer(buf, &outer, ip_id, len)
        });
        match outcome {
            Transmit::Staged if !staged => Transmit::RingFull,
            Transmit::Staged => {
                self.ip_id = self.ip_id.wrapping_add(1);
                self.counters.tx_af_xdp += 1;
                Transmit::Staged
            }
            Transmit::TooBig => {
                self.counters.tx_mtu_drops += 1;
                Transmit::TooBig
            }
            other => other,
        }
    }

    /// Sends what [`XdpUnderlay::transmit`] staged.
    pub fn flush(&mut self) {
        self.sockets[0].flush();
    }

    /// Returns sent frames, puts frames still waiting for ring room on it,
    /// and kicks the kernel (copy mode moves frames only inside sendto).
    pub fn maintain(&mut self) {
        let tx = &mut self.sockets[0];
        tx.reclaim();
        tx.flush();
    }

    /// Frames waiting for room in the TX ring.
    pub fn tx_staged(&self) -> usize {
        self.sockets[0].tx_staged()
    }

    /// Hands up to `max` received datagrams per socket to `f` (mutable:
    /// they are opened in place). Returns how many frames were read.
    pub fn receive(&mut self, max: u32, mut f: impl FnMut(&mut [u8])) -> usize {
        let mut n = 0;
        let counters = &mut self.counters;
        for socket in &mut self.sockets {
            n += socket.receive(max, |_, frame| match frame::udp_payload(frame) {
                Some((_, payload)) => {
                    counters.rx_af_xdp += 1;
                    f(&mut frame[payload]);
                }
                None => counters.rx_malformed += 1,
            }) as usize;
        }
        n
    }
}
