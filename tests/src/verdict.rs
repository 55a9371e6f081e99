//! A BPF_PROG_TEST_RUN harness: the real XDP and TC programs, private
//! (unpinned) maps, crafted frames in, verdict and bytes out.

use aya::{
    maps::{Map, MapData},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use peering_common::{Counter, Stat, PROG_TUN_ENTRY, PROG_VPC_TC};
use peering_userspace::dataplane::Dataplane;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// TC verdicts (`include/uapi/linux/pkt_cls.h`).
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

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

    /// Runs `peering_vpc_tc` once on `frame` as a socket buffer received
    /// on `ifindex`, with the GSO fields of `gso` (`gso_size`, `gso_segs`;
    /// zero for a plain packet).
    pub fn run_tc(&self, ifindex: u32, frame: &[u8], gso: (u32, u32)) -> Outcome {
        let prog = self.dp.classifier_named(PROG_VPC_TC).expect("TC program");
        run_tc(prog, ifindex, frame, gso)
    }

    /// Runs `peering_tun_entry` once on `frame`.
    pub fn run_tun_entry(&self, frame: &[u8]) -> Outcome {
        self.run_prog(PROG_TUN_ENTRY, LO, frame, 1).0
    }

    /// A map the loaded `prog` uses, by name, opened by id: for maps the
    /// typed `Maps` API holds no writer of (TUN_ENTRY) or writes only as a
    /// compiled whole (FIB).
    pub fn prog_map(&self, prog: &str, name: &str) -> Map {
        let info = match self.dp.classifier_named(prog) {
            Ok(p) => p.info(),
            Err(_) => self.dp.program_named(prog).expect("program").info(),
        };
        let ids = info.expect("program info").map_ids().expect("map ids");
        for id in ids.unwrap_or_default() {
            let data = MapData::from_id(id).expect("open map by id");
            if data.info().expect("map info").name_as_str() == Some(name) {
                return Map::from_map_data(data).expect("typed map");
            }
        }
        panic!("{prog} uses no map {name}")
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

/// Size of `struct __sk_buff` (uapi/linux/bpf.h).
const SKB_CTX_LEN: usize = 192;
/// Offsets in it of the fields BPF_PROG_TEST_RUN lets a test set.
const SKB_IFINDEX: usize = 40;
const SKB_GSO_SEGS: usize = 164;
const SKB_GSO_SIZE: usize = 176;

/// Runs a loaded TC program once on `frame` as a socket buffer received on
/// `ifindex` (which must exist in the caller's namespace; 1, loopback,
/// always does). The kernel runs `eth_type_trans` on the frame first, as
/// the receive path does, but leaves an 802.1Q tag in the data: the ingress
/// VLAN metadata cannot be set through the context.
pub fn run_tc(prog: &SchedClassifier, ifindex: u32, frame: &[u8], gso: (u32, u32)) -> Outcome {
    let mut out = vec![0u8; frame.len() + 256];
    let mut ctx_in = [0u8; SKB_CTX_LEN];
    for (at, v) in [
        (SKB_IFINDEX, ifindex),
        (SKB_GSO_SIZE, gso.0),
        (SKB_GSO_SEGS, gso.1),
    ] {
        ctx_in[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx_in),
        ..Default::default()
    };
    let r = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    Outcome {
        verdict: r.return_value,
        frame: out,
        meta: Vec::new(),
    }
}
