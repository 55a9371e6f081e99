//! Builds the eBPF object (crate `peering-ebpf`, binary `peering`) with the
//! nightly toolchain and bpf-linker, into OUT_DIR, where `include_bytes!`
//! embeds it in the userspace binaries.
//!
//! `AYA_BUILD_SKIP=1` (aya-build's own switch) skips the eBPF build and
//! embeds an empty object instead: for builds that never load the dataplane,
//! such as the fuzz targets (`peering-userspace/fuzz`), which would otherwise
//! rebuild the eBPF crate for every sanitizer configuration. Loading the
//! dataplane from such a build fails with a parse error.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
    // The gateway's object and `peering-pktgen`'s (binaries of peering-ebpf).
    let objs = ["peering", "pktgen"].map(|name| std::path::Path::new(&out).join(name));
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if skip_requested() {
        println!("cargo:warning=AYA_BUILD_SKIP set: embedding empty eBPF objects");
        for obj in &objs {
            std::fs::write(obj, []).context("writing an empty eBPF object")?;
        }
        return Ok(());
    }
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
    for obj in &objs {
        if !obj.exists() {
            return Err(anyhow!("eBPF object missing at {}", obj.display()));
        }
    }
    Ok(())
}

/// The same test aya-build applies to `AYA_BUILD_SKIP`.
fn skip_requested() -> bool {
    std::env::var("AYA_BUILD_SKIP")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|p| p.is_file())
}
