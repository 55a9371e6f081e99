//! Rate limits on work the data path makes for others: ICMP errors the
//! gateway generates, and neighbour resolution requests to the agent. Each
//! is a token bucket per CPU, kept in nanoseconds of credit so that no
//! division runs per packet.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::PerCpuArray};
use peering_common::{ICMP_BURST, ICMP_RATE_PER_SEC, RESOLVE_BURST, RESOLVE_RATE_PER_SEC};

use crate::{ICMP_BUCKET, RESOLVE_BUCKET};

/// A rate: the credit one event costs and the most credit a bucket holds.
struct Limit {
    cost_ns: u64,
    cap_ns: u64,
}

impl Limit {
    const fn new(per_sec: u64, burst: u64) -> Self {
        let cost_ns = 1_000_000_000 / per_sec;
        Limit {
            cost_ns,
            cap_ns: cost_ns * burst,
        }
    }
}

const ICMP: Limit = Limit::new(ICMP_RATE_PER_SEC, ICMP_BURST);
const RESOLVE: Limit = Limit::new(RESOLVE_RATE_PER_SEC, RESOLVE_BURST);

/// State of one CPU's bucket.
#[repr(C)]
pub struct Bucket {
    /// When the credit was last topped up (0: never).
    last_ns: u64,
    credit_ns: u64,
}

/// Takes one ICMP error's worth of credit; false when there is none.
#[inline(always)]
pub fn allow_icmp() -> bool {
    allow(&ICMP_BUCKET, &ICMP)
}

/// Takes one resolution request's worth of credit; false when there is none.
#[inline(always)]
pub fn allow_resolve() -> bool {
    allow(&RESOLVE_BUCKET, &RESOLVE)
}

#[inline(always)]
fn allow(buckets: &PerCpuArray<Bucket>, limit: &Limit) -> bool {
    let Some(bucket) = buckets.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU slot: no other writer runs on this CPU meanwhile.
    let bucket = unsafe { &mut *bucket };
    let now = unsafe { bpf_ktime_get_ns() };
    let earned = now.saturating_sub(bucket.last_ns);
    bucket.last_ns = now;
    let credit = bucket.credit_ns.saturating_add(earned).min(limit.cap_ns);
    if credit < limit.cost_ns {
        bucket.credit_ns = credit;
        return false;
    }
    bucket.credit_ns = credit - limit.cost_ns;
    true
}
