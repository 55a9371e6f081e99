//! The dataplane: loading the XDP object, attaching it, and the typed API
//! over its maps. All writes to dataplane maps go through this module.
//!
//! With a pin directory, maps, the program and every attachment (a BPF
//! link) are pinned on bpffs, so forwarding survives the agent: a restarted
//! agent finds the pins and reuses them instead of replacing them. A new
//! build switches the pinned links to its programs in place (see
//! [`upgrade`]).

pub mod fib;
pub mod incremental;
mod maps;
pub mod port_path;
pub mod reconcile;
mod route_slots;
pub mod sg;
pub mod sg_eval;
mod sg_maps;
pub mod tun_entry;
pub mod upgrade;

pub use maps::{iface_info, Maps, RouteTarget, Snapshot};
pub use port_path::{PortPath, PortPathChoice};
pub use sg_maps::SgMaps;
pub use upgrade::LinkKind;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _, Result};
use aya::{
    maps::{Map, MapData, RingBuf},
    programs::{
        links::{FdLink, LinkOrder, PinnedLink},
        tc::{SchedClassifier, TcAttachOptions, TcAttachType},
        xdp::XdpLinkId,
        ProgramInfo, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use log::{info, warn};
use peering_common::{maps as names, PROG_TUN_ENTRY, PROG_UNDERLAY, PROG_VPC, PROG_VPC_TC};

use crate::{sys, EBPF_OBJECT};

/// The XDP programs an agent loads: one for VPC-facing interfaces, one for
/// the underlay, one for the tunnel entry veth (see [`tun_entry`]).
const PROGRAMS: [&str; 3] = [PROG_VPC, PROG_UNDERLAY, PROG_TUN_ENTRY];

/// Where pins live unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/peering";

/// How to attach to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    Auto,
    Native,
    Generic,
}

/// What `attach` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
    /// A pinned attachment already existed and runs this program: kept.
    Existing,
    /// A pinned attachment ran another program (an earlier build's, or an
    /// earlier load): switched to this one atomically (BPF_LINK_UPDATE).
    Upgraded,
    /// Attached at TC ingress (a tcx link).
    Tc,
}

pub struct Dataplane {
    /// Kept for unpinned (test) use: owns the program and its links.
    ebpf: Option<Ebpf>,
    /// The pinned programs by name, when running with a pin directory.
    pinned: Vec<(&'static str, Xdp)>,
    /// The pinned TC program for VPC ports ([`PROG_VPC_TC`]).
    pinned_tc: Option<SchedClassifier>,
    pin_dir: Option<PathBuf>,
    pub maps: Maps,
    /// Maps recreated at load because their definition changed, not yet
    /// refilled: no link may switch to this build's programs meanwhile.
    recreated: Vec<&'static str>,
}

impl Dataplane {
    /// A handle on the AF_XDP socket map for the tunnel thread; needs a
    /// pin directory (the agent always has one).
    pub fn xsk_map(&self) -> Result<aya::maps::XskMap<aya::maps::MapData>> {
        let dir = self
            .pin_dir
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the tunnel needs a pinned dataplane"))?;
        Maps::pinned_xsks(&dir.join("maps"))
    }

    /// Loads the object. With `pin_dir`, maps are created and pinned there on
    /// first use and reused afterwards, and the program is pinned under a
    /// name derived from the object, so an agent built from the same object
    /// reuses it.
    pub fn load(pin_dir: Option<&Path>) -> Result<Self> {
        Self::load_with(pin_dir, false)
    }

