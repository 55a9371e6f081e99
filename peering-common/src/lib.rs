//! The contract between the XDP program and userspace: map keys and values,
//! drop reasons, limits. Everything here is `#[repr(C)]` plain data shared
//! byte-for-byte with the kernel side; there is no logic.
//!
//! Byte order: IPv4 addresses are stored as the four bytes seen on the wire
//! (`[u8; 4]`), so neither side converts them. Numeric ids are native-endian.
//!
//! Two modules hold logic, each because the kernel and the host must run
//! the very same code: [`conntrack`] (the connection-tracking state
//! machine) and [`sg::rule_matches`] (a security-group rule against a
//! packet). Both are plain `no_std` functions tested on the host.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod conntrack;
pub mod sg;

pub use conntrack::{CtEntry, CtKey, MAX_CONNTRACK};
pub use sg::*;

/// Name under which the XDP program for VPC-facing interfaces is exported.
pub const PROG_VPC: &str = "peering_vpc";
/// Name of the XDP program for the underlay interface: it hands tunnel
/// datagrams addressed to the gateway to its AF_XDP sockets.
pub const PROG_UNDERLAY: &str = "peering_underlay";
/// Name of the sched_cls program for VPC ports at TC ingress (tcx): the
/// same pipeline as [`PROG_VPC`] on the skb, so GSO packets and
/// CHECKSUM_PARTIAL survive the forward (an XDP redirect loses both).
/// It counts under the same [`Stat`]s; where the contract named none:
/// an inter-region packet while [`maps::TUN_ENTRY`] is 0 is
/// [`Stat::DropNoXsk`] (the encapsulation path is not there, as for XDP
/// without a socket), and [`PROG_TUN_ENTRY`] counts a non-IPv4 frame as
/// [`Stat::DropMalformed`].
pub const PROG_VPC_TC: &str = "peering_vpc_tc";
/// Name of the XDP program on the tunnel entry veth's receiving end: it
/// hands the inter-region packets [`PROG_VPC_TC`] sent through the veth to
/// the tunnel's AF_XDP sockets.
pub const PROG_TUN_ENTRY: &str = "peering_tun_entry";

/// Map names, shared so the loader cannot drift from the object.
pub mod maps {
    pub const IFACES: &str = "IFACES";
    pub const VPC_CIDRS: &str = "VPC_CIDRS";
    pub const ROUTES: &str = "ROUTES";
    pub const SUBNETS: &str = "SUBNETS";
    pub const NEIGHBOURS: &str = "NEIGHBOURS";
    pub const EGRESS: &str = "EGRESS";
    pub const XSKS: &str = "XSKS";
    pub const STATS: &str = "STATS";
    pub const ROUTE_STATS: &str = "ROUTE_STATS";
    pub const UNDERLAY: &str = "UNDERLAY";
    pub const RESOLVE: &str = "RESOLVE";
    pub const FIB: &str = "FIB";
    /// `Array<u32>` of one entry: the ifindex of the tunnel entry veth's
    /// sending end, where [`super::PROG_VPC_TC`] redirects inter-region
    /// packets; 0 while it is not set up.
    pub const TUN_ENTRY: &str = "TUN_ENTRY";
    /// LPM trie from an IPv4 prefix to its [`super::SgAddr`].
    pub const SG_ADDRS: &str = "SG_ADDRS";
    /// Hash from a policy id to its [`super::SgPolicy`].
    pub const SG_POLICIES: &str = "SG_POLICIES";
    /// Per-CPU [`super::Counter`]s per security-group rule.
    pub const SG_RULE_STATS: &str = "SG_RULE_STATS";
    /// `Array<u32>` of [`super::SG_CONFIG_LEN`]: slot 0 is
    /// [`super::SG_ENFORCING`] while the agent has programmed policies.
    pub const SG_CONFIG: &str = "SG_CONFIG";
    /// LRU hash from a [`super::CtKey`] to its [`super::CtEntry`].
    pub const CONNTRACK: &str = "CONNTRACK";
}

