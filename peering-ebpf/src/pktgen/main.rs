//! XDP programs of `peering-pktgen`: a traffic generator driven by
//! BPF_PROG_RUN with live frames, and a sink that counts what arrives.
//! This file holds the entry points, globals and maps; the generator and
//! the sink live in their own modules.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod config;
#[cfg(target_arch = "bpf")]
mod generator;
#[cfg(target_arch = "bpf")]
#[allow(dead_code)]
#[path = "../packet.rs"]
mod packet;
#[cfg(target_arch = "bpf")]
mod sink;

#[cfg(target_arch = "bpf")]
pub use bpf::*;

#[cfg(target_arch = "bpf")]
mod bpf {
    use crate::{generator, sink};

    use aya_ebpf::{
        macros::{classifier, map, xdp},
        maps::PerCpuArray,
        programs::{TcContext, XdpContext},
    };
    use peering_common::{
        pktgen::{GenConfig, GEN_SLOTS},
        Counter,
    };

    /// The generator's configuration (read-only data, set by the loader).
    #[no_mangle]
    pub static GEN_CONFIG: GenConfig = GenConfig::ZERO;
    /// UDP destination port the sink counts, host order (set by the loader).
    #[no_mangle]
    pub static SINK_PORT: u16 = 0;

    /// Generator counters, indexed by `GEN_SENT`, `GEN_RATE_LIMITED`,
    /// `GEN_FAILED`.
    #[map(name = "GEN_STATS")]
    pub static GEN_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(GEN_SLOTS, 0);
    /// Each CPU's frame sequence number and rate-limit bucket.
    #[map(name = "GEN_STATE")]
    pub static GEN_STATE: PerCpuArray<generator::State> = PerCpuArray::with_max_entries(1, 0);
    /// Frames the sink took, one counter per CPU.
    #[map(name = "SINK_STATS")]
    pub static SINK_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

    /// Run by BPF_PROG_RUN with live frames on every frame it injects:
    /// writes the headers and returns XDP_TX (sent out of the interface the
    /// run names as ingress).
    #[xdp]
    pub fn pktgen_gen(ctx: XdpContext) -> u32 {
        generator::process(&ctx)
    }

    /// Attached to the receiving interface: drops and counts the
    /// generator's frames, passes everything else.
    #[xdp]
    pub fn pktgen_sink(ctx: XdpContext) -> u32 {
        sink::process(&ctx)
    }

    /// Beside `pktgen_sink` at TC ingress of the same interface: counts the
    /// generator's frames that enter as socket buffers behind the XDP hook.
    #[classifier]
    pub fn pktgen_sink_tc(ctx: TcContext) -> i32 {
        sink::process_tc(&ctx)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
