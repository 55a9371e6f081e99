//! Upgrading a running dataplane without an outage.
//!
//! Ports on the TC path run through tcx links (`links/tcN`), switched
//! the same way: `BPF_LINK_UPDATE` works on them too.
//!
//! A new agent build pins its own programs (named after a hash of the
//! object). Interfaces keep forwarding through their pinned BPF links, and
//! each link is switched to the new program in one step with
//! `BPF_LINK_UPDATE` (aya's `Xdp::attach_to_link`): the kernel swaps the
//! program pointer, so every packet runs either the old or the new program
//! and none is lost in between.
//!
//! Maps are pinned by name and shared by both programs. A pinned map whose
//! definition (type, key and value size, capacity, flags) differs from the
//! new object's is not reused: aya would hand the new program a map of the
//! wrong shape. Its pin is removed and a fresh map is created; programs
//! still attached keep the old map (they hold a reference) until their
//! link is switched. A map the new object adds (no pin yet, while others
//! have one) is treated the same way. The agent fills the fresh maps from the control store
//! (its reconciliation is restart-safe) before it switches links, so
//! forwarding state carries over; counters in a recreated map start at 0.
//! Until a caller says the maps are filled ([`super::Dataplane::maps_refilled`]),
//! no link is switched: the low-level `attach` and `upgrade` commands,
//! which have no store to refill from, refuse and point at `run`.

use std::{collections::HashMap, fs, path::Path};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::MapInfo,
    programs::{
        links::{FdLink, PinnedLink},
        loaded_programs,
        tc::SchedClassifierLink,
        xdp::XdpLink,
        SchedClassifier, Xdp,
    },
};
use log::{info, warn};

/// What the kernel reports about a map, or what the object asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    pub map_type: u32,
    pub key_size: u32,
    /// None where the loader or kernel chooses it (DEVMAP values, ring
    /// buffers), so it is not compared.
    pub value_size: Option<u32>,
    pub max_entries: u32,
    pub flags: u32,
}

/// `BPF_MAP_TYPE_*` values whose value size aya fixes itself.
const BPF_MAP_TYPE_DEVMAP: u32 = 14;
const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
/// `BPF_F_RDONLY_PROG`: the kernel adds it to every DEVMAP's flags.
const BPF_F_RDONLY_PROG: u32 = 1 << 7;

impl MapDef {
    fn new(map_type: u32, key: u32, value: u32, max_entries: u32, flags: u32) -> Self {
        let devmap = matches!(map_type, BPF_MAP_TYPE_DEVMAP | BPF_MAP_TYPE_DEVMAP_HASH);
        let loader_chosen = devmap || map_type == BPF_MAP_TYPE_RINGBUF;
        MapDef {
            map_type,
            key_size: key,
            value_size: (!loader_chosen).then_some(value),
            max_entries,
            flags: if devmap {
                flags & !BPF_F_RDONLY_PROG
            } else {
                flags
            },
        }
    }
}

/// The map definitions of an object, by name.
pub fn object_maps(object: &[u8]) -> Result<HashMap<String, MapDef>> {
    let obj = aya_obj::Object::parse(object).map_err(|e| anyhow!("parsing the object: {e}"))?;
    Ok(obj
        .maps
        .iter()
        .map(|(name, m)| {
            let def = MapDef::new(
                m.map_type(),
                m.key_size(),
                m.value_size(),
                m.max_entries(),
                m.map_flags(),
            );
            (name.clone(), def)
        })
        .collect())
}

/// Removes the pin of a map whose definition is not `want`, so the loader
/// creates a fresh one. Returns true when it did.
pub fn retire_incompatible_map(name: &str, pin: &Path, want: Option<&MapDef>) -> Result<bool> {
    let (Some(want), true) = (want, pin.exists()) else {
        return Ok(false);
    };
    let info = MapInfo::from_pin(pin).with_context(|| format!("reading {}", pin.display()))?;
    let have = MapDef::new(
        info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
        info.key_size(),
        info.value_size(),
        info.max_entries(),
        info.map_flags(),
    );
    if have == *want {
        return Ok(false);
    }
    warn!(
        "map {name} changed definition ({have:?} -> {want:?}): recreating it; \
         the agent refills it before switching programs"
    );
    fs::remove_file(pin).with_context(|| format!("unpinning {}", pin.display()))?;
    Ok(true)
}