/// Capacities. Sized for a gateway with thousands of VPCs; LPM tries are
/// allocated lazily (`BPF_F_NO_PREALLOC`), so large limits cost nothing idle.
pub const MAX_IFACES: u32 = 4096;
pub const MAX_VPC_CIDRS: u32 = 65536;
/// Routes over all route tables: 2^20, so a million fit.
pub const MAX_ROUTES: u32 = 1 << 20;
/// Entries of [`maps::FIB`]: every route, plus one per (local route, peer
/// subnet or block) pair that nest.
pub const MAX_FIB: u32 = 1 << 21;
pub const MAX_SUBNETS: u32 = 65536;
pub const MAX_NEIGHBOURS: u32 = 262_144;
pub const MAX_EGRESS: u32 = 4096;
/// AF_XDP socket slots: each VPC-facing interface owns a run of slots, one
/// per receive queue, starting at its [`IfaceInfo::xsk_base`], below
/// [`UNDERLAY_XSK_BASE`]; the slots from there on belong to the underlay.
pub const MAX_XSKS: u32 = 1024;
/// Underlay receive queues with an AF_XDP socket of their own (queue `q`
/// uses slot `UNDERLAY_XSK_BASE + q`; further queues use the UDP socket).
pub const UNDERLAY_XSK_SLOTS: u32 = 64;
pub const UNDERLAY_XSK_BASE: u32 = MAX_XSKS - UNDERLAY_XSK_SLOTS;
/// Receive queues of the tunnel entry veth's receiving end with an AF_XDP
/// socket: queue `q` uses slot `TUN_ENTRY_XSK_BASE + q`, the 64 slots
/// below the underlay's.
pub const TUN_ENTRY_XSK_SLOTS: u32 = 64;
pub const TUN_ENTRY_XSK_BASE: u32 = UNDERLAY_XSK_BASE - TUN_ENTRY_XSK_SLOTS;
/// Entries of [`maps::TUN_ENTRY`].
pub const TUN_ENTRY_LEN: u32 = 1;
/// Underlay interfaces the XDP program serves.
pub const MAX_UNDERLAYS: u32 = 16;
/// Route counter slots; slot 0 is never handed out so "no slot" is explicit.
pub const MAX_ROUTE_COUNTERS: u32 = 65536;

/// AWS: inter-region VPC peering supports an MTU of 1500 bytes (no jumbo
/// frames). This is the largest IPv4 total length the encrypted path takes.
pub const INTER_REGION_MTU: u16 = 1500;

/// ICMP errors the gateway generates, per CPU: a token bucket of
/// [`ICMP_BURST`] messages refilled at [`ICMP_RATE_PER_SEC`] (RFC 1812
/// §4.3.2.8; Linux's defaults are 1000/s with a burst of 50, machine-wide).
pub const ICMP_RATE_PER_SEC: u64 = 1000;
pub const ICMP_BURST: u64 = 50;

/// Neighbour resolution requests the XDP program sends the agent (through
/// [`maps::RESOLVE`]) when a packet's destination host has no MAC yet, per
/// CPU: a token bucket of [`RESOLVE_BURST`] requests refilled at
/// [`RESOLVE_RATE_PER_SEC`]. Each request costs the agent one netlink
/// message; the bound keeps a flood to unknown hosts from costing more.
pub const RESOLVE_RATE_PER_SEC: u64 = 100;
pub const RESOLVE_BURST: u64 = 20;
/// Size of the [`maps::RESOLVE`] ring buffer: a power of two and a whole
/// number of 4 KiB pages, 1024 records of a [`NeighKey`] (8 bytes) and the
/// ring's 8-byte record header. The agent drains it every poll interval.
pub const RESOLVE_RING_BYTES: u32 = 16 * 1024;

/// The 802.1Q tag protocol identifier.
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_IPV4: u16 = 0x0800;

/// Key of [`maps::IFACES`]: where a frame came in. `vlan` is the 12-bit VLAN
/// id of the one 802.1Q tag we parse, 0 for untagged frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub vlan: u16,
    pub _pad: u16,
}

impl IfaceKey {
    pub const fn new(ifindex: u32, vlan: u16) -> Self {
        Self {
            ifindex,
            vlan,
            _pad: 0,
        }
    }
}

