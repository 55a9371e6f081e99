//! The IO edge: loads the `pktgen` object, runs the generator with
//! BPF_PROG_RUN live frames on pinned threads, attaches the sink and reads
//! the counters.
//!
//! How a live-frames run sends: the kernel builds a page pool of frames
//! initialised from `data_in`, runs the program on each, and turns XDP_TX
//! into a redirect to the device named as ingress (`ctx_in`), in batches
//! of `batch` frames. On a veth the frames land in the peer's receive ring,
//! which takes them only when the peer has a native XDP program (the
//! sink, or a gateway port's `peering_vpc`). The device is looked up in
//! the calling thread's network namespace, so each generator thread enters
//! the namespace first.
//!
//! A run for a duration asks for `u32::MAX` frames and is stopped by
//! SIGUSR1 (a no-op handler installed without SA_RESTART): the kernel
//! checks for pending signals between batches and returns EINTR. The
//! frames sent are read from the program's own counters, not from the
//! syscall.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, Once,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use aya::{
    maps::PerCpuArray,
    programs::{
        links::LinkOrder,
        tc::{SchedClassifier, TcAttachOptions, TcAttachType},
        ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use peering_common::{
    pktgen::{
        GenConfig, GEN_FAILED, GEN_RATE_LIMITED, GEN_SENT, GLOBAL_GEN, GLOBAL_SINK_PORT,
        MAP_GEN_STATS, MAP_SINK_STATS, PROG_GEN, PROG_SINK, PROG_SINK_TC, SIZE_SLOTS,
    },
    Counter,
};

use crate::{sys, PKTGEN_OBJECT};

/// The kernel's largest live-frames batch (TEST_XDP_MAX_BATCH).
pub const MAX_BATCH: u32 = 256;
/// The kernel's default batch (NAPI_POLL_WEIGHT).
pub const DEFAULT_BATCH: u32 = 64;

/// An interface, in a network namespace (`None`: the caller's).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub netns: Option<String>,
    pub dev: String,
}

/// When a generator run ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    After(Duration),
    /// Frames per generator thread (rate-limited frames included).
    Frames(u64),
}

