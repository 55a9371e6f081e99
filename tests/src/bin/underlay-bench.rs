//! `underlay-bench`: how fast can a gateway put sealed tunnel datagrams on
//! the underlay link, and take them off it?
//!
//! Two namespaces joined by a veth pair (198.18.0.1/24 ↔ 198.18.0.2/24,
//! MTU 1600). The sender namespace transmits UDP datagrams to port 51900
//! whose payload is a tunnel datagram (44 bytes of tunnel overhead + the
//! inner packet) with one of these methods:
//! - `udp-sendmmsg`: a connected UDP socket, sendmmsg(2) with 64 messages;
//! - `af_xdp/N`: AF_XDP TX on queue 0 of the sender's veth (copy mode),
//!   userspace writes whole Ethernet/IPv4/UDP frames into a UMEM of 4096
//!   2 KiB frames, queues up to N descriptors and kicks with sendto(2).
//!
//! The receiver namespace takes them with one of these methods:
//! - `recvmmsg`: no XDP program; every frame goes through the normal stack
//!   to a UDP socket bound to 198.18.0.2:51900 that a thread drains with
//!   recvmmsg(2) (batches of 64, non-blocking + poll);
//! - `af_xdp`: the tunnel's receive path. The underlay program
//!   (`peering_underlay`) is attached natively to the receiver's veth with
//!   198.18.0.2:51900 as the endpoint in UNDERLAY, and redirects the
//!   datagrams into one AF_XDP socket (`XskPort`, queue 0, copy mode) in its
//!   XSKMAP slot. A thread reads the RX ring in batches of 64, parses every
//!   frame with `frame::udp_payload` as the tunnel does and counts only the
//!   frames that parse; it sleeps in poll(2) when the ring is empty.
//!
//! Where the kernel's share of receiving runs (column `kernel rx on`):
//! - `snd CPU`: as veth does it. A veth hands a frame to its peer on the
//!   CPU that transmits it, so the sender's CPU also runs the receive path
//!   in softirq: backlog + IP/UDP up to the socket queue, or the XDP
//!   program + the copy into the UMEM. The sender's rate then includes the
//!   kernel's receive work, and the receiver thread only does its own part.
//! - `rcv CPU`: the receiver veth's NAPI runs in a kernel thread (threaded
//!   NAPI) pinned to the receiver's CPU, for both receivers (recvmmsg gets
//!   a NAPI instance by turning GRO on; its socket has no UDP_GRO, so
//!   datagrams are not merged). That CPU then carries all the receive work,
//!   kernel and userspace, as a gateway core with its NIC queue would; the
//!   NAPI thread and the receiver thread share it through the scheduler.
//!
//! Figures: sent = datagrams the sender handed to the device (sendmmsg
//! return values / AF_XDP completions), received = datagrams the receiver
//! got, both divided by the send window. Losses: `backlog` = packets that
//! did not fit in a CPU's input backlog (/proc/net/softnet_stat, where veth
//! puts what it forwards when the peer has no NAPI), `sock` = the receiving
//! socket's drops (UDP RcvbufErrors for recvmmsg; for AF_XDP the socket's
//! XDP_STATISTICS rx_dropped + rx_ring_full: no free fill-ring frame, or a
//! full RX ring). `snd`/`rcv` CPU come from getrusage(RUSAGE_THREAD) for the
//! sender and receiver threads; softirq work is charged to whatever thread
//! it interrupts. `krx` CPU is the kernel's receive work: softirq time of
//! all CPUs (/proc/stat) plus the NAPI thread's time when there is one; in
//! the `snd CPU` rows it overlaps with the sender's figure. `dgrams/call`:
//! datagrams per sendmmsg/sendto, and per recvmmsg or poll call.
//!
//! Usage: `underlay-bench [--secs S] [--no-pin]` (root, 2+ CPUs, ethtool).
//! By default the sender thread is pinned to CPU 0 and the receiver thread
//! to CPU 1; the `rcv CPU` rows pin the NAPI thread to CPU 1 either way.

