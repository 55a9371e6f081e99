//! The region agent's loop: follow this region's view from the
//! controllers (through [`source::Link`]) and keep the pinned maps in line
//! with it. Each change of the view becomes a plan touching only what it
//! changed ([`crate::dataplane::incremental`]); a full reconciliation (a
//! map dump and a plan against it) runs at start-up, after a resync and
//! every [`REPAIR_EVERY`] to repair drift. With no controller reachable the
//! agent keeps what it programmed and the tunnel keeps its keys.

pub mod follow;
pub mod remote;
pub mod source;
mod tunnel;

use std::{
    collections::BTreeSet,
    net::SocketAddrV4,
    path::PathBuf,
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use log::{info, warn};

use crate::{
    control::{clock::unix_ms, view::RegionView},
    dataplane::{
        incremental::{Programmed, Step},
        reconcile::{self, Neighbour, Plan, Port},
        sg::VpcGroups,
        tun_entry::{self, TunEntry},
        AttachMode, Attached, Dataplane, PortPath, PortPathChoice,
    },
    dns::server::Dns,
    gateway::UnderlayIo,
    hosts::Hosts,
    sys,
};
use follow::{Follower, ViewAction};
use source::{Event, Link};
use tunnel::TunnelLink;
pub use tunnel::TUNNEL_STATS_FILE;

pub struct AgentConfig {
    pub region: String,
    pub pin_dir: PathBuf,
    /// How often the kernel's neighbour table is polled and the control
    /// threads' news taken.
    pub interval: Duration,
    pub attach_mode: AttachMode,
    /// Which ports run the TC program instead of the XDP one.
    pub port_path: PortPathChoice,
    /// Reconcile once (from the first full view) and return.
    pub once: bool,
    /// The gateway's underlay address: the tunnel listens there and the
    /// agent registers it with the controllers for the other regions.
    /// None: no inter-region tunnel on this gateway.
    pub underlay: Option<SocketAddrV4>,
    pub underlay_io: UnderlayIo,
    /// Tunnel worker threads (see [`crate::gateway::Tunnel`]).
    pub workers: u32,
    /// Where the agent writes its state (tunnel and DNS counters).
    pub state_dir: PathBuf,
    /// Run the region's resolver at each VPC's base + 2 address.
    pub dns: bool,
}

/// How often a full reconciliation repairs drift (entries changed behind
/// the agent's back, writes that failed).
pub const REPAIR_EVERY: Duration = Duration::from_secs(60);

/// How often interfaces that subnets name but that were not found are
/// looked for again.
const REPROBE_EVERY: Duration = Duration::from_secs(1);

/// The agent's IO edge: the dataplane, what is attached, the tunnel.
struct Edge<'a> {
    cfg: &'a AgentConfig,
    dp: Dataplane,
    hosts: Hosts,
    attached: BTreeSet<String>,
    /// The tunnel entry veth, once a TC port needs it.
    tun_entry: Option<TunEntry>,
    tunnel: Option<TunnelLink>,
    /// The tunnel table must be rebuilt (its inputs changed).
    tunnel_dirty: bool,
    /// The kernel's neighbour table as last read.
    arp: String,
    kernel: Vec<Neighbour>,
    repair_at: Instant,
    reprobe_at: Instant,
    upgraded: bool,
    /// This gateway's id, as the controllers last said.
    gateway_id: Option<u32>,
    /// The last programming of the security groups failed: try again
    /// with the next step.
    security_groups_failed: bool,
    startup: Startup,
}

pub fn run(cfg: &AgentConfig, link: Link) -> Result<()> {
    let startup = Startup::new();
    let mut dp = Dataplane::load(Some(&cfg.pin_dir))?;
    startup.step("dataplane loaded");
    let hosts = Hosts::new(dp.resolve_requests()?)?;
    if cfg.underlay.is_some() {
        std::fs::create_dir_all(&cfg.state_dir)?;
    }
    let mut edge = Edge {
        cfg,
        dp,
        hosts,
        attached: BTreeSet::new(),
        tun_entry: None,
        tunnel: None,
        tunnel_dirty: true,
        arp: String::new(),
        kernel: Vec::new(),
        repair_at: Instant::now(),
        reprobe_at: Instant::now(),
        upgraded: false,
        gateway_id: None,
        security_groups_failed: false,
        startup,
    };
    let mut dns = match (cfg.dns, cfg.once) {
        (true, false) => Some(Dns::start(&cfg.state_dir)?),
        (true, true) => None,
        (false, _) => {
            crate::dns::server::remove_addrs();
            None
        }
    };
    let mut follower = Follower::default();
    info!("agent for {} following its controllers", cfg.region);
    loop {
        let first = match link.events.recv_timeout(cfg.interval) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => bail!("the control threads stopped"),
        };
        for event in first.into_iter().chain(link.events.try_iter()) {
            edge.handle(event, &mut follower, &link);
        }
        let Some(programmed) = follower.programmed.as_mut() else {
            continue; // nothing to program before the first view
        };
        if let Some(dns) = dns.as_mut() {
            dns.follow(programmed.view());
        }
        edge.follow_kernel(programmed);
        if edge.repair_at <= Instant::now() {
            let view = programmed.view().clone();
            if let Some(p) = edge.full(view) {
                *programmed = p;
            }
        }
        if cfg.once {
            return Ok(());
        }
        edge.follow_tunnel(&mut follower, &link)?;
        // Hosts asked for now are resolved by the kernel while we wait,
        // and installed on the next round.
        let from_tunnel = edge
            .tunnel
            .as_ref()
            .map(|t| t.tunnel.take_unresolved())
            .unwrap_or_default();
        edge.hosts.resolve(from_tunnel);
    }
}

