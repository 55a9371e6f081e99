//! The resolver's IO edge: the addresses on the gateway, the sockets, the
//! counters file. Decisions are [`super::wire::respond`]'s.
//!
//! Each VPC's resolver address (base + 2 of its primary block) sits as a
//! /32 on the loopback interface of the gateway's namespace, marked with
//! [`DNS_ADDR_PROTO`] so the agent removes only its own (a dummy interface
//! would do as well, but kernels without `CONFIG_DUMMY` exist).
//! A host's query reaches the gateway's port like any packet; its
//! destination is in the host's own VPC, which no FIB entry covers, so the
//! dataplane passes it to the kernel (`Route::NoRoute`), which delivers it
//! to the local address. Hosts of the subnet holding base + 2 resolve it
//! on-link: the kernel answers ARP for any local address on any port
//! (`arp_ignore` 0, the default). A UDP socket and a TCP listener are
//! bound to each address, so replies leave from the address asked.
//!
//! Bounded: one message buffer of [`MAX_MESSAGE`] + 1 bytes per UDP socket
//! and per TCP connection, at most [`MAX_TCP`] connections at once, each
//! closed after [`TCP_IDLE`] without a query or [`TCP_QUERIES`] queries.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use log::{info, warn};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{watch, Semaphore},
    task::JoinHandle,
};

use super::table::DnsTable;
use super::wire::{respond, Drop, Kind, Outcome, MAX_MESSAGE};
use crate::{
    control::view::RegionView,
    gateway::{addr::DNS_ADDR_PROTO, nexthop::Resolver},
};

/// The interface holding the resolver addresses.
pub const DNS_IFACE: &str = "lo";
/// The counters file in the agent's state directory.
pub const DNS_STATS_FILE: &str = "dns-stats.json";
/// The DNS port (RFC 1035).
pub const PORT: u16 = 53;
/// TCP connections served at once, over all addresses.
pub const MAX_TCP: usize = 64;
/// A TCP connection idle this long is closed (RFC 7766 suggests seconds).
pub const TCP_IDLE: Duration = Duration::from_secs(5);
/// Queries served on one TCP connection before it is closed.
pub const TCP_QUERIES: u32 = 32;
/// How often the counters file is rewritten (when they changed).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed receive or accept, so a lasting error cannot spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The resolver's counters, as the agent writes them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStats {
    /// Messages received (UDP datagrams and TCP messages).
    pub queries: u64,
    /// NOERROR responses (with a record or without: NODATA).
    pub answers: u64,
    pub nxdomain: u64,
    pub refused: u64,
    pub formerr: u64,
    pub notimp: u64,
    /// Dropped without a response, by reason.
    pub drop_short: u64,
    pub drop_not_query: u64,
    pub drop_oversize: u64,
    pub drop_emit: u64,
    pub drop_tcp_busy: u64,
    pub drop_send: u64,
    /// The resolver addresses served.
    pub addresses: Vec<Ipv4Addr>,
}

impl DnsStats {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    answers: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    formerr: AtomicU64,
    notimp: AtomicU64,
    drop_short: AtomicU64,
    drop_not_query: AtomicU64,
    drop_oversize: AtomicU64,
    drop_emit: AtomicU64,
    drop_tcp_busy: AtomicU64,
    drop_send: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn count(&self, o: &Outcome) {
        bump(&self.queries);
        bump(match o {
            Outcome::Reply(_, Kind::Answer) => &self.answers,
            Outcome::Reply(_, Kind::NxDomain) => &self.nxdomain,
            Outcome::Reply(_, Kind::Refused) => &self.refused,
            Outcome::Reply(_, Kind::FormErr) => &self.formerr,
            Outcome::Reply(_, Kind::NotImp) => &self.notimp,
            Outcome::Drop(Drop::Short) => &self.drop_short,
            Outcome::Drop(Drop::NotQuery) => &self.drop_not_query,
            Outcome::Drop(Drop::Oversize) => &self.drop_oversize,
            Outcome::Drop(Drop::Emit) => &self.drop_emit,
        });
    }

    fn snapshot(&self, addresses: Vec<Ipv4Addr>) -> DnsStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStats {
            queries: g(&self.queries),
            answers: g(&self.answers),
            nxdomain: g(&self.nxdomain),
            refused: g(&self.refused),
            formerr: g(&self.formerr),
            notimp: g(&self.notimp),
            drop_short: g(&self.drop_short),
            drop_not_query: g(&self.drop_not_query),
            drop_oversize: g(&self.drop_oversize),
            drop_emit: g(&self.drop_emit),
            drop_tcp_busy: g(&self.drop_tcp_busy),
            drop_send: g(&self.drop_send),
            addresses,
        }
    }
}

