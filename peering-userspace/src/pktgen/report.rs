//! What a run measured, and how it is shown: a table for people and JSON
//! for `cargo xtask bench`.

use std::fmt::Write as _;

use serde::Serialize;

/// One run's figures. Rates are per second of the generator's wall time.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// "xdp-live-frames".
    pub engine: String,
    /// "64", "1500", "imix".
    pub size: String,
    pub flows: u32,
    /// CPUs the generator ran on, one thread each.
    pub gen_cpus: Vec<usize>,
    pub seconds: f64,
    /// Frames the generator program sent (returned XDP_TX for).
    pub offered_packets: u64,
    pub offered_bytes: u64,
    /// Frames the rate limit held back.
    pub rate_limited: u64,
    /// Frames the program could not build (resize failed).
    pub failed: u64,
    /// What the sink counted, when this run drove one.
    pub received_packets: Option<u64>,
    pub received_bytes: Option<u64>,
    pub offered_mpps: f64,
    pub offered_gbps: f64,
    pub received_mpps: Option<f64>,
    pub received_gbps: Option<f64>,
    /// Received / offered.
    pub delivery: Option<f64>,
    /// Busy CPU time of all CPUs (/proc/stat) during the run.
    pub cpu_busy_seconds: f64,
    /// That, per received packet (per offered packet without a sink).
    pub cpu_ns_per_packet: Option<f64>,
    /// The generator threads' own CPU time (getrusage), per offered packet.
    pub gen_ns_per_packet: Option<f64>,
}

/// The raw counts a run ends with.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub seconds: f64,
    pub offered: (u64, u64),
    pub rate_limited: u64,
    pub failed: u64,
    pub received: Option<(u64, u64)>,
    pub cpu_busy_seconds: f64,
    pub gen_thread_seconds: f64,
}

impl Report {
    /// Fills the derived figures from `c`.
    pub fn new(engine: &str, size: String, flows: u32, gen_cpus: Vec<usize>, c: &Counts) -> Self {
        let per_s = |n: u64| {
            if c.seconds > 0.0 {
                n as f64 / c.seconds
            } else {
                0.0
            }
        };
        let mpps = |n: u64| per_s(n) / 1e6;
        // Bits on the frame as XDP sees it (no FCS, preamble or gap).
        let gbps = |b: u64| per_s(b) * 8.0 / 1e9;
        let per_packet = |secs: f64, n: u64| (n > 0).then(|| secs * 1e9 / n as f64);
        let basis = c.received.map_or(c.offered.0, |r| r.0);
        Report {
            engine: engine.to_owned(),
            size,
            flows,
            gen_cpus,
            seconds: c.seconds,
            offered_packets: c.offered.0,
            offered_bytes: c.offered.1,
            rate_limited: c.rate_limited,
            failed: c.failed,
            received_packets: c.received.map(|r| r.0),
            received_bytes: c.received.map(|r| r.1),
            offered_mpps: mpps(c.offered.0),
            offered_gbps: gbps(c.offered.1),
            received_mpps: c.received.map(|r| mpps(r.0)),
            received_gbps: c.received.map(|r| gbps(r.1)),
            delivery: c
                .received
                .and_then(|r| (c.offered.0 > 0).then(|| r.0 as f64 / c.offered.0 as f64)),
            cpu_busy_seconds: c.cpu_busy_seconds,
            cpu_ns_per_packet: per_packet(c.cpu_busy_seconds, basis),
            gen_ns_per_packet: per_packet(c.gen_thread_seconds, c.offered.0),
        }
    }

    /// A two-column table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.3}{unit}"));
        let cpus: Vec<String> = self.gen_cpus.iter().map(|c| c.to_string()).collect();
        let rows = [
            ("engine", self.engine.clone()),
            ("frame size (bytes, no FCS)", self.size.clone()),
            ("flows", self.flows.to_string()),
            ("generator CPUs", cpus.join(",")),
            ("seconds", format!("{:.3}", self.seconds)),
            ("offered packets", self.offered_packets.to_string()),
            ("offered Mpps", format!("{:.3}", self.offered_mpps)),
            ("offered Gbit/s", format!("{:.3}", self.offered_gbps)),
            (
                "received packets",
                self.received_packets.map_or("-".into(), |v| v.to_string()),
            ),
            ("received Mpps", opt(self.received_mpps, "")),
            ("received Gbit/s", opt(self.received_gbps, "")),
            ("delivered", opt(self.delivery.map(|d| d * 100.0), " %")),
            ("rate-limited", self.rate_limited.to_string()),
            ("failed to build", self.failed.to_string()),
            (
                "CPU busy, all CPUs (s)",
                format!("{:.3}", self.cpu_busy_seconds),
            ),
            ("CPU ns/packet (all CPUs)", opt(self.cpu_ns_per_packet, "")),
            (
                "generator ns/packet (thread)",
                opt(self.gen_ns_per_packet, ""),
            ),
        ];
        let mut s = String::new();
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<30} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_costs_follow_from_the_counts() {
        let c = Counts {
            seconds: 2.0,
            offered: (4_000_000, 256_000_000),
            received: Some((3_000_000, 192_000_000)),
            cpu_busy_seconds: 3.0,
            gen_thread_seconds: 2.0,
            ..Default::default()
        };
        let r = Report::new("xdp-live-frames", "64".into(), 1, vec![0], &c);
        assert_eq!(r.offered_mpps, 2.0);
        assert_eq!(r.received_mpps, Some(1.5));
        assert_eq!(r.offered_gbps, 1.024);
        assert_eq!(r.delivery, Some(0.75));
        assert_eq!(r.cpu_ns_per_packet, Some(1000.0));
        assert_eq!(r.gen_ns_per_packet, Some(500.0));
        assert!(r.table().contains("received Mpps"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["received_packets"], 3_000_000);
    }

    #[test]
    fn nothing_sent_divides_by_nothing() {
        let r = Report::new("x", "64".into(), 1, vec![], &Counts::default());
        assert_eq!(r.offered_mpps, 0.0);
        assert_eq!(r.cpu_ns_per_packet, None);
        assert_eq!(r.delivery, None);
        assert!(r.table().contains('-'));
    }
}