    /// The ring buffer in which the VPC program asks for hosts to be
    /// resolved (`NeighKey` records; see [`peering_common::maps::RESOLVE`]).
    /// Unpinned, it can be taken once.
    pub fn resolve_requests(&mut self) -> Result<RingBuf<MapData>> {
        let map = match (&self.pin_dir, self.ebpf.as_mut()) {
            (Some(dir), _) => {
                let path = dir.join("maps").join(names::RESOLVE);
                let data = MapData::from_pin(&path)
                    .with_context(|| format!("opening pinned map {}", path.display()))?;
                Map::from_map_data(data)?
            }
            (None, Some(ebpf)) => ebpf
                .take_map(names::RESOLVE)
                .ok_or_else(|| anyhow!("map {} is taken or missing", names::RESOLVE))?,
            (None, None) => bail!("no dataplane loaded"),
        };
        RingBuf::try_from(map).with_context(|| format!("map {}", names::RESOLVE))
    }

    /// Like [`Dataplane::load`], but loads fresh instances of this build's
    /// programs even when they are pinned already (the earlier instances
    /// stay loaded while a link runs them). Attaching, or
    /// [`Dataplane::upgrade_links`], then switches links to the new ones.
    pub fn reload(pin_dir: &Path) -> Result<Self> {
        Self::load_with(Some(pin_dir), true)
    }

