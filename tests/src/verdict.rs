//! A BPF_PROG_TEST_RUN harness: the real XDP program, private (unpinned)
//! maps, crafted frames in, verdict and bytes out.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use peering_common::{Counter, Stat};
use peering_userspace::dataplane::Dataplane;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Loopback exists in every namespace and has one registered RX queue:
/// BPF_PROG_TEST_RUN needs a real ingress device for `ingress_ifindex`.
pub const LO: u32 = 1;

pub struct Outcome {
    pub verdict: u32,
    /// The frame after the program ran (without XDP metadata).
    pub frame: Vec<u8>,
    /// XDP metadata in front of the frame.
    pub meta: Vec<u8>,
}

pub struct Harness {
    pub dp: Dataplane,
}

impl Harness {
    pub fn new() -> Self {
        let dp = Dataplane::load(None).expect("load the XDP object (needs root)");
        Self { dp }
    }

    /// Runs `peering_vpc` once on `frame` as if received on `ifindex`.
    pub fn run(&self, ifindex: u32, frame: &[u8]) -> Outcome {
        self.run_prog("peering_vpc", ifindex, frame, 1).0
    }

    /// Runs `prog` `repeat` times; also returns the kernel's mean ns/run.
    pub fn run_prog(&self, prog: &str, ifindex: u32, frame: &[u8], repeat: u32) -> (Outcome, u64) {
        let prog = self.dp.program_named(prog).expect("program loaded");
        run_xdp(prog, ifindex, frame, repeat)
    }

    pub fn stat(&self, s: Stat) -> Counter {
        self.dp.maps.stat(s).expect("read STATS")
    }

    pub fn packets(&self, s: Stat) -> u64 {
        self.stat(s).packets
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs a loaded XDP program `repeat` times on `frame` as if received on
/// `ifindex`; also returns the kernel's mean ns/run.
pub fn run_xdp(prog: &Xdp, ifindex: u32, frame: &[u8], repeat: u32) -> (Outcome, u64) {
    let mut out = vec![0u8; frame.len() + 256];
    let ctx_in = xdp_md(0, frame.len() as u32, ifindex);
    let mut ctx_out = [0u8; 24];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx_in),
        ctx_out: Some(&mut ctx_out),
        repeat,
        ..Default::default()
    };
    let r = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
    let word = |i: usize| u32::from_ne_bytes(ctx_out[i * 4..i * 4 + 4].try_into().unwrap());
    // data_end bounds the first buffer; a multi-buffer frame's
    // fragments follow it in the output, up to data_size_out.
    let (data, data_end, meta) = (word(0) as usize, word(1) as usize, word(2) as usize);
    let end = r.data_size_out as usize;
    assert!(meta <= data && data <= data_end && data_end <= end);
    let outcome = Outcome {
        verdict: r.return_value,
        meta: out[meta..data].to_vec(),
        frame: out[data..end].to_vec(),
    };
    (outcome, r.duration.as_nanos() as u64)
}

/// `struct xdp_md` for ctx_in: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex.
fn xdp_md(data: u32, data_end: u32, ifindex: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    for (i, v) in [data, data_end, 0, ifindex, 0, 0].iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    b
}