impl Edge<'_> {
    /// Takes one event of the control threads.
    fn handle(&mut self, event: Event, follower: &mut Follower, link: &Link) {
        match event {
            Event::Offline(e) => warn!(
                "no controller answers ({e}); forwarding goes on from revision {:?}",
                follower.revision()
            ),
            Event::Registered(id) => {
                if self.gateway_id.is_some_and(|g| g != id) {
                    warn!("the controllers now call this gateway {id}");
                }
                self.gateway_id = Some(id);
            }
            Event::Sync(sync) => {
                let out = follower.on_sync(*sync, &port, unix_ms());
                self.tunnel_dirty |= out.gateways;
                match out.view {
                    ViewAction::Full(view) => {
                        follower.programmed = self.full(view);
                        self.startup.step("first view programmed");
                    }
                    ViewAction::Step { step, repair } => {
                        if let Some(p) = &follower.programmed {
                            self.step(step, p);
                        }
                        if repair {
                            self.repair_at = Instant::now();
                        }
                    }
                    ViewAction::Resync => link.resync(),
                }
            }
        }
    }

    /// Starts the tunnel once it has an id, settings and filled maps, and
    /// hands it what changed: table, ports, next hops, keys.
    fn follow_tunnel(&mut self, follower: &mut Follower, link: &Link) -> Result<()> {
        let cfg = self.cfg;
        if let (Some(underlay), Some(settings), None) =
            (cfg.underlay, follower.settings, &self.tunnel)
        {
            let id = self
                .gateway_id
                .or_else(|| follower.registered_as(&cfg.region, underlay));
            // Maps an upgrade recreated are filled (by a reconciliation)
            // before the underlay link switches programs.
            if let (Some(id), false) = (id, self.dp.refill_pending()) {
                let t = TunnelLink::start(cfg, &mut self.dp, underlay, id, &settings)?;
                self.tunnel = Some(t);
                self.tunnel_dirty = true;
                self.startup.step("tunnel started");
            }
        }
        let (Some(t), Some(programmed)) = (self.tunnel.as_mut(), &follower.programmed) else {
            if cfg.underlay.is_none() {
                self.startup.done();
            }
            return Ok(());
        };
        if !t.tunnel.is_running() {
            bail!("the tunnel thread stopped");
        }
        t.follow_next_hops(&follower.gateways)?;
        if std::mem::take(&mut self.tunnel_dirty) {
            let entry = self.tun_entry.map(|e| (e.xsk_ifindex, e.slots()));
            t.follow(
                programmed.view(),
                programmed.desired(),
                &follower.gateways,
                entry,
            )?;
        }
        if t.sync_keys(&mut follower.keys)? {
            link.request_rotation();
        }
        self.startup.done();
        Ok(())
    }

    /// A full reconciliation from `view`: dump the maps, plan against the
    /// dump, apply. None (and a retry soon) if the dump failed.
    fn full(&mut self, view: RegionView) -> Option<Programmed> {
        self.read_kernel();
        let actual = match self.dp.maps.snapshot() {
            Ok(a) => a,
            Err(e) => {
                warn!("reading the maps: {e:#}");
                self.repair_at = Instant::now() + Duration::from_secs(1);
                return None;
            }
        };
        // The routes' counter slots as dumped: route writes from here on
        // look their slot up instead of walking the route map.
        self.dp.maps.adopt_snapshot(&actual);
        let revision = view.revision;
        let (p, plan, warnings) = Programmed::full(view, &port, &self.kernel, &actual);
        for w in warnings {
            warn!("{w}");
        }
        // Maps first, then attachments: a port's entries exist before its
        // program runs, and after an upgrade that recreated a map, the
        // fresh map is filled before any link switches to the program that
        // uses it.
        self.write(&plan, revision, "full reconciliation");
        // The FIB compiled from what the maps now hold: the plan's writes
        // added what was missing, the repair removes what is stale.
        if let Err(e) = self.dp.maps.repair_fib() {
            warn!("repairing the FIB: {e:#}");
        }
        self.dp.maps_refilled();
        self.program_security_groups(&p);
        self.ports(&p);
        if !self.upgraded {
            // Attachments of interfaces no longer configured move to this
            // build's programs too, once.
            self.upgraded = true;
            match self.dp.upgrade_links() {
                Ok(done) => log_upgrades(&done),
                Err(e) => warn!("upgrading pinned links: {e:#}"),
            }
        }
        self.tunnel_dirty = true;
        self.repair_at = Instant::now() + REPAIR_EVERY;
        Some(p)
    }

    /// Programs one incremental step of `p`.
    fn step(&mut self, step: Step, p: &Programmed) {
        self.write(&step.plan, p.view().revision, "change");
        if step.security_groups || self.security_groups_failed {
            self.program_security_groups(p);
        }
        self.tunnel_dirty |= step.tunnel || step.slots;
        if step.ports {
            self.ports(p);
        }
    }

    /// Compiles the view's security groups and interfaces and replaces
    /// what the programs enforce: at every full reconciliation, and for a
    /// step whose delta touched them. Over-limit input is refused whole
    /// and the previous policies stay (logged; retried with the next step).
    fn program_security_groups(&mut self, p: &Programmed) {
        let view = p.view();
        let vpcs: Vec<VpcGroups> = view
            .vpcs
            .iter()
            // A VPC of an old store, before its default group exists: no
            // group to enforce for it yet.
            .filter(|v| v.default_group_dp_id != 0)
            .map(|v| VpcGroups {
                vpc_dp_id: v.dp_id,
                default_group_dp_id: v.default_group_dp_id,
                cidrs: v.cidrs.clone(),
            })
            .collect();
        let (groups, interfaces) = (&view.security_groups, &view.interfaces);
        let result = self
            .dp
            .maps
            .program_security_groups(&vpcs, groups, interfaces);
        self.security_groups_failed = result.is_err();
        match result {
            Ok(()) => info!(
                "security groups at revision {}: {} group(s), {} interface(s)",
                view.revision,
                groups.len(),
                interfaces.len()
            ),
            Err(e) => warn!("security groups at revision {}: {e:#}", view.revision),
        }
    }

    /// Attaches a program (XDP or TC, see [`PortPathChoice`]) to ports
    /// not attached yet, and puts the VPC routers' addresses on them.
    fn ports(&mut self, p: &Programmed) {
        let desired = p.desired();
        self.hosts.sync_router_addrs(&desired.router_addrs);
        for name in desired
            .ports
            .difference(&self.attached)
            .cloned()
            .collect::<Vec<_>>()
        {
            let path = self
                .cfg
                .port_path
                .resolve(sys::driver(&name).ok().as_deref());
            // The entry veth first: inter-region packets of a TC port
            // have somewhere to go from its first packet on. A gateway
            // without a tunnel needs none (they are dropped, counted, as
            // on XDP ports without a socket).
            let tunnel = self.cfg.underlay.is_some();
            if path == PortPath::Tc && tunnel && self.tun_entry.is_none() {
                match tun_entry::ensure(&mut self.dp, self.cfg.workers, self.cfg.attach_mode) {
                    Ok(e) => {
                        self.tun_entry = Some(e);
                        self.tunnel_dirty = true;
                    }
                    Err(e) => warn!("tunnel entry: {e:#}; TC ports cannot reach other regions"),
                }
            }
            match self.dp.attach_port(&name, path, self.cfg.attach_mode) {
                Ok(how) => {
                    info!("{name}: path {path}, {how:?}");
                    self.attached.insert(name);
                }
                Err(e) => warn!("{name}: attach failed: {e:#}"),
            }
        }
    }

    /// Reads the kernel's neighbour table; true when it changed.
    fn read_kernel(&mut self) -> bool {
        let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        if arp == self.arp {
            return false;
        }
        self.kernel = reconcile::parse_arp(&arp, &|dev| sys::ifindex(dev).ok());
        self.arp = arp;
        true
    }

    /// Programs hosts the kernel resolved since the last call, and subnets
    /// whose interface appeared.
    fn follow_kernel(&mut self, p: &mut Programmed) {
        if self.read_kernel() {
            let step = p.kernel(&self.kernel);
            self.step(step, p);
        }
        if self.reprobe_at <= Instant::now() {
            self.reprobe_at = Instant::now() + REPROBE_EVERY;
            let step = p.reprobe(&port);
            self.step(step, p);
        }
    }

    fn write(&mut self, plan: &Plan, revision: u64, what: &str) {
        if plan.is_empty() {
            return;
        }
        match reconcile::apply(&mut self.dp.maps, plan) {
            Ok(()) => info!(
                "{what} at revision {revision}: {} dataplane writes",
                plan.len()
            ),
            Err(e) => {
                // What the maps hold is no longer what was planned.
                warn!("{what}: {e:#}; a full reconciliation follows");
                self.repair_at = Instant::now() + Duration::from_secs(1);
            }
        }
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
