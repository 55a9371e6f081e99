//! The region agent's loop: read the control store, compute this region's
//! desired dataplane state, and reconcile the pinned maps with it. This is
//! the IO edge around the pure `dataplane::reconcile` functions.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use log::{info, warn};

use crate::{
    control::{
        clock::{Clock, SystemClock},
        config::Config,
        state::State,
        store::{SqliteStore, Store},
        view::{region_view, RegionView},
    },
    dataplane::{
        reconcile::{self, Neighbour, Port},
        AttachMode, Dataplane,
    },
    sys,
};

pub struct AgentConfig {
    pub region: String,
    pub db: PathBuf,
    pub pin_dir: PathBuf,
    /// How often the store and the kernel's neighbour table are polled.
    pub interval: Duration,
    pub attach_mode: AttachMode,
    /// Reconcile once and return.
    pub once: bool,
}

/// A state older than this is re-read even without a new revision: peering
/// expiry depends on time alone.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

pub fn run(cfg: &AgentConfig) -> Result<()> {
    if !cfg.db.exists() {
        bail!(
            "no control store at {}: start peering-controld with --db {} first",
            cfg.db.display(),
            cfg.db.display()
        );
    }
    let store = SqliteStore::open(&cfg.db, Config::default())
        .with_context(|| format!("opening {}", cfg.db.display()))?;
    let mut dp = Dataplane::load(Some(&cfg.pin_dir))?;
    let mut attached = BTreeSet::new();
    let mut state: Option<(State, Instant)> = None;
    let mut applied: Option<Applied> = None;
    info!(
        "agent for {} reconciling from {}",
        cfg.region,
        cfg.db.display()
    );
    loop {
        let rev = store.revision()?;
        let fresh =
            matches!(&state, Some((s, at)) if s.revision == rev && at.elapsed() < RELOAD_EVERY);
        if !fresh {
            state = Some((store.load()?, Instant::now()));
        }
        let (s, _) = state.as_ref().expect("loaded above");
        let input = Applied::observe(s, &cfg.region);
        // Dumping the maps costs a syscall per entry: skip it while neither
        // the view nor the kernel's neighbours moved, but still re-check
        // every RELOAD_EVERY to repair drift.
        let unchanged = applied
            .as_ref()
            .is_some_and(|a| a.same_input(&input) && a.at.elapsed() < RELOAD_EVERY);
        if !unchanged {
            match reconcile_once(cfg, &mut dp, &input, &mut attached) {
                Ok(()) => applied = Some(input),
                Err(e) => warn!("reconcile: {e:#}"),
            }
        }
        if cfg.once {
            return Ok(());
        }
        std::thread::sleep(cfg.interval);
    }
}

/// What a reconciliation was computed from.
struct Applied {
    view: RegionView,
    kernel: Vec<Neighbour>,
    at: Instant,
}

impl Applied {
    fn observe(state: &State, region: &str) -> Self {
        let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        Self {
            view: region_view(state, region, SystemClock.now()),
            kernel: reconcile::parse_arp(&arp, &|dev| sys::ifindex(dev).ok()),
            at: Instant::now(),
        }
    }

    fn same_input(&self, other: &Applied) -> bool {
        self.view == other.view && self.kernel == other.kernel
    }
}

fn port(name: &str) -> Option<Port> {
    let ifindex = sys::ifindex(name).ok()?;
    let mac = sys::mac(name).ok()?;
    Some(Port { ifindex, mac })
}

fn reconcile_once(
    cfg: &AgentConfig,
    dp: &mut Dataplane,
    input: &Applied,
    attached: &mut BTreeSet<String>,
) -> Result<()> {
    let view = &input.view;
    let actual = dp.maps.snapshot()?;
    let (desired, warnings) = reconcile::desired(view, &port, &input.kernel, &actual);
    for w in warnings {
        warn!("{w}");
    }
    for p in desired
        .ports
        .difference(attached)
        .cloned()
        .collect::<Vec<_>>()
    {
        match dp.attach(&p, cfg.attach_mode) {
            Ok(how) => {
                info!("{p}: {how:?}");
                attached.insert(p);
            }
            Err(e) => warn!("{p}: attach failed: {e:#}"),
        }
    }
    let plan = reconcile::plan(&desired, &actual);
    if !plan.is_empty() {
        reconcile::apply(&mut dp.maps, &plan)?;
        info!(
            "revision {}: applied {} dataplane changes",
            view.revision,
            plan.len()
        );
    }
    Ok(())
}
