//! The region agent's loop: read the control store, compute this region's
//! desired dataplane state, and reconcile the pinned maps with it. This is
//! the IO edge around the pure `dataplane::reconcile` functions.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4},
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
        AttachMode, Attached, Dataplane,
    },
    gateway::{
        nexthop::{Resolution, Resolver},
        Link, PortSlots, Tunnel, TunnelParams, TunnelTable, UnderlayIo, UnderlayPort, Update,
    },
    hosts::Hosts,
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
    pub underlay_io: UnderlayIo,
    /// Where the agent writes its state (tunnel counters).
    pub state_dir: PathBuf,
}

/// File under the state directory holding the tunnel's counters.
pub const TUNNEL_STATS_FILE: &str = "tunnel-stats.json";

/// A state older than this is re-read even without a new revision: peering
/// expiry depends on time alone.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

pub fn run(cfg: &AgentConfig) -> Result<()> {
    let mut startup = Startup::new();
    if !cfg.db.exists() {
        bail!(
            "no control store at {}: start peering-controld with --db {} first",
            cfg.db.display(),
            cfg.db.display()
        );
    }
    let store = SqliteStore::open(&cfg.db, Config::default())
        .with_context(|| format!("opening {}", cfg.db.display()))?;
    startup.step("store opened");
    let mut dp = Dataplane::load(Some(&cfg.pin_dir))?;
    startup.step("dataplane loaded");
    let mut hosts = Hosts::new(dp.resolve_requests()?)?;
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
            startup.step("state loaded");
        }
        let (s, _) = state.as_ref().expect("loaded above");
        if let Some(underlay) = cfg.underlay {
            if tunnel.as_ref().is_some_and(|t| !t.tunnel.is_running()) {
                bail!("the tunnel thread stopped");
            }
            // Maps an upgrade recreated are filled (by a reconciliation)
            // before the underlay link switches programs.
            if tunnel.is_none() && !dp.refill_pending() {
                tunnel = TunnelLink::start(cfg, &store, &mut dp, underlay)?;
                startup.step("tunnel started");
                if tunnel.is_some() {
                    applied = None; // hand the new tunnel its table now
                }
            }
        }
        let gateways = match &tunnel {
            Some(_) => gateway_list(&store)?,
            None => Vec::new(),
        };
        let input = Applied::observe(s, &cfg.region, gateways);
        if let Some(t) = tunnel.as_mut() {
            t.follow_next_hops(&input.gateways)?;
        }
        // Dumping the maps costs a syscall per entry: skip it while neither
        // the view nor the kernel's neighbours moved, but still re-check
        // every RELOAD_EVERY to repair drift.
        let unchanged = applied
            .as_ref()
            .is_some_and(|a| a.same_input(&input) && a.at.elapsed() < RELOAD_EVERY);
        if !unchanged {
            let result = reconcile_once(cfg, &mut dp, &input, &mut attached);
            startup.step("dataplane reconciled");
            match result {
                Ok(desired) => {
                    hosts.sync_router_addrs(&desired.router_addrs);
                    if let Some(t) = tunnel.as_mut() {
                        t.follow(&input, &desired)?;
                    }
                    if applied.is_none() {
                        // Attachments of interfaces no longer configured
                        // move to this build's programs too, once.
                        match dp.upgrade_links() {
                            Ok(done) => log_upgrades(&done),
                            Err(e) => warn!("upgrading pinned links: {e:#}"),
                        }
                    }
                    applied = Some(input);
                }
                Err(e) => warn!("reconcile: {e:#}"),
            }
        }
        if let Some(t) = tunnel.as_mut() {
            t.sync_keys(&store)?;
        }
        startup.done();
        if let Some(t) = tunnel.as_mut() {
            t.renew(&store, &cfg.region)?;
        }
        if cfg.once {
            return Ok(());
        }
        // Hosts asked for now are resolved by the kernel while we sleep,
        // and installed on the next round.
        let from_tunnel = tunnel
            .as_ref()
            .map(|t| t.tunnel.take_unresolved())
            .unwrap_or_default();
        hosts.resolve(from_tunnel);
        std::thread::sleep(cfg.interval);
    }
}

/// Logs how long each step of the first pass takes: after a crash, cross-
/// region traffic waits for all of them (the tunnel's sockets die with the
/// process), so they are what a restart costs.
struct Startup {
    at: Option<Instant>,
}

impl Startup {
    fn new() -> Self {
        Startup {
            at: Some(Instant::now()),
        }
    }

    fn step(&self, what: &str) {
        if let Some(at) = self.at {
            info!("start-up: {what} after {} ms", at.elapsed().as_millis());
        }
    }

