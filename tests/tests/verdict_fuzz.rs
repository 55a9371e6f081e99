//! Both XDP programs through BPF_PROG_TEST_RUN on thousands of generated
//! frames: Ethernet with and without 802.1Q tags, IPv4 with options,
//! fragments, every TTL, UDP/TCP/ICMP and other protocols, random lengths
//! up to jumbo, and random corruption at every layer, against the verdict
//! world (routes, subnets, neighbours, blackholes, a remote peering, an
//! AF_XDP socket) and an underlay endpoint. For every frame:
//!
//! - the verdict is one the program may give (never ABORTED, never a drop
//!   from the underlay program);
//! - exactly one `Stat` counter moved, by one packet, and it names the
//!   verdict (a pass, a forward, or a drop);
//! - a frame forwarded to a peer has a verifying IPv4 checksum, its TTL one
//!   less, and otherwise the IPv4 header and payload it came in with; an
//!   ICMP error the gateway answers with verifies (IPv4 and ICMP) and quotes
//!   the frame's header; a frame handed to the tunnel's socket by the
//!   underlay program is untouched.
//!
//! The seed is printed; `PEERING_FUZZ_SEED=N` replays a run.

use peering_common::{Stat, UNDERLAY_XSK_BASE};
use peering_tests::{
    frame::{checksum_ok, Frame, GW_A},
    verdict::{Harness, LO, XDP_DROP, XDP_PASS, XDP_REDIRECT},
    world::*,
};
use peering_userspace::{gateway::xsk::XskPort, tunnel::TUNNEL_UDP_PORT};

const VPC_FRAMES: usize = 4000;
const UNDERLAY_FRAMES: usize = 2000;
const UNDERLAY_LOCAL: [u8; 4] = [198, 18, 0, 2];
const VPC_B_GATEWAY: [u8; 4] = [10, 2, 0, 1];

