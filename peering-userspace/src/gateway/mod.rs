//! The tunnel's IO edge: one thread moving packets between the VPC ports'
//! AF_XDP sockets and the underlay, around the sans-IO
//! [`crate::tunnel::TunnelCore`].
//!
//! ```text
//! VPC port --XDP (route to a remote peering)--> AF_XDP RX --seal--> underlay TX
//! underlay RX --open, replay, policy--> AF_XDP TX --> VPC port
//! ```
//!
//! The underlay is AF_XDP on the underlay interface ([`xdp_underlay`]:
//! whole frames out of a UMEM, the underlay XDP program's redirect in) or
//! the UDP socket (sendmmsg/recvmmsg batches, [`udp`]). The socket is always
//! open: it carries what AF_XDP cannot (a next hop not yet resolved, a full
//! TX ring, datagrams the XDP program left to the kernel) and everything
//! when AF_XDP is off ([`UnderlayIo::Socket`]).
//!
//! The agent owns everything else: it builds the [`TunnelTable`], hands
//! over keys as the control store publishes them, and says which ports
//! exist; all of that arrives as [`Update`]s on a channel. The thread sleeps
//! in poll(2) when there is nothing to move.

pub mod addr;
pub mod frame;
pub mod nexthop;
pub mod table;
pub mod udp;
pub mod xdp_underlay;
pub mod xsk;

use std::{
    collections::{btree_map::Entry, BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, XskMap};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::control::clock::unix_ms;
use crate::tunnel::{wire::Packet, EpochKey, OpenError, SealError, TunnelConfig, TunnelCore};

pub use self::table::{PolicyDrop, TunnelTable};
pub use self::xdp_underlay::{Link, UnderlayCounters};
use self::{
    udp::{Batch, Underlay},
    xdp_underlay::{Transmit, XdpUnderlay},
    xsk::{XskCounters, XskPort},
};

/// Frames read from one socket per turn.
const RX_BATCH: u32 = 64;
/// Longest sleep in poll(2): bounds how late keys activate and stats flush.
const IDLE_POLL_MS: libc::c_int = 50;
const STATS_EVERY: Duration = Duration::from_millis(250);

/// The AF_XDP slots of one VPC port: queues `0..queues` use XSKMAP slots
/// `xsk_base..xsk_base + queues`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSlots {
    pub xsk_base: u32,
    pub queues: u32,
}

/// Commands from the agent.
pub enum Update {
    Table(Box<TunnelTable>),
    Key(EpochKey),
    /// Every VPC port by ifindex.
    Ports(BTreeMap<u32, PortSlots>),
    /// Next hops of the remote gateways: (address, ifindex, link).
    Links(Vec<(Ipv4Addr, u32, Link)>),
}

/// How the tunnel moves datagrams on the underlay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnderlayIo {
    /// AF_XDP on the underlay interface, the UDP socket as fallback.
    #[default]
    AfXdp,
    /// The UDP socket only (sendmmsg/recvmmsg).
    Socket,
}

/// The underlay interface, for [`UnderlayIo::AfXdp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnderlayPort {
    pub ifindex: u32,
    /// Largest IPv4 packet it sends (its MTU).
    pub mtu: usize,
    pub rx_queues: u32,
}

/// Counters of one peering or one remote gateway. Authentication failures,
/// replays, unknown epochs and malformed datagrams are charged to the
/// gateway the datagram claims to come from (the peering is inside the
/// ciphertext); policy drops and MTU drops to the peering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    pub sealed: u64,
    pub sealed_bytes: u64,
    pub opened: u64,
    pub opened_bytes: u64,
    pub auth_failures: u64,
    pub replays: u64,
    pub unknown_epoch: u64,
    pub malformed: u64,
    pub mtu_drops: u64,
    pub policy_drops: u64,
}

/// What the tunnel exports (as JSON, see [`TunnelParams::stats_path`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStats {
    pub gateway_id: u32,
    pub current_epoch: Option<u32>,
    pub held_epochs: Vec<u32>,
    pub peerings: BTreeMap<String, PathStats>,
    pub gateways: BTreeMap<String, PathStats>,
    /// Drops by reason, over all peerings and gateways.
    pub drops: BTreeMap<String, u64>,
    /// Per AF_XDP socket (VPC ports and underlay), "ifindex/queue".
    pub sockets: BTreeMap<String, XskCounters>,
    /// The underlay path in use ("af-xdp" or "socket") and its counters.
    #[serde(default)]
    pub underlay_io: Option<UnderlayIo>,
    #[serde(default)]
    pub underlay: UnderlayCounters,
}