use std::{
    io,
    mem::zeroed,
    net::{SocketAddrV4, UdpSocket},
    num::NonZeroU32,
    os::fd::AsRawFd,
    ptr::null_mut,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use peering_common::UNDERLAY_XSK_BASE;
use peering_tests::lab::{veth, Netns};
use peering_userspace::{
    dataplane::{AttachMode, Dataplane},
    gateway::{
        frame,
        xsk::{Area, XskPort},
    },
    sys,
};
use xdpilone::{xdp::XdpDesc, BufIdx, IfInfo, Socket, SocketConfig, Umem, UmemConfig};

const PORT: u16 = 51900;
/// Tunnel overhead added to every inner packet.
const OVERHEAD: usize = 44;
const BATCH: usize = 64;
const SRC: [u8; 4] = [198, 18, 0, 1];
const DST: [u8; 4] = [198, 18, 0, 2];
const TX_IF: &str = "ul0";
const RX_IF: &str = "ul1";
/// CPUs of the sender and receiver threads (unless --no-pin); the
/// receiver's also takes steered kernel receive work.
const SND_CPU: usize = 0;
const RCV_CPU: usize = 1;

const FRAME_SIZE: u32 = 2048;
const FRAMES: u32 = 4096;
const TX_RING: u32 = 2048;
const SOL_XDP: libc::c_int = 283;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const TX_BUDGET: u32 = 256;

#[derive(Clone, Copy)]
enum Method {
    UdpSendmmsg,
    AfXdp { batch: u32 },
}

impl Method {
    fn name(self) -> String {
        match self {
            Method::UdpSendmmsg => "udp-sendmmsg".into(),
            Method::AfXdp { batch } => format!("af_xdp/{batch}"),
        }
    }
}

/// Which CPU does the kernel's share of receiving. A veth hands a frame to
/// its peer on the CPU that transmits it, so by default the sender's CPU
/// also runs the receive path (backlog + IP/UDP, or the XDP program + the
/// copy into the UMEM) in softirq.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RxWork {
    /// As veth does it: the sender's CPU.
    SenderCpu,
    /// Steered to the receiver's CPU: the receiver veth's NAPI runs in a
    /// kernel thread pinned there.
    ReceiverCpu,
}

impl RxWork {
    fn name(self) -> &'static str {
        match self {
            RxWork::SenderCpu => "snd CPU",
            RxWork::ReceiverCpu => "rcv CPU",
        }
    }
}

/// How the receiver namespace takes the datagrams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Recvmmsg,
    AfXdp,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::Recvmmsg => "recvmmsg",
            Receiver::AfXdp => "af_xdp",
        }
    }
}

/// What the sending thread did.
struct TxStats {
    sent: u64,
    secs: f64,
    cpu: f64,
    syscalls: u64,
}

/// What the receiving thread saw.
struct RxStats {
    datagrams: u64,
    bytes: u64,
    cpu: f64,
    /// recvmmsg: UDP RcvbufErrors in the receiver namespace during the run;
    /// AF_XDP: the socket's rx_dropped + rx_ring_full.
    sock_drops: u64,
    /// recvmmsg or poll calls.
    syscalls: u64,
}

struct Lab {
    tx: Netns,
    rx: Netns,
    peer_mac: [u8; 6],
}

