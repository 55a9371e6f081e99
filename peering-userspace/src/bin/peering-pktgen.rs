//! `peering-pktgen`: a packet generator and sink for benchmarks; see
//! `peering_userspace::pktgen`.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use peering_userspace::{
    out,
    pktgen::{cpu, engine, plan, Counts, Endpoint, Flows, Plan, Report, Run, Sink, Sizes, Stop},
    sys,
};

/// Sends IPv4 UDP frames at full speed from inside the kernel (an XDP
/// program run by BPF_PROG_RUN with live frames, sent with XDP_TX out of an
/// interface) and counts them with an XDP sink on the far interface.
///
/// Frame sizes are Ethernet frames without FCS (64 = 68 bytes on a wire).
/// Flows vary the source address (fastest) and the source port; frames
/// take the flows in turn. Needs root. On a veth, the peer of the sending
/// interface must run a native XDP program (a gateway port, or the sink),
/// or the frames are lost.
#[derive(Parser)]
#[command(name = "peering-pktgen", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate only; reports offered Mpps.
    Gen(GenArgs),
    /// Attach the sink and count until the duration ends or Ctrl-C.
    Sink(SinkArgs),
    /// Attach the sink, generate, report offered and received Mpps.
    Run(RunArgs),
}

#[derive(Args)]
struct GenArgs {
    /// Interface to send out of.
    #[arg(long)]
    dev: String,
    /// Network namespace of --dev (as created by `ip netns add`).
    #[arg(long)]
    netns: Option<String>,
    /// Destination MAC: the next hop (a gateway's port, or the sink's
    /// interface). `run` defaults to the sink interface's MAC.
    #[arg(long, value_parser = sys::parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Source MAC [default: --dev's MAC].
    #[arg(long, value_parser = sys::parse_mac)]
    src_mac: Option<[u8; 6]>,
    /// First source address.
    #[arg(long, default_value_t = plan::DEFAULT_SRC_IP)]
    src_ip: Ipv4Addr,
    /// Source addresses to spread the flows over (consecutive from --src-ip).
    #[arg(long, default_value_t = 1)]
    src_ips: u32,
    /// First source port.
    #[arg(long, default_value_t = plan::DEFAULT_SRC_PORT)]
    src_port: u16,
    #[arg(long, default_value_t = plan::DEFAULT_DST_IP)]
    dst_ip: Ipv4Addr,
    /// Destination UDP port (the sink counts only this port).
    #[arg(long, default_value_t = plan::DEFAULT_DST_PORT)]
    dst_port: u16,
    /// Frame size in bytes (60..=1514, no FCS), or "imix" (7:4:1 of 64,
    /// 576 and 1500 bytes).
    #[arg(long, default_value = "64")]
    size: Sizes,
    /// Distinct flows (source address, source port).
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// Seconds to send for.
    #[arg(long, default_value_t = 1.0, conflicts_with = "count")]
    duration: f64,
    /// Frames to send per generator CPU instead of a duration.
    #[arg(long)]
    count: Option<u64>,
    /// Frames per second over all generator CPUs (0: full speed). Frames
    /// over the rate are built and dropped, so the CPU stays busy.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// CPUs to generate on, one pinned thread each.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    cpus: Vec<usize>,
    /// Frames per live-frames batch (1..=256).
    #[arg(long, default_value_t = engine::DEFAULT_BATCH)]
    batch: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SinkArgs {
    /// Interface to count on.
    #[arg(long)]
    dev: String,
    #[arg(long)]
    netns: Option<String>,
    /// UDP destination port of the generator's frames.
    #[arg(long, default_value_t = plan::DEFAULT_DST_PORT)]
    port: u16,
    /// Seconds to count for [default: until Ctrl-C].
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    gen: GenArgs,
    /// Interface the sink counts on.
    #[arg(long)]
    sink_dev: String,
    /// Network namespace of --sink-dev.
    #[arg(long)]
    sink_netns: Option<String>,
}

fn main() {
    env_logger::init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Gen(a) => gen(a),
        Cmd::Sink(a) => sink(a),
        Cmd::Run(a) => run(a),
    };
    if let Err(e) = r {
        eprintln!("peering-pktgen: {e:#}");
        std::process::exit(1);
    }
}

fn gen(a: GenArgs) -> Result<()> {
    let dst_mac = a
        .dst_mac
        .context("--dst-mac is required: the MAC of the next hop")?;
    let run = generator_run(&a, dst_mac, None)?;
    print(&run.execute()?, a.json)
}

fn run(a: RunArgs) -> Result<()> {
    let sink = Endpoint {
        netns: a.sink_netns.clone(),
        dev: a.sink_dev.clone(),
    };
    let dst_mac = match a.gen.dst_mac {
        Some(m) => m,
        None => engine::in_netns(sink.netns.as_deref(), || sys::mac(&sink.dev))?,
    };
    let run = generator_run(&a.gen, dst_mac, Some(sink))?;
    print(&run.execute()?, a.gen.json)
}

fn generator_run(a: &GenArgs, dst_mac: [u8; 6], sink: Option<Endpoint>) -> Result<Run> {
    ensure!(
        a.duration > 0.0 && a.duration.is_finite(),
        "--duration must be positive"
    );
    let out = Endpoint {
        netns: a.netns.clone(),
        dev: a.dev.clone(),
    };
    let src_mac = match a.src_mac {
        Some(m) => m,
        None => engine::in_netns(out.netns.as_deref(), || sys::mac(&out.dev))?,
    };
    let plan = Plan {
        dst_mac,
        src_mac,
        dst_ip: a.dst_ip,
        dst_port: a.dst_port,
        sizes: a.size.clone(),
        flows: Flows {
            flows: a.flows,
            src_ip: a.src_ip,
            src_ips: a.src_ips,
            src_port: a.src_port,
        },
        rate_pps: a.rate,
    };
    plan.flows.validate()?;
    let stop = match a.count {
        Some(n) => Stop::Frames(n),
        None => Stop::After(Duration::from_secs_f64(a.duration)),
    };
    Ok(Run {
        out,
        sink,
        plan,
        stop,
        cpus: a.cpus.clone(),
        batch: a.batch,
    })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn sink(a: SinkArgs) -> Result<()> {
    extern "C" fn on_sigint(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as usize,
        )
    };
    let mut s = Sink::load(a.port)?;
    s.attach(&Endpoint {
        netns: a.netns.clone(),
        dev: a.dev.clone(),
    })?;
    let deadline = a
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    if !a.json {
        eprintln!("counting UDP port {} on {}; Ctrl-C ends", a.port, a.dev);
    }
    let before = cpu::CpuTicks::read()?;
    let t0 = Instant::now();
    while !INTERRUPTED.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = s.received()?;
    let busy = cpu::CpuTicks::read()?.busy_since(&before, &[]);
    let counts = Counts {
        seconds: t0.elapsed().as_secs_f64(),
        received: Some((c.packets, c.bytes)),
        cpu_busy_seconds: cpu::ticks_to_duration(busy).as_secs_f64(),
        ..Default::default()
    };
    print(&Report::new("sink", "-".into(), 0, vec![], &counts), a.json)
}

fn print(r: &Report, json: bool) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(r)?
    } else {
        r.table()
    };
    out::println(text.trim_end())?;
    Ok(())
}