    /// The first pass is over: the tunnel has its ports, table and keys.
    fn done(&mut self) {
        self.step("first pass done");
        self.at = None;
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
    underlay: SocketAddrV4,
    /// Next-hop resolution for AF_XDP on the underlay (None: socket only).
    next_hops: Option<NextHops>,
    /// The registration is still to be renewed (see [`TunnelLink::renew`]).
    renew: bool,
    /// When the registration was last written (it is leased: see
    /// [`RENEW_EVERY`]).
    renewed_at: Instant,
}

/// The remote gateways' next hops as last handed to the tunnel.
struct NextHops {
    resolver: Resolver,
    sent: Vec<(Ipv4Addr, u32, Link)>,
    last_nudge: Option<Instant>,
    /// The last resolution problem per gateway, so it is logged once.
    problems: BTreeMap<Ipv4Addr, String>,
}

/// How often usable neighbours are re-confirmed: frames sent through
/// AF_XDP never confirm a neighbour, so the kernel would let it go stale
/// and never notice a changed MAC.
const NUDGE_EVERY: Duration = Duration::from_secs(5);

/// How often the gateway's registration is renewed: a third of its lease
/// ([`crate::control::store::codec::REGISTRATION_TTL`]), so two renewals
/// may fail before it lapses.
const RENEW_EVERY: Duration = Duration::from_secs(5);

impl TunnelLink {
    /// Registers this gateway and starts the tunnel, once peering-controld
    /// has written the tunnel settings (None until then).
    fn start(
        cfg: &AgentConfig,
        store: &SqliteStore,
        dp: &mut Dataplane,
        underlay: SocketAddrV4,
    ) -> Result<Option<Self>> {
        let Some(settings) = store.tunnel_settings()? else {
            warn!("no tunnel settings in the control store yet: is peering-controld running?");
            return Ok(None);
        };
        let now = unix_ms();
        // A restart finds its registration in place: it reads the id and
        // renews the registration after the first pass (see `renew`), as a
        // write can wait hundreds of milliseconds for the lock and an fsync.
        let known = store
            .gateways()?
            .into_iter()
            .find(|g| g.region == cfg.region && g.endpoint == underlay)
            .map(|g| g.gateway_id);
        let gateway_id = match known {
            Some(id) => id,
            None => store.register_gateway(&cfg.region, underlay, now)?,
        };
        let config = TunnelConfig::new(
            gateway_id,
            &settings.policy,
            counter_floor_from_unix_ms(now),
        );
        let af_xdp = match cfg.underlay_io {
            UnderlayIo::AfXdp => {
                match underlay_port(cfg, dp, underlay) {
                    Ok(port) => Some(port),
                    Err(e) => {
                        warn!("AF_XDP on the underlay is off, the UDP socket carries the tunnel: {e:#}");
                        None
                    }
                }
            }
            UnderlayIo::Socket => {
                // An earlier AF_XDP run may have left the endpoint behind.
                if let Ok(ifindex) =
                    sys::iface_with_addr(*underlay.ip()).and_then(|n| sys::ifindex(&n))
                {
                    dp.maps.remove_underlay(ifindex)?;
                }
                None
            }
        };
        let params = |dp: &Dataplane, af_xdp| -> Result<TunnelParams> {
            Ok(TunnelParams {
                config,
                bind: underlay,
                xsk_map: dp.xsk_map()?,
                stats_path: cfg.state_dir.join(TUNNEL_STATS_FILE),
                af_xdp,
            })
        };
        let tunnel = match Tunnel::spawn(params(dp, af_xdp)?) {
            Ok(t) => t,
            Err(e) if af_xdp.is_some() => {
                warn!("AF_XDP on the underlay failed, the UDP socket carries the tunnel: {e:#}");
                if let Some(p) = af_xdp {
                    dp.maps.remove_underlay(p.ifindex)?;
                }
                Tunnel::spawn(params(dp, None)?)?
            }
            Err(e) => return Err(e),
        };
        let next_hops = if tunnel.uses_af_xdp() {
            Some(NextHops {
                resolver: Resolver::new()?,
                sent: Vec::new(),
                last_nudge: None,
                problems: BTreeMap::new(),
            })
        } else {
            None
        };
        info!(
            "tunnel up: gateway {gateway_id} of {} on {underlay} ({}), keys rotated every {} ms",
            cfg.region,
            if next_hops.is_some() {
                "AF_XDP"
            } else {
                "UDP socket"
            },
            settings.policy.interval()
        );
        Ok(Some(TunnelLink {
            tunnel,
            table: TunnelTable::default(),
            ports: BTreeMap::new(),
            epoch: 0,
            underlay,
            next_hops,
            renew: known.is_some(),
            renewed_at: Instant::now(),
        }))
    }

