//! Next-hop resolution through rtnetlink: to send an IPv4 packet to `D`
//! from local address `S`, which Ethernet header goes in front of it and
//! out of which interface.
//!
//! The tunnel writes whole Ethernet frames with AF_XDP, past the kernel's IP
//! stack, so it borrows the kernel's decisions instead of making its own:
//!
//! 1. `RTM_GETROUTE` for `D` with `RTA_SRC = S` (what `ip route get D from S`
//!    asks), so policy routing sees the source: the output interface and
//!    the gateway, or `D` itself when it is on-link;
//! 2. `RTM_GETLINK` for that interface: it must be Ethernet, and its MAC is
//!    the frame's source;
//! 3. `RTM_GETNEIGH` for (interface, next hop): its link-layer address is
//!    the frame's destination, when the entry is in a usable state.
//!
//! Frames sent through AF_XDP never confirm a neighbour, and the kernel does
//! not resolve one nobody asked for: [`Resolver::nudge`] asks it to, as the
//! stack does when it transmits (`NTF_USE`). Call it when a resolution comes
//! back [`Resolution::Unresolved`], and now and then while one is in use, so
//! the entry keeps being revalidated instead of aging out.
//!
//! What the kernel does with a nudge (seen on 6.18): a missing entry goes
//! NONE → INCOMPLETE and, on a veth, REACHABLE within milliseconds; a silent
//! address goes FAILED after `mcast_solicit` probes (3 s by default), and a
//! new nudge restarts it. A STALE entry goes DELAY (still usable) and, after
//! `delay_first_probe_time` (5 s by default), PROBE with a unicast ARP, then
//! REACHABLE. INCOMPLETE and DELAY are not announced on `ip monitor`.
//!
//! Single-entry `RTM_GETNEIGH` needs Linux 5.0 or later.
//!
//! Everything is synchronous, over one `NETLINK_ROUTE` socket with a receive
//! timeout: a lost reply costs at most [`REPLY_TIMEOUT`], never a hang.

use std::{
    net::Ipv4Addr,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_MULTIPART, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{LinkAttribute, LinkExtentMask, LinkLayerType, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

/// How long one request waits for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Receive buffer: far more than any reply to the requests made here.
const RECV_BUF: usize = 64 * 1024;

/// `NUD_VALID` from include/net/neighbour.h: the states in which the kernel
/// itself transmits to the entry's link-layer address (REACHABLE, STALE,
/// DELAY, PROBE, PERMANENT, NOARP).
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40;

/// Size of `struct nlmsghdr`.
const NETLINK_HEADER_LEN: usize = 16;

/// `NLMSGERR_ATTR_MSG`: the kernel's text in an extended ACK.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Where and how to send a frame towards one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Output interface.
    pub ifindex: u32,
    /// The interface's MAC: the frame's source.
    pub src_mac: [u8; 6],
    /// The next hop's MAC: the frame's destination.
    pub dst_mac: [u8; 6],
    /// The next hop: the route's gateway, or the destination itself when
    /// it is on-link.
    pub via: Ipv4Addr,
}

/// The outcome of [`Resolver::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Ready(NextHop),
    /// The route is known but the neighbour is not (yet) resolved: no entry,
    /// or one in state INCOMPLETE, FAILED or NONE, or without a link-layer
    /// address. [`Resolver::nudge`] `(ifindex, via)` starts resolution.
    Unresolved {
        ifindex: u32,
        via: Ipv4Addr,
    },
}