fn main() -> Result<()> {
    sys::require_root()?;
    let mut secs = 3.0f64;
    let mut pin = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => {
                secs = args
                    .next()
                    .context("--secs needs a value")?
                    .parse()
                    .context("--secs")?
            }
            "--no-pin" => pin = false,
            _ => bail!("usage: underlay-bench [--secs S] [--no-pin]"),
        }
    }

    let tx = Netns::new("ultx");
    let rx = Netns::new("ulrx");
    veth(&tx, TX_IF, &rx, RX_IF);
    tx.exec_ok(&["ip", "link", "set", TX_IF, "mtu", "1600"]);
    rx.exec_ok(&["ip", "link", "set", RX_IF, "mtu", "1600"]);
    tx.exec_ok(&["ip", "addr", "add", "198.18.0.1/24", "dev", TX_IF]);
    // With TSO off on the sending side, veth hands every frame to the
    // receiving side's NAPI when it has one (XDP attached or GRO on), not
    // only frames of UDP sockets. It does not change what a UDP datagram
    // below the MTU looks like, and XDP on the peer forces it off anyway.
    tx.exec_ok(&["ethtool", "-K", TX_IF, "tso", "off"]);
    rx.exec_ok(&["ip", "addr", "add", "198.18.0.2/24", "dev", RX_IF]);
    // Resolve the neighbour once so neither method pays for ARP.
    if !tx.ping("198.18.0.2", 1) {
        bail!("198.18.0.2 does not answer ping from the sender namespace");
    }
    let peer_mac = sys::parse_mac(&rx.mac(RX_IF))?;
    let lab = Lab { tx, rx, peer_mac };

    // Each sender into the stack's receiver; the faster sender also into
    // the tunnel's AF_XDP receiver. Then that sender into both receivers
    // with the kernel's receive work moved off its CPU.
    let fast = Method::AfXdp { batch: 256 };
    let cases = [
        (Method::UdpSendmmsg, Receiver::Recvmmsg, RxWork::SenderCpu),
        (
            Method::AfXdp { batch: 64 },
            Receiver::Recvmmsg,
            RxWork::SenderCpu,
        ),
        (fast, Receiver::Recvmmsg, RxWork::SenderCpu),
        (fast, Receiver::AfXdp, RxWork::SenderCpu),
        (fast, Receiver::Recvmmsg, RxWork::ReceiverCpu),
        (fast, Receiver::AfXdp, RxWork::ReceiverCpu),
    ];
    peering_tests::say!(
        "underlay-bench: veth {TX_IF} -> {RX_IF}, UDP/{PORT}, {secs} s per case, \
         receivers take batches of {BATCH}, {}",
        if pin {
            "sender on CPU 0, receiver on CPU 1"
        } else {
            "threads not pinned (steered receive work on CPU 1)"
        }
    );
    // Per column: first and second header line.
    let columns = [
        ("sender", ""),
        ("receiver", ""),
        ("kernel", "rx on"),
        ("payload", "bytes"),
        ("sent", "Mpps"),
        ("recv", "Mpps"),
        ("recv", "Gbit/s"),
        ("loss", "%"),
        ("backlog", "drops"),
        ("sock", "drops"),
        ("snd", "CPU%"),
        ("rcv", "CPU%"),
        ("krx", "CPU%"),
        ("dgrams/call", "snd    rcv"),
    ];
    for c in [columns.map(|c| c.0), columns.map(|c| c.1)] {
        peering_tests::say!(
            "{:<12} {:<8} {:<7} {:>7} {:>6} {:>6} {:>6} {:>5} {:>7} {:>7} {:>4} {:>4} {:>4} {:>13}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7],
            c[8],
            c[9],
            c[10],
            c[11],
            c[12],
            c[13]
        );
    }
    for inner in [64usize, 1400] {
        let payload = inner + OVERHEAD;
        for (m, rcv, work) in cases {
            let c = run_case(&lab, m, rcv, work, payload, secs, pin).with_context(|| {
                format!(
                    "{} -> {} (kernel rx on {}) with {payload}-byte payload",
                    m.name(),
                    rcv.name(),
                    work.name()
                )
            })?;
            let (t, r) = (&c.tx, &c.rx);
            let sent = t.sent as f64 / t.secs / 1e6;
            let recv = r.datagrams as f64 / t.secs / 1e6;
            let gbit = r.bytes as f64 * 8.0 / t.secs / 1e9;
            let loss = if t.sent > 0 {
                100.0 * t.sent.saturating_sub(r.datagrams) as f64 / t.sent as f64
            } else {
                0.0
            };
            peering_tests::say!(
                "{:<12} {:<8} {:<7} {:>7} {:>6.3} {:>6.3} {:>6.2} {:>5.1} {:>7} {:>7} {:>4.0} {:>4.0} {:>4.0} {:>6.1} {:>6.1}",
                m.name(),
                rcv.name(),
                work.name(),
                format!("{inner}+{OVERHEAD}"),
                sent,
                recv,
                gbit,
                loss,
                c.backlog,
                r.sock_drops,
                100.0 * t.cpu / t.secs,
                100.0 * r.cpu / t.secs,
                100.0 * c.kernel_rx / t.secs,
                t.sent as f64 / t.syscalls.max(1) as f64,
                r.datagrams as f64 / r.syscalls.max(1) as f64,
            );
        }
    }
    drop(lab);
    Ok(())
}

