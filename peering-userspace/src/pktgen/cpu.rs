//! CPU time, for "CPU per packet": busy time of a set of CPUs from
//! /proc/stat (user, nice, system, irq, softirq and steal; idle and iowait
//! are not busy), and a thread's own time from getrusage(RUSAGE_THREAD).
//! /proc/stat covers everything that ran on those CPUs, the receivers'
//! softirq work included, and also any unrelated load: on a shared machine
//! the figure is an upper bound.

use std::time::Duration;

use anyhow::{Context as _, Result};

/// Busy clock ticks per CPU, in the order of /proc/stat's `cpuN` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks(pub Vec<(usize, u64)>);

/// Parses /proc/stat's per-CPU lines.
pub fn parse_proc_stat(text: &str) -> CpuTicks {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f.next().and_then(|n| n.strip_prefix("cpu")) else {
            continue;
        };
        let Ok(cpu) = cpu.parse::<usize>() else {
            continue; // the "cpu" total line
        };
        let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user and nice).
        let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
        out.push((cpu, busy));
    }
    CpuTicks(out)
}

impl CpuTicks {
    pub fn read() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Ok(parse_proc_stat(&text))
    }

    /// Busy ticks from `before` to `self` on the CPUs in `cpus` (all when
    /// empty).
    pub fn busy_since(&self, before: &CpuTicks, cpus: &[usize]) -> u64 {
        let wanted = |c: &usize| cpus.is_empty() || cpus.contains(c);
        self.0
            .iter()
            .filter(|(c, _)| wanted(c))
            .map(|(c, after)| {
                let b = before.0.iter().find(|(bc, _)| bc == c).map_or(0, |x| x.1);
                after.saturating_sub(b)
            })
            .sum()
    }
}

/// Clock ticks (USER_HZ) to time.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

/// User plus system time of the calling thread.
pub fn thread_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  100 0 50 1000 5 0 10 0 0 0\n\
        cpu0 60 0 30 500 5 0 5 0 0 0\n\
        cpu1 40 0 20 500 0 0 5 0 0 0\n\
        intr 12345\n";
    const AFTER: &str = "cpu  300 0 150 1100 5 0 60 0 0 0\n\
        cpu0 160 0 80 520 5 0 45 0 0 0\n\
        cpu1 140 0 70 580 0 0 15 1 0 0\n";

    #[test]
    fn busy_ticks_exclude_idle_and_iowait() {
        let b = parse_proc_stat(BEFORE);
        assert_eq!(b.0, vec![(0, 95), (1, 65)]);
        let a = parse_proc_stat(AFTER);
        assert_eq!(a.busy_since(&b, &[]), (285 - 95) + (226 - 65));
        assert_eq!(a.busy_since(&b, &[1]), 226 - 65);
        assert_eq!(b.busy_since(&a, &[]), 0, "a counter never goes back");
    }
}
