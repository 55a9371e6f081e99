//! `peering-pktgen`: a packet generator and sink for benchmarks, in the
//! kernel's own fast path. The generator is an XDP program run by
//! BPF_PROG_RUN with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`, the
//! mechanism of xdp-trafficgen): it writes IPv4 UDP headers into each
//! frame and sends it with XDP_TX out of an interface. The sink is an XDP
//! program on the far interface that counts the generator's frames and
//! drops them.
//!
//! - [`plan`]: what to send (sizes, flows, rate), sans IO;
//! - [`report`]: what a run measured and how it prints, sans IO;
//! - [`cpu`]: CPU time from /proc/stat and getrusage;
//! - [`engine`]: loading, attaching, BPF_PROG_RUN threads.

pub mod cpu;
pub mod engine;
pub mod plan;
pub mod report;

use std::time::Duration;

use anyhow::Result;

pub use engine::{Endpoint, GenStats, Generator, Sink, Stop};
pub use plan::{Flows, Plan, Sizes};
pub use report::{Counts, Report};

/// The engine's name in reports.
pub const ENGINE_LIVE_FRAMES: &str = "xdp-live-frames";

/// Frames still in flight when the generator returns (in veth rings and
/// softirq backlogs) reach the sink well within this.
pub const DRAIN: Duration = Duration::from_millis(100);

/// One generator run, with a sink on the far end when `sink` is set.
pub struct Run {
    pub out: Endpoint,
    pub sink: Option<Endpoint>,
    pub plan: Plan,
    pub stop: Stop,
    pub cpus: Vec<usize>,
    pub batch: u32,
}

impl Run {
    /// Loads, attaches, sends, drains, reads the counters; everything it
    /// attached is detached when it returns.
    pub fn execute(&self) -> Result<Report> {
        let mut sink = match &self.sink {
            Some(at) => {
                let mut s = Sink::load(self.plan.dst_port)?;
                s.attach(at)?;
                Some(s)
            }
            None => None,
        };
        let gen = Generator::load(self.plan.config(self.cpus.len())?)?;
        let before = cpu::CpuTicks::read()?;
        let run = gen.run(&self.out, self.stop, &self.cpus, self.batch)?;
        if sink.is_some() {
            std::thread::sleep(DRAIN);
        }
        let busy = cpu::CpuTicks::read()?.busy_since(&before, &[]);
        let stats = gen.stats()?;
        let received = match sink.as_mut() {
            Some(s) => Some(s.received()?),
            None => None,
        };
        let counts = Counts {
            seconds: run.wall.as_secs_f64(),
            offered: (stats.sent.packets, stats.sent.bytes),
            rate_limited: stats.rate_limited,
            failed: stats.failed,
            received: received.map(|c| (c.packets, c.bytes)),
            cpu_busy_seconds: cpu::ticks_to_duration(busy).as_secs_f64(),
            gen_thread_seconds: run.thread_cpu.as_secs_f64(),
        };
        Ok(Report::new(
            ENGINE_LIVE_FRAMES,
            self.plan.sizes.to_string(),
            self.plan.flows.flows,
            self.cpus.clone(),
            &counts,
        ))
    }
}