/// What one case measured.
struct Case {
    tx: TxStats,
    rx: RxStats,
    /// Backlog drops (/proc/net/softnet_stat, all CPUs) during the run.
    backlog: u64,
    /// CPU seconds of the kernel's receive work during the send window:
    /// softirq time of all CPUs, plus the veth's NAPI thread when threaded.
    kernel_rx: f64,
}

/// One sender method into one receiver at one size: a fresh receiver
/// thread, then a sender thread for `secs`.
fn run_case(
    lab: &Lab,
    m: Method,
    rcv: Receiver,
    work: RxWork,
    payload: usize,
    secs: f64,
    pin: bool,
) -> Result<Case> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let rx_ns = lab.rx.name.clone();
    let rx_stop = stop.clone();
    let receiver =
        thread::spawn(move || receive(&rx_ns, rcv, pin.then_some(RCV_CPU), &rx_stop, ready_tx));
    ready_rx
        .recv()
        .map_err(|_| anyhow!("receiver thread ended before it was ready"))??;
    let backlog_before = softnet_drops();
    let sent = steer_and_send(lab, m, rcv, work, payload, secs, pin);
    stop.store(true, Ordering::Relaxed);
    let rx = receiver.join().map_err(|_| anyhow!("receiver panicked"))?;
    let (tx, kernel_rx) = sent?;
    Ok(Case {
        tx,
        rx: rx?,
        backlog: softnet_drops()? - backlog_before?,
        kernel_rx,
    })
}

/// Puts the kernel's receive work where `work` says, runs the sender for
/// `secs`, and undoes the steering. Returns the sender's figures and the
/// CPU time of the kernel's receive work during the send window.
fn steer_and_send(
    lab: &Lab,
    m: Method,
    rcv: Receiver,
    work: RxWork,
    payload: usize,
    secs: f64,
    pin: bool,
) -> Result<(TxStats, f64)> {
    let steer = work == RxWork::ReceiverCpu;
    // The veth has a NAPI instance once XDP is attached, or with GRO on.
    let gro = steer && rcv == Receiver::Recvmmsg;
    if gro {
        ethtool(&lab.rx, &["-K", RX_IF, "gro", "on"])?;
    }
    let napi = if steer {
        Some(napi_thread_on(&lab.rx, RCV_CPU)?)
    } else {
        None
    };
    let kernel_rx_cpu =
        || -> Result<f64> { Ok(softirq_secs()? + napi.map(task_cpu).transpose()?.unwrap_or(0.0)) };

    let kernel_rx_before = kernel_rx_cpu()?;
    let tx_ns = lab.tx.name.clone();
    let peer_mac = lab.peer_mac;
    let window = Duration::from_secs_f64(secs);
    let sender = thread::spawn(move || -> Result<TxStats> {
        sys::enter_netns(&tx_ns)?;
        if pin {
            pin_to(0, SND_CPU)?;
        }
        match m {
            Method::UdpSendmmsg => send_udp(payload, window),
            Method::AfXdp { batch } => send_xdp(payload, window, peer_mac, batch),
        }
    });
    let tx = sender.join().map_err(|_| anyhow!("sender panicked"))?;
    let kernel_rx = kernel_rx_cpu()? - kernel_rx_before;
    // Undone while the NAPI instance exists (before the receiver detaches
    // XDP): one created later would inherit the device's threaded flag.
    if napi.is_some() {
        ns_write(&lab.rx, &format!("/sys/class/net/{RX_IF}/threaded"), "0")?;
    }
    if gro {
        ethtool(&lab.rx, &["-K", RX_IF, "gro", "off"])?;
    }
    Ok((tx?, kernel_rx))
}