/// Value of [`maps::IFACES`]: the subnet an interface (and VLAN) is attached
/// to, hence its VPC and route table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    pub vpc_id: u32,
    pub route_table: u32,
    /// The subnet's prefix (network address and netmask, wire order): a
    /// source outside it is spoofed. AWS checks sources per network
    /// interface; a subnet's prefix is the analogue a gateway port has.
    pub subnet: [u8; 4],
    pub subnet_mask: [u8; 4],
    /// The VPC router's address on this subnet; the source of the ICMP
    /// errors the gateway generates.
    pub gateway_ip: [u8; 4],
    /// First [`maps::XSKS`] slot of this interface; a packet for a remote
    /// region goes to slot `xsk_base + rx queue`. The kernel refuses a
    /// redirect to a socket bound to another device or queue, so a wrong
    /// slot is a counted drop, never a leak between interfaces.
    pub xsk_base: u32,
}

/// Data of an LPM key scoped by a 32-bit id (a VPC or route table id)
/// followed by an IPv4 address. The id is stored big-endian so the trie's
/// bit order sees it as one 32-bit prefix; the prefix length of a key is
/// therefore `32 + ipv4 prefix length`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopedAddr {
    pub scope_be: u32,
    pub addr: [u8; 4],
}

impl ScopedAddr {
    pub const fn new(scope: u32, addr: [u8; 4]) -> Self {
        Self {
            scope_be: scope.to_be(),
            addr,
        }
    }
}

/// Prefix length of an LPM key over [`ScopedAddr`] for an IPv4 prefix length.
pub const fn scoped_prefix_len(ipv4_prefix_len: u8) -> u32 {
    32 + ipv4_prefix_len as u32
}

/// What a route does with a packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Intra-region peer: rewrite and redirect in XDP.
    LocalPeer = 1,
    /// Inter-region peer: hand to the encapsulation path (AF_XDP).
    RemotePeer = 2,
    /// The peering is not active: drop and count.
    Blackhole = 3,
}

impl RouteAction {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::LocalPeer),
            2 => Some(Self::RemotePeer),
            3 => Some(Self::Blackhole),
            _ => None,
        }
    }
}

/// Value of [`maps::ROUTES`] (key: route table id + destination prefix).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteValue {
    /// A [`RouteAction`] as u32.
    pub action: u32,
    /// LocalPeer: the peer VPC id (the destination must lie in its CIDRs).
    /// RemotePeer: the peering connection's dataplane id.
    pub target: u32,
    /// Slot in [`maps::ROUTE_STATS`]; 0 = not counted per route.
    pub counter: u32,
    pub _pad: u32,
}

/// What a [`maps::FIB`] entry does with a packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibAction {
    /// Intra-region peer: rewrite and redirect out of the entry's port.
    Forward = 1,
    /// Inter-region peer: hand to the encapsulation path (AF_XDP).
    RemotePeer = 2,
    /// The peering is not active.
    Blackhole = 3,
    /// A local-peer route to an address in the peer's blocks but in none
    /// of its subnets.
    NoSubnet = 4,
    /// A local-peer route to an address outside the peer's blocks.
    OutsidePeer = 5,
}

impl FibAction {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Forward),
            2 => Some(Self::RemotePeer),
            3 => Some(Self::Blackhole),
            4 => Some(Self::NoSubnet),
            5 => Some(Self::OutsidePeer),
            _ => None,
        }
    }
}

/// Value of [`maps::FIB`] (key: route table id + destination prefix, as
/// [`maps::ROUTES`]): the answer of the route lookup and, for a local peer,
/// of the peer's subnet lookup, compiled by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibEntry {
    /// A [`FibAction`] as u32.
    pub action: u32,
    /// Slot in [`maps::ROUTE_STATS`] of the route the entry comes from.
    pub counter: u32,
    /// Forward: the egress ifindex. RemotePeer: the peering's dataplane id.
    pub target: u32,
    /// Forward: VLAN id to tag egress frames with, 0 for untagged.
    pub vlan: u16,
    /// Forward: the egress port's MAC, the source of forwarded frames.
    pub src_mac: [u8; 6],
    /// `FIB_F_*` bits, set by the agent for the TC program.
    pub flags: u32,
}

/// [`FibEntry::flags`]: the Forward entry's egress port is a veth, so the
/// TC program redirects with `bpf_redirect_peer`, straight into the ingress
/// of the veth's other end (the host's namespace) without a backlog queue
/// pass; without it, `bpf_redirect(target, 0)` (egress of the port).
pub const FIB_F_PEER_REDIRECT: u32 = 1;