/// Asks the kernel for next hops over one `NETLINK_ROUTE` socket, in the
/// network namespace of the thread that created it.
pub struct Resolver {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Resolver {
    pub fn new() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening a NETLINK_ROUTE socket")?;
        socket
            .bind_auto()
            .context("binding the NETLINK_ROUTE socket")?;
        // Error replies carry only the request's header, plus the kernel's
        // explanation when it has one. Both are optional comforts.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        set_recv_timeout(&socket, REPLY_TIMEOUT).context("setting SO_RCVTIMEO on netlink")?;
        Ok(Resolver {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// The kernel's route to `dst` from `src`, the output interface's MAC
    /// and the next hop's neighbour entry. `src` must be a local address, or
    /// `0.0.0.0` to let the kernel choose as for an unbound socket.
    ///
    /// Errors: no route (including unreachable, blackhole and prohibit
    /// routes), a local or broadcast destination, a non-Ethernet output
    /// interface, or a netlink failure.
    pub fn resolve(&mut self, dst: Ipv4Addr, src: Ipv4Addr) -> Result<Resolution> {
        let (ifindex, via) = self.route(dst, src)?;
        let src_mac = self.link_mac(ifindex)?;
        Ok(match self.neighbour(ifindex, via)? {
            Some(dst_mac) => Resolution::Ready(NextHop {
                ifindex,
                src_mac,
                dst_mac,
                via,
            }),
            None => Resolution::Unresolved { ifindex, via },
        })
    }

    /// Asks the kernel to use neighbour `ip` on `ifindex` as if the stack
    /// were sending to it (`RTM_NEWNEIGH` with `NTF_USE`, `NLM_F_CREATE`):
    /// a missing entry is created and resolution starts (ARP request); a
    /// STALE entry goes to DELAY and, unconfirmed, to PROBE (unicast ARP);
    /// a REACHABLE one only has its last-use time refreshed. Returns when
    /// the kernel acknowledged the request, not when the neighbour answered.
    pub fn nudge(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = ifindex;
        msg.header.flags = NeighbourFlags::Use;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_ACK | NLM_F_CREATE,
        )?
        .map_err(|e| anyhow!("RTM_NEWNEIGH (NTF_USE) {ip} on ifindex {ifindex}: {e}"))?;
        Ok(())
    }

    /// (output ifindex, next hop) of the kernel's route to `dst` from `src`.
    fn route(&mut self, dst: Ipv4Addr, src: Ipv4Addr) -> Result<(u32, Ipv4Addr)> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 32;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        if !src.is_unspecified() {
            msg.header.source_prefix_length = 32;
            msg.attributes
                .push(RouteAttribute::Source(RouteAddress::Inet(src)));
        }
        let replies = self
            .request(RouteNetlinkMessage::GetRoute(msg), 0)?
            .map_err(|e| anyhow!("no route to {dst} from {src} (RTM_GETROUTE: {e})"))?;
        let route = replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .with_context(|| format!("RTM_GETROUTE {dst} from {src}: no route in the reply"))?;
        route_next_hop(route, dst).with_context(|| format!("route to {dst} from {src}"))
    }

    /// MAC of Ethernet interface `ifindex`.
    fn link_mac(&mut self, ifindex: u32) -> Result<[u8; 6]> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self
            .request(RouteNetlinkMessage::GetLink(msg), 0)?
            .map_err(|e| anyhow!("RTM_GETLINK ifindex {ifindex}: {e}"))?;
        let link = replies
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .with_context(|| format!("RTM_GETLINK ifindex {ifindex}: no link in the reply"))?;
        link_mac(link)
    }

    /// The neighbour's MAC when its entry is usable; `None` when there is no
    /// entry or it is not resolved.
    fn neighbour(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<Option<[u8; 6]>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = ifindex;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let replies = match self.request(RouteNetlinkMessage::GetNeighbour(msg), 0)? {
            Ok(replies) => replies,
            Err(e) if e.errno == libc::ENOENT => return Ok(None),
            Err(e) => bail!("RTM_GETNEIGH {ip} on ifindex {ifindex}: {e}"),
        };
        Ok(replies.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => neighbour_mac(n),
            _ => None,
        }))
    }

    /// Sends one request and collects its reply. The outer error is a
    /// transport or decoding failure; the inner one the kernel's refusal.
    pub(super) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<std::result::Result<Vec<RouteNetlinkMessage>, KernelError>> {
        let op = request_name(&msg);
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .with_context(|| format!("{op}: sending"))?;

        let mut exchange = Exchange::new(self.seq, flags & NLM_F_ACK != 0);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(outcome) = exchange.outcome.take() {
                return Ok(outcome.map(|()| exchange.messages));
            }
            if Instant::now() >= deadline {
                bail!("{op}: no reply from the kernel within {REPLY_TIMEOUT:?}");
            }
            self.buf.clear();
            let (len, from) = match self.socket.recv_from(&mut self.buf, libc::MSG_TRUNC) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    bail!("{op}: no reply from the kernel within {REPLY_TIMEOUT:?}")
                }
                Err(e) => return Err(e).with_context(|| format!("{op}: receiving")),
            };
            if from.port_number() != 0 {
                continue; // not from the kernel
            }
            if len > self.buf.len() {
                bail!("{op}: a {len}-byte reply did not fit the receive buffer");
            }
            exchange
                .absorb(&self.buf)
                .with_context(|| format!("{op}: decoding the reply"))?;
        }
    }
}

