//! The checks behind the fuzz targets, as plain functions over bytes: each
//! `fuzz_targets/NAME.rs` is one line calling [`TARGETS`]'s entry, and the
//! tests here run every seed and every committed corpus file through the
//! same functions without libFuzzer.
//!
//! Every check panics on a broken property; libFuzzer records the input
//! that did it under `artifacts/NAME/`.

pub mod api;
pub mod frame;
pub mod gateway;
pub mod seeds;
pub mod shorthand;
pub mod tunnel;

/// A target's check: panics on a broken property.
pub type Check = fn(&[u8]);

/// Every target by name, with its check. `cargo xtask fuzz` takes the
/// list from `cargo fuzz list`; this table serves the seeds and the tests.
pub const TARGETS: &[(&str, Check)] = &[
    ("tunnel_wire", tunnel::wire),
    ("tunnel_open", tunnel::open),
    ("tunnel_seal", tunnel::seal),
    ("gateway_frame", frame::check),
    ("gateway_core", gateway::check),
    ("api_request", api::check),
    ("cli_shorthand", shorthand::check),
];

/// The check of target `name`.
pub fn target(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
