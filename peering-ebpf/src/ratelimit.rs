//! The rate limit on ICMP errors the gateway generates: a token bucket per
//! CPU, kept in nanoseconds of credit so that no division runs per packet.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use peering_common::{ICMP_BURST, ICMP_RATE_PER_SEC};

use crate::ICMP_BUCKET;

/// Credit one message costs.
const COST_NS: u64 = 1_000_000_000 / ICMP_RATE_PER_SEC;
/// Most credit the bucket holds: the burst.
const CAP_NS: u64 = COST_NS * ICMP_BURST;

/// State of one CPU's bucket.
#[repr(C)]
pub struct Bucket {
    /// When the credit was last topped up (0: never).
    last_ns: u64,
    credit_ns: u64,
}

/// Takes one message's worth of credit; false when there is none.
#[inline(always)]
pub fn allow_icmp() -> bool {
    let Some(bucket) = ICMP_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU slot: no other writer runs on this CPU meanwhile.
    let bucket = unsafe { &mut *bucket };
    let now = unsafe { bpf_ktime_get_ns() };
    let earned = now.saturating_sub(bucket.last_ns);
    bucket.last_ns = now;
    let credit = bucket.credit_ns.saturating_add(earned).min(CAP_NS);
    if credit < COST_NS {
        bucket.credit_ns = credit;
        return false;
    }
    bucket.credit_ns = credit - COST_NS;
    true
}
