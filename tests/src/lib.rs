//! Shared fixtures for the peering tests: frame crafting, the
//! BPF_PROG_TEST_RUN harness, and network-namespace labs.

pub mod control_lab;
pub mod frame;
pub mod inter_region;
pub mod lab;
pub mod supervisor;
pub mod verdict;
pub mod world;