/// Runs ethtool in `ns`.
fn ethtool(ns: &Netns, args: &[&str]) -> Result<()> {
    let out = ns.cmd(&[&["ethtool"], args].concat()).output()?;
    if !out.status.success() {
        bail!(
            "ethtool {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes `value` to a sysfs file of `ns` (`ip netns exec` mounts that
/// namespace's sysfs).
fn ns_write(ns: &Netns, path: &str, value: &str) -> Result<()> {
    let out = ns
        .cmd(&["sh", "-c", &format!("echo {value} > {path}")])
        .output()?;
    if !out.status.success() {
        bail!(
            "{path} <- {value}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Kernel threads named like the receiver veth's NAPI threads.
fn napi_threads() -> Result<Vec<libc::pid_t>> {
    let prefix = format!("napi/{RX_IF}-");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end().starts_with(&prefix))
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Switches the receiver veth's NAPI to a kernel thread and pins that
/// thread to `cpu`. Other namespaces may have a NAPI thread of the same
/// name: ours is the one that appears.
fn napi_thread_on(ns: &Netns, cpu: usize) -> Result<libc::pid_t> {
    let before = napi_threads()?;
    ns_write(ns, &format!("/sys/class/net/{RX_IF}/threaded"), "1")?;
    let new: Vec<_> = napi_threads()?
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let [pid] = new[..] else {
        bail!("expected one new NAPI thread for {RX_IF}, found {new:?}");
    };
    pin_to(pid, cpu)?;
    Ok(pid)
}

/// CPU time (user + system) of task `pid`, in seconds.
fn task_cpu(pid: libc::pid_t) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which ends with the last ')'): state
    // is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')').context("/proc/pid/stat")? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Softirq time of all CPUs since boot, in seconds (/proc/stat).
fn softirq_secs() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let ticks: u64 = s
        .lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(7))
        .context("/proc/stat")?
        .parse()?;
    Ok(ticks as f64 / clock_ticks())
}

/// Pins task `pid` (0: the calling thread) to `cpu`.
fn pin_to(pid: libc::pid_t, cpu: usize) -> Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({pid}, cpu {cpu}): {}",
                io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// CPU time (user + system) of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Sum of the "dropped" column of /proc/net/softnet_stat: packets that did
/// not fit in a CPU's input backlog (where veth puts what it forwards).
fn softnet_drops() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/net/softnet_stat")?;
    let mut total = 0;
    for line in s.lines() {
        let col = line.split_whitespace().nth(1).context("softnet_stat")?;
        total += u64::from_str_radix(col, 16)?;
    }
    Ok(total)
}

/// UDP RcvbufErrors of the calling thread's network namespace.
fn udp_rcvbuf_errors() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut lines = s.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (lines.next().context("snmp")?, lines.next().context("snmp")?);
    let i = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .context("RcvbufErrors")?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .context("RcvbufErrors")?
        .parse()?)
}

fn set_int_opt(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> Result<()> {
    sys::setsockopt_int(fd, level, name, v).with_context(|| format!("setsockopt({level}, {name})"))
}

/// The receiver: enters the receiver namespace, sets up `rcv`, reports on
/// `ready`, then counts datagrams to 198.18.0.2:51900 until `stop` is set
/// and nothing has arrived for 50 ms.
fn receive(
    ns: &str,
    rcv: Receiver,
    cpu: Option<usize>,
    stop: &AtomicBool,
    ready: mpsc::Sender<Result<()>>,
) -> Result<RxStats> {
    let setup = || -> Result<()> {
        sys::enter_netns(ns)?;
        if let Some(c) = cpu {
            pin_to(0, c)?;
        }
        Ok(())
    };
    let ready = Ready(Some(ready));
    ready.check(setup())?;
    match rcv {
        Receiver::Recvmmsg => receive_socket(stop, ready),
        Receiver::AfXdp => receive_xdp(stop, ready),
    }
}

/// Tells `run_case` once that the receiver is ready, or why it is not.
struct Ready(Option<mpsc::Sender<Result<()>>>);

impl Ready {
    /// Passes `r` through; an error is also sent to `run_case`.
    fn check<T>(&self, r: Result<T>) -> Result<T> {
        r.map_err(|e| {
            if let Some(tx) = &self.0 {
                let _ = tx.send(Err(anyhow!("{e:#}")));
            }
            e
        })
    }

    fn go(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Ok(()));
        }
    }
}