/// The kernel's `NLMSG_ERROR` answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelError {
    /// Positive errno.
    pub errno: i32,
    /// The extended ACK's message, when the kernel gave one.
    pub message: Option<String>,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.errno))?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// One request's wait for its reply, fed datagram by datagram.
struct Exchange {
    seq: u32,
    /// An ACK was asked for: only `NLMSG_ERROR` (or `NLMSG_DONE`) ends it.
    ack: bool,
    messages: Vec<RouteNetlinkMessage>,
    /// Set once the reply is complete.
    outcome: Option<std::result::Result<(), KernelError>>,
}

impl Exchange {
    fn new(seq: u32, ack: bool) -> Self {
        Exchange {
            seq,
            ack,
            messages: Vec::new(),
            outcome: None,
        }
    }

    /// Takes in the messages of one datagram that belong to this request;
    /// others (earlier requests' late replies) are skipped undecoded.
    fn absorb(&mut self, datagram: &[u8]) -> Result<()> {
        let mut rest = datagram;
        while !rest.is_empty() && self.outcome.is_none() {
            let buffer = NetlinkBuffer::new_checked(rest)
                .map_err(|e| anyhow!("malformed netlink message: {e}"))?;
            let len = buffer.length() as usize;
            let (seq, flags) = (buffer.sequence_number(), buffer.flags());
            let one = &rest[..len];
            rest = rest.get(align4(len)..).unwrap_or(&[]);
            if seq != self.seq {
                continue;
            }
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(one)
                .map_err(|e| anyhow!("{e}"))?;
            match msg.payload {
                NetlinkPayload::Error(e) => {
                    self.outcome = Some(match e.code {
                        None => Ok(()),
                        Some(code) => Err(KernelError {
                            errno: code.get().saturating_abs(),
                            message: ext_ack_message(flags, &e.header),
                        }),
                    })
                }
                NetlinkPayload::Done(d) => {
                    self.outcome = Some(if d.code < 0 {
                        Err(KernelError {
                            errno: d.code.saturating_abs(),
                            message: None,
                        })
                    } else {
                        Ok(())
                    })
                }
                NetlinkPayload::Noop => {}
                NetlinkPayload::Overrun(_) => bail!("netlink overrun"),
                NetlinkPayload::InnerMessage(inner) => {
                    self.messages.push(inner);
                    if flags & NLM_F_MULTIPART == 0 && !self.ack {
                        self.outcome = Some(Ok(()));
                    }
                }
                _ => bail!(
                    "unexpected netlink message type {}",
                    msg.header.message_type
                ),
            }
        }
        Ok(())
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The text of an extended ACK: after the error code (already stripped),
/// the request's echoed message (its header, or all of it without
/// `NETLINK_CAP_ACK`), then attributes when `NLM_F_ACK_TLVS` is set.
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NETLINK_HEADER_LEN
    } else {
        align4(NetlinkBuffer::new_checked(payload).ok()?.length() as usize)
    };
    let tlvs = payload.get(echoed..)?;
    NlasIterator::new(tlvs)
        .map_while(|nla| nla.ok())
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            String::from_utf8_lossy(&text[..end]).into_owned()
        })
}