    /// Renews a registration that `start` only read (its update time).
    /// Also renews the lease of the registration every [`RENEW_EVERY`].
    fn renew(&mut self, store: &SqliteStore, region: &str) -> Result<()> {
        let due = self.renewed_at.elapsed() >= RENEW_EVERY;
        if std::mem::take(&mut self.renew) || due {
            store.register_gateway(region, self.underlay, unix_ms())?;
            self.renewed_at = Instant::now();
        }
        Ok(())
    }

    /// Resolves every remote gateway's next hop and hands changes to the
    /// tunnel. Unresolved neighbours are nudged (the kernel starts ARP);
    /// resolved ones are nudged every [`NUDGE_EVERY`] so they stay
    /// confirmed. A gateway that cannot be resolved simply stays on the
    /// UDP socket.
    fn follow_next_hops(&mut self, gateways: &[(String, u32, SocketAddrV4)]) -> Result<()> {
        let Some(nh) = self.next_hops.as_mut() else {
            return Ok(());
        };
        let renudge = nh.last_nudge.is_none_or(|t| t.elapsed() >= NUDGE_EVERY);
        if renudge {
            nh.last_nudge = Some(Instant::now());
        }
        let local = *self.underlay.ip();
        let mut links = Vec::new();
        let mut problems = BTreeMap::new();
        for (_, _, endpoint) in gateways {
            let remote = *endpoint.ip();
            if remote == local {
                continue;
            }
            match nh.resolver.resolve(remote, local) {
                Ok(Resolution::Ready(hop)) => {
                    if renudge {
                        let _ = nh.resolver.nudge(hop.ifindex, hop.via);
                    }
                    let link = Link {
                        src_mac: hop.src_mac,
                        dst_mac: hop.dst_mac,
                    };
                    links.push((remote, hop.ifindex, link));
                }
                Ok(Resolution::Unresolved { ifindex, via }) => {
                    if let Err(e) = nh.resolver.nudge(ifindex, via) {
                        problems.insert(remote, format!("resolving next hop {via}: {e:#}"));
                    }
                }
                Err(e) => {
                    problems.insert(remote, format!("{e:#}"));
                }
            }
        }
        // Said once per change, not every poll.
        for (remote, problem) in &problems {
            if nh.problems.get(remote) != Some(problem) {
                warn!("gateway {remote} stays on the UDP socket: {problem}");
            }
        }
        for remote in nh.problems.keys().filter(|r| !problems.contains_key(r)) {
            info!("gateway {remote}: next hop problem cleared");
        }
        nh.problems = problems;
        links.sort_by_key(|(ip, _, _)| *ip);
        if links != nh.sent {
            nh.sent = links.clone();
            self.tunnel.update(Update::Links(links))?;
        }
        Ok(())
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

/// Prepares AF_XDP on the interface holding the underlay address: the
/// underlay program attached, the tunnel endpoint in its map.
fn underlay_port(
    cfg: &AgentConfig,
    dp: &mut Dataplane,
    underlay: SocketAddrV4,
) -> Result<UnderlayPort> {
    let name = sys::iface_with_addr(*underlay.ip())?;
    let ifindex = sys::ifindex(&name)?;
    let mtu = sys::mtu(&name)? as usize;
    // The map entry first: a program switched in by an upgrade finds it.
    dp.maps.set_underlay(ifindex, underlay)?;
    let how = dp
        .attach_underlay(&name, cfg.attach_mode)
        .with_context(|| format!("attaching the underlay program to {name}"))?;
    info!("underlay {name} (ifindex {ifindex}, MTU {mtu}): XDP program {how:?}");
    Ok(UnderlayPort {
        ifindex,
        mtu,
        rx_queues: sys::rx_queues(&name),
    })
}

fn log_upgrades(done: &[(u32, Attached)]) {
    for (ifindex, how) in done {
        if *how == Attached::Upgraded {
            info!("ifindex {ifindex}: switched to this build's program");
        }
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
    // Maps first, then attachments: a port's entries exist before its
    // program runs, and after an upgrade that recreated a map, the fresh
    // map is filled before any link switches to the program that uses it.
    let plan = reconcile::plan(&desired, &actual);
    if !plan.is_empty() {
        reconcile::apply(&mut dp.maps, &plan)?;
        info!(
            "revision {}: applied {} dataplane changes",
            view.revision,
            plan.len()
        );
    }
    dp.maps_refilled();
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
    Ok(desired)
}