/// Removes pins of earlier builds' `program` (`prog-NAME-TAG`) other than
/// `keep`. Links still running one keep it loaded until they are switched.
pub fn remove_stale_programs(dir: &Path, program: &str, keep: &Path) -> Result<()> {
    let prefix = format!("prog-{program}-");
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix));
        if stale && path != keep {
            fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            info!("unpinned the earlier program {}", path.display());
        }
    }
    Ok(())
}

/// What kind of BPF link a pin holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// An XDP link (`links/ifN`).
    Xdp,
    /// A tcx ingress link (`links/tcN`).
    Tc,
}

impl LinkKind {
    fn prefix(self) -> &'static str {
        match self {
            LinkKind::Xdp => "if",
            LinkKind::Tc => "tc",
        }
    }
}

/// Where the link of `kind` on `ifindex` is pinned. Links are pinned by
/// ifindex: a deleted and recreated interface gets a new index, so a stale
/// pin can never be mistaken for a live attachment.
pub fn link_pin_path(pin_dir: &Path, kind: LinkKind, ifindex: u32) -> std::path::PathBuf {
    pin_dir
        .join("links")
        .join(format!("{}{ifindex}", kind.prefix()))
}

/// A pinned attachment as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    pub kind: LinkKind,
    pub link_id: u32,
    pub prog_id: u32,
    /// The program's name as the kernel keeps it (at most 15 bytes).
    pub prog_name: String,
}

/// The pinned attachments under `pin_dir`, in ifindex order.
pub fn links(pin_dir: &Path) -> Result<Vec<LinkState>> {
    let dir = pin_dir.join("links");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let names = program_names();
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some((kind, ifindex)) = link_ifindex(&path) else {
            continue;
        };
        let link: FdLink = PinnedLink::from_pin(&path)
            .with_context(|| format!("opening {}", path.display()))?
            .into();
        let info = link.info().context("reading link info")?;
        out.push(LinkState {
            ifindex,
            kind,
            link_id: info.id(),
            prog_id: info.program_id(),
            prog_name: names.get(&info.program_id()).cloned().unwrap_or_default(),
        });
    }
    out.sort_by_key(|l| (l.ifindex, l.kind));
    Ok(out)
}

/// The kind and ifindex a link pin (`links/ifN`, `links/tcN`) stands for.
fn link_ifindex(path: &Path) -> Option<(LinkKind, u32)> {
    let name = path.file_name()?.to_str()?;
    [LinkKind::Xdp, LinkKind::Tc].into_iter().find_map(|kind| {
        let n = name.strip_prefix(kind.prefix())?.parse().ok()?;
        Some((kind, n))
    })
}

/// Names of the loaded programs by id.
fn program_names() -> HashMap<u32, String> {
    loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Which of `programs` a kernel program name stands for: the kernel cuts
/// names to 15 bytes, so `peering_underlay` reads `peering_underla`.
pub fn program_for<'a>(kernel_name: &str, programs: &[&'a str]) -> Option<&'a str> {
    if kernel_name.is_empty() {
        return None;
    }
    programs
        .iter()
        .copied()
        .find(|p| p.starts_with(kernel_name))
}

/// Switches the pinned link at `pin` to `prog` unless it already runs it.
/// Returns true when the link was switched.
pub fn switch_link(prog: &mut Xdp, pin: &Path) -> Result<bool> {
    let want = prog.info().context("reading program info")?.id();
    let Some((link, running)) = stale_link(pin, want)? else {
        return Ok(false);
    };
    let link = XdpLink::try_from(link).map_err(|e| anyhow!("{}: {e}", pin.display()))?;
    let id = prog
        .attach_to_link(link)
        .with_context(|| format!("BPF_LINK_UPDATE on {}", pin.display()))?;
    // The pin keeps the link; our handle on it only closes a descriptor.
    drop(prog.take_link(id)?);
    replaced(pin, running, want);
    Ok(true)
}