fn request_name(msg: &RouteNetlinkMessage) -> &'static str {
    match msg {
        RouteNetlinkMessage::GetRoute(_) => "RTM_GETROUTE",
        RouteNetlinkMessage::GetLink(_) => "RTM_GETLINK",
        RouteNetlinkMessage::GetNeighbour(_) => "RTM_GETNEIGH",
        RouteNetlinkMessage::NewNeighbour(_) => "RTM_NEWNEIGH",
        RouteNetlinkMessage::GetAddress(_) => "RTM_GETADDR",
        RouteNetlinkMessage::NewAddress(_) => "RTM_NEWADDR",
        RouteNetlinkMessage::DelAddress(_) => "RTM_DELADDR",
        _ => "rtnetlink request",
    }
}

/// (output ifindex, next hop) from the kernel's answer to `RTM_GETROUTE`
/// for `dst`: the gateway when there is one, else `dst` (on-link).
pub fn route_next_hop(route: &RouteMessage, dst: Ipv4Addr) -> Result<(u32, Ipv4Addr)> {
    match route.header.kind {
        RouteType::Unicast => {}
        RouteType::Local => bail!("{dst} is a local address"),
        kind @ (RouteType::BlackHole
        | RouteType::Unreachable
        | RouteType::Prohibit
        | RouteType::Throw) => bail!("no route: the route is of type {kind:?}"),
        kind => bail!("a route of type {kind:?} cannot carry a unicast packet"),
    }
    let mut oif = None;
    let mut via = None;
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
            RouteAttribute::Via(RouteVia::Inet(g)) => via = Some(*g),
            RouteAttribute::Gateway(other) => bail!("unsupported gateway address {other:?}"),
            RouteAttribute::Via(other) => {
                bail!("the next hop is not an IPv4 address ({other:?}): unsupported")
            }
            _ => {}
        }
    }
    let oif = oif.context("the route has no output interface")?;
    Ok((oif, via.unwrap_or(dst)))
}

/// The MAC of a link from `RTM_GETLINK`, which must be Ethernet.
pub fn link_mac(link: &LinkMessage) -> Result<[u8; 6]> {
    let index = link.header.index;
    let name = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        })
        .unwrap_or("?");
    if link.header.link_layer_type != LinkLayerType::Ether {
        bail!(
            "interface {name} (ifindex {index}) is not Ethernet (link type {}): \
             frames for it cannot be built",
            u16::from(link.header.link_layer_type)
        );
    }
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        })
        .with_context(|| format!("interface {name} (ifindex {index}) has no 6-byte MAC"))
}

/// The link-layer address of a neighbour entry from `RTM_GETNEIGH` when its
/// state is one the kernel transmits in ([`NUD_VALID`]); `None` otherwise.
pub fn neighbour_mac(neigh: &NeighbourMessage) -> Option<[u8; 6]> {
    if u16::from(neigh.header.state) & NUD_VALID == 0 {
        return None;
    }
    neigh.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
        _ => None,
    })
}