/// What the serving tasks share.
struct Shared {
    table: RwLock<Arc<DnsTable>>,
    counters: Counters,
    tcp: Semaphore,
}

impl Shared {
    fn answer(&self, src: SocketAddr, dst: Ipv4Addr, packet: &[u8]) -> Outcome {
        let table = self.table.read().map(|t| t.clone()).unwrap_or_default();
        let src = match src.ip() {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let out = respond(&table, src, dst, packet);
        self.counters.count(&out);
        out
    }
}

/// The agent's handle on the resolver thread: hand it each new view.
pub struct Dns {
    views: watch::Sender<Option<Arc<DnsTable>>>,
    revision: Option<u64>,
}

impl Dns {
    /// Starts the resolver thread in the calling thread's network
    /// namespace; its counters go to `state_dir`.
    pub fn start(state_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let (tx, rx) = watch::channel(None);
        let stats = state_dir.join(DNS_STATS_FILE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || runtime.block_on(serve(rx, stats)))?;
        Ok(Dns {
            views: tx,
            revision: None,
        })
    }

    /// Follows `view`: a new revision rebuilds the table and the addresses.
    pub fn follow(&mut self, view: &RegionView) {
        if self.revision == Some(view.revision) {
            return;
        }
        self.revision = Some(view.revision);
        let _ = self.views.send(Some(Arc::new(DnsTable::new(view))));
    }
}

/// Serving tasks of one address.
struct Served {
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl std::ops::Drop for Served {
    fn drop(&mut self) {
        self.udp.abort();
        self.tcp.abort();
    }
}

async fn serve(mut views: watch::Receiver<Option<Arc<DnsTable>>>, stats: PathBuf) {
    let shared = Arc::new(Shared {
        table: RwLock::new(Arc::new(DnsTable::default())),
        counters: Counters::default(),
        tcp: Semaphore::new(MAX_TCP),
    });
    let mut edge = Edge {
        served: BTreeMap::new(),
        iface: Iface::default(),
        want: BTreeSet::new(),
        failed: BTreeSet::new(),
    };
    let mut tick = tokio::time::interval(STATS_EVERY);
    let mut last = None;
    loop {
        tokio::select! {
            changed = views.changed() => {
                if changed.is_err() {
                    return; // the agent is gone
                }
                let Some(table) = views.borrow_and_update().clone() else {
                    continue;
                };
                edge.want = table.resolver_addrs().into_iter().collect();
                if let Ok(mut t) = shared.table.write() {
                    *t = table;
                }
                edge.reconcile(&shared).await;
            }
            _ = tick.tick() => {
                if edge.iface.problem.is_some() || edge.served.len() != edge.want.len() {
                    edge.reconcile(&shared).await; // retry what failed
                }
                let snap = shared.counters.snapshot(edge.served.keys().copied().collect());
                if last.as_ref() != Some(&snap) {
                    if let Err(e) = write_atomic(&stats, &snap) {
                        warn!("dns: writing {}: {e:#}", stats.display());
                    }
                    last = Some(snap);
                }
            }
        }
    }
}

/// The addresses wanted, those on the interface, the sockets on them.
struct Edge {
    served: BTreeMap<Ipv4Addr, Served>,
    iface: Iface,
    want: BTreeSet<Ipv4Addr>,
    /// Addresses whose sockets could not be bound (logged once each).
    failed: BTreeSet<Ipv4Addr>,
}

impl Edge {
    async fn reconcile(&mut self, shared: &Arc<Shared>) {
        // Most revisions change routes only: the addresses are synced when
        // their set changed or the last sync failed.
        if self.want != self.iface.have || self.iface.problem.is_some() {
            self.iface.sync(&self.want);
        }
        let (want, iface) = (&self.want, &self.iface);
        self.served.retain(|a, _| want.contains(a) && iface.has(*a));
        for a in want.iter().filter(|a| iface.has(**a)) {
            if self.served.contains_key(a) {
                continue;
            }
            match bind(*a, shared).await {
                Ok(s) => {
                    self.served.insert(*a, s);
                    self.failed.remove(a);
                }
                Err(e) => {
                    if self.failed.insert(*a) {
                        warn!("dns: serving {a}: {e:#}");
                    }
                }
            }
        }
    }
}

/// The resolver addresses on [`DNS_IFACE`].
#[derive(Default)]
struct Iface {
    have: BTreeSet<Ipv4Addr>,
    problem: Option<String>,
}

impl Iface {
    fn has(&self, a: Ipv4Addr) -> bool {
        self.have.contains(&a)
    }

