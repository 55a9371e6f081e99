//! `cargo xtask bench`: dataplane figures from BPF_PROG_TEST_RUN.
//!
//! BPF_PROG_TEST_RUN does not restore the frame between repeats, so a
//! forwarded frame loses one TTL per run. Each call therefore runs a fresh
//! frame (TTL 255) 250 times and the figure is the mean over many calls;
//! the XDP_DROP baseline is measured exactly the same way.

use peering_tests::{frame::Frame, verdict::Harness, verdict::LO, world};

const REPEAT: u32 = 250;
const CALLS: u32 = 4000;

struct Case {
    name: &'static str,
    prog: &'static str,
    frame: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let udp = |dst| Frame::udp(world::A_HOST, dst, 64).ttl(255).bytes();
    vec![
        Case {
            name: "XDP_DROP only (baseline)",
            prog: "peering_drop",
            frame: udp(world::B_HOST),
        },
        Case {
            name: "route hit: forward to local peer",
            prog: "peering_vpc",
            frame: udp(world::B_HOST),
        },
        Case {
            name: "route hit: blackhole",
            prog: "peering_vpc",
            frame: udp(world::B_BLACKHOLED),
        },
        Case {
            name: "route miss: pass to kernel",
            prog: "peering_vpc",
            frame: udp(world::GATEWAY_A),
        },
        Case {
            name: "spoofed source: drop",
            prog: "peering_vpc",
            frame: Frame::udp([10, 2, 0, 7], world::B_HOST, 64)
                .ttl(255)
                .bytes(),
        },
    ]
}

fn main() {
    let mut h = Harness::new();
    world::program(&mut h.dp.maps);
    peering_tests::say!(
        "BPF_PROG_TEST_RUN, {}-byte frames, {} x {} runs per case, one CPU",
        64 + 14,
        CALLS,
        REPEAT
    );
    peering_tests::say!(
        "{:<36} {:>8} {:>12} {:>10}",
        "case",
        "verdict",
        "ns/packet",
        "Mpps"
    );
    for c in cases() {
        let mut total_ns = 0u64;
        let mut verdict = 0;
        for _ in 0..CALLS {
            let (out, ns) = h.run_prog(c.prog, LO, &c.frame, REPEAT);
            verdict = out.verdict;
            total_ns += ns;
        }
        let ns = total_ns as f64 / CALLS as f64;
        peering_tests::say!(
            "{:<36} {:>8} {:>12.1} {:>10.1}",
            c.name,
            verdict_name(verdict),
            ns,
            1e3 / ns
        );
    }
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "ABORTED",
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}