impl TunnelStats {
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Sum of one counter over all gateways.
    pub fn gateway_total(&self, f: impl Fn(&PathStats) -> u64) -> u64 {
        self.gateways.values().map(f).sum()
    }

    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }
}

pub struct TunnelParams {
    pub config: TunnelConfig,
    /// Local address of the underlay socket (port: the tunnel port).
    pub bind: SocketAddrV4,
    pub xsk_map: XskMap<MapData>,
    /// Where the counters are written, atomically, four times a second.
    pub stats_path: PathBuf,
    /// The underlay interface when AF_XDP is to be used on it.
    pub af_xdp: Option<UnderlayPort>,
}

/// The running tunnel thread.
pub struct Tunnel {
    updates: Sender<Update>,
    af_xdp: bool,
    thread: Option<JoinHandle<()>>,
    rotation_needed: Arc<AtomicBool>,
    unresolved: Receiver<(u32, Ipv4Addr)>,
}

/// Hosts the tunnel found no MAC for, queued for the agent to resolve;
/// beyond this the drop is still counted, but the host is not queued
/// (`resolve_queue_full`).
const UNRESOLVED_QUEUE: usize = 64;

impl Tunnel {
    /// Binds the underlay socket and the AF_XDP sockets (failing here, not
    /// in the thread) and starts the thread.
    pub fn spawn(mut params: TunnelParams) -> Result<Self> {
        let underlay = Underlay::bind(params.bind)?;
        let xdp = match params.af_xdp {
            Some(p) => {
                let x = XdpUnderlay::open(
                    p.ifindex,
                    params.bind,
                    p.mtu,
                    p.rx_queues,
                    &mut params.xsk_map,
                )?;
                info!(
                    "AF_XDP on the underlay: ifindex {}, {} queue(s)",
                    p.ifindex,
                    x.fds().count()
                );
                Some(x)
            }
            None => None,
        };
        let (updates, rx) = mpsc::channel();
        let (unresolved_tx, unresolved) = mpsc::sync_channel(UNRESOLVED_QUEUE);
        let rotation_needed = Arc::new(AtomicBool::new(false));
        let af_xdp = xdp.is_some();
        let mut worker = Worker::new(params, underlay, xdp, rx, rotation_needed.clone());
        worker.unresolved = Some(unresolved_tx);
        let thread = std::thread::Builder::new()
            .name("tunnel".into())
            .spawn(move || worker.run())
            .context("starting the tunnel thread")?;
        Ok(Tunnel {
            updates,
            af_xdp,
            thread: Some(thread),
            rotation_needed,
            unresolved,
        })
    }

    /// Hosts (ifindex, address) a packet from the tunnel found no MAC for
    /// since the last call: the agent asks the kernel to resolve them.
    pub fn take_unresolved(&self) -> Vec<(u32, Ipv4Addr)> {
        self.unresolved.try_iter().take(UNRESOLVED_QUEUE).collect()
    }

    /// True (once) when the current key nears its usage limit and the
    /// control plane should rotate early.
    pub fn take_rotation_request(&self) -> bool {
        self.rotation_needed.swap(false, Ordering::Relaxed)
    }

    pub fn update(&self, update: Update) -> Result<()> {
        self.updates
            .send(update)
            .map_err(|_| anyhow::anyhow!("the tunnel thread has stopped"))
    }