    fn load_with(pin_dir: Option<&Path>, fresh_programs: bool) -> Result<Self> {
        sys::require_root()?;
        if EBPF_OBJECT.is_empty() {
            bail!(
                "this build embeds no XDP object (built with AYA_BUILD_SKIP=1): rebuild without it"
            );
        }
        let Some(dir) = pin_dir else {
            return Self::load_unpinned();
        };
        sys::require_bpffs(dir)?;
        if !fresh_programs {
            if let Some(dp) = Self::reopen_pinned(dir)? {
                return Ok(dp);
            }
        }
        let map_dir = dir.join("maps");
        fs::create_dir_all(&map_dir)
            .with_context(|| format!("creating pin directory {}", map_dir.display()))?;
        // Every map is pinned by name: an existing pin is reused, so state
        // programmed by an earlier agent stays in force, unless this
        // object defines the map differently (then it starts afresh).
        let defs = upgrade::object_maps(EBPF_OBJECT)?;
        let pins: Vec<(&str, PathBuf)> =
            maps::NAMES.iter().map(|n| (*n, map_dir.join(n))).collect();
        let mut loader = EbpfLoader::new();
        let mut recreated = Vec::new();
        // A map this build adds (e.g. FIB) starts empty under pins of an
        // earlier build: it waits to be filled like a recreated one.
        let upgrading = pins.iter().any(|(_, p)| p.exists());
        for (name, path) in &pins {
            let added = upgrading && !path.exists();
            if upgrade::retire_incompatible_map(name, path, defs.get(*name))? || added {
                recreated.push(*name);
            }
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the XDP object")?;
        // A pinned program of this build would still use the retired maps.
        let fresh_programs = fresh_programs || !recreated.is_empty();
        let tag = object_tag();
        let mut pinned = Vec::new();
        for name in PROGRAMS {
            let prog_pin = dir.join(format!("prog-{name}-{tag}"));
            if fresh_programs && prog_pin.exists() {
                fs::remove_file(&prog_pin)
                    .with_context(|| format!("unpinning {}", prog_pin.display()))?;
            }
            if !prog_pin.exists() {
                let prog: &mut Xdp = program_mut(&mut ebpf, name)?;
                prog.load()
                    .with_context(|| format!("the kernel refused {name}"))?;
                prog.pin(&prog_pin)
                    .with_context(|| format!("pinning {}", prog_pin.display()))?;
                info!("loaded and pinned {}", prog_pin.display());
            }
            upgrade::remove_stale_programs(dir, name, &prog_pin)?;
            let prog = Xdp::from_pin(&prog_pin, aya_obj::programs::XdpAttachType::Interface)
                .with_context(|| format!("opening pinned program {}", prog_pin.display()))?;
            pinned.push((name, prog));
        }
        let tc_pin = dir.join(format!("prog-{PROG_VPC_TC}-{tag}"));
        if fresh_programs && tc_pin.exists() {
            fs::remove_file(&tc_pin).with_context(|| format!("unpinning {}", tc_pin.display()))?;
        }
        if !tc_pin.exists() {
            let prog = classifier_mut(&mut ebpf, PROG_VPC_TC)?;
            prog.load()
                .with_context(|| format!("the kernel refused {PROG_VPC_TC}"))?;
            prog.pin(&tc_pin)
                .with_context(|| format!("pinning {}", tc_pin.display()))?;
            info!("loaded and pinned {}", tc_pin.display());
        }
        upgrade::remove_stale_programs(dir, PROG_VPC_TC, &tc_pin)?;
        let tc = SchedClassifier::from_pin(&tc_pin)
            .with_context(|| format!("opening pinned program {}", tc_pin.display()))?;
        let maps = Maps::take(&mut ebpf)?;
        Ok(Self {
            ebpf: None,
            pinned,
            pinned_tc: Some(tc),
            pin_dir: Some(dir.to_path_buf()),
            maps,
            recreated,
        })
    }

    /// A restart's fast path: when this object's programs and every map
    /// are pinned already, open the pins and leave the object alone.
    /// Parsing it (ELF, BTF, relocations) is most of an agent's start-up
    /// (150–650 ms in a debug build), and while the agent starts, traffic
    /// between regions waits. The program pins carry the object's tag, so
    /// they were loaded from this same object, against these map pins.
    fn reopen_pinned(dir: &Path) -> Result<Option<Self>> {
        let tag = object_tag();
        let map_dir = dir.join("maps");
        let progs: Vec<(&'static str, PathBuf)> = PROGRAMS
            .iter()
            .map(|name| (*name, dir.join(format!("prog-{name}-{tag}"))))
            .collect();
        let tc_pin = dir.join(format!("prog-{PROG_VPC_TC}-{tag}"));
        let complete = progs.iter().all(|(_, pin)| pin.exists())
            && tc_pin.exists()
            && maps::NAMES.iter().all(|name| map_dir.join(name).exists());
        if !complete {
            return Ok(None);
        }
        let mut pinned = Vec::new();
        let mut infos = Vec::new();
        for (name, pin) in progs {
            let prog = Xdp::from_pin(&pin, aya_obj::programs::XdpAttachType::Interface)
                .with_context(|| format!("opening pinned program {}", pin.display()))?;
            infos.push((name, prog.info()?));
            pinned.push((name, prog));
        }
        let tc = SchedClassifier::from_pin(&tc_pin)
            .with_context(|| format!("opening pinned program {}", tc_pin.display()))?;
        infos.push((PROG_VPC_TC, tc.info()?));
        if !programs_use_pinned_maps(&infos, &map_dir)? {
            info!("pinned programs use maps other than the pinned ones: loading the object");
            return Ok(None);
        }
        if !record_maps_match(&map_dir)? {
            info!("a pinned record map has another definition: loading the object");
            return Ok(None);
        }
        Ok(Some(Self {
            ebpf: None,
            pinned,
            pinned_tc: Some(tc),
            pin_dir: Some(dir.to_path_buf()),
            maps: Maps::from_pins(&map_dir)?,
            recreated: Vec::new(),
        }))
    }

    fn load_unpinned() -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .context("loading the XDP object")?;
        for name in [PROG_VPC, PROG_UNDERLAY, PROG_TUN_ENTRY, "peering_drop"] {
            program_mut(&mut ebpf, name)?
                .load()
                .with_context(|| format!("the kernel refused {name}"))?;
        }
        classifier_mut(&mut ebpf, PROG_VPC_TC)?
            .load()
            .with_context(|| format!("the kernel refused {PROG_VPC_TC}"))?;
        let maps = Maps::take(&mut ebpf)?;
        Ok(Self {
            ebpf: Some(ebpf),
            pinned: Vec::new(),
            pinned_tc: None,
            pin_dir: None,
            maps,
            recreated: Vec::new(),
        })
    }

    /// A map of an unpinned (test) dataplane by name, for maps the typed
    /// API does not cover (e.g. resetting a rate limit's buckets).
    pub fn object_map_mut(&mut self, name: &str) -> Result<&mut Map> {
        self.ebpf
            .as_mut()
            .and_then(|e| e.map_mut(name))
            .ok_or_else(|| anyhow!("no unpinned map {name}"))
    }

    /// Says the maps hold the dataplane's state again after a load that
    /// recreated some (see [`upgrade`]): links may now switch programs.
    pub fn maps_refilled(&mut self) {
        self.recreated.clear();
    }

    /// True while recreated maps wait to be refilled.
    pub fn refill_pending(&self) -> bool {
        !self.recreated.is_empty()
    }

    /// Fails while recreated maps wait to be refilled.
    fn may_switch(&self) -> Result<()> {
        if self.recreated.is_empty() {
            return Ok(());
        }
        bail!(
            "maps {} changed definition and were recreated empty: attachments keep the \
             earlier program until the agent (peering-agent run) has refilled them",
            self.recreated.join(", ")
        )
    }

    /// Opens the pinned maps of a running dataplane without loading anything.
    pub fn open_pinned(pin_dir: &Path) -> Result<Maps> {
        sys::require_root()?;
        sys::require_bpffs(pin_dir)?;
        Maps::from_pins(&pin_dir.join("maps"))
    }

    /// The XDP program for VPC-facing interfaces.
    pub fn program(&self) -> Result<&Xdp> {
        self.program_named(PROG_VPC)
    }

    /// A program by name (`peering_drop` exists for benchmarks).
    pub fn program_named(&self, name: &str) -> Result<&Xdp> {
        if let Some((_, p)) = self.pinned.iter().find(|(n, _)| *n == name) {
            return Ok(p);
        }
        self.loaded(name)
    }

    /// A TC (sched_cls) program of an unpinned (test) dataplane by name.
    pub fn classifier_named(&self, name: &str) -> Result<&SchedClassifier> {
        self.loaded(name)
    }

    /// A program of the loaded (unpinned) object, as its type `T`.
    fn loaded<'a, T>(&'a self, name: &str) -> Result<&'a T>
    where
        &'a T: TryFrom<&'a aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        let ebpf = self
            .ebpf
            .as_ref()
            .ok_or_else(|| anyhow!("{name} is not loaded"))?;
        let prog = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("no program {name}"))?;
        prog.try_into().map_err(|e| anyhow!("{name}: {e}"))
    }

    /// A program by name, to attach it elsewhere (benchmarks).
    pub fn program_named_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        self.program_mut(name)
    }

    /// Attaches the VPC program to `iface`. With a pin directory the
    /// attachment is a pinned BPF link that outlives this process;
    /// attaching an interface that already has one keeps it, switching it
    /// to this program when it runs another (an earlier build's).
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attached> {
        self.attach_program(PROG_VPC, iface, mode)
    }

    /// Attaches the underlay program to `iface`, the same way.
    pub fn attach_underlay(&mut self, iface: &str, mode: AttachMode) -> Result<Attached> {
        self.attach_program(PROG_UNDERLAY, iface, mode)
    }

    /// Attaches the tunnel entry program to `iface` (the entry veth's
    /// receiving end), the same way.
    pub fn attach_tun_entry(&mut self, iface: &str, mode: AttachMode) -> Result<Attached> {
        self.attach_program(PROG_TUN_ENTRY, iface, mode)
    }

    /// Attaches a VPC port on `path`: the XDP program (in `mode`) or the
    /// TC program. An attachment of the other path the port had is removed
    /// once the new one is in place: XDP runs before TC, so between the
    /// two steps one of them forwards.
    pub fn attach_port(
        &mut self,
        iface: &str,
        path: PortPath,
        mode: AttachMode,
    ) -> Result<Attached> {
        let ifindex = sys::ifindex(iface)?;
        if port_path::is_veth(sys::driver(iface).ok().as_deref()) {
            // A veth drops what XDP redirects into it unless NAPI (GRO)
            // is on at the receiving end; the generator and the XDP path
            // both redirect into ports.
            if let Err(e) = sys::set_offload(iface, sys::Offload::Gro, true) {
                warn!("{iface}: turning GRO on: {e:#}");
            }
        }
        let (how, other) = match path {
            PortPath::Xdp => (self.attach(iface, mode)?, LinkKind::Tc),
            PortPath::Tc => (self.attach_tc(iface)?, LinkKind::Xdp),
        };
        if let Some(dir) = &self.pin_dir {
            let pin = upgrade::link_pin_path(dir, other, ifindex);
            if pin.exists() {
                fs::remove_file(&pin).with_context(|| format!("unpinning {}", pin.display()))?;
                info!("{iface}: the {other:?} attachment removed (now on {path})");
            }
        }
        Ok(how)
    }

    /// Attaches the TC program to `iface`'s ingress with a tcx link,
    /// pinned (`links/tcN`) like the XDP links, so restarts keep it and
    /// [`Dataplane::upgrade_links`] switches it in place.
    pub fn attach_tc(&mut self, iface: &str) -> Result<Attached> {
        let ifindex = sys::ifindex(iface)?;
        let link_pin = self
            .pin_dir
            .as_deref()
            .map(|d| upgrade::link_pin_path(d, LinkKind::Tc, ifindex));
        if let Some(pin) = &link_pin {
            if pin.exists() {
                self.may_switch()?;
                let prog = self.tc_program_mut()?;
                return Ok(match upgrade::switch_tc_link(prog, pin)? {
                    true => Attached::Upgraded,
                    false => Attached::Existing,
                });
            }
        }
        let prog = self.tc_program_mut()?;
        let id = prog
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .with_context(|| format!("attaching {PROG_VPC_TC} to {iface} (tcx ingress)"))?;
        if let Some(pin) = link_pin {
            pin_link(prog.take_link(id)?, iface, &pin)?;
        }
        Ok(Attached::Tc)
    }

    fn attach_program(&mut self, name: &str, iface: &str, mode: AttachMode) -> Result<Attached> {
        let ifindex = sys::ifindex(iface)?;
        let link_pin = self.link_pin(ifindex);
        if let Some(pin) = &link_pin {
            if pin.exists() {
                self.may_switch()?;
                let prog = self.program_mut(name)?;
                return Ok(match upgrade::switch_link(prog, pin)? {
                    true => Attached::Upgraded,
                    false => Attached::Existing,
                });
            }
        }
        let prog = self.program_mut(name)?;
        let (id, how) = attach_with_fallback(prog, iface, ifindex, mode)?;
        if let Some(pin) = link_pin {
            pin_link(prog.take_link(id)?, iface, &pin)?;
        }
        Ok(how)
    }

    /// Switches every pinned attachment to this build's program of the same
    /// kind (VPC or underlay), each atomically. Returns, per interface
    /// index, whether it was switched; a link whose program cannot be told
    /// is left alone with a warning.
    pub fn upgrade_links(&mut self) -> Result<Vec<(u32, Attached)>> {
        let Some(dir) = self.pin_dir.clone() else {
            return Ok(Vec::new());
        };
        self.may_switch()?;
        let mut out = Vec::new();
        for link in upgrade::links(&dir)? {
            if link.kind == LinkKind::Tc {
                let pin = upgrade::link_pin_path(&dir, LinkKind::Tc, link.ifindex);
                if upgrade::program_for(&link.prog_name, &[PROG_VPC_TC]).is_none() {
                    warn!(
                        "tcx link on ifindex {} runs program {} ({:?}), not ours: left alone",
                        link.ifindex, link.prog_id, link.prog_name
                    );
                    continue;
                }
                let how = match upgrade::switch_tc_link(self.tc_program_mut()?, &pin)? {
                    true => Attached::Upgraded,
                    false => Attached::Existing,
                };
                out.push((link.ifindex, how));
                continue;
            }
            let Some(name) = upgrade::program_for(&link.prog_name, &PROGRAMS) else {
                warn!(
                    "link on ifindex {} runs program {} ({:?}), not one of ours: left alone",
                    link.ifindex, link.prog_id, link.prog_name
                );
                continue;
            };
            let pin = upgrade::link_pin_path(&dir, LinkKind::Xdp, link.ifindex);
            let prog = self.program_mut(name)?;
            let how = match upgrade::switch_link(prog, &pin)? {
                true => Attached::Upgraded,
                false => Attached::Existing,
            };
            out.push((link.ifindex, how));
        }
        Ok(out)
    }

    /// Removes the pinned attachments (XDP and TC) of `iface`, which
    /// detaches the programs.
    pub fn detach(pin_dir: &Path, iface: &str) -> Result<()> {
        sys::require_root()?;
        let ifindex = sys::ifindex(iface)?;
        let mut found = false;
        for kind in [LinkKind::Xdp, LinkKind::Tc] {
            let pin = upgrade::link_pin_path(pin_dir, kind, ifindex);
            if !pin.exists() {
                continue;
            }
            let link = PinnedLink::from_pin(&pin)
                .map_err(|e| anyhow!("{iface}: opening {} ({e})", pin.display()))?;
            link.unpin().context("unpinning link")?;
            found = true;
        }
        if !found {
            bail!("{iface} has no peering attachment");
        }
        let tc_left = upgrade::links(pin_dir)?
            .iter()
            .any(|l| l.kind == LinkKind::Tc);
        if !tc_left {
            tun_entry::remove(pin_dir)?;
        }
        Ok(())
    }

    /// The path each attached port of `pin_dir` takes, by ifindex: TC for
    /// a tcx link, XDP for an XDP link running the VPC program (the
    /// underlay and the entry veth are not ports).
    pub fn port_paths(pin_dir: &Path) -> Result<Vec<(u32, PortPath)>> {
        let mut out = Vec::new();
        for link in upgrade::links(pin_dir)? {
            let path = match link.kind {
                LinkKind::Tc => PortPath::Tc,
                LinkKind::Xdp if link.prog_name == PROG_VPC => PortPath::Xdp,
                LinkKind::Xdp => continue,
            };
            out.push((link.ifindex, path));
        }
        Ok(out)
    }

    fn tc_program_mut(&mut self) -> Result<&mut SchedClassifier> {
        if let Some(p) = self.pinned_tc.as_mut() {
            return Ok(p);
        }
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or_else(|| anyhow!("{PROG_VPC_TC} is not loaded"))?;
        classifier_mut(ebpf, PROG_VPC_TC)
    }

    fn link_pin(&self, ifindex: u32) -> Option<PathBuf> {
        self.pin_dir
            .as_deref()
            .map(|d| upgrade::link_pin_path(d, LinkKind::Xdp, ifindex))
    }

    fn program_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        if let Some((_, p)) = self.pinned.iter_mut().find(|(n, _)| *n == name) {
            return Ok(p);
        }
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or_else(|| anyhow!("{name} is not loaded"))?;
        program_mut(ebpf, name)
    }
}

