//! The userspace side of peering: loader and dataplane API, agent, control
//! plane, tunnel.

/// The compiled XDP object, embedded at build time.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/peering"));
/// The generator and sink of `peering-pktgen`, a separate object.
pub static PKTGEN_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pktgen"));

pub mod agent;
pub mod api;
pub mod bpffs;
pub mod cli;
pub mod control;
pub mod dataplane;
pub mod dns;
pub mod gateway;
pub mod hosts;
pub mod https;
pub mod out;
pub mod pktgen;
pub mod report;
pub mod sys;
pub mod tunnel;
