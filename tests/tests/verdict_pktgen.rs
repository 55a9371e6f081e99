//! BPF_PROG_TEST_RUN verdicts of `peering-pktgen`'s programs: the generator
//! writes every header of every frame (whatever the page held before),
//! keeps its flows and sizes to the plan, honours its rate limit; the sink
//! counts and drops the generator's frames and nothing else.

use std::net::Ipv4Addr;

use peering_common::pktgen::{GenConfig, HEADERS_LEN, MAGIC};
use peering_tests::{
    frame::{checksum_ok, parse, Frame},
    verdict::{run_tc, run_xdp, LO, TC_ACT_OK, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX},
};
use peering_userspace::pktgen::{
    engine,
    plan::{flow_of_frame, size_of_frame, IMIX},
    Flows, Generator, Plan, Sink, Sizes,
};

const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xd5, 0x01];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x5c, 0x01];
const PORT: u16 = 9;

fn plan(sizes: Sizes, flows: u32, src_ips: u32) -> Plan {
    Plan {
        dst_mac: DST_MAC,
        src_mac: SRC_MAC,
        dst_ip: Ipv4Addr::new(10, 2, 0, 10),
        dst_port: PORT,
        sizes,
        flows: Flows {
            flows,
            src_ip: Ipv4Addr::new(10, 1, 0, 10),
            src_ips,
            src_port: 2000,
        },
        rate_pps: 0,
    }
}

/// Loads the generator and pins the test's thread to one CPU: the
/// sequence number (hence size and flow) is per CPU, so frames in a row
/// follow the pattern only on one CPU.
fn generator(p: &Plan) -> Generator {
    engine::pin_to_cpu(0).unwrap();
    Generator::load(p.config(1).unwrap()).expect("load pktgen (needs root)")
}

/// A page as a receiver may leave it: every byte written over.
fn dirty_page(len: usize) -> Vec<u8> {
    vec![0xab; len]
}

/// Runs the generator once and checks the frame against the plan for the
/// sequence number it carries; returns that number and the frame.
fn generate_and_check(g: &Generator, c: &GenConfig, input: &[u8]) -> (u64, Vec<u8>) {
    let (out, _) = run_xdp(g.program().unwrap(), LO, input, 1);
    assert_eq!(out.verdict, XDP_TX);
    let f = out.frame;
    let seq = u64::from_be_bytes(f[HEADERS_LEN + 4..HEADERS_LEN + 12].try_into().unwrap());
    assert_eq!(
        f.len(),
        size_of_frame(c, seq) as usize,
        "size of frame {seq}"
    );
    let p = parse(&f);
    assert_eq!((p.dst_mac, p.src_mac, p.vlan), (DST_MAC, SRC_MAC, None));
    assert!(checksum_ok(&p.ip_bytes), "IPv4 header checksum");
    assert_eq!(p.ip.total_len as usize, f.len() - 14);
    assert_eq!(p.ip.time_to_live, 64);
    assert_eq!(p.ip.protocol, etherparse::IpNumber::UDP);
    assert_eq!(p.ip.destination, [10, 2, 0, 10]);
    let (ip, port) = flow_of_frame(c, seq);
    assert_eq!(p.ip.source, ip.octets(), "source of frame {seq}");
    let udp = &p.payload;
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), port);
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), PORT);
    assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
    assert_eq!(&udp[6..8], &[0, 0], "no UDP checksum");
    assert_eq!(&udp[8..12], &MAGIC);
    (seq, f)
}

#[test]
fn every_header_is_rewritten_on_every_frame() {
    for size in [64u16, 1500] {
        let p = plan(Sizes::Fixed(size), 1, 1);
        let g = generator(&p);
        let mut seqs = Vec::new();
        for _ in 0..8 {
            let (seq, _) = generate_and_check(&g, &g.config, &dirty_page(size as usize));
            seqs.push(seq);
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 8, "each frame has a sequence number of its own");
        assert_eq!(g.stats().unwrap().sent.packets, 8);
        assert_eq!(g.stats().unwrap().sent.bytes, 8 * size as u64);
    }
}

#[test]
fn ten_thousand_flows_stay_in_their_ranges() {
    let p = plan(Sizes::Fixed(64), 10_000, 4);
    let g = generator(&p);
    let (last_ip, last_port) = p.flows.last();
    assert_eq!((last_ip, last_port), (Ipv4Addr::new(10, 1, 0, 13), 4499));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..300 {
        let (_, f) = generate_and_check(&g, &g.config, &dirty_page(64));
        let p = parse(&f);
        let port = u16::from_be_bytes([p.payload[0], p.payload[1]]);
        assert!((10..=13).contains(&p.ip.source[3]) && p.ip.source[..3] == [10, 1, 0]);
        assert!((2000..=last_port).contains(&port));
        seen.insert((p.ip.source, port));
    }
    assert_eq!(seen.len(), 300, "consecutive frames take distinct flows");
}