/// True when the pinned programs use the pinned maps: every map a program
/// uses that bears a pinned map's name is that pinned map (nothing replaced
/// a pin since the programs were loaded against them). Maps of the
/// program's own (`.rodata`, rate-limit state) are not pinned and not
/// checked.
fn programs_use_pinned_maps(
    programs: &[(&'static str, ProgramInfo)],
    map_dir: &Path,
) -> Result<bool> {
    let mut pinned = std::collections::BTreeMap::new();
    for name in maps::NAMES {
        let pin = map_dir.join(name);
        let info = aya::maps::MapInfo::from_pin(&pin)
            .with_context(|| format!("reading {}", pin.display()))?;
        pinned.insert(*name, info.id());
    }
    for (name, info) in programs {
        let used = info
            .map_ids()
            .with_context(|| format!("reading the maps of program {name}"))?;
        // A kernel that cannot list them gives no assurance.
        let Some(used) = used else { return Ok(false) };
        for id in used {
            let info = aya::maps::MapInfo::from_id(id)
                .with_context(|| format!("reading map {id} of program {name}"))?;
            let stale = info
                .name_as_str()
                .and_then(|n| pinned.get(n))
                .is_some_and(|pinned_id| *pinned_id != id);
            if stale {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// True when the pinned record maps (ROUTES, SUBNETS, VPC_CIDRS: what the
/// FIB is compiled from, read by userspace only) have this build's
/// definitions. No program uses them, so [`programs_use_pinned_maps`]
/// cannot vouch for them; their shape is checked against the contract's
/// constants instead (an LPM trie over a 4-byte prefix length and a
/// [`peering_common::ScopedAddr`]).
fn record_maps_match(map_dir: &Path) -> Result<bool> {
    use peering_common::{
        EgressPort, RouteValue, ScopedAddr, MAX_ROUTES, MAX_SUBNETS, MAX_VPC_CIDRS,
    };
    use std::mem::size_of;
    const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
    let key = (4 + size_of::<ScopedAddr>()) as u32;
    let want = [
        (names::ROUTES, size_of::<RouteValue>(), MAX_ROUTES),
        (names::SUBNETS, size_of::<EgressPort>(), MAX_SUBNETS),
        (names::VPC_CIDRS, size_of::<u32>(), MAX_VPC_CIDRS),
    ];
    for (name, value, max_entries) in want {
        let pin = map_dir.join(name);
        let info = aya::maps::MapInfo::from_pin(&pin)
            .with_context(|| format!("reading {}", pin.display()))?;
        let map_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
        let same = map_type == BPF_MAP_TYPE_LPM_TRIE
            && info.key_size() == key
            && info.value_size() == value as u32
            && info.max_entries() == max_entries;
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Pins a new attachment's link at `pin`, so that it outlives the agent.
fn pin_link<L>(link: L, iface: &str, pin: &Path) -> Result<()>
where
    L: TryInto<FdLink>,
    L::Error: std::fmt::Display,
{
    fs::create_dir_all(pin.parent().expect("link pins live in a directory"))?;
    let fd: FdLink = link
        .try_into()
        .map_err(|e| anyhow!("{iface}: attachment is not a BPF link: {e}"))?;
    fd.pin(pin)
        .with_context(|| format!("pinning link {}", pin.display()))?;
    Ok(())
}

fn attach_with_fallback(
    prog: &mut Xdp,
    iface: &str,
    ifindex: u32,
    mode: AttachMode,
) -> Result<(XdpLinkId, Attached)> {
    let generic = |prog: &mut Xdp| {
        prog.attach_to_if_index(ifindex, XdpMode::Skb)
            .with_context(|| format!("attaching to {iface} in generic mode"))
    };
    match mode {
        AttachMode::Native => {
            let id = prog
                .attach_to_if_index(ifindex, XdpMode::Driver)
                .with_context(|| format!("attaching to {iface} in native mode"))?;
            Ok((id, Attached::Native))
        }
        AttachMode::Generic => Ok((generic(prog)?, Attached::Generic)),
        AttachMode::Auto => match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(id) => Ok((id, Attached::Native)),
            Err(e) => {
                warn!("{iface}: native XDP failed ({e}); falling back to generic mode");
                Ok((generic(prog)?, Attached::Generic))
            }
        },
    }
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the object has no program {name}"))?;
    prog.try_into().map_err(|e| anyhow!("{name}: {e}"))
}

fn classifier_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the object has no program {name}"))?;
    prog.try_into().map_err(|e| anyhow!("{name}: {e}"))
}

/// A short tag of the embedded object, so a rebuilt agent pins (and
/// attaches) its own program rather than reusing an older one.
fn object_tag() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    EBPF_OBJECT.hash(&mut h);
    format!("{:016x}", h.finish())
}