/// Runs `f` on a thread inside `netns` (the caller's namespace is never
/// changed).
pub fn in_netns<T: Send>(netns: Option<&str>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    thread::scope(|s| {
        s.spawn(|| {
            if let Some(ns) = netns {
                sys::enter_netns(ns)?;
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("netns thread panicked"))?
    })
}

fn load_object(global: &str, value: aya::GlobalData<'_>) -> Result<Ebpf> {
    sys::require_root()?;
    ensure!(
        !PKTGEN_OBJECT.is_empty(),
        "this build embeds no eBPF object (AYA_BUILD_SKIP was set)"
    );
    EbpfLoader::new()
        .override_global(global, value, true)
        .load(PKTGEN_OBJECT)
        .context("loading the pktgen object")
}

fn load_xdp(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?;
    prog.load().with_context(|| format!("loading {name}"))
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    Ok(ebpf
        .program(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?)
}

fn sum(ebpf: &Ebpf, map: &str, slot: u32) -> Result<Counter> {
    let m: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(ebpf.map(map).ok_or_else(|| anyhow!("map {map} missing"))?)?;
    let per_cpu = m.get(&slot, 0)?;
    Ok(per_cpu.iter().fold(Counter::default(), |a, c| Counter {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    }))
}

/// The generator's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenStats {
    pub sent: Counter,
    pub rate_limited: u64,
    pub failed: u64,
}

/// What a generator run took.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenRun {
    pub wall: Duration,
    /// CPU time of the generator threads (getrusage).
    pub thread_cpu: Duration,
}

/// The generator program, loaded with one configuration.
pub struct Generator {
    ebpf: Ebpf,
    pub config: GenConfig,
}

impl Generator {
    pub fn load(config: GenConfig) -> Result<Self> {
        let mut ebpf = load_object(GLOBAL_GEN, (&config).into())?;
        load_xdp(&mut ebpf, PROG_GEN)?;
        Ok(Self { ebpf, config })
    }

    pub fn program(&self) -> Result<&Xdp> {
        xdp(&self.ebpf, PROG_GEN)
    }

    pub fn stats(&self) -> Result<GenStats> {
        Ok(GenStats {
            sent: sum(&self.ebpf, MAP_GEN_STATS, GEN_SENT)?,
            rate_limited: sum(&self.ebpf, MAP_GEN_STATS, GEN_RATE_LIMITED)?.packets,
            failed: sum(&self.ebpf, MAP_GEN_STATS, GEN_FAILED)?.packets,
        })
    }

    /// The frame every live frame starts from: as long as the largest size
    /// in the pattern (the program only ever shrinks it).
    fn template(&self) -> Vec<u8> {
        let period = (self.config.size_period as usize).clamp(1, SIZE_SLOTS);
        let len = self.config.sizes[..period]
            .iter()
            .max()
            .copied()
            .unwrap_or(0);
        vec![0u8; len as usize]
    }

    /// Sends out of `out` from one thread per CPU in `cpus`, until `stop`.
    pub fn run(&self, out: &Endpoint, stop: Stop, cpus: &[usize], batch: u32) -> Result<GenRun> {
        ensure!(!cpus.is_empty(), "no generator CPU");
        ensure!(
            (1..=MAX_BATCH).contains(&batch),
            "batch: 1..={MAX_BATCH}, got {batch}"
        );
        install_sigusr1();
        let prog = self.program()?;
        let frame = self.template();
        let threads: Vec<Worker> = cpus.iter().map(|_| Worker::default()).collect();
        let stop_now = AtomicBool::new(false);
        let start = Instant::now();
        let cpu_times = thread::scope(|s| {
            let handles: Vec<_> = threads
                .iter()
                .zip(cpus)
                .map(|(w, &cpu)| {
                    let (frame, stop_now) = (&frame, &stop_now);
                    s.spawn(move || {
                        let r = send(prog, out, cpu, frame, stop, batch, stop_now, w);
                        w.finish();
                        r
                    })
                })
                .collect();
            if let Stop::After(d) = stop {
                wait_then_stop(d, &threads, &stop_now);
            }
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow!("generator thread panicked"))?)
                .collect::<Result<Vec<Duration>>>()
        })?;
        Ok(GenRun {
            wall: start.elapsed(),
            thread_cpu: cpu_times.iter().sum(),
        })
    }
}

/// A generator thread as the stopper sees it: its pthread id while it may
/// still be inside BPF_PROG_RUN, `None` once it is done.
#[derive(Default)]
struct Worker(Mutex<Option<libc::pthread_t>>, AtomicBool);

impl Worker {
    fn start(&self) {
        // SAFETY: pthread_self has no preconditions.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(unsafe { libc::pthread_self() });
    }

    /// Called by the thread itself before it ends, so the id is never used
    /// after the thread is gone.
    fn finish(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.1.store(true, Ordering::Release);
    }

    fn done(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }

    fn interrupt(&self) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = *g {
            // SAFETY: the thread is alive while its id is set (see finish).
            unsafe { libc::pthread_kill(t, libc::SIGUSR1) };
        }
    }
}

/// Sleeps for `d` (ending early if every thread is done), then interrupts
/// the threads until they are all out of the kernel. The signal is sent
/// again every 10 ms: one that lands just before a thread enters the
/// syscall would otherwise be missed.
fn wait_then_stop(d: Duration, threads: &[Worker], stop_now: &AtomicBool) {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline && !threads.iter().all(Worker::done) {
        thread::sleep((deadline - Instant::now()).min(Duration::from_millis(20)));
    }
    stop_now.store(true, Ordering::Release);
    while !threads.iter().all(Worker::done) {
        threads.iter().for_each(Worker::interrupt);
        thread::sleep(Duration::from_millis(10));
    }
}

