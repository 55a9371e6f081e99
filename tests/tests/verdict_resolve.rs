//! BPF_PROG_TEST_RUN verdicts for a destination host without a MAC: the
//! packet is dropped and counted, and the agent is asked to resolve the
//! host through the `RESOLVE` ring buffer, within the per-CPU rate limit;
//! a full ring is counted under its own reason.

use std::net::Ipv4Addr;

use aya::maps::{MapData, PerCpuArray, PerCpuValues, RingBuf};
use peering_common::{Stat, RESOLVE_BURST};
use peering_tests::{
    frame::Frame,
    verdict::{Harness, LO, XDP_DROP},
    world::*,
};
use peering_userspace::hosts::parse_request;

fn drain(ring: &mut RingBuf<MapData>) -> Vec<(u32, Ipv4Addr)> {
    let mut out = Vec::new();
    while let Some(r) = ring.next() {
        out.push(parse_request(&r).expect("a NeighKey record"));
    }
    out
}

/// Refills the rate limit's buckets (on every CPU), as if a long time had
/// passed since the last request.
fn refill(h: &mut Harness) {
    let map = h.dp.object_map_mut("RESOLVE_BUCKET").unwrap();
    let mut buckets: PerCpuArray<_, [u64; 2]> = PerCpuArray::try_from(map).unwrap();
    let n = buckets.get(&0, 0).unwrap().len();
    buckets
        .set(0, PerCpuValues::try_from(vec![[0u64; 2]; n]).unwrap(), 0)
        .unwrap();
}

fn unresolved_frame() -> Vec<u8> {
    Frame::udp(A_HOST, B_HOST_NO_NEIGH, 60).bytes()
}

#[test]
fn a_host_without_a_mac_is_dropped_counted_and_reported() {
    let mut h = harness();
    let mut ring = h.dp.resolve_requests().unwrap();
    let out = h.run(LO, &unresolved_frame());
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropNoNeighbour), 1);
    assert_eq!(
        drain(&mut ring),
        vec![(LO, Ipv4Addr::from(B_HOST_NO_NEIGH))],
        "the port and the host, once"
    );
    // A host with a MAC is forwarded and reported nowhere.
    h.run(LO, &Frame::udp(A_HOST, B_HOST, 60).bytes());
    assert!(drain(&mut ring).is_empty());
    assert_eq!(h.packets(Stat::DropNoNeighbourUnreported), 0);
    assert_eq!(h.packets(Stat::DropNoNeighbourRingFull), 0);
}

#[test]
fn a_flood_to_unknown_hosts_is_reported_within_the_rate_limit() {
    let mut h = harness();
    let mut ring = h.dp.resolve_requests().unwrap();
    const RUNS: u64 = 1000;
    // One syscall runs the program RUNS times, in far less time than the
    // bucket needs to earn RUNS / 2 requests (5 s at 100/s).
    let (out, _) = h.run_prog("peering_vpc", LO, &unresolved_frame(), RUNS as u32);
    assert_eq!(out.verdict, XDP_DROP);
    let reported = h.packets(Stat::DropNoNeighbour);
    let unreported = h.packets(Stat::DropNoNeighbourUnreported);
    assert_eq!(reported + unreported, RUNS, "every packet counted once");
    assert!(
        reported >= RESOLVE_BURST,
        "a full bucket's burst: {reported}"
    );
    assert!(reported < RUNS / 2, "the rest are not reported: {reported}");
    assert_eq!(drain(&mut ring).len() as u64, reported, "one record each");
    assert_eq!(h.packets(Stat::DropNoNeighbourRingFull), 0);
}

#[test]
fn a_full_ring_is_counted_and_drains() {
    let mut h = harness();
    let mut ring = h.dp.resolve_requests().unwrap();
    let frame = unresolved_frame();
    // 1024 records fit; offer more, a burst at a time, nothing reading.
    let rounds = 60;
    for _ in 0..rounds {
        refill(&mut h);
        h.run_prog("peering_vpc", LO, &frame, RESOLVE_BURST as u32);
    }
    let total = rounds * RESOLVE_BURST;
    let reported = h.packets(Stat::DropNoNeighbour);
    let full = h.packets(Stat::DropNoNeighbourRingFull);
    let unreported = h.packets(Stat::DropNoNeighbourUnreported);
    assert_eq!(reported + full + unreported, total);
    assert!(
        full > 0,
        "the ring filled: {reported} reported, {full} full"
    );
    assert_eq!(drain(&mut ring).len() as u64, reported);
    // Drained, it takes requests again.
    refill(&mut h);
    h.run(LO, &frame);
    assert_eq!(h.packets(Stat::DropNoNeighbour), reported + 1);
    assert_eq!(drain(&mut ring).len(), 1);
}