/// The pinned link at `pin` and the program it runs, unless that is
/// already `want`.
fn stale_link(pin: &Path, want: u32) -> Result<Option<(FdLink, u32)>> {
    let link: FdLink = PinnedLink::from_pin(pin)
        .with_context(|| format!("opening {}", pin.display()))?
        .into();
    let running = link.info().context("reading link info")?.program_id();
    Ok((running != want).then_some((link, running)))
}

fn replaced(pin: &Path, running: u32, want: u32) {
    info!(
        "{}: program {running} replaced by {want} (BPF_LINK_UPDATE)",
        pin.display()
    );
}

/// Switches the pinned tcx link at `pin` to `prog` unless it already runs
/// it. Returns true when the link was switched.
pub fn switch_tc_link(prog: &mut SchedClassifier, pin: &Path) -> Result<bool> {
    let want = prog.info().context("reading program info")?.id();
    let Some((link, running)) = stale_link(pin, want)? else {
        return Ok(false);
    };
    let link =
        SchedClassifierLink::try_from(link).map_err(|e| anyhow!("{}: {e}", pin.display()))?;
    let id = prog
        .attach_to_link(link)
        .with_context(|| format!("BPF_LINK_UPDATE on {}", pin.display()))?;
    // As for XDP: the pin keeps the link, the handle only closes a fd.
    drop(prog.take_link(id)?);
    replaced(pin, running, want);
    Ok(true)
}

/// The names of the pinned programs of this build, with their ids.
pub fn pinned_program_ids(dir: &Path) -> Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with("prog-") {
            continue;
        }
        let info = aya::programs::ProgramInfo::from_pin(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        out.push((name.to_string(), info.id()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_map_back_to_programs() {
        let progs = ["peering_vpc", "peering_underlay"];
        assert_eq!(program_for("peering_vpc", &progs), Some("peering_vpc"));
        assert_eq!(
            program_for("peering_underla", &progs),
            Some("peering_underlay")
        );
        assert_eq!(program_for("", &progs), None);
        assert_eq!(program_for("other", &progs), None);
    }

    #[test]
    fn definitions_compare_what_the_object_decides() {
        let hash = MapDef::new(1, 8, 8, 100, 0);
        assert_eq!(hash, MapDef::new(1, 8, 8, 100, 0));
        assert_ne!(hash, MapDef::new(1, 8, 16, 100, 0), "value size");
        assert_ne!(hash, MapDef::new(1, 8, 8, 200, 0), "capacity");
        assert_ne!(hash, MapDef::new(1, 8, 8, 100, 1), "flags");
        assert_ne!(hash, MapDef::new(2, 8, 8, 100, 0), "type");
        // aya sizes DEVMAP values itself (4 or 8 bytes), and the kernel
        // makes every DEVMAP read-only for programs.
        assert_eq!(
            MapDef::new(BPF_MAP_TYPE_DEVMAP_HASH, 4, 4, 64, 0),
            MapDef::new(BPF_MAP_TYPE_DEVMAP_HASH, 4, 8, 64, BPF_F_RDONLY_PROG)
        );
    }

    #[test]
    fn link_pins_name_their_interface() {
        assert_eq!(
            link_ifindex(Path::new("/x/links/if12")),
            Some((LinkKind::Xdp, 12))
        );
        assert_eq!(
            link_ifindex(Path::new("/x/links/tc7")),
            Some((LinkKind::Tc, 7))
        );
        assert_eq!(link_ifindex(Path::new("/x/links/other")), None);
        assert_eq!(link_ifindex(Path::new("/x/links/tc")), None);
        for (kind, n) in [(LinkKind::Xdp, 3), (LinkKind::Tc, 4)] {
            let pin = link_pin_path(Path::new("/x"), kind, n);
            assert_eq!(link_ifindex(&pin), Some((kind, n)), "{}", pin.display());
        }
    }
}