/// Waits up to `ms` for `fd` to become readable; false on timeout.
fn wait_readable(fd: libc::c_int, ms: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut pfd, 1, ms) != 0 }
}

/// `recvmmsg`: the kernel's IP/UDP stack and a UDP socket.
fn receive_socket(stop: &AtomicBool, ready: Ready) -> Result<RxStats> {
    let socket = ready.check((|| -> Result<UdpSocket> {
        let socket = UdpSocket::bind(SocketAddrV4::new(DST.into(), PORT))
            .with_context(|| format!("bind 198.18.0.2:{PORT}"))?;
        socket.set_nonblocking(true)?;
        set_int_opt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            4 << 20,
        )?;
        Ok(socket)
    })())?;
    let fd = socket.as_raw_fd();
    let drops0 = ready.check(udp_rcvbuf_errors())?;
    let cpu0 = thread_cpu();
    ready.go();

    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let (mut datagrams, mut bytes, mut syscalls) = (0u64, 0u64, 0u64);
    loop {
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                null_mut(),
            )
        };
        syscalls += 1;
        if n > 0 {
            datagrams += n as u64;
            bytes += msgs[..n as usize]
                .iter()
                .map(|m| u64::from(m.msg_len))
                .sum::<u64>();
            continue;
        }
        let err = io::Error::last_os_error();
        if n < 0 && err.raw_os_error() != Some(libc::EAGAIN) {
            bail!("recvmmsg: {err}");
        }
        let stopping = stop.load(Ordering::Relaxed);
        syscalls += 1;
        if !wait_readable(fd, if stopping { 50 } else { 10 }) && stopping {
            break;
        }
    }
    Ok(RxStats {
        datagrams,
        bytes,
        cpu: thread_cpu() - cpu0,
        sock_drops: udp_rcvbuf_errors()? - drops0,
        syscalls,
    })
}

/// The tunnel's receive path on the receiver's veth. Field order is drop
/// order: the program is detached before the socket closes.
struct XdpRx {
    _dp: Dataplane,
    port: XskPort,
}

impl XdpRx {
    /// Loads the dataplane (unpinned), attaches `peering_underlay`
    /// natively to the receiver's veth with 198.18.0.2:51900 as its
    /// endpoint, and puts an AF_XDP socket on queue 0 in its XSKMAP slot.
    /// Runs in the receiver namespace: ifindexes and the XSKMAP entry
    /// resolve there.
    fn open() -> Result<Self> {
        let ifindex = sys::ifindex(RX_IF)?;
        let mut dp = Dataplane::load(None)?;
        dp.attach_underlay(RX_IF, AttachMode::Native)?;
        dp.maps
            .set_underlay(ifindex, SocketAddrV4::new(DST.into(), PORT))
            .context("UNDERLAY entry")?;
        let port = XskPort::bind(ifindex, 0).context("AF_XDP socket on queue 0")?;
        dp.maps
            .xsks_mut()
            .set(UNDERLAY_XSK_BASE, port.fd(), 0)
            .context("XSKMAP slot")?;
        Ok(Self { _dp: dp, port })
    }
}

/// The socket's rx_dropped + rx_ring_full (XDP_STATISTICS).
fn xsk_drops(fd: libc::c_int) -> Result<u64> {
    let mut st: libc::xdp_statistics = unsafe { zeroed() };
    let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut st as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    };
    if r != 0 {
        bail!("XDP_STATISTICS: {}", io::Error::last_os_error());
    }
    Ok(st.rx_dropped + st.rx_ring_full)
}

