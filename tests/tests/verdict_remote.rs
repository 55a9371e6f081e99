//! BPF_PROG_TEST_RUN verdicts for inter-region routes: the 1500-byte MTU,
//! ICMP "fragmentation needed" built in XDP, and the AF_XDP hand-off.

use etherparse::IpNumber;
use peering_common::{Stat, ICMP_BURST, ICMP_RATE_PER_SEC, INTER_REGION_MTU};
use peering_tests::{
    frame::{checksum_ok, parse, Frame},
    verdict::{LO, XDP_DROP, XDP_REDIRECT},
    world::*,
};

#[test]
fn within_mtu_goes_to_the_encapsulation_path_with_the_peering_id() {
    let h = harness();
    let f = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize).df(true);
    let out = h.run(LO, &f.bytes());
    // No AF_XDP socket is bound in this test: a counted drop.
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropNoXsk), 1);
    assert_eq!(
        out.meta,
        PCX_REMOTE.to_ne_bytes(),
        "peering id in XDP metadata"
    );
    assert_eq!(parse(&out.frame).ip.time_to_live, 63);
    assert!(checksum_ok(&parse(&out.frame).ip_bytes));
}

#[test]
fn oversized_without_df_is_dropped() {
    let h = harness();
    let f = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize + 1).df(false);
    assert_eq!(h.run(LO, &f.bytes()).verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropMtuExceeded), 1);
    assert_eq!(h.packets(Stat::DropNoXsk), 0);
    // A jumbo frame (multi-buffer) likewise.
    let f = Frame::udp(A_HOST, REMOTE_HOST, 9000).df(false);
    assert_eq!(h.run(LO, &f.bytes()).verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropMtuExceeded), 2);
}

#[test]
fn oversized_with_df_gets_fragmentation_needed() {
    let h = harness();
    let sent = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize + 1).df(true);
    let out = h.run(LO, &sent.bytes());
    assert_eq!(
        out.verdict, XDP_REDIRECT,
        "sent back out of the ingress port"
    );
    assert_frag_needed(&out.frame, &sent, None, 8);
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), 1);
}

/// ICMP errors are rate-limited per CPU: a burst of ICMP_BURST, then
/// ICMP_RATE_PER_SEC. A flood of oversized packets gets the burst (per CPU
/// the test thread ran on) plus what the elapsed time refilled; the rest is
/// dropped and counted.
#[test]
fn fragmentation_needed_is_rate_limited() {
    let h = harness();
    let sent = Frame::udp(A_HOST, REMOTE_HOST, INTER_REGION_MTU as usize + 1).df(true);
    let bytes = sent.bytes();
    let flood = 3000u64;
    let start = std::time::Instant::now();
    let answered = (0..flood)
        .filter(|_| h.run(LO, &bytes).verdict == XDP_REDIRECT)
        .count() as u64;
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let limited = h.packets(Stat::DropIcmpRateLimited);
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), answered);
    assert_eq!(answered + limited, flood);
    assert!(limited > 0, "{answered} answered in {elapsed_ms} ms");
    assert!(answered >= ICMP_BURST, "the burst is answered: {answered}");
    let most = cpus * ICMP_BURST + (elapsed_ms + 1) * ICMP_RATE_PER_SEC / 1000;
    assert!(
        answered <= most,
        "{answered} answered in {elapsed_ms} ms on {cpus} CPUs (at most {most})"
    );
}

#[test]
fn fragmentation_needed_quotes_options_and_keeps_the_vlan() {
    let mut h = harness();
    let a = iface_a(RTB_A);
    h.dp.maps.set_iface(LO, 300, a).unwrap();
    for opts in [&[][..], &[1u8, 1, 1, 1][..], &[1; 40][..]] {
        let sent = Frame::udp(A_HOST, REMOTE_HOST, 9000)
            .df(true)
            .options(opts)
            .vlan(300);
        let out = h.run(LO, &sent.bytes());
        assert_eq!(out.verdict, XDP_REDIRECT, "{} option bytes", opts.len());
        assert_frag_needed(&out.frame, &sent, Some(300), 8);
    }
}

#[test]
fn no_icmp_error_about_icmp_errors_or_later_fragments() {
    let h = harness();
    let mut icmp_err = Frame::udp(A_HOST, REMOTE_HOST, 1600)
        .df(true)
        .proto(IpNumber::ICMP);
    icmp_err.payload[0] = 3; // destination unreachable
    let later_fragment = Frame::udp(A_HOST, REMOTE_HOST, 1600)
        .df(true)
        .fragment(185, false);
    for f in [icmp_err, later_fragment] {
        assert_eq!(h.run(LO, &f.bytes()).verdict, XDP_DROP);
    }
    assert_eq!(h.packets(Stat::DropMtuExceeded), 2);
    assert_eq!(h.packets(Stat::TxIcmpFragNeeded), 0);

    // An oversized echo request is a query, not an error: it gets a reply.
    let mut echo = Frame::udp(A_HOST, REMOTE_HOST, 1600)
        .df(true)
        .proto(IpNumber::ICMP);
    echo.payload[0] = 8;
    assert_eq!(h.run(LO, &echo.bytes()).verdict, XDP_REDIRECT);
}

#[test]
fn ttl_expiry_applies_to_remote_routes_too() {
    let h = harness();
    let f = Frame::udp(A_HOST, REMOTE_HOST, 100).ttl(1);
    assert_eq!(h.run(LO, &f.bytes()).verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropTtlExceeded), 1);
}
