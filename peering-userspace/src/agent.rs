//! The region agent's loop: read the control store, compute this region's
//! desired dataplane state, and reconcile the pinned maps with it. This is
//! the IO edge around the pure `dataplane::reconcile` functions.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddrV4,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use log::{info, warn};

use crate::{
    control::{
        clock::{unix_ms, Clock, SystemClock},
        config::Config,
        state::State,
        store::{SqliteStore, Store},
        view::{region_view, RegionView},
    },
    dataplane::{
        reconcile::{self, Desired, Neighbour, Port},
        AttachMode, Dataplane,
    },
    gateway::{PortSlots, Tunnel, TunnelParams, TunnelTable, Update},
    sys,
    tunnel::{counter_floor_from_unix_ms, TunnelConfig},
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
    /// The gateway's underlay address: the tunnel listens there and the
    /// agent registers it in the control store for the other regions.
    /// None: no inter-region tunnel on this gateway.
    pub underlay: Option<SocketAddrV4>,
    /// Where the agent writes its state (tunnel counters).
    pub state_dir: PathBuf,
}

/// File under the state directory holding the tunnel's counters.
pub const TUNNEL_STATS_FILE: &str = "tunnel-stats.json";

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
    let mut tunnel: Option<TunnelLink> = None;
    if cfg.underlay.is_some() {
        std::fs::create_dir_all(&cfg.state_dir)
            .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    }
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
        if let Some(underlay) = cfg.underlay {
            if tunnel.as_ref().is_some_and(|t| !t.tunnel.is_running()) {
                bail!("the tunnel thread stopped");
            }
            if tunnel.is_none() {
                tunnel = TunnelLink::start(cfg, &store, &dp, underlay)?;
            }
        }
        let gateways = match &tunnel {
            Some(_) => gateway_list(&store)?,
            None => Vec::new(),
        };
        let input = Applied::observe(s, &cfg.region, gateways);
        // Dumping the maps costs a syscall per entry: skip it while neither
        // the view nor the kernel's neighbours moved, but still re-check
        // every RELOAD_EVERY to repair drift.
        let unchanged = applied
            .as_ref()
            .is_some_and(|a| a.same_input(&input) && a.at.elapsed() < RELOAD_EVERY);
        if !unchanged {
            match reconcile_once(cfg, &mut dp, &input, &mut attached) {
                Ok(desired) => {
                    if let Some(t) = tunnel.as_mut() {
                        t.follow(&input, &desired)?;
                    }
                    applied = Some(input);
                }
                Err(e) => warn!("reconcile: {e:#}"),
            }
        }
        if let Some(t) = tunnel.as_mut() {
            t.sync_keys(&store)?;
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
    /// Registered gateways: (region, id, endpoint).
    gateways: Vec<(String, u32, SocketAddrV4)>,
    at: Instant,
}

impl Applied {
    fn observe(state: &State, region: &str, gateways: Vec<(String, u32, SocketAddrV4)>) -> Self {
        let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        Self {
            view: region_view(state, region, SystemClock.now()),
            kernel: reconcile::parse_arp(&arp, &|dev| sys::ifindex(dev).ok()),
            gateways,
            at: Instant::now(),
        }
    }

    fn same_input(&self, other: &Applied) -> bool {
        self.view == other.view && self.kernel == other.kernel && self.gateways == other.gateways
    }
}

fn gateway_list(store: &SqliteStore) -> Result<Vec<(String, u32, SocketAddrV4)>> {
    Ok(store
        .gateways()?
        .into_iter()
        .map(|g| (g.region, g.gateway_id, g.endpoint))
        .collect())
}

/// The agent's side of the tunnel thread: what it last sent, so only
/// changes cross the channel.
struct TunnelLink {
    tunnel: Tunnel,
    table: TunnelTable,
    ports: BTreeMap<u32, PortSlots>,
    /// Newest key epoch handed over.
    epoch: u32,
}

impl TunnelLink {
    /// Registers this gateway and starts the tunnel, once peering-controld
    /// has written the tunnel settings (None until then).
    fn start(
        cfg: &AgentConfig,
        store: &SqliteStore,
        dp: &Dataplane,
        underlay: SocketAddrV4,
    ) -> Result<Option<Self>> {
        let Some(settings) = store.tunnel_settings()? else {
            warn!("no tunnel settings in the control store yet: is peering-controld running?");
            return Ok(None);
        };
        let now = unix_ms();
        let gateway_id = store.register_gateway(&cfg.region, underlay, now)?;
        let config = TunnelConfig::new(
            gateway_id,
            &settings.policy,
            counter_floor_from_unix_ms(now),
        );
        let tunnel = Tunnel::spawn(TunnelParams {
            config,
            bind: underlay,
            xsk_map: dp.xsk_map()?,
            stats_path: cfg.state_dir.join(TUNNEL_STATS_FILE),
        })?;
        info!(
            "tunnel up: gateway {gateway_id} of {} on {underlay}, keys rotated every {} ms",
            cfg.region,
            settings.policy.interval()
        );
        Ok(Some(TunnelLink {
            tunnel,
            table: TunnelTable::default(),
            ports: BTreeMap::new(),
            epoch: 0,
        }))
    }

    /// Sends the tunnel a new table and port set when they changed.
    fn follow(&mut self, input: &Applied, desired: &Desired) -> Result<()> {
        if desired.xsk_slots != self.ports {
            self.ports = desired.xsk_slots.clone();
            self.tunnel.update(Update::Ports(self.ports.clone()))?;
        }
        let table = TunnelTable::build(&input.view, desired, &input.gateways);
        if table != self.table {
            self.table = table.clone();
            self.tunnel.update(Update::Table(Box::new(table)))?;
        }
        Ok(())
    }

    /// Hands over keys the control store published since the last call.
    fn sync_keys(&mut self, store: &SqliteStore) -> Result<()> {
        for key in store.tunnel_keys()? {
            if key.epoch > self.epoch {
                self.epoch = key.epoch;
                self.tunnel.update(Update::Key(key))?;
            }
        }
        if self.tunnel.take_rotation_request() {
            store.request_rotation()?;
        }
        Ok(())
    }
}

fn port(name: &str) -> Option<Port> {
    let ifindex = sys::ifindex(name).ok()?;
    let mac = sys::mac(name).ok()?;
    let rx_queues = sys::rx_queues(name);
    Some(Port {
        ifindex,
        mac,
        rx_queues,
    })
}

fn reconcile_once(
    cfg: &AgentConfig,
    dp: &mut Dataplane,
    input: &Applied,
    attached: &mut BTreeSet<String>,
) -> Result<Desired> {
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
    Ok(desired)
}
