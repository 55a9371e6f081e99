//! Shared fixtures for the peering tests: frame crafting, the
//! BPF_PROG_TEST_RUN harness, network-namespace labs, and the teardown
//! that removes what they created on every exit path.

pub mod control_lab;
pub mod etcd;
pub mod frame;
pub mod inter_region;
pub mod kv_contract;
pub mod lab;
pub mod memfeed;
pub mod model;
pub mod multihost;
pub mod pki;
pub mod supervisor;
pub mod teardown;
pub mod verdict;
pub mod world;

/// `println!` that cannot panic: when stdout is a pipe whose reader has
/// gone (`peering-demo | head`), the line is dropped and the program goes
/// on to its normal end and cleanup (see `peering_userspace::out`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = peering_userspace::out::println(&format!($($arg)*));
    }};
}