/// Value of [`maps::SUBNETS`] (key: VPC id + subnet prefix): where hosts of
/// a subnet are reached from the gateway.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressPort {
    pub ifindex: u32,
    /// VLAN id to tag egress frames with, 0 for untagged.
    pub vlan: u16,
    /// The gateway interface's MAC: the source of forwarded frames.
    pub src_mac: [u8; 6],
}

/// Key of [`maps::NEIGHBOURS`]: a host on one of the gateway's ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighKey {
    pub ifindex: u32,
    pub addr: [u8; 4],
}

/// Value of [`maps::NEIGHBOURS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighValue {
    pub mac: [u8; 6],
    pub _pad: u16,
}

/// Value of [`maps::UNDERLAY`] (key: ifindex): the tunnel endpoint on an
/// underlay interface. IPv4 UDP datagrams to `addr`:`port` that are not
/// fragments go to XSKMAP slot [`UNDERLAY_XSK_BASE`] + rx queue; everything
/// else goes on to the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnderlayInfo {
    pub addr: [u8; 4],
    /// UDP port as the two bytes on the wire (big-endian).
    pub port: [u8; 2],
    pub _pad: u16,
}

/// A packet and byte counter. Kept per CPU by the kernel side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

macro_rules! stats {
    ($( $(#[$doc:meta])* $name:ident = $idx:literal, $label:literal; )+) => {
        /// Index into [`maps::STATS`]: every verdict the program returns is
        /// counted under exactly one of these.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Stat {
            $( $(#[$doc])* $name = $idx, )+
        }

        impl Stat {
            pub const ALL: &'static [Stat] = &[$(Stat::$name),+];

            /// A stable, lower-case name for counters output.
            pub const fn label(self) -> &'static str {
                match self { $(Stat::$name => $label,)+ }
            }

            /// True when the packet was dropped (as opposed to passed,
            /// forwarded or answered).
            pub const fn is_drop(self) -> bool {
                (self as u32) >= DROP_BASE
            }
        }
    };
}

/// First [`Stat`] index that is a drop reason.
pub const DROP_BASE: u32 = 16;

stats! {
    /// Not for us: non-IPv4, or an interface/VLAN that is not configured.
    PassNotVpc = 0, "pass_not_vpc";
    /// No route matched: traffic for the gateway itself.
    PassNoRoute = 1, "pass_no_route";
    /// Forwarded to an intra-region peer through the DEVMAP.
    FwdLocal = 2, "fwd_local";
    /// Handed to the encapsulation path through the XSKMAP.
    FwdRemote = 3, "fwd_remote";
    /// Answered with ICMP "fragmentation needed".
    TxIcmpFragNeeded = 4, "tx_icmp_frag_needed";
    /// Underlay: a tunnel datagram handed to the tunnel's AF_XDP socket.
    FwdTunnelRx = 5, "fwd_tunnel_rx";
    /// Underlay: not a tunnel datagram for this gateway (or a fragment, or
    /// no socket on the queue): left to the kernel.
    PassUnderlay = 6, "pass_underlay";
    /// A header was cut short or is inconsistent with the frame.
    DropMalformed = 16, "drop_malformed";
    /// The IPv4 header checksum does not verify.
    DropBadChecksum = 17, "drop_bad_checksum";
    /// The source is outside the ingress subnet (anti-spoofing).
    DropSpoofedSource = 18, "drop_spoofed_source";
    /// TTL would reach zero.
    DropTtlExceeded = 19, "drop_ttl_exceeded";
    /// The route points at a peering that is not active.
    DropBlackhole = 20, "drop_blackhole";
    /// The destination is outside the peer VPC's CIDR blocks.
    DropDstOutsidePeer = 21, "drop_dst_outside_peer";
    /// No subnet of the peer VPC contains the destination.
    DropNoSubnet = 22, "drop_no_subnet";
    /// The destination host's MAC is not known; the agent was asked to
    /// resolve it (a [`NeighKey`] in [`maps::RESOLVE`]).
    DropNoNeighbour = 23, "drop_no_neighbour";
    /// The egress interface is missing from the DEVMAP.
    DropRedirectFailed = 24, "drop_redirect_failed";
    /// No AF_XDP socket is bound for this queue.
    DropNoXsk = 25, "drop_no_xsk";
    /// Larger than the inter-region MTU and DF not set.
    DropMtuExceeded = 26, "drop_mtu_exceeded";
    /// The route holds an action this program does not know.
    DropBadRoute = 27, "drop_bad_route";
    /// Growing or shrinking the frame failed.
    DropAdjustFailed = 28, "drop_adjust_failed";
    /// Would have been answered with an ICMP error, but the gateway's ICMP
    /// rate limit was reached.
    DropIcmpRateLimited = 29, "drop_icmp_rate_limited";
    /// The destination host's MAC is not known, and the resolution request
    /// rate limit was reached (nothing was sent to the agent).
    DropNoNeighbourUnreported = 30, "drop_no_neighbour_unreported";
    /// The destination host's MAC is not known, and the resolution request
    /// ring was full.
    DropNoNeighbourRingFull = 31, "drop_no_neighbour_ring_full";
    /// A new flow no egress rule of the source's security groups allows.
    DropSgEgress = 32, "drop_sg_egress";
    /// A new flow no ingress rule of the destination's security groups
    /// allows.
    DropSgIngress = 33, "drop_sg_ingress";
    /// A TCP segment of no tracked flow whose flags no connection starts
    /// with (SYN-ACK, SYN-FIN, SYN-RST, none of SYN, ACK and RST).
    DropSgTcpInvalid = 34, "drop_sg_tcp_invalid";
    /// An ICMP error whose quoted packet belongs to no tracked flow.
    DropSgIcmpUnrelated = 35, "drop_sg_icmp_unrelated";
}

/// Size of [`maps::STATS`].
pub const STATS_LEN: u32 = 48;

/// The traffic generator and sink of `peering-pktgen` (eBPF binary
/// `pktgen`, a separate object from the gateway's so the gateway never
/// loads it). Frames are IPv4 UDP; the first bytes of the UDP payload carry
/// [`pktgen::MAGIC`] and the sender's sequence number, so the sink counts
/// only the generator's frames.
pub mod pktgen {
    /// Program names in the `pktgen` object.
    pub const PROG_GEN: &str = "pktgen_gen";
    pub const PROG_SINK: &str = "pktgen_sink";
    pub const PROG_SINK_TC: &str = "pktgen_sink_tc";
    /// Global (read-only data) names, set by the loader.
    pub const GLOBAL_GEN: &str = "GEN_CONFIG";
    pub const GLOBAL_SINK_PORT: &str = "SINK_PORT";
    /// Per-CPU counter maps: [`GEN_SLOTS`] and one slot respectively.
    pub const MAP_GEN_STATS: &str = "GEN_STATS";
    pub const MAP_SINK_STATS: &str = "SINK_STATS";

    /// "PKTG" in ASCII: first four bytes of the UDP payload.
    pub const MAGIC: [u8; 4] = *b"PKTG";
    /// Ethernet + IPv4 (no options) + UDP headers.
    pub const HEADERS_LEN: usize = 14 + 20 + 8;
    /// Headers, magic and the 64-bit sequence number: what the generator
    /// writes on every frame and the sink reads.
    pub const STAMP_LEN: usize = HEADERS_LEN + 4 + 8;
    /// Smallest frame (Ethernet's minimum without FCS, `ETH_ZLEN`).
    pub const MIN_FRAME: u16 = 60;
    /// Largest frame: a 1500-byte IP packet. Live frames live in one page.
    pub const MAX_FRAME: u16 = 1514;
    /// Length of the frame-size pattern; frame `n` of a CPU has size
    /// `sizes[n % size_period]`.
    pub const SIZE_SLOTS: usize = 16;
    /// Slots of [`MAP_GEN_STATS`].
    pub const GEN_SENT: u32 = 0;
    pub const GEN_RATE_LIMITED: u32 = 1;
    pub const GEN_FAILED: u32 = 2;
    pub const GEN_SLOTS: u32 = 3;

    /// The generator's configuration, a global of the `pktgen` object.
    ///
    /// Flow `f` (0 ≤ f < `flows`, taken round-robin per CPU: frame `n` is
    /// flow `n % flows`) has source address `src_ip + f % src_ips` and
    /// source port `src_port + f / src_ips`; everything else is fixed.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct GenConfig {
        pub dst_mac: [u8; 6],
        pub src_mac: [u8; 6],
        /// First source address, wire order.
        pub src_ip: [u8; 4],
        pub dst_ip: [u8; 4],
        /// First source port and the destination port, host order.
        pub src_port: u16,
        pub dst_port: u16,
        /// Consecutive source addresses in use (≥ 1).
        pub src_ips: u32,
        /// Flows (≥ 1).
        pub flows: u32,
        /// Frames of the pattern in use, 1..=[`SIZE_SLOTS`].
        pub size_period: u32,
        /// Frame lengths without FCS, [`MIN_FRAME`]..=[`MAX_FRAME`], none
        /// larger than the frame the run starts from.
        pub sizes: [u16; SIZE_SLOTS],
        pub _pad: u32,
        /// Rate limit per CPU: nanoseconds of credit one frame costs; 0 for
        /// full speed.
        pub ns_per_frame: u64,
    }

    impl GenConfig {
        /// All zero: the initial value of the global before the loader
        /// sets it (a program loaded so sends nothing: `flows` is 0).
        pub const ZERO: Self = Self {
            dst_mac: [0; 6],
            src_mac: [0; 6],
            src_ip: [0; 4],
            dst_ip: [0; 4],
            src_port: 0,
            dst_port: 0,
            src_ips: 0,
            flows: 0,
            size_period: 0,
            sizes: [0; SIZE_SLOTS],
            _pad: 0,
            ns_per_frame: 0,
        };
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are repr(C) plain data without implicit padding
    // (explicit _pad fields fill every gap), valid for any bit pattern.
    unsafe impl aya::Pod for IfaceKey {}
    unsafe impl aya::Pod for IfaceInfo {}
    unsafe impl aya::Pod for ScopedAddr {}
    unsafe impl aya::Pod for RouteValue {}
    unsafe impl aya::Pod for EgressPort {}
    unsafe impl aya::Pod for FibEntry {}
    unsafe impl aya::Pod for NeighKey {}
    unsafe impl aya::Pod for NeighValue {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for UnderlayInfo {}
    unsafe impl aya::Pod for pktgen::GenConfig {}
    unsafe impl aya::Pod for SgAddr {}
    unsafe impl aya::Pod for SgRule {}
    unsafe impl aya::Pod for SgPolicy {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<IfaceKey>(), 8);
        assert_eq!(size_of::<IfaceInfo>(), 24);
        assert_eq!(size_of::<FibEntry>(), 24);
        assert_eq!(size_of::<ScopedAddr>(), 8);
        assert_eq!(size_of::<RouteValue>(), 16);
        assert_eq!(size_of::<EgressPort>(), 12);
        assert_eq!(size_of::<NeighKey>(), 8);
        assert_eq!(size_of::<NeighValue>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<UnderlayInfo>(), 8);
        assert_eq!(size_of::<pktgen::GenConfig>(), 80);
        assert_eq!(size_of::<SgAddr>(), 36);
        assert_eq!(size_of::<SgRule>(), 24);
        assert_eq!(size_of::<SgPolicy>(), 8 + 24 * MAX_POLICY_RULES);
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(size_of::<CtEntry>(), 16);
    }

    #[test]
    fn stats_fit_and_drops_are_classified() {
        for s in Stat::ALL {
            assert!((*s as u32) < STATS_LEN);
        }
        assert!(!Stat::FwdLocal.is_drop());
        assert!(!Stat::TxIcmpFragNeeded.is_drop());
        assert!(Stat::DropMalformed.is_drop());
        assert!(Stat::DropAdjustFailed.is_drop());
    }

    #[test]
    fn scoped_keys_put_the_scope_first_in_wire_order() {
        let k = ScopedAddr::new(0x0102_0304, [10, 0, 0, 1]);
        assert_eq!(k.scope_be.to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(scoped_prefix_len(16), 48);
    }

    #[test]
    fn route_actions_round_trip() {
        for a in [
            RouteAction::LocalPeer,
            RouteAction::RemotePeer,
            RouteAction::Blackhole,
        ] {
            assert_eq!(RouteAction::from_u32(a as u32), Some(a));
        }
        assert_eq!(RouteAction::from_u32(0), None);
        assert_eq!(RouteAction::from_u32(9), None);
    }
}