/// SplitMix64 (public domain, Sebastiano Vigna): small and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn seed() -> u64 {
    match std::env::var("PEERING_FUZZ_SEED") {
        Ok(s) => s.parse().expect("PEERING_FUZZ_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    }
}

fn address(rng: &mut Rng, known: &[[u8; 4]]) -> [u8; 4] {
    match rng.below(6) {
        0 => [10, rng.byte() % 4, rng.byte(), rng.byte()],
        1 => [rng.byte(), rng.byte(), rng.byte(), rng.byte()],
        _ => rng.pick(known),
    }
}

/// A plausible frame: mostly well-formed, any protocol, any TTL; jumbo
/// (multi-buffer) ones only for a program that takes them.
fn frame(rng: &mut Rng, src: &[[u8; 4]], dst: &[[u8; 4]], jumbo: bool) -> Frame {
    let len = match rng.below(10) {
        0 => 1400 + rng.below(200),
        1 if jumbo => 1500 + rng.below(8000),
        _ => 28 + rng.below(200),
    };
    let (from, to) = (address(rng, src), address(rng, dst));
    let (any_mac, any_ttl) = ([rng.byte(); 6], rng.byte());
    let mut f = Frame::udp(from, to, len)
        .macs(rng.pick(&[peering_tests::frame::HOST_A, any_mac]), GW_A)
        .ttl(rng.pick(&[0, 1, 2, 64, 255, any_ttl]))
        .df(rng.chance(50));
    match rng.below(5) {
        0 => f = f.vlan(VLAN_B),
        1 => f = f.vlan(rng.below(4096) as u16),
        _ => {}
    }
    if rng.chance(15) {
        let opts: Vec<u8> = (0..4 * rng.below(11)).map(|_| rng.byte()).collect();
        f = f.options(&opts);
    }
    if rng.chance(10) {
        let any = rng.below(8192) as u16;
        f = f.fragment(rng.pick(&[0, 1, 185, any]), rng.chance(50));
    }
    match rng.below(6) {
        // A TCP header where it fits (a shorter one is damage enough).
        0 => {
            f = f.proto(etherparse::IpNumber::TCP);
            if f.payload.len() >= 20 {
                f.payload[12] = 0x50;
                f.payload[13] = rng.byte();
            }
        }
        1 => {
            f = f.proto(etherparse::IpNumber::ICMP);
            let any = rng.byte();
            f.payload[0] = rng.pick(&[0, 3, 8, 11, any]);
            f.payload[1] = rng.byte() % 16;
        }
        2 => f = f.proto(etherparse::IpNumber(rng.byte())),
        _ => {}
    }
    f
}

/// Random damage at one layer, sometimes with the IPv4 checksum fixed up
/// so the damage reaches past the checksum check.
fn corrupt(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let l3 = if bytes[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    match rng.below(8) {
        // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet.
        0 => bytes.truncate(14 + rng.below(bytes.len() - 14)),
        1 => bytes.extend((0..rng.below(64)).map(|_| rng.byte())),
        2 => bytes[12 + rng.below(l3 - 12)] = rng.byte(),
        3 => {
            let ihl = usize::from(bytes[l3] & 0x0f) * 4;
            let at = l3 + rng.below(ihl.max(1));
            bytes[at] = rng.byte();
            if rng.chance(70) {
                fix_ipv4_checksum(bytes, l3);
            }
        }
        4 => {
            let total = rng.byte() as usize * 256 + rng.byte() as usize;
            bytes[l3 + 2..l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
            fix_ipv4_checksum(bytes, l3);
        }
        5 => {
            bytes[l3] = 0x40 | (rng.byte() & 0x0f);
            fix_ipv4_checksum(bytes, l3);
        }
        6 => {
            let ihl = usize::from(bytes[l3] & 0x0f) * 4;
            let at = l3 + ihl + rng.below(8);
            if at < bytes.len() {
                bytes[at] = rng.byte();
            }
        }
        _ => {
            let ethertype = rng.pick(&[[0x86, 0xdd], [0x08, 0x06], [0x88, 0xa8]]);
            bytes[12..14].copy_from_slice(&ethertype);
        }
    }
}

fn fix_ipv4_checksum(bytes: &mut [u8], l3: usize) {
    let ihl = usize::from(bytes[l3] & 0x0f) * 4;
    if ihl < 20 || l3 + ihl > bytes.len() {
        return;
    }
    bytes[l3 + 10..l3 + 12].fill(0);
    let sum = !peering_tests::frame::ones_sum(&bytes[l3..l3 + ihl]);
    bytes[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
}

fn counters(h: &Harness) -> Vec<u64> {
    Stat::ALL.iter().map(|s| h.packets(*s)).collect()
}

/// The one counter a run moved.
fn moved(h: &Harness, before: &[u64], what: &str) -> Stat {
    let after = counters(h);
    let diffs: Vec<(Stat, u64)> = Stat::ALL
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| a != b)
        .map(|(s, (b, a))| (*s, a - b))
        .collect();
    match diffs.as_slice() {
        [(stat, 1)] => *stat,
        other => panic!("{what}: counters moved {other:?}, not exactly one by one"),
    }
}

fn expected_verdict(stat: Stat) -> u32 {
    match stat {
        Stat::PassNotVpc | Stat::PassNoRoute | Stat::PassUnderlay => XDP_PASS,
        Stat::FwdLocal | Stat::FwdRemote | Stat::TxIcmpFragNeeded | Stat::FwdTunnelRx => {
            XDP_REDIRECT
        }
        s => {
            assert!(s.is_drop(), "{s:?} is neither a pass, a forward nor a drop");
            XDP_DROP
        }
    }
}

/// Offset of the IPv4 header behind Ethernet and at most one tag.
fn l3_of(frame: &[u8]) -> usize {
    if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    }
}

/// A forwarded frame: the IPv4 header and payload it came in with, but TTL
/// one less and a checksum that verifies.
fn check_forwarded(sent: &[u8], out: &[u8], what: &str) {
    let (li, lo) = (l3_of(sent), l3_of(out));
    assert_eq!(out[lo - 2..lo], [0x08, 0x00], "{what}: IPv4 leaves");
    let ihl = usize::from(sent[li] & 0x0f) * 4;
    let (hin, hout) = (&sent[li..li + ihl], &out[lo..lo + ihl]);
    assert!(
        checksum_ok(hout),
        "{what}: IPv4 checksum of the forwarded frame"
    );
    assert_eq!(hout[8], hin[8].wrapping_sub(1), "{what}: TTL decremented");
    for i in (0..ihl).filter(|i| ![8, 10, 11].contains(i)) {
        assert_eq!(hout[i], hin[i], "{what}: IPv4 header byte {i}");
    }
    let total = usize::from(u16::from_be_bytes([hin[2], hin[3]]));
    assert_eq!(
        &out[lo + ihl..lo + total],
        &sent[li + ihl..li + total],
        "{what}: payload"
    );
}

/// An ICMP "fragmentation needed" built by the gateway for `sent`.
fn check_icmp_error(sent: &[u8], out: &[u8], what: &str) {
    let (li, lo) = (l3_of(sent), l3_of(out));
    let ip = &out[lo..];
    assert_eq!((ip[0], ip[9]), (0x45, 1), "{what}: IPv4 ICMP, no options");
    assert!(
        checksum_ok(&ip[..20]),
        "{what}: IPv4 checksum of the ICMP error"
    );
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let icmp = &ip[20..total];
    assert!(checksum_ok(icmp), "{what}: ICMP checksum");
    assert_eq!((icmp[0], icmp[1]), (3, 4), "{what}: fragmentation needed");
    let tagged_b = li == 18 && u16::from_be_bytes([sent[14], sent[15]]) & 0x0fff == VLAN_B;
    let gateway = if tagged_b { VPC_B_GATEWAY } else { GATEWAY_A };
    assert_eq!(ip[12..16], gateway, "{what}: from the VPC router");
    assert_eq!(ip[16..20], sent[li + 12..li + 16], "{what}: to the sender");
    let ihl = usize::from(sent[li] & 0x0f) * 4;
    assert_eq!(&icmp[8..], &sent[li..li + ihl + 8], "{what}: quote");
}

/// Runs one generated frame through `peering_vpc`; returns its counter.
fn run_vpc(h: &Harness, rng: &mut Rng, i: usize, seed: u64) -> Stat {
    // Mostly VPC A's own hosts, which arrive untagged: spoofing is one
    // outcome among many.
    let src = [A_HOST, A_HOST, A_HOST, B_HOST, B_HOST_TAGGED, REMOTE_HOST];
    let dst = [
        B_HOST,
        B_HOST_TAGGED,
        B_HOST_NO_NEIGH,
        B_BLACKHOLED,
        B_SECONDARY,
        OUTSIDE_PEER,
        REMOTE_HOST,
        GATEWAY_A,
        A_HOST,
    ];
    let mut sent = if rng.chance(5) {
        // Oversized DF towards the remote peering: the ICMP answer path.
        let len = 1501 + rng.below(7000);
        Frame::udp(A_HOST, REMOTE_HOST, len).df(true).bytes()
    } else {
        frame(rng, &src, &dst, true).bytes()
    };
    if rng.chance(30) {
        corrupt(rng, &mut sent);
    }
    let what = format!(
        "seed {seed}, vpc frame {i} {:02x?}",
        &sent[..sent.len().min(64)]
    );
    let before = counters(h);
    let out = h.run(LO, &sent);
    let stat = moved(h, &before, &what);
    assert_eq!(
        out.verdict,
        expected_verdict(stat),
        "{what}: verdict for {stat:?}"
    );
    match stat {
        Stat::FwdLocal | Stat::FwdRemote => check_forwarded(&sent, &out.frame, &what),
        Stat::TxIcmpFragNeeded => check_icmp_error(&sent, &out.frame, &what),
        _ => {}
    }
    stat
}

fn run_underlay(h: &Harness, rng: &mut Rng, i: usize, seed: u64) {
    let mut f = frame(rng, &[[198, 18, 0, 1]], &[UNDERLAY_LOCAL], false);
    if rng.chance(70) {
        f.payload[2..4].copy_from_slice(&TUNNEL_UDP_PORT.to_be_bytes());
    }
    let mut sent = f.bytes();
    if rng.chance(30) {
        corrupt(rng, &mut sent);
    }
    let what = format!(
        "seed {seed}, underlay frame {i} {:02x?}",
        &sent[..sent.len().min(64)]
    );
    let before = counters(h);
    let (out, _) = h.run_prog("peering_underlay", LO, &sent, 1);
    let stat = moved(h, &before, &what);
    assert!(
        matches!(stat, Stat::PassUnderlay | Stat::FwdTunnelRx),
        "{what}: {stat:?}"
    );
    assert_eq!(
        out.verdict,
        expected_verdict(stat),
        "{what}: verdict for {stat:?}"
    );
    assert_eq!(
        out.frame, sent,
        "{what}: the underlay program never rewrites"
    );
}

#[test]
fn generated_frames_get_allowed_verdicts_consistent_counters_and_valid_output() {
    let seed = seed();
    println!("verdict_fuzz seed {seed} (replay: PEERING_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let mut h = harness();
    let endpoint = std::net::SocketAddrV4::new(UNDERLAY_LOCAL.into(), TUNNEL_UDP_PORT);
    h.dp.maps.set_underlay(LO, endpoint).unwrap();
    // One socket serves the VPC port's slot (remote routes) and the
    // underlay's, so both programs' AF_XDP paths redirect.
    let port = XskPort::bind(LO, 0).expect("AF_XDP socket on lo, queue 0");
    for slot in [0, UNDERLAY_XSK_BASE] {
        h.dp.maps.xsks_mut().set(slot, port.fd(), 0).unwrap();
    }
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..VPC_FRAMES {
        let stat = run_vpc(&h, &mut rng, i, seed);
        *seen.entry(stat.label()).or_insert(0u32) += 1;
    }
    for i in 0..UNDERLAY_FRAMES {
        run_underlay(&h, &mut rng, i, seed);
    }
    let total: u64 = counters(&h).iter().sum();
    assert_eq!(
        total,
        (VPC_FRAMES + UNDERLAY_FRAMES) as u64,
        "counters add up"
    );
    println!("outcomes of the VPC frames: {seen:?}");
    // The generator reaches the interesting paths (a weak generator would
    // make the checks above vacuous).
    for label in [
        "fwd_local",
        "fwd_remote",
        "tx_icmp_frag_needed",
        "drop_bad_checksum",
    ] {
        assert!(
            seen.contains_key(label),
            "no frame reached {label}: {seen:?}"
        );
    }
}
