//! XDP and TC programs of the peering gateway. This file holds the entry
//! points and the maps; each concern lives in its own module.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod pipeline;
#[cfg(target_arch = "bpf")]
mod ratelimit;
#[cfg(target_arch = "bpf")]
mod resolve;
#[cfg(target_arch = "bpf")]
mod rewrite;
#[cfg(target_arch = "bpf")]
mod route;
#[cfg(target_arch = "bpf")]
mod sg;
#[cfg(target_arch = "bpf")]
mod stats;
#[cfg(target_arch = "bpf")]
mod tc;
#[cfg(target_arch = "bpf")]
mod tun_entry;
#[cfg(target_arch = "bpf")]
mod underlay;

#[cfg(target_arch = "bpf")]
pub use bpf::*;

#[cfg(target_arch = "bpf")]
mod bpf {
    use crate::{packet, pipeline, ratelimit::Bucket, stats, tc, tun_entry, underlay};

    use aya_ebpf::{
        bindings::xdp_action,
        macros::{classifier, map, xdp},
        maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, XskMap},
        programs::{TcContext, XdpContext},
    };
    use peering_common::*;

    /// Interface (+VLAN) → the subnet's VPC and route table.
    #[map(name = "IFACES")]
    pub static IFACES: HashMap<IfaceKey, IfaceInfo> = HashMap::with_max_entries(MAX_IFACES, 0);
    /// (route table, destination) → what to do, with the egress port for
    /// local peers: the routes compiled with the peers' subnets and blocks
    /// by the agent (`peering-userspace/src/dataplane/fib.rs`). The one
    /// lookup of a forwarded packet besides its interface and neighbour.
    #[map(name = "FIB")]
    pub static FIB: LpmTrie<ScopedAddr, FibEntry> = LpmTrie::with_max_entries(MAX_FIB, 0);
    /// The agent's record of what the FIB is compiled from, kept in the
    /// kernel so that any process (a restarted agent, `peering-agent
    /// show`) reads the same state; the program never reads them.
    /// (VPC, block), (route table, destination) → route, (VPC, subnet) →
    /// port.
    #[map(name = "VPC_CIDRS")]
    pub static VPC_CIDRS: LpmTrie<ScopedAddr, u32> = LpmTrie::with_max_entries(MAX_VPC_CIDRS, 0);
    #[map(name = "ROUTES")]
    pub static ROUTES: LpmTrie<ScopedAddr, RouteValue> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
    #[map(name = "SUBNETS")]
    pub static SUBNETS: LpmTrie<ScopedAddr, EgressPort> = LpmTrie::with_max_entries(MAX_SUBNETS, 0);
    /// (port, host address) → host MAC.
    #[map(name = "NEIGHBOURS")]
    pub static NEIGHBOURS: HashMap<NeighKey, NeighValue> =
        HashMap::with_max_entries(MAX_NEIGHBOURS, 0);
    /// ifindex → ifindex: the ports XDP may redirect to.
    #[map(name = "EGRESS")]
    pub static EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_EGRESS, 0);
    /// Underlay ifindex → the tunnel endpoint on it.
    #[map(name = "UNDERLAY")]
    pub static UNDERLAY: HashMap<u32, UnderlayInfo> = HashMap::with_max_entries(MAX_UNDERLAYS, 0);
    /// RX queue → AF_XDP socket of the encapsulation path: VPC ports from
    /// their `xsk_base`, underlay queues from `UNDERLAY_XSK_BASE`.
    #[map(name = "XSKS")]
    pub static XSKS: XskMap = XskMap::with_max_entries(MAX_XSKS, 0);
    /// The ifindex of the tunnel entry veth's sending end (0: not set up),
    /// where the TC program sends inter-region packets.
    #[map(name = "TUN_ENTRY")]
    pub static TUN_ENTRY: Array<u32> = Array::with_max_entries(TUN_ENTRY_LEN, 0);
    /// Verdict counters, indexed by [`Stat`].
    #[map(name = "STATS")]
    pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_LEN, 0);
    /// The ICMP error rate limit's token bucket, one per CPU.
    #[map(name = "ICMP_BUCKET")]
    pub static ICMP_BUCKET: PerCpuArray<Bucket> = PerCpuArray::with_max_entries(1, 0);
    /// The rate limit on neighbour resolution requests, one bucket per CPU.
    #[map(name = "RESOLVE_BUCKET")]
    pub static RESOLVE_BUCKET: PerCpuArray<Bucket> = PerCpuArray::with_max_entries(1, 0);
    /// Hosts to resolve ([`NeighKey`] records), read by the agent.
    #[map(name = "RESOLVE")]
    pub static RESOLVE: RingBuf = RingBuf::with_byte_size(RESOLVE_RING_BYTES, 0);
    /// Per-route counters, indexed by [`RouteValue::counter`].
    #[map(name = "ROUTE_STATS")]
    pub static ROUTE_STATS: PerCpuArray<Counter> =
        PerCpuArray::with_max_entries(MAX_ROUTE_COUNTERS, 0);

    /// Security groups (`sg.rs`): address → its policies and groups.
    #[map(name = "SG_ADDRS")]
    pub static SG_ADDRS: LpmTrie<[u8; 4], SgAddr> =
        LpmTrie::with_max_entries(MAX_SG_ADDRS, BPF_F_NO_PREALLOC);
    /// Policy id → the rules of one set of groups in one direction.
    #[map(name = "SG_POLICIES")]
    pub static SG_POLICIES: HashMap<u32, SgPolicy> =
        HashMap::with_max_entries(MAX_SG_POLICIES, BPF_F_NO_PREALLOC);
    /// Per-rule hit counters, indexed by [`SgRule::counter`].
    #[map(name = "SG_RULE_STATS")]
    pub static SG_RULE_STATS: PerCpuArray<Counter> =
        PerCpuArray::with_max_entries(MAX_SG_RULE_COUNTERS, 0);
    /// Slot 0: [`SG_ENFORCING`] once the agent programmed policies.
    #[map(name = "SG_CONFIG")]
    pub static SG_CONFIG: Array<u32> = Array::with_max_entries(SG_CONFIG_LEN, 0);
    /// Tracked flows; the least recently used goes when full.
    #[map(name = "CONNTRACK")]
    pub static CONNTRACK: LruHashMap<CtKey, CtEntry> =
        LruHashMap::with_max_entries(MAX_CONNTRACK, 0);

    /// `BPF_F_NO_PREALLOC` (uapi/linux/bpf.h): entries allocated on insert.
    const BPF_F_NO_PREALLOC: u32 = 1;

    /// Entry point for VPC-facing interfaces. Multi-buffer aware (`frags`),
    /// so ports may run jumbo MTUs: headers are always in the first buffer.
    #[xdp(frags)]
    pub fn peering_vpc(ctx: XdpContext) -> u32 {
        // One helper call per packet: the length is passed down from here.
        let len = packet::frame_len(&ctx);
        let (verdict, stat) = pipeline::process(&ctx, len);
        stats::count(stat, len as u64);
        verdict
    }

    /// Entry point for veth VPC ports at TC ingress (tcx): the same
    /// pipeline on the socket buffer, which keeps GSO and partial checksums.
    #[classifier]
    pub fn peering_vpc_tc(ctx: TcContext) -> i32 {
        let len = ctx.len() as usize;
        let (verdict, stat) = tc::process(&ctx, len);
        stats::count(stat, len as u64);
        verdict
    }

    /// Entry point for the tunnel entry veth's receiving end: packets the
    /// TC program sends to the encapsulation path.
    #[xdp]
    pub fn peering_tun_entry(ctx: XdpContext) -> u32 {
        match tun_entry::process(&ctx) {
            Ok(verdict) => verdict,
            Err(stat) => {
                stats::count(stat, packet::frame_len(&ctx) as u64);
                xdp_action::XDP_DROP
            }
        }
    }

    /// Entry point for the underlay interface: tunnel datagrams to the
    /// tunnel's AF_XDP sockets, the rest to the kernel.
    #[xdp]
    pub fn peering_underlay(ctx: XdpContext) -> u32 {
        let len = packet::frame_len(&ctx);
        let (verdict, stat) = underlay::process(&ctx, len);
        stats::count(stat, len as u64);
        verdict
    }

    /// Baseline for benchmarks: the cheapest possible program, measured the
    /// same way as `peering_vpc`.
    #[xdp]
    pub fn peering_drop(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_DROP
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