#[test]
fn imix_frames_are_cut_from_the_largest() {
    let p = plan(Sizes::Imix, 1, 1);
    let g = generator(&p);
    let mut sizes = std::collections::HashMap::new();
    for _ in 0..36 {
        let (_, f) = generate_and_check(&g, &g.config, &dirty_page(1500));
        *sizes.entry(f.len()).or_insert(0) += 1;
    }
    // 36 frames in a row cover the 12-frame pattern three times, whatever
    // sequence number this CPU had reached.
    for s in IMIX {
        assert_eq!(
            sizes[&(s as usize)],
            3 * IMIX.iter().filter(|&&x| x == s).count()
        );
    }
}

#[test]
fn the_rate_limit_lets_a_burst_through_then_drops() {
    let mut p = plan(Sizes::Fixed(64), 1, 1);
    p.rate_pps = 1; // one frame a second: nothing beyond the burst in 100 runs
    let g = generator(&p);
    // One BPF_PROG_TEST_RUN with repeat runs on one CPU, so one bucket.
    let (out, _) = run_xdp(g.program().unwrap(), LO, &dirty_page(64), 100);
    assert_eq!(out.verdict, XDP_DROP);
    let s = g.stats().unwrap();
    assert_eq!((s.sent.packets, s.rate_limited, s.failed), (64, 36, 0));
}

#[test]
fn a_frame_shorter_than_planned_is_grown_to_size() {
    let g = generator(&plan(Sizes::Fixed(64), 1, 1));
    let (_, f) = generate_and_check(&g, &g.config, &dirty_page(20));
    assert_eq!(f.len(), 64);
}

#[test]
fn a_config_without_sizes_or_flows_sends_nothing() {
    // The loader never builds these (Plan::config refuses them); the
    // program must not send garbage if it ever runs with one.
    let good = plan(Sizes::Fixed(64), 1, 1).config(1).unwrap();
    let no_sizes = GenConfig {
        size_period: 0,
        ..good
    };
    let no_flows = GenConfig { flows: 0, ..good };
    let no_ips = GenConfig { src_ips: 0, ..good };
    for c in [no_sizes, no_flows, no_ips, GenConfig::ZERO] {
        let g = Generator::load(c).unwrap();
        let (out, _) = run_xdp(g.program().unwrap(), LO, &dirty_page(64), 1);
        assert_eq!(out.verdict, XDP_DROP);
        let s = g.stats().unwrap();
        assert_eq!((s.sent.packets, s.failed), (0, 1), "{c:?}");
    }
}

fn sink() -> Sink {
    Sink::load(PORT).expect("load pktgen sink (needs root)")
}

#[test]
fn the_sink_counts_the_generators_frames_only_at_xdp_and_at_tc() {
    let s = sink();
    let prog = s.program().unwrap();
    let tc = s.classifier().unwrap();
    let g = generator(&plan(Sizes::Imix, 100, 1));
    let mut bytes = 0;
    for _ in 0..12 {
        let (_, f) = generate_and_check(&g, &g.config, &dirty_page(1500));
        assert_eq!(run_xdp(prog, LO, &f, 1).0.verdict, XDP_DROP);
        assert_eq!(run_tc(tc, LO, &f, (0, 0)).verdict, TC_ACT_SHOT);
        bytes += 2 * f.len() as u64;
    }
    let (_, ours) = generate_and_check(&g, &g.config, &dirty_page(1500));
    let mut others = Vec::new();
    // Another UDP port.
    let mut f = ours.clone();
    f[37] ^= 1;
    others.push(f);
    // No magic.
    let mut f = ours.clone();
    f[HEADERS_LEN] = b'X';
    others.push(f);
    // Not UDP.
    let mut f = ours.clone();
    f[23] = 6;
    others.push(f);
    // Not IPv4.
    let mut f = ours.clone();
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    others.push(f);
    // IPv4 options: the magic is not where the sink looks.
    others.push(
        Frame::udp([10, 1, 0, 10], [10, 2, 0, 10], 80)
            .options(&[1, 1, 1, 1])
            .bytes(),
    );
    // Cut short of the sequence number.
    others.push(ours[..HEADERS_LEN + 6].to_vec());
    for (i, f) in others.iter().enumerate() {
        assert_eq!(run_xdp(prog, LO, f, 1).0.verdict, XDP_PASS, "frame {i}");
        assert_eq!(run_tc(tc, LO, f, (0, 0)).verdict, TC_ACT_OK, "frame {i}");
    }
    let c = s.received().unwrap();
    assert_eq!((c.packets, c.bytes), (24, bytes));
}
