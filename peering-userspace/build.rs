//! Builds the eBPF object (crate `peering-ebpf`, binary `peering`) with the
//! nightly toolchain and bpf-linker, into OUT_DIR, where `include_bytes!`
//! embeds it in the userspace binaries.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("peering-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker not found on PATH: run `cargo xtask setup` (or see README.md)"
        ));
    }
    aya_build::build_ebpf(
        [Package {
            name: "peering-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    let obj = std::path::Path::new(&out).join("peering");
    if !obj.exists() {
        return Err(anyhow!("eBPF object missing at {}", obj.display()));
    }
    Ok(())
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|p| p.is_file())
}