fn set_recv_timeout(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    crate::sys::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroI32;

    use netlink_packet_core::{ErrorMessage, NLMSG_DONE};
    use netlink_packet_route::{neighbour::NeighbourState, route::RouteScope};

    use super::*;

    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 7);
    const GW: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn route(kind: RouteType, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = 32;
        r.header.kind = kind;
        r.header.scope = RouteScope::Universe;
        r.attributes = attrs;
        r
    }

    #[test]
    fn gateway_routes_go_via_the_gateway_and_on_link_ones_to_the_destination() {
        let dst = RouteAttribute::Destination(RouteAddress::Inet(DST));
        let via_gw = route(
            RouteType::Unicast,
            vec![
                dst.clone(),
                RouteAttribute::Oif(3),
                RouteAttribute::Gateway(RouteAddress::Inet(GW)),
            ],
        );
        assert_eq!(route_next_hop(&via_gw, DST).unwrap(), (3, GW));
        let on_link = route(RouteType::Unicast, vec![dst, RouteAttribute::Oif(4)]);
        assert_eq!(route_next_hop(&on_link, DST).unwrap(), (4, DST));
    }

    #[test]
    fn unusable_routes_are_errors() {
        for kind in [
            RouteType::BlackHole,
            RouteType::Unreachable,
            RouteType::Prohibit,
            RouteType::Throw,
        ] {
            let e = route_next_hop(&route(kind, vec![RouteAttribute::Oif(1)]), DST).unwrap_err();
            assert!(e.to_string().contains("no route"), "{kind:?}: {e}");
        }
        let e = route_next_hop(&route(RouteType::Local, vec![RouteAttribute::Oif(1)]), DST)
            .unwrap_err();
        assert!(e.to_string().contains("local"), "{e}");
        let e = route_next_hop(
            &route(RouteType::Broadcast, vec![RouteAttribute::Oif(1)]),
            DST,
        )
        .unwrap_err();
        assert!(e.to_string().contains("Broadcast"), "{e}");
        let e = route_next_hop(&route(RouteType::Unicast, vec![]), DST).unwrap_err();
        assert!(e.to_string().contains("output interface"), "{e}");
        let v6 = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(1),
                RouteAttribute::Via(RouteVia::Inet6("fe80::1".parse().unwrap())),
            ],
        );
        assert!(route_next_hop(&v6, DST).is_err());
    }

    fn link(kind: LinkLayerType, mac: Option<Vec<u8>>) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = 7;
        l.header.link_layer_type = kind;
        l.attributes.push(LinkAttribute::IfName("eth9".into()));
        if let Some(m) = mac {
            l.attributes.push(LinkAttribute::Address(m));
        }
        l
    }

    #[test]
    fn only_ethernet_links_with_a_mac_serve() {
        assert_eq!(
            link_mac(&link(LinkLayerType::Ether, Some(MAC.to_vec()))).unwrap(),
            MAC
        );
        let e = link_mac(&link(LinkLayerType::None, None)).unwrap_err();
        assert!(e.to_string().contains("not Ethernet"), "{e}");
        assert!(e.to_string().contains("eth9"), "{e}");
        let e = link_mac(&link(LinkLayerType::Loopback, Some(vec![0; 6]))).unwrap_err();
        assert!(e.to_string().contains("not Ethernet"), "{e}");
        let e = link_mac(&link(LinkLayerType::Ether, Some(vec![1, 2, 3]))).unwrap_err();
        assert!(e.to_string().contains("MAC"), "{e}");
    }

    fn neigh(state: NeighbourState, mac: Option<Vec<u8>>) -> NeighbourMessage {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 7;
        n.header.state = state;
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(GW)));
        if let Some(m) = mac {
            n.attributes.push(NeighbourAttribute::LinkLayerAddress(m));
        }
        n
    }

    #[test]
    fn neighbours_are_usable_in_the_kernels_valid_states_with_a_mac() {
        use NeighbourState as S;
        for state in [
            S::Reachable,
            S::Stale,
            S::Delay,
            S::Probe,
            S::Permanent,
            S::Noarp,
        ] {
            let with_mac = neigh(state, Some(MAC.to_vec()));
            assert_eq!(neighbour_mac(&with_mac), Some(MAC), "{state}");
            assert_eq!(neighbour_mac(&neigh(state, None)), None, "{state}");
        }
        for state in [S::Incomplete, S::Failed, S::None] {
            let with_mac = neigh(state, Some(MAC.to_vec()));
            assert_eq!(neighbour_mac(&with_mac), None, "{state}");
        }
        let short = neigh(S::Reachable, Some(vec![1, 2, 3, 4]));
        assert_eq!(neighbour_mac(&short), None);
    }

    fn datagram(parts: &[NetlinkMessage<RouteNetlinkMessage>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let mut p = p.clone();
            p.finalize();
            let mut buf = vec![0; align4(p.buffer_len())];
            p.serialize(&mut buf);
            out.extend(buf);
        }
        out
    }

    fn msg(
        seq: u32,
        flags: u16,
        payload: NetlinkPayload<RouteNetlinkMessage>,
    ) -> NetlinkMessage<RouteNetlinkMessage> {
        let mut h = NetlinkHeader::default();
        h.sequence_number = seq;
        h.flags = flags;
        NetlinkMessage::new(h, payload)
    }

    fn new_route() -> NetlinkPayload<RouteNetlinkMessage> {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route(
            RouteType::Unicast,
            vec![RouteAttribute::Oif(3)],
        )))
    }

    fn error(errno: i32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut e = ErrorMessage::default();
        e.code = NonZeroI32::new(-errno);
        e.header = vec![0; 16];
        NetlinkPayload::Error(e)
    }

    #[test]
    fn a_reply_is_picked_by_sequence_number() {
        let mut x = Exchange::new(5, false);
        // A late reply to request 4 first: skipped.
        x.absorb(&datagram(&[msg(4, 0, error(libc::ENOENT))]))
            .unwrap();
        assert!(x.outcome.is_none());
        x.absorb(&datagram(&[msg(5, 0, new_route())])).unwrap();
        assert_eq!(x.outcome, Some(Ok(())));
        assert_eq!(x.messages.len(), 1);
    }

    #[test]
    fn errors_and_acks_end_the_exchange() {
        let mut x = Exchange::new(1, false);
        x.absorb(&datagram(&[msg(1, 0, error(libc::ENETUNREACH))]))
            .unwrap();
        let e = x.outcome.unwrap().unwrap_err();
        assert_eq!(e.errno, libc::ENETUNREACH);
        assert!(e.to_string().contains("unreachable"), "{e}");

        let mut x = Exchange::new(2, true);
        x.absorb(&datagram(&[msg(2, 0, error(0))])).unwrap();
        assert_eq!(x.outcome, Some(Ok(())));
    }

    #[test]
    fn with_an_ack_requested_a_reply_alone_does_not_end_it() {
        let mut x = Exchange::new(3, true);
        x.absorb(&datagram(&[msg(3, 0, new_route())])).unwrap();
        assert!(x.outcome.is_none());
        x.absorb(&datagram(&[msg(3, 0, error(0))])).unwrap();
        assert_eq!(x.outcome, Some(Ok(())));
        assert_eq!(x.messages.len(), 1);
    }

    #[test]
    fn multipart_replies_run_until_done() {
        let mut x = Exchange::new(9, false);
        let part = || msg(9, NLM_F_MULTIPART, new_route());
        x.absorb(&datagram(&[part(), part()])).unwrap();
        assert!(x.outcome.is_none());
        // NLMSG_DONE with a zero code, written by hand: 16-byte header + 4.
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        done[6..8].copy_from_slice(&NLM_F_MULTIPART.to_ne_bytes());
        done[8..12].copy_from_slice(&9u32.to_ne_bytes());
        let mut last = datagram(&[part()]);
        last.extend(done);
        x.absorb(&last).unwrap();
        assert_eq!(x.outcome, Some(Ok(())));
        assert_eq!(x.messages.len(), 3);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut x = Exchange::new(1, false);
        assert!(x.absorb(&[1, 2, 3]).is_err());
        // A length field larger than the datagram.
        let mut bad = datagram(&[msg(1, 0, new_route())]);
        bad[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(x.absorb(&bad).is_err());
        // A length field smaller than a header.
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(x.absorb(&bad).is_err());
        // Our sequence number on an unknown message type.
        let mut odd = datagram(&[msg(1, 0, new_route())]);
        odd[4..6].copy_from_slice(&0x7777u16.to_ne_bytes());
        assert!(x.absorb(&odd).is_err());
        assert!(x.outcome.is_none());
    }

    #[test]
    fn extended_ack_text_is_kept() {
        // The echoed request header (capped), then NLMSGERR_ATTR_MSG.
        let mut payload = vec![0u8; 16];
        payload[0..4].copy_from_slice(&40u32.to_ne_bytes()); // original length
        let text = b"Network address not specified\0";
        let nla_len = 4 + text.len();
        payload.extend((nla_len as u16).to_ne_bytes());
        payload.extend(NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend(text);
        payload.resize(align4(payload.len()), 0);
        let flags = NLM_F_ACK_TLVS | NLM_F_CAPPED;
        assert_eq!(
            ext_ack_message(flags, &payload).as_deref(),
            Some("Network address not specified")
        );
        assert_eq!(ext_ack_message(0, &payload), None);
        assert_eq!(ext_ack_message(flags, &[1, 2]), None);
    }
}