/// `af_xdp`: batches of 64 from the RX ring, each frame parsed as the
/// tunnel does; poll(2) when the ring is empty.
fn receive_xdp(stop: &AtomicBool, ready: Ready) -> Result<RxStats> {
    let mut rx = ready.check(XdpRx::open())?;
    let fd = rx.port.fd();
    let drops0 = ready.check(xsk_drops(fd))?;
    let cpu0 = thread_cpu();
    ready.go();

    let (mut datagrams, mut bytes, mut syscalls) = (0u64, 0u64, 0u64);
    loop {
        let n = rx.port.receive(BATCH as u32, |_meta, f| {
            if let Some((_, payload)) = frame::udp_payload(f) {
                datagrams += 1;
                bytes += payload.len() as u64;
            }
        });
        if n > 0 {
            continue;
        }
        let stopping = stop.load(Ordering::Relaxed);
        syscalls += 1;
        if !wait_readable(fd, if stopping { 50 } else { 10 }) && stopping {
            break;
        }
    }
    let cpu = thread_cpu() - cpu0;
    let sock_drops = xsk_drops(fd)? - drops0;
    drop(rx);
    Ok(RxStats {
        datagrams,
        bytes,
        cpu,
        sock_drops,
        syscalls,
    })
}

/// (a) connected UDP socket, sendmmsg(2) with 64 datagrams per call.
fn send_udp(payload: usize, window: Duration) -> Result<TxStats> {
    let socket = UdpSocket::bind(SocketAddrV4::new(SRC.into(), 0)).context("bind")?;
    socket
        .connect(SocketAddrV4::new(DST.into(), PORT))
        .context("connect")?;
    let fd = socket.as_raw_fd();
    let mut buf = datagram(payload);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let (mut sent, mut syscalls) = (0u64, 0u64);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    while start.elapsed() < window {
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as libc::c_uint, 0) };
        syscalls += 1;
        if n > 0 {
            sent += n as u64;
        } else {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) {
                bail!("sendmmsg: {e}");
            }
        }
    }
    Ok(TxStats {
        sent,
        secs: start.elapsed().as_secs_f64(),
        cpu: thread_cpu() - cpu0,
        syscalls,
    })
}

/// The UDP payload: a stand-in tunnel datagram of `payload` bytes.
fn datagram(payload: usize) -> Vec<u8> {
    (0..payload).map(|i| i as u8).collect()
}

/// A whole Ethernet/IPv4/UDP frame carrying `payload` bytes to
/// 198.18.0.2:51900, with the headers the tunnel writes.
fn tunnel_frame(src_mac: [u8; 6], dst_mac: [u8; 6], payload: usize) -> Result<Vec<u8>> {
    let outer = frame::Outer {
        src_mac,
        dst_mac,
        src: SocketAddrV4::new(SRC.into(), PORT),
        dst: SocketAddrV4::new(DST.into(), PORT),
    };
    let mut f = vec![0u8; frame::OUTER_LEN];
    f.extend_from_slice(&datagram(payload));
    let len = frame::write_outer(&mut f, &outer, 0, payload);
    if len != f.len() {
        bail!("a {payload}-byte datagram does not fit one frame");
    }
    Ok(f)
}

fn xsk_err(what: &'static str) -> impl Fn(xdpilone::Errno) -> anyhow::Error {
    move |e| anyhow!("{what}: {e}")
}

