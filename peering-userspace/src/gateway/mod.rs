//! The tunnel's IO edge: worker threads moving packets between the VPC
//! ports' AF_XDP sockets and the underlay, each around its own sans-IO
//! [`GatewayCore`] (and [`crate::tunnel::TunnelCore`]).
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
//! With `workers` N (`peering-agent run --workers N`), worker `i` owns the
//! AF_XDP sockets of the queues `q` with `q % N == i`, on every VPC port
//! and on the underlay, and nothing per packet is shared between workers
//! but what the protocol needs shared ([`TunnelShared`]): the send counter
//! (nonces never repeat across workers) and the replay windows (a datagram
//! replayed onto another worker's queue is still refused). Each worker
//! transmits through its own sockets: on the underlay, from its first
//! queue; to a VPC port, from its first queue of that port. Counters are
//! per worker and summed by the exporter. Worker 0 also reads the UDP
//! socket; every worker sends through it (a clone of the descriptor).
//!
//! The agent owns everything else: it builds the [`TunnelTable`], hands
//! over keys as the control store publishes them, and says which ports
//! exist; all of that arrives as [`Update`]s, one copy on each worker's
//! channel. A worker sleeps in poll(2) when there is nothing to move.

pub mod addr;
pub mod core;
pub mod frame;
pub mod nexthop;
pub mod packet_socket;
pub mod reason;
pub mod stats;
pub mod table;
pub mod udp;
pub mod veth;
pub mod xdp_underlay;
pub mod xsk;

use std::{
    collections::{btree_map::Entry, BTreeMap},
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError},
        Arc, Mutex, Weak,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, XskMap};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::control::clock::unix_ms;
use crate::tunnel::{EpochKey, TunnelConfig, TunnelShared};

pub use self::core::{Action, GatewayCore, Route};
pub use self::reason::DropReason;
pub use self::stats::{PathStats, TunnelStats};
pub use self::table::{PolicyDrop, TunnelTable};
pub use self::xdp_underlay::{Link, UnderlayCounters};
use self::{
    packet_socket::PacketSocket,
    stats::Shared,
    table::Delivery,
    udp::{Batch, Underlay},
    xdp_underlay::{Transmit, XdpUnderlay},
    xsk::XskPort,
};

/// Frames read from one socket per turn.
const RX_BATCH: u32 = 64;
/// The AF_PACKET delivery buffer: the largest inner packet (an underlay
/// datagram is at most a jumbo frame) behind an Ethernet header and a tag.
const FALLBACK_FRAME: usize = 9216 + 18;
/// Longest sleep in poll(2): bounds how late keys activate and socket
/// counters reach the exporter.
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
#[derive(Debug)]
pub enum Update {
    Table(Box<TunnelTable>),
    Key(EpochKey),
    /// Every VPC port by ifindex.
    Ports(BTreeMap<u32, PortSlots>),
    /// Next hops of the remote gateways: (address, ifindex, link).
    Links(Vec<(Ipv4Addr, u32, Link)>),
}

impl Update {
    /// A copy for another worker (keys deliberately copied, see
    /// [`EpochKey::duplicate`]).
    fn duplicate(&self) -> Update {
        match self {
            Update::Table(t) => Update::Table(t.clone()),
            Update::Key(k) => Update::Key(k.duplicate()),
            Update::Ports(p) => Update::Ports(p.clone()),
            Update::Links(l) => Update::Links(l.clone()),
        }
    }
}