    /// True when datagrams move through AF_XDP on the underlay.
    pub fn uses_af_xdp(&self) -> bool {
        self.af_xdp
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

struct Worker {
    core: TunnelCore,
    underlay: Underlay,
    /// Taken out while its frames are handled (see `decapsulate`).
    xdp: Option<XdpUnderlay>,
    /// Datagrams through the socket, for the underlay counters.
    socket_tx: u64,
    socket_rx: u64,
    updates: Receiver<Update>,
    xsk_map: XskMap<MapData>,
    stats_path: PathBuf,
    table: TunnelTable,
    ports: BTreeMap<(u32, u32), XskPort>,
    out: Batch,
    inbound: Option<Batch>,
    by_peering: HashMap<u32, PathStats>,
    by_gateway: HashMap<u32, PathStats>,
    drops: BTreeMap<&'static str, u64>,
    last_stats: Instant,
    last_tick: Instant,
    rotation_needed: Arc<AtomicBool>,
    /// Where hosts without a MAC are reported (bounded).
    unresolved: Option<SyncSender<(u32, Ipv4Addr)>>,
}

impl Worker {
    fn new(
        params: TunnelParams,
        underlay: Underlay,
        xdp: Option<XdpUnderlay>,
        updates: Receiver<Update>,
        rotation_needed: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            core: TunnelCore::new(params.config),
            underlay,
            xdp,
            socket_tx: 0,
            socket_rx: 0,
            updates,
            xsk_map: params.xsk_map,
            stats_path: params.stats_path,
            table: TunnelTable::default(),
            ports: BTreeMap::new(),
            out: Batch::default(),
            inbound: Some(Batch::default()),
            by_peering: HashMap::new(),
            by_gateway: HashMap::new(),
            drops: BTreeMap::new(),
            last_stats: Instant::now(),
            last_tick: Instant::now(),
            rotation_needed,
            unresolved: None,
        }
    }

    fn run(&mut self) {
        loop {
            if !self.apply_updates() {
                info!("tunnel thread stopping: the agent went away");
                return;
            }
            if self.last_tick.elapsed() >= Duration::from_millis(10) {
                self.core.tick(unix_ms());
                self.last_tick = Instant::now();
                if self.core.rotation_needed().is_some() {
                    self.rotation_needed.store(true, Ordering::Relaxed);
                }
            }
            let moved = self.encapsulate() + self.decapsulate();
            for port in self.ports.values_mut() {
                port.reclaim();
                port.kick();
            }
            if let Some(x) = self.xdp.as_mut() {
                x.maintain();
            }
            if self.last_stats.elapsed() >= STATS_EVERY {
                self.write_stats();
            }
            if moved == 0 {
                self.sleep();
            }
        }
    }

    /// Applies queued updates; false once the agent dropped its sender.
    fn apply_updates(&mut self) -> bool {
        loop {
            match self.updates.try_recv() {
                Ok(Update::Table(table)) => self.table = *table,
                Ok(Update::Key(key)) => {
                    let epoch = key.epoch;
                    match self.core.install_key(key, unix_ms()) {
                        Ok(()) => info!("tunnel key epoch {epoch} installed"),
                        Err(e) => warn!("tunnel key epoch {epoch} refused: {e}"),
                    }
                }
                Ok(Update::Ports(ports)) => self.set_ports(&ports),
                Ok(Update::Links(links)) => {
                    if let Some(x) = self.xdp.as_mut() {
                        x.set_links(links);
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Opens sockets for new (port, queue) pairs, closes gone ones, and
    /// points the XSKMAP slots at them.
    fn set_ports(&mut self, wanted: &BTreeMap<u32, PortSlots>) {
        let keep =
            |(ifindex, queue): &(u32, u32)| wanted.get(ifindex).is_some_and(|s| *queue < s.queues);
        self.ports.retain(|key, _| keep(key));
        for (&ifindex, slots) in wanted {
            for queue in 0..slots.queues {
                let slot = slots.xsk_base + queue;
                let port = match self.ports.entry((ifindex, queue)) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => match XskPort::bind(ifindex, queue) {
                        Ok(port) => {
                            info!("AF_XDP socket on ifindex {ifindex} queue {queue}");
                            e.insert(port)
                        }
                        Err(err) => {
                            warn!("AF_XDP on ifindex {ifindex} queue {queue}: {err:#}");
                            continue;
                        }
                    },
                };
                let fd = port.fd();
                if let Err(e) = self.xsk_map.set(slot, fd, 0) {
                    warn!("XSKMAP slot {slot}: {e}");
                }
            }
        }
    }

    /// VPC ports → underlay. Returns the number of frames read.
    fn encapsulate(&mut self) -> usize {
        // The sockets leave `self` for the loop so `seal_one` may borrow it.
        let mut ports = std::mem::take(&mut self.ports);
        let mut moved = 0;
        for port in ports.values_mut() {
            moved += port.receive(RX_BATCH, |meta, frame| self.seal_one(meta, frame)) as usize;
            self.send_socket_batch();
            if let Some(x) = self.xdp.as_mut() {
                x.flush();
            }
        }
        self.ports = ports;
        moved
    }

    fn send_socket_batch(&mut self) {
        if !self.out.is_empty() {
            self.socket_tx += self.out.len() as u64;
            self.underlay.send(&mut self.out);
        }
    }

    fn seal_one(&mut self, meta: &[u8], frame: &[u8]) {
        let pcx = meta.try_into().map(u32::from_ne_bytes).unwrap_or(0);
        let Some(packet) = frame::ipv4_in_frame(frame) else {
            self.drop_for_peering(pcx, PolicyDrop::BadInner);
            return;
        };
        let Some((_, dst)) = frame::addresses(packet) else {
            self.drop_for_peering(pcx, PolicyDrop::BadInner);
            return;
        };
        let to = match self.table.seal_to(pcx, dst) {
            Ok(to) => to,
            Err(reason) => return self.drop_for_peering(pcx, reason),
        };
        let sealed = match self.seal_xdp(pcx, packet, to) {
            XdpSeal::Sent => Ok(()),
            XdpSeal::Failed(e) => Err(e),
            XdpSeal::Dropped => return,
            XdpSeal::UseSocket => {
                if self.out.is_full() {
                    self.send_socket_batch();
                }
                let slot = self.out.slot();
                self.core
                    .seal(pcx, packet, slot)
                    .map(|len| self.out.push(len, to))
            }
        };
        match sealed {
            Ok(()) => {
                let gateway = self.table.peers.get(&pcx).and_then(|p| p.remote);
                for stats in [
                    Some(self.by_peering.entry(pcx).or_default()),
                    gateway.map(|g| self.by_gateway.entry(g.id).or_default()),
                ]
                .into_iter()
                .flatten()
                {
                    stats.sealed += 1;
                    stats.sealed_bytes += packet.len() as u64;
                }
            }
            Err(SealError::MtuExceeded { .. }) => {
                self.by_peering.entry(pcx).or_default().mtu_drops += 1;
                *self.drops.entry("mtu_exceeded").or_default() += 1;
            }
            Err(e) => *self.drops.entry(seal_error_name(&e)).or_default() += 1,
        }
    }

    /// Seals into an AF_XDP frame when AF_XDP can carry the datagram.
    fn seal_xdp(&mut self, pcx: u32, packet: &[u8], to: SocketAddrV4) -> XdpSeal {
        let Some(xdp) = self.xdp.as_mut() else {
            return XdpSeal::UseSocket;
        };
        let core = &mut self.core;
        match xdp.transmit(to, |buf| core.seal(pcx, packet, buf)) {
            Transmit::Staged => XdpSeal::Sent,
            Transmit::Failed(e) => XdpSeal::Failed(e),
            Transmit::TooBig => {
                *self.drops.entry("underlay_mtu_exceeded").or_default() += 1;
                XdpSeal::Dropped
            }
            Transmit::UseSocket | Transmit::RingFull => XdpSeal::UseSocket,
        }
    }

    /// Queues a host without a MAC for the agent to resolve.
    fn report_unresolved(&mut self, pcx: u32, dst: Ipv4Addr) {
        let (Some(tx), Some(ifindex)) = (&self.unresolved, self.table.port_of(pcx, dst)) else {
            return;
        };
        if let Err(TrySendError::Full(_)) = tx.try_send((ifindex, dst)) {
            *self.drops.entry("resolve_queue_full").or_default() += 1;
        }
    }

    fn drop_for_peering(&mut self, pcx: u32, reason: PolicyDrop) {
        self.by_peering.entry(pcx).or_default().policy_drops += 1;
        *self.drops.entry(reason.name()).or_default() += 1;
    }

    /// Underlay → VPC ports. Returns the number of datagrams read.
    fn decapsulate(&mut self) -> usize {
        // Out of `self` for the loop so `open_one` may borrow it; an Option
        // so that taking it allocates nothing.
        let mut inbound = self.inbound.take().unwrap_or_default();
        let mut n = self.underlay.recv(&mut inbound);
        self.socket_rx += n as u64;
        for i in 0..n {
            let (datagram, _from) = inbound.get_mut(i);
            self.open_one(datagram);
        }
        self.inbound = Some(inbound);
        if let Some(mut xdp) = self.xdp.take() {
            n += xdp.receive(RX_BATCH, |datagram| self.open_one(datagram));
            self.xdp = Some(xdp);
        }
        for port in self.ports.values_mut() {
            port.flush();
        }
        n
    }

    fn open_one(&mut self, datagram: &mut [u8]) {
        // The claimed sender names the counters; it is authenticated below
        // as part of the header (the AEAD's additional data).
        let claimed = Packet::new_checked(&*datagram)
            .map(|p| p.sender())
            .unwrap_or(0);
        let opened = match self.core.open_in_place(datagram) {
            Ok(opened) => opened,
            Err(e) => {
                let stats = self.by_gateway.entry(claimed).or_default();
                let reason = match e {
                    OpenError::AuthenticationFailed => {
                        stats.auth_failures += 1;
                        "auth_failed"
                    }
                    OpenError::Replay => {
                        stats.replays += 1;
                        "replay"
                    }
                    OpenError::UnknownOrErasedEpoch(_) => {
                        stats.unknown_epoch += 1;
                        "unknown_epoch"
                    }
                    _ => {
                        stats.malformed += 1;
                        "malformed"
                    }
                };
                *self.drops.entry(reason).or_default() += 1;
                return;
            }
        };
        let packet = &datagram[opened.inner.clone()];
        let delivery = frame::addresses(packet)
            .ok_or(PolicyDrop::BadInner)
            .and_then(|(src, dst)| {
                self.table
                    .deliver(opened.pcx_dp_id, opened.sender, src, dst)
            });
        let gw = self.by_gateway.entry(opened.sender).or_default();
        gw.opened += 1;
        gw.opened_bytes += packet.len() as u64;
        let delivery = match delivery {
            Ok(d) => d,
            Err(PolicyDrop::NoNeighbour) => {
                if let Some((_, dst)) = frame::addresses(packet) {
                    self.report_unresolved(opened.pcx_dp_id, dst);
                }
                return self.drop_for_peering(opened.pcx_dp_id, PolicyDrop::NoNeighbour);
            }
            Err(reason) => return self.drop_for_peering(opened.pcx_dp_id, reason),
        };
        let pcx = self.by_peering.entry(opened.pcx_dp_id).or_default();
        pcx.opened += 1;
        pcx.opened_bytes += packet.len() as u64;
        // Any queue of the port can transmit; queue 0 always exists.
        let Some(port) = self.ports.get_mut(&(delivery.ifindex, 0)) else {
            *self.drops.entry("no_socket").or_default() += 1;
            return;
        };
        port.stage(|buf| {
            frame::write_frame(
                buf,
                delivery.dst_mac,
                delivery.src_mac,
                delivery.vlan,
                packet,
            )
        });
    }

    /// Waits in poll(2) for any socket to become readable.
    fn sleep(&mut self) {
        let xdp_fds = self.xdp.iter().flat_map(|x| x.fds());
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.underlay.fd())
            .chain(self.ports.values().map(|p| p.fd()))
            .chain(xdp_fds)
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of pollfd for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, IDLE_POLL_MS) };
    }

    fn write_stats(&mut self) {
        self.last_stats = Instant::now();
        let keys = self.core.keys();
        let stats = TunnelStats {
            gateway_id: self.core.gateway_id(),
            current_epoch: keys.current_epoch(),
            held_epochs: keys.held_epochs().collect(),
            peerings: self
                .by_peering
                .iter()
                .map(|(id, s)| (self.table.peering_name(*id), *s))
                .collect(),
            gateways: self
                .by_gateway
                .iter()
                .map(|(id, s)| (self.table.gateway_name(*id), *s))
                .collect(),
            drops: self
                .drops
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            sockets: self
                .ports
                .values_mut()
                .map(|p| {
                    p.refresh_kernel_counters();
                    &*p
                })
                .chain(self.xdp.iter_mut().flat_map(|x| x.sockets()))
                .map(|p| (format!("{}/{}", p.ifindex, p.queue), p.counters))
                .collect(),
            underlay_io: Some(if self.xdp.is_some() {
                UnderlayIo::AfXdp
            } else {
                UnderlayIo::Socket
            }),
            underlay: UnderlayCounters {
                tx_socket: self.socket_tx,
                rx_socket: self.socket_rx,
                ..self.xdp.as_ref().map(|x| x.counters).unwrap_or_default()
            },
        };
        if let Err(e) = write_atomic(&self.stats_path, &stats) {
            warn!("writing {}: {e:#}", self.stats_path.display());
        }
    }
}

/// What became of a datagram offered to AF_XDP.
enum XdpSeal {
    Sent,
    /// Sealed but dropped (and counted).
    Dropped,
    Failed(SealError),
    UseSocket,
}

fn seal_error_name(e: &SealError) -> &'static str {
    match e {
        SealError::NoCurrentKey => "no_current_key",
        SealError::MtuExceeded { .. } => "mtu_exceeded",
        SealError::OutputTooSmall { .. } => "output_too_small",
        SealError::KeyUsageExhausted { .. } => "key_usage_exhausted",
        SealError::CounterExhausted => "counter_exhausted",
        SealError::Crypto => "seal_failed",
    }
}

/// Writes JSON to a temporary file and renames it over `path`, so a reader
/// never sees half a file.
fn write_atomic(path: &std::path::Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Parses `a.b.c.d` or `a.b.c.d:port` (default: the tunnel port).
pub fn parse_endpoint(s: &str) -> Result<SocketAddrV4> {
    if let Ok(addr) = s.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    let ip: Ipv4Addr = s
        .parse()
        .with_context(|| format!("{s:?} is not an IPv4 address or address:port"))?;
    Ok(SocketAddrV4::new(ip, crate::tunnel::TUNNEL_UDP_PORT))
}