/// One generator thread: namespace, CPU, then BPF_PROG_RUN until done.
#[allow(clippy::too_many_arguments)]
fn send(
    prog: &Xdp,
    out: &Endpoint,
    cpu: usize,
    frame: &[u8],
    stop: Stop,
    batch: u32,
    stop_now: &AtomicBool,
    me: &Worker,
) -> Result<Duration> {
    if let Some(ns) = &out.netns {
        sys::enter_netns(ns)?;
    }
    pin_to_cpu(cpu)?;
    let ifindex = sys::ifindex(&out.dev)?;
    let ctx = xdp_md(frame.len() as u32, ifindex);
    me.start();
    let t0 = super::cpu::thread_time();
    let mut left = match stop {
        Stop::Frames(n) => n,
        Stop::After(_) => u64::MAX,
    };
    while left > 0 && !stop_now.load(Ordering::Acquire) {
        let repeat = left.min(u32::MAX as u64) as u32;
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..Default::default()
        };
        match prog.test_run(opts) {
            Ok(_) => left -= repeat as u64,
            Err(e) if interrupted(&e) => break,
            Err(e) => return Err(e).with_context(|| format!("BPF_PROG_RUN on {}", out.dev)),
        }
    }
    Ok(super::cpu::thread_time().saturating_sub(t0))
}

fn interrupted(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EINTR))
}

fn install_sigusr1() {
    static ONCE: Once = Once::new();
    extern "C" fn nothing(_: libc::c_int) {}
    ONCE.call_once(|| {
        // SAFETY: a handler that does nothing; flags 0 (no SA_RESTART) so
        // the interrupted syscall returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
    });
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET bounds-checks nothing,
    // so the index is checked first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            bail!("CPU {cpu} out of range");
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `struct xdp_md` for a live-frames run: data 0, data_end = frame length,
/// ingress ifindex; everything else 0.
fn xdp_md(len: u32, ifindex: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    for (i, v) in [0, len, 0, ifindex, 0, 0].iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    b
}

/// The sink programs, counting frames to one UDP port: at XDP, and at TC
/// ingress for socket buffers that enter behind the XDP hook (a gateway's
/// TC program redirecting into the host with `bpf_redirect_peer`).
pub struct Sink {
    ebpf: Ebpf,
}

impl Sink {
    pub fn load(port: u16) -> Result<Self> {
        let mut ebpf = load_object(GLOBAL_SINK_PORT, (&port).into())?;
        load_xdp(&mut ebpf, PROG_SINK)?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_SINK_TC)
            .ok_or_else(|| anyhow!("program {PROG_SINK_TC} missing"))?
            .try_into()?;
        tc.load()
            .with_context(|| format!("loading {PROG_SINK_TC}"))?;
        Ok(Self { ebpf })
    }

    pub fn program(&self) -> Result<&Xdp> {
        xdp(&self.ebpf, PROG_SINK)
    }

    /// The TC ingress half.
    pub fn classifier(&self) -> Result<&SchedClassifier> {
        Ok(self
            .ebpf
            .program(PROG_SINK_TC)
            .ok_or_else(|| anyhow!("program {PROG_SINK_TC} missing"))?
            .try_into()?)
    }

    /// Attaches XDP in native (driver) mode (a veth receives redirected
    /// frames only then) and the classifier with a tcx ingress link.
    /// Both are detached when the sink is dropped.
    pub fn attach(&mut self, at: &Endpoint) -> Result<()> {
        let dev = at.dev.clone();
        let ebpf = &mut self.ebpf;
        in_netns(at.netns.as_deref(), move || {
            let prog: &mut Xdp = ebpf
                .program_mut(PROG_SINK)
                .ok_or_else(|| anyhow!("program {PROG_SINK} missing"))?
                .try_into()?;
            prog.attach(&dev, XdpMode::Driver)
                .with_context(|| format!("attaching the sink to {dev} (native XDP)"))?;
            let tc: &mut SchedClassifier = ebpf
                .program_mut(PROG_SINK_TC)
                .ok_or_else(|| anyhow!("program {PROG_SINK_TC} missing"))?
                .try_into()?;
            let tcx = TcAttachOptions::TcxOrder(LinkOrder::default());
            tc.attach_with_options(&dev, TcAttachType::Ingress, tcx)
                .with_context(|| format!("attaching the sink to {dev} (tcx ingress)"))?;
            Ok(())
        })
    }

    pub fn received(&self) -> Result<Counter> {
        sum(&self.ebpf, MAP_SINK_STATS, 0)
    }
}