/// Whether worker `index` of `workers` owns queue `queue` (of any port).
pub fn owns_queue(index: u32, workers: u32, queue: u32) -> bool {
    queue % workers.max(1) == index
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

pub struct TunnelParams {
    pub config: TunnelConfig,
    /// Local address of the underlay socket (port: the tunnel port).
    pub bind: SocketAddrV4,
    pub xsk_map: XskMap<MapData>,
    /// Where the counters are written, atomically, four times a second
    /// (by a thread of their own, see [`stats`]).
    pub stats_path: PathBuf,
    /// The underlay interface when AF_XDP is to be used on it.
    pub af_xdp: Option<UnderlayPort>,
    /// Tunnel worker threads (at least 1).
    pub workers: u32,
}

/// The running tunnel workers.
pub struct Tunnel {
    /// One channel per worker.
    updates: Vec<Sender<Update>>,
    af_xdp: bool,
    threads: Vec<JoinHandle<()>>,
    /// Writes the counters; ends with the tunnel workers.
    _exporter: JoinHandle<()>,
    counters: Vec<Weak<Shared>>,
    rotation_needed: Arc<AtomicBool>,
    unresolved: Receiver<(u32, Ipv4Addr)>,
}

/// Hosts the tunnel found no MAC for, queued for the agent to resolve;
/// beyond this the drop is still counted, but the host is not queued
/// (`resolve_queue_full`).
const UNRESOLVED_QUEUE: usize = 64;

impl Tunnel {
    /// Binds the underlay socket and every worker's AF_XDP sockets on the
    /// underlay (failing here, not in a thread) and starts the workers.
    pub fn spawn(params: TunnelParams) -> Result<Self> {
        let workers = params.workers.max(1);
        let underlay = Underlay::bind(params.bind)?;
        let xsk_map = Arc::new(Mutex::new(params.xsk_map));
        let mut xdps = Vec::new();
        for index in 0..workers {
            xdps.push(match params.af_xdp {
                Some(p) => open_underlay(p, params.bind, index, workers, &xsk_map)?,
                None => None,
            });
        }
        let (unresolved_tx, unresolved) = mpsc::sync_channel(UNRESOLVED_QUEUE);
        let rotation_needed = Arc::new(AtomicBool::new(false));
        let af_xdp = xdps.iter().any(Option::is_some);
        let shared = TunnelShared::new(params.config.counter_floor);
        let config = params.config.worker_share(workers);
        let (mut updates, mut threads, mut counters) = (Vec::new(), Vec::new(), Vec::new());
        for (index, xdp) in (0..workers).zip(xdps) {
            let mut core = GatewayCore::worker(config, shared.clone());
            core.set_underlay_mtu(params.af_xdp.map(|p| p.mtu));
            counters.push(Arc::downgrade(core.shared()));
            let (tx, rx) = mpsc::channel();
            updates.push(tx);
            let mut worker = Worker::new(
                core,
                xsk_map.clone(),
                underlay.try_clone()?,
                xdp,
                rx,
                rotation_needed.clone(),
            );
            (worker.index, worker.workers) = (index, workers);
            worker.receives_socket = index == 0;
            worker.unresolved = Some(unresolved_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("tunnel-{index}"))
                .spawn(move || worker.run())
                .context("starting a tunnel worker")?;
            threads.push(thread);
        }
        let exporter = stats::spawn_exporter(counters.clone(), params.stats_path, STATS_EVERY)?;
        Ok(Tunnel {
            updates,
            af_xdp,
            threads,
            _exporter: exporter,
            counters,
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

    /// Hands `update` to every worker.
    pub fn update(&self, update: Update) -> Result<()> {
        let stopped = || anyhow::anyhow!("a tunnel worker has stopped");
        let Some((last, others)) = self.updates.split_last() else {
            return Err(stopped());
        };
        for tx in others {
            tx.send(update.duplicate()).map_err(|_| stopped())?;
        }
        last.send(update).map_err(|_| stopped())
    }

    /// Tunnel worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// True when datagrams move through AF_XDP on the underlay.
    pub fn uses_af_xdp(&self) -> bool {
        self.af_xdp
    }

    /// The counters of every worker, summed, while any runs.
    pub fn stats(&self) -> Option<TunnelStats> {
        stats::snapshot_all(&self.counters)
    }

    /// True while every worker runs.
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }
}

/// Worker `index`'s AF_XDP sockets on the underlay: its share of the
/// queues, or none (it then sends through the UDP socket) when the
/// interface has fewer queues than there are workers.
fn open_underlay(
    p: UnderlayPort,
    bind: SocketAddrV4,
    index: u32,
    workers: u32,
    xsk_map: &Mutex<XskMap<MapData>>,
) -> Result<Option<XdpUnderlay>> {
    let queues: Vec<u32> = (0..p.rx_queues.max(1))
        .filter(|q| owns_queue(index, workers, *q))
        .collect();
    if queues.is_empty() {
        warn!(
            "tunnel worker {index}: the underlay has {} queue(s) for {workers} workers; this one sends through the UDP socket",
            p.rx_queues
        );
        return Ok(None);
    }
    let x = XdpUnderlay::open(p.ifindex, bind, p.mtu, &queues, &mut stats::lock(xsk_map))?;
    info!(
        "tunnel worker {index}: AF_XDP on the underlay, ifindex {}, queue(s) {queues:?}",
        p.ifindex
    );
    Ok(Some(x))
}

struct Worker {
    index: u32,
    workers: u32,
    core: GatewayCore,
    underlay: Underlay,
    /// Whether this worker reads the UDP socket (worker 0 only).
    receives_socket: bool,
    /// Taken out while its frames are handled (see `decapsulate`).
    xdp: Option<XdpUnderlay>,
    /// Datagrams through the socket, for the underlay counters.
    socket_tx: u64,
    socket_rx: u64,
    updates: Receiver<Update>,
    /// Shared by the workers; used only when ports change.
    xsk_map: Arc<Mutex<XskMap<MapData>>>,
    /// This worker's sockets by (ifindex, queue).
    ports: BTreeMap<(u32, u32), XskPort>,
    out: Batch,
    inbound: Option<Batch>,
    last_stats: Instant,
    last_tick: Instant,
    rotation_needed: Arc<AtomicBool>,
    /// Where hosts without a MAC are reported (bounded).
    unresolved: Option<SyncSender<(u32, Ipv4Addr)>>,
    /// Delivery to ports on which this worker owns no queue: opened when
    /// first needed, with the frame buffer it writes into (allocated once).
    fallback: Option<(PacketSocket, Box<[u8]>)>,
}

impl Worker {
    fn new(
        core: GatewayCore,
        xsk_map: Arc<Mutex<XskMap<MapData>>>,
        underlay: Underlay,
        xdp: Option<XdpUnderlay>,
        updates: Receiver<Update>,
        rotation_needed: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            index: 0,
            workers: 1,
            core,
            underlay,
            receives_socket: true,
            xdp,
            socket_tx: 0,
            socket_rx: 0,
            updates,
            xsk_map,
            ports: BTreeMap::new(),
            out: Batch::default(),
            inbound: Some(Batch::default()),
            last_stats: Instant::now(),
            last_tick: Instant::now(),
            rotation_needed,
            unresolved: None,
            fallback: None,
        }
    }

    fn run(&mut self) {
        loop {
            if !self.apply_updates() {
                info!("tunnel worker {} stopping: the agent went away", self.index);
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
            let mut waiting = 0;
            for port in self.ports.values_mut() {
                port.reclaim();
                port.flush();
                waiting += port.tx_staged();
            }
            if let Some(x) = self.xdp.as_mut() {
                x.maintain();
                waiting += x.tx_staged();
            }
            if self.last_stats.elapsed() >= STATS_EVERY {
                self.publish_io_stats();
            }
            // Frames waiting for ring room are sent on the next turn, not
            // after a sleep.
            if moved == 0 && waiting == 0 {
                self.sleep();
            }
        }
    }

    /// Applies queued updates; false once the agent dropped its sender.
    fn apply_updates(&mut self) -> bool {
        loop {
            match self.updates.try_recv() {
                Ok(Update::Table(table)) => self.core.set_table(*table),
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

    /// Opens sockets for new (port, queue) pairs this worker owns, closes
    /// gone ones, and points the XSKMAP slots at them.
    fn set_ports(&mut self, wanted: &BTreeMap<u32, PortSlots>) {
        let keep =
            |(ifindex, queue): &(u32, u32)| wanted.get(ifindex).is_some_and(|s| *queue < s.queues);
        self.ports.retain(|key, _| keep(key));
        let (index, workers) = (self.index, self.workers);
        for (&ifindex, slots) in wanted {
            if slots.queues <= index {
                warn!("tunnel worker {index}: port {ifindex} has {} queue(s) for {workers} workers; this worker delivers to it through an AF_PACKET socket (one syscall per packet)", slots.queues);
            }
            for queue in (0..slots.queues).filter(|q| owns_queue(index, workers, *q)) {
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
                if let Err(e) = stats::lock(&self.xsk_map).set(slot, fd, 0) {
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

    /// Seals one frame the XDP program handed over: into an AF_XDP frame
    /// when the underlay path allows, else into the socket batch.
    fn seal_one(&mut self, meta: &[u8], frame: &[u8]) {
        let pcx = meta.try_into().map(u32::from_ne_bytes).unwrap_or(0);
        let Ok(route) = self.core.route(pcx, frame) else {
            return;
        };
        if let Some(xdp) = self.xdp.as_mut() {
            let core = &mut self.core;
            let sent = xdp.transmit(route.to, route.flow_port, |buf| {
                match core.seal_routed(pcx, frame, &route, buf) {
                    Action::Transmit { len, .. } => Ok(len),
                    _ => Err(()),
                }
            });
            match sent {
                // Sent, or dropped and counted by the core.
                Transmit::Staged | Transmit::Failed(()) => return,
                Transmit::TooBig => return self.core.count_drop(DropReason::UnderlayMtuExceeded),
                Transmit::UseSocket | Transmit::RingFull => {}
            }
        }
        if self.out.is_full() {
            self.send_socket_batch();
        }
        if let Action::Transmit { to, len } =
            self.core.seal_routed(pcx, frame, &route, self.out.slot())
        {
            self.out.push(len, to);
        }
    }

    /// Queues a host without a MAC for the agent to resolve.
    fn report_unresolved(&mut self, ifindex: u32, host: Ipv4Addr) {
        let Some(tx) = &self.unresolved else { return };
        if let Err(TrySendError::Full(_)) = tx.try_send((ifindex, host)) {
            self.core.count_drop(DropReason::ResolveQueueFull);
        }
    }

    /// Underlay → VPC ports. Returns the number of datagrams read.
    fn decapsulate(&mut self) -> usize {
        // Out of `self` for the loop so `open_one` may borrow it; an Option
        // so that taking it allocates nothing.
        let mut inbound = self.inbound.take().unwrap_or_default();
        let mut n = if self.receives_socket {
            self.underlay.recv(&mut inbound)
        } else {
            0
        };
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
        let (delivery, inner) = match self.core.open(datagram) {
            Action::Deliver { delivery, inner } => (delivery, inner),
            Action::Resolve { ifindex, host } => return self.report_unresolved(ifindex, host),
            Action::Transmit { .. } | Action::Drop(_) => return,
        };
        // Any queue of the port can transmit: this worker's first one.
        let mut own = self
            .ports
            .range_mut((delivery.ifindex, 0)..=(delivery.ifindex, u32::MAX));
        let packet = &datagram[inner];
        let Some((_, port)) = own.next() else {
            return self.deliver_by_packet_socket(&delivery, packet);
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

    /// Delivers through the AF_PACKET socket (see [`packet_socket`]); a
    /// failure to open or send is a `no_socket` drop.
    fn deliver_by_packet_socket(&mut self, delivery: &Delivery, packet: &[u8]) {
        if self.fallback.is_none() {
            match PacketSocket::open() {
                Ok(s) => {
                    info!(
                        "tunnel worker {}: delivering to ports without a queue of its own through AF_PACKET",
                        self.index
                    );
                    self.fallback = Some((s, vec![0u8; FALLBACK_FRAME].into_boxed_slice()));
                }
                Err(e) => {
                    warn!("tunnel worker {}: AF_PACKET socket: {e}", self.index);
                    return self.core.count_drop(DropReason::NoSocket);
                }
            }
        }
        let Some((socket, buf)) = self.fallback.as_mut() else {
            return;
        };
        let len = frame::write_frame(
            buf,
            delivery.dst_mac,
            delivery.src_mac,
            delivery.vlan,
            packet,
        );
        if len == 0 || socket.send(delivery.ifindex, &buf[..len]).is_err() {
            self.core.count_drop(DropReason::NoSocket);
        }
    }

    /// Waits in poll(2) for any socket to become readable.
    fn sleep(&mut self) {
        let xdp_fds = self.xdp.iter().flat_map(|x| x.fds());
        let socket = self.receives_socket.then(|| self.underlay.fd());
        let mut fds: Vec<libc::pollfd> = socket
            .into_iter()
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

    /// Hands the socket and underlay counters to the exporter: a copy per
    /// socket (bounded by configuration), nothing the network can grow.
    /// The packet counters need nothing here: they are shared atomics.
    fn publish_io_stats(&mut self) {
        self.last_stats = Instant::now();
        let shared = self.core.shared().clone();
        let mut io = stats::lock(&shared.io);
        io.sockets.clear();
        let sockets = self
            .ports
            .values_mut()
            .map(|p| {
                p.refresh_kernel_counters();
                &*p
            })
            .chain(self.xdp.iter_mut().flat_map(|x| x.sockets()));
        io.sockets
            .extend(sockets.map(|p| ((p.ifindex, p.queue), p.counters)));
        io.underlay_io = Some(if self.xdp.is_some() {
            UnderlayIo::AfXdp
        } else {
            UnderlayIo::Socket
        });
        io.underlay = UnderlayCounters {
            tx_socket: self.socket_tx,
            rx_socket: self.socket_rx,
            ..self.xdp.as_ref().map(|x| x.counters).unwrap_or_default()
        };
    }
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