    fn sync(&mut self, want: &BTreeSet<Ipv4Addr>) {
        let result = self.try_sync(want);
        let problem = result.err().map(|e| format!("{e:#}"));
        if problem.is_some() && problem != self.problem {
            warn!("dns addresses: {}", problem.as_deref().unwrap_or_default());
        }
        self.problem = problem;
    }

    fn try_sync(&mut self, want: &BTreeSet<Ipv4Addr>) -> Result<()> {
        let mut nl = Resolver::new()?;
        let ifindex = crate::sys::ifindex(DNS_IFACE)?;
        // Local routes of a down interface's addresses are not installed.
        nl.set_up(ifindex)?;
        let ours = nl.addresses_of_proto(DNS_ADDR_PROTO)?;
        for a in ours
            .iter()
            .filter(|a| a.0 != ifindex || !want.contains(&a.1))
        {
            nl.del_addr(*a)?;
            info!("dns: removed resolver address {}", a.1);
        }
        let on_iface: BTreeSet<Ipv4Addr> = ours
            .iter()
            .filter(|a| a.0 == ifindex && a.2 == 32)
            .map(|a| a.1)
            .collect();
        for a in want.difference(&on_iface) {
            nl.add_addr((ifindex, *a, 32), DNS_ADDR_PROTO)?;
            info!("dns: resolver address {a}");
        }
        self.have = want.clone();
        Ok(())
    }
}

/// Removes the resolver addresses an earlier run left (`--dns off`).
pub fn remove_addrs() {
    let result = Resolver::new().and_then(|mut nl| {
        for a in nl.addresses_of_proto(DNS_ADDR_PROTO)? {
            nl.del_addr(a)?;
            info!("dns: off, removed resolver address {}", a.1);
        }
        Ok(())
    });
    if let Err(e) = result {
        warn!("dns: removing resolver addresses: {e:#}");
    }
}

async fn bind(addr: Ipv4Addr, shared: &Arc<Shared>) -> Result<Served> {
    let at = SocketAddr::V4(SocketAddrV4::new(addr, PORT));
    let udp = UdpSocket::bind(at)
        .await
        .with_context(|| format!("UDP {at}"))?;
    let tcp = TcpListener::bind(at)
        .await
        .with_context(|| format!("TCP {at}"))?;
    Ok(Served {
        udp: tokio::spawn(serve_udp(udp, addr, shared.clone())),
        tcp: tokio::spawn(serve_tcp(tcp, addr, shared.clone())),
    })
}

async fn serve_udp(sock: UdpSocket, addr: Ipv4Addr, shared: Arc<Shared>) {
    // One byte more than the largest message: a datagram that fills it
    // was larger (the rest is cut off by the kernel) and is dropped.
    let mut buf = [0u8; MAX_MESSAGE + 1];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        if let Outcome::Reply(bytes, _) = shared.answer(src, addr, &buf[..n]) {
            if sock.send_to(&bytes, src).await.is_err() {
                bump(&shared.counters.drop_send);
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, addr: Ipv4Addr, shared: Arc<Shared>) {
    loop {
        let Ok((stream, src)) = listener.accept().await else {
            // E.g. out of file descriptors: pause rather than spin.
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        let Ok(permit) = shared.tcp.try_acquire() else {
            bump(&shared.counters.drop_tcp_busy);
            continue; // dropping the stream closes it
        };
        permit.forget();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                TCP_IDLE * TCP_QUERIES,
                serve_conn(stream, src, addr, &shared),
            )
            .await;
            shared.tcp.add_permits(1);
        });
    }
}

/// RFC 1035 4.2.2: each message preceded by its 16-bit length.
async fn serve_conn(mut s: TcpStream, src: SocketAddr, addr: Ipv4Addr, shared: &Shared) {
    let mut buf = [0u8; MAX_MESSAGE];
    for _ in 0..TCP_QUERIES {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_MESSAGE {
            bump(&shared.counters.queries);
            bump(&shared.counters.drop_oversize);
            return;
        }
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Outcome::Reply(bytes, _) = shared.answer(src, addr, &buf[..len]) else {
            return;
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        if s.write_all(&framed).await.is_err() {
            bump(&shared.counters.drop_send);
            return;
        }
    }
}

/// Writes JSON to a temporary file and renames it over `path`, so a reader
/// never sees half a file.
fn write_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