/// (b) AF_XDP TX in copy mode on queue 0 of the sender's veth: pre-built
/// frames, up to `batch` descriptors queued per round, one sendto kick per
/// round, completions reclaimed into a free list.
fn send_xdp(payload: usize, window: Duration, peer_mac: [u8; 6], batch: u32) -> Result<TxStats> {
    let src_mac = sys::mac(TX_IF)?;
    let pkt = tunnel_frame(src_mac, peer_mac, payload)?;
    let area = Area::new((FRAMES * FRAME_SIZE) as usize)?;
    let cfg = UmemConfig {
        fill_size: TX_RING,
        complete_size: TX_RING,
        frame_size: FRAME_SIZE,
        headroom: 0,
        flags: 0,
    };
    // Declared before the sockets so it is dropped (unmapped) after them.
    let umem = unsafe { Umem::new(cfg, area.slice()) }.map_err(xsk_err("UMEM registration"))?;
    let mut descs = Vec::with_capacity(FRAMES as usize);
    for i in 0..FRAMES {
        let chunk = umem.frame(BufIdx(i)).context("UMEM frame")?;
        // Safety: nothing else touches the UMEM before the socket is bound.
        unsafe { (&mut *chunk.addr.as_ptr())[..pkt.len()].copy_from_slice(&pkt) };
        descs.push(XdpDesc {
            addr: chunk.offset,
            len: pkt.len() as u32,
            options: 0,
        });
    }

    let mut info = IfInfo::invalid();
    let name = std::ffi::CString::new(TX_IF)?;
    info.from_name(&name).map_err(xsk_err("interface"))?;
    info.set_queue(0);
    let sock = Socket::with_shared(&info, &umem).map_err(xsk_err("AF_XDP socket"))?;
    let mut device = umem
        .fq_cq(&sock)
        .map_err(xsk_err("fill/completion rings"))?;
    let rxtx = umem
        .rx_tx(
            &sock,
            &SocketConfig {
                rx_size: None,
                tx_size: NonZeroU32::new(TX_RING),
                bind_flags: SocketConfig::XDP_BIND_COPY,
            },
        )
        .map_err(xsk_err("TX ring"))?;
    let mut tx = rxtx.map_tx().map_err(xsk_err("map TX ring"))?;
    set_int_opt(
        sock.as_raw_fd(),
        SOL_XDP,
        XDP_MAX_TX_SKB_BUDGET,
        TX_BUDGET as libc::c_int,
    )
    .context("XDP_MAX_TX_SKB_BUDGET")?;
    // A queue freed by the previous case's socket can stay busy briefly.
    let t0 = Instant::now();
    loop {
        match umem.bind(&rxtx) {
            Ok(()) => break,
            Err(e) if t0.elapsed() < Duration::from_secs(2) => {
                let _ = e;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => bail!("bind AF_XDP socket to {TX_IF} queue 0: {e}"),
        }
    }
    let fd = tx.as_raw_fd();
    let kick = || unsafe { libc::sendto(fd, null_mut(), 0, libc::MSG_DONTWAIT, null_mut(), 0) };

    // Frame indices that are ours to queue.
    let mut free: Vec<u32> = (0..FRAMES).collect();
    let (mut completed, mut syscalls) = (0u64, 0u64);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    while start.elapsed() < window {
        let want = (batch as usize).min(free.len());
        if want > 0 {
            let base = free.len() - want;
            let mut w = tx.transmit(want as u32);
            let n = w.insert(free[base..].iter().map(|&i| descs[i as usize])) as usize;
            w.commit();
            // The first n frames offered were queued.
            free.drain(base..base + n);
        }
        kick();
        syscalls += 1;
        completed += reap(&mut device, &mut free);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu0;
    // Frames move only inside sendto: what the last kick did not take stays
    // unsent. Collect the completions of what it did take.
    thread::sleep(Duration::from_millis(20));
    completed += reap(&mut device, &mut free);
    drop(tx);
    drop(rxtx);
    drop(device);
    drop(sock);
    drop(umem);
    drop(area);
    Ok(TxStats {
        sent: completed,
        secs,
        cpu,
        syscalls,
    })
}

/// Takes completed frames back into the free list; returns how many.
fn reap(device: &mut xdpilone::DeviceQueue, free: &mut Vec<u32>) -> u64 {
    let mut r = device.complete(FRAMES);
    let mut n = 0;
    while let Some(addr) = r.read() {
        free.push((addr / u64::from(FRAME_SIZE)) as u32);
        n += 1;
    }
    r.release();
    n
}
