//! Unit tests of [`GatewayCore`]: two cores sealing to each other, every
//! drop reason reached, and a flood of forged headers that allocates
//! nothing.

use std::{
    collections::{BTreeSet, HashMap},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;
use peering_common::EgressPort;

use super::*;
use crate::control::view::{PeeringView, RegionView};
use crate::dataplane::reconcile::Desired;
use crate::gateway::stats::Shared;
use crate::tunnel::{
    wire::{HEADER_LEN, MAX_DATAGRAM_LEN},
    Algorithm, KeyMaterial, RotationPolicy, UsageLimits,
};

const EAST: u32 = 1;
const WEST: u32 = 2;
/// Registered, but serving a region no peering here involves.
const OTHER: u32 = 5;
/// Holds the key, but is not in the registry.
const ROGUE: u32 = 6;
const PCX: u32 = 9;
const EAST_PORT: u32 = 7;
const WEST_PORT: u32 = 8;
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn registry(with_peers: bool) -> Vec<(String, u32, SocketAddrV4)> {
    let mut g = vec![(
        "eu-west-1".to_string(),
        OTHER,
        "198.18.2.5:51900".parse().unwrap(),
    )];
    if with_peers {
        g.push((
            "us-east-1".into(),
            EAST,
            "198.18.0.1:51900".parse().unwrap(),
        ));
        g.push((
            "us-west-2".into(),
            WEST,
            "198.18.1.2:51900".parse().unwrap(),
        ));
    }
    g
}

/// Peering `PCX` joins 10.1.0.0/16 (us-east-1, VPC 1, subnet 10.1.1.0/24
/// with host .10) and 10.3.0.0/16 (us-west-2, VPC 3, subnet 10.3.0.0/24
/// with host .10); `local` says which side this table is.
fn table(west: bool, with_peers: bool) -> TunnelTable {
    let (region, remote, vpc, local_net, remote_net, port, subnet, host) = if west {
        let r = ("us-west-2", "us-east-1", 3, "10.3.0.0/16", "10.1.0.0/16");
        (
            r.0,
            r.1,
            r.2,
            r.3,
            r.4,
            WEST_PORT,
            "10.3.0.0/24",
            "10.3.0.10",
        )
    } else {
        let r = ("us-east-1", "us-west-2", 1, "10.1.0.0/16", "10.3.0.0/16");
        (
            r.0,
            r.1,
            r.2,
            r.3,
            r.4,
            EAST_PORT,
            "10.1.1.0/24",
            "10.1.1.10",
        )
    };
    let view = RegionView {
        revision: 1,
        region: region.into(),
        vpcs: vec![],
        subnets: vec![],
        security_groups: vec![],
        interfaces: vec![],
        routes: vec![],
        peerings: vec![PeeringView {
            pcx_id: "pcx-9".into(),
            dp_id: PCX,
            local_vpc_dp_id: vpc,
            remote_region: remote.into(),
            remote_vpc_cidrs: vec![net(remote_net)],
            local_vpc_cidrs: vec![net(local_net)],
            remote_allows_dns: false,
        }],
    };
    let mut desired = Desired::default();
    let egress = EgressPort {
        ifindex: port,
        vlan: 0,
        src_mac: PORT_MAC,
    };
    desired.subnets.insert((vpc, net(subnet)), egress);
    desired.neighbours.insert((port, ip(host)), HOST_MAC);
    TunnelTable::build(&view, &desired, &registry(with_peers))
}

fn key(epoch: u32) -> EpochKey {
    EpochKey {
        epoch,
        algorithm: Algorithm::Aes256Gcm,
        activate_at: 0,
        material: KeyMaterial::from_bytes([epoch as u8 ^ 0x5c; 32]),
    }
}

fn config(id: u32) -> TunnelConfig {
    let policy = RotationPolicy::new(1000, 100, 100).unwrap();
    TunnelConfig::new(id, &policy, 1000)
}

fn core_from(config: TunnelConfig, west: bool) -> GatewayCore {
    let mut core = GatewayCore::new(config);
    core.install_key(key(1), 0).unwrap();
    core.set_table(table(west, true));
    core
}

fn pair() -> (GatewayCore, GatewayCore) {
    (
        core_from(config(EAST), false),
        core_from(config(WEST), true),
    )
}

/// An Ethernet frame holding an IPv4 packet `src -> dst` with `payload`
/// bytes of body.
fn frame(src: &str, dst: &str, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f.extend(ipv4(src, dst, payload));
    f
}

fn ipv4(src: &str, dst: &str, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&ip(src).octets());
    p[16..20].copy_from_slice(&ip(dst).octets());
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// Seals `frame` on `core`; the datagram, or the action if not sealed.
fn seal(core: &mut GatewayCore, pcx: u32, frame: &[u8]) -> Result<Vec<u8>, Action> {
    let mut out = vec![0u8; 2048];
    match core.seal(pcx, frame, &mut out) {
        Action::Transmit { len, .. } => Ok(out[..len].to_vec()),
        other => Err(other),
    }
}

/// Seals `inner` for `pcx` with the raw tunnel core, skipping the table.
fn seal_raw(core: &mut GatewayCore, pcx: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let len = core.tunnel.seal(pcx, inner, &mut out).unwrap();
    out.truncate(len);
    out
}

fn open(core: &mut GatewayCore, datagram: &[u8]) -> Action {
    core.open(&mut datagram.to_vec())
}

fn reason(action: Action) -> DropReason {
    match action {
        Action::Drop(r) => r,
        // Counted as no_neighbour; the host goes to the agent to resolve.
        Action::Resolve { .. } => DropReason::NoNeighbour,
        other => panic!("not a drop: {other:?}"),
    }
}

fn stats(core: &GatewayCore) -> crate::gateway::TunnelStats {
    core.shared().snapshot()
}

#[test]
fn a_packet_crosses_from_east_to_west_and_back() {
    let (mut east, mut west) = pair();
    let f = frame("10.1.1.10", "10.3.0.10", 100);
    let mut out = vec![0u8; 2048];
    let Action::Transmit { to, len } = east.seal(PCX, &f, &mut out) else {
        panic!("sealed")
    };
    assert_eq!(to, "198.18.1.2:51900".parse().unwrap());
    let datagram = &mut out[..len];
    let Action::Deliver { delivery, inner } = west.open(datagram) else {
        panic!("delivered")
    };
    assert_eq!(&datagram[inner], &f[14..]);
    assert_eq!(
        delivery,
        Delivery {
            ifindex: WEST_PORT,
            vlan: 0,
            dst_mac: HOST_MAC,
            src_mac: PORT_MAC
        }
    );
    let back = seal(&mut west, PCX, &frame("10.3.0.10", "10.1.1.10", 0)).unwrap();
    assert!(matches!(open(&mut east, &back), Action::Deliver { .. }));

    let (e, w) = (stats(&east), stats(&west));
    assert_eq!(e.peerings["pcx-9"].sealed, 1);
    assert_eq!(e.peerings["pcx-9"].sealed_bytes, 120);
    assert_eq!(e.gateways["us-west-2"].sealed, 1);
    assert_eq!(e.peerings["pcx-9"].opened, 1);
    assert_eq!(e.gateways["us-west-2"].opened, 1);
    assert_eq!(w.peerings["pcx-9"].opened, 1);
    assert_eq!(w.gateways["us-east-1"].opened_bytes, 120);
    assert!(e.drops.values().chain(w.drops.values()).all(|n| *n == 0));
    assert_eq!(e.current_epoch, Some(1));
    assert_eq!(e.held_epochs, vec![1]);
}

/// Drives each reason once and checks it is the action and the count.
#[test]
fn every_drop_reason_is_reached_and_counted() {
    let mut seen = BTreeSet::new();
    // The drop counters of each core as of its previous check.
    let mut last: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut expect = |shared: &Arc<Shared>, action: Action, want: DropReason| {
        assert_eq!(reason(action), want);
        let now: Vec<u64> = DropReason::ALL.iter().map(|r| shared.drops(*r)).collect();
        let before = last
            .insert(Arc::as_ptr(shared) as usize, now.clone())
            .unwrap_or_else(|| vec![0; now.len()]);
        // Counted once, under this reason only.
        for (r, (b, n)) in DropReason::ALL.iter().zip(before.iter().zip(&now)) {
            let grew = if *r == want { 1 } else { 0 };
            assert_eq!(*n, b + grew, "{r:?} while expecting {want:?}");
        }
        seen.insert(want);
    };
    let (mut east, mut west) = pair();
    let (es, ws) = (east.shared().clone(), west.shared().clone());
    let good = seal(&mut east, PCX, &frame("10.1.1.10", "10.3.0.10", 10)).unwrap();

    // Before authentication.
    expect(&ws, open(&mut west, &good[..10]), DropReason::Truncated);
    let mut bad = good.clone();
    bad[1] = 9;
    expect(&ws, open(&mut west, &bad), DropReason::Malformed);
    let mut long = good.clone();
    long.resize(MAX_DATAGRAM_LEN + 1, 0);
    expect(&ws, open(&mut west, &long), DropReason::Malformed);
    let mut bad = good.clone();
    bad[0] = 2;
    expect(&ws, open(&mut west, &bad), DropReason::BadVersion);
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&WEST.to_be_bytes());
    expect(&ws, open(&mut west, &bad), DropReason::Reflected);
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&99u32.to_be_bytes());
    expect(&ws, open(&mut west, &bad), DropReason::UnknownEpoch);
    let mut bad = good.clone();
    bad[HEADER_LEN + 3] ^= 1;
    expect(&ws, open(&mut west, &bad), DropReason::AuthFailed);
    assert!(matches!(open(&mut west, &good), Action::Deliver { .. }));
    expect(&ws, open(&mut west, &good), DropReason::Replay);

    // After authentication.
    let mut rogue = core_from(config(ROGUE), false);
    let d = seal_raw(&mut rogue, PCX, &ipv4("10.1.1.10", "10.3.0.10", 0));
    expect(&ws, open(&mut west, &d), DropReason::UnknownSender);
    let mut other = core_from(config(OTHER), false);
    let d = seal_raw(&mut other, PCX, &ipv4("10.1.1.10", "10.3.0.10", 0));
    expect(&ws, open(&mut west, &d), DropReason::WrongSender);
    let cases = [
        (
            44,
            ipv4("10.1.1.10", "10.3.0.10", 0),
            DropReason::UnknownPeering,
        ),
        (
            PCX,
            ipv4("10.9.1.10", "10.3.0.10", 0),
            DropReason::SrcOutsidePeer,
        ),
        (
            PCX,
            ipv4("10.1.1.10", "10.4.0.10", 0),
            DropReason::DstOutsidePeer,
        ),
        (PCX, ipv4("10.1.1.10", "10.3.7.10", 0), DropReason::NoSubnet),
        (
            PCX,
            ipv4("10.1.1.10", "10.3.0.11", 0),
            DropReason::NoNeighbour,
        ),
        (PCX, vec![0x60; 40], DropReason::BadInner),
    ];
    for (pcx, inner, want) in cases {
        let d = seal_raw(&mut east, pcx, &inner);
        expect(&ws, open(&mut west, &d), want);
    }

    // Sealing.
    let ok = frame("10.1.1.10", "10.3.0.10", 10);
    expect(
        &es,
        east.seal(44, &ok, &mut [0; 2048]),
        DropReason::UnknownPeering,
    );
    let f = frame("10.1.1.10", "10.4.0.10", 10);
    expect(
        &es,
        east.seal(PCX, &f, &mut [0; 2048]),
        DropReason::DstOutsidePeer,
    );
    let mut arp = ok.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    expect(
        &es,
        east.seal(PCX, &arp, &mut [0; 2048]),
        DropReason::BadInner,
    );
    let big = frame("10.1.1.10", "10.3.0.10", 1600);
    expect(
        &es,
        east.seal(PCX, &big, &mut [0; 2048]),
        DropReason::MtuExceeded,
    );
    expect(
        &es,
        east.seal(PCX, &ok, &mut [0; 20]),
        DropReason::OutputTooSmall,
    );
    east.set_underlay_mtu(Some(500));
    let f = frame("10.1.1.10", "10.3.0.10", 600);
    expect(
        &es,
        east.seal(PCX, &f, &mut [0; 2048]),
        DropReason::UnderlayMtuExceeded,
    );
    let mut lonely = GatewayCore::new(config(EAST));
    lonely.install_key(key(1), 0).unwrap();
    lonely.set_table(table(false, false));
    let lonely_s = lonely.shared().clone();
    expect(
        &lonely_s,
        lonely.seal(PCX, &ok, &mut [0; 2048]),
        DropReason::NoRemoteGateway,
    );
    let mut keyless = GatewayCore::new(config(EAST));
    keyless.set_table(table(false, true));
    let keyless_s = keyless.shared().clone();
    expect(
        &keyless_s,
        keyless.seal(PCX, &ok, &mut [0; 2048]),
        DropReason::NoCurrentKey,
    );
    let mut limited = config(EAST);
    limited.usage_limits = Some(UsageLimits {
        seal_soft: 1,
        seal_hard: 1,
        forgery_soft: 1,
    });
    let mut limited = core_from(limited, false);
    let limited_s = limited.shared().clone();
    assert!(seal(&mut limited, PCX, &ok).is_ok());
    expect(
        &limited_s,
        limited.seal(PCX, &ok, &mut [0; 2048]),
        DropReason::KeyUsageExhausted,
    );
    let mut spent = config(EAST);
    spent.counter_floor = u64::MAX;
    let mut spent = core_from(spent, false);
    let spent_s = spent.shared().clone();
    expect(
        &spent_s,
        spent.seal(PCX, &ok, &mut [0; 2048]),
        DropReason::CounterExhausted,
    );

    // At the IO edge.
    for edge in [DropReason::NoSocket, DropReason::ResolveQueueFull] {
        east.count_drop(edge);
        expect(&es, Action::Drop(edge), edge);
    }

    // ring's AEAD refuses to seal only input larger than it allows, which
    // the MTU check excludes: the reason exists for completeness.
    let unreachable = BTreeSet::from([DropReason::SealFailed]);
    let all: BTreeSet<_> = DropReason::ALL.iter().copied().collect();
    let missing: Vec<_> = all
        .difference(&seen)
        .filter(|r| !unreachable.contains(r))
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}

#[test]
fn failures_before_authentication_are_charged_only_to_registered_gateways() {
    let (mut east, mut west) = pair();
    let good = seal(&mut east, PCX, &frame("10.1.1.10", "10.3.0.10", 10)).unwrap();
    let mut forged = good.clone();
    forged[HEADER_LEN] ^= 1;
    reason(open(&mut west, &forged));
    let s = stats(&west);
    assert_eq!(s.gateways["us-east-1"].auth_failures, 1);
    // The same forgery claiming an unregistered sender leaves no trace but
    // the fixed counter.
    forged[8..12].copy_from_slice(&1234u32.to_be_bytes());
    reason(open(&mut west, &forged));
    let s = stats(&west);
    assert_eq!(s.gateways.len(), 3);
    assert_eq!(s.gateways["us-east-1"].auth_failures, 1);
    assert_eq!(s.drop_count("auth_failed"), 2);
}

/// 40,000 header-shaped datagrams with random sender ids and as many
/// random byte strings: every one is dropped before authentication,
/// counted in the fixed counters, and none adds a counter or a window.
#[test]
fn a_flood_of_forged_datagrams_allocates_nothing() {
    let (mut east, mut west) = pair();
    let good = seal(&mut east, PCX, &frame("10.1.1.10", "10.3.0.10", 10)).unwrap();
    let mut state = 0x5eed_u64;
    // SplitMix64 (public domain, Sebastiano Vigna): reproducible noise.
    let mut rng = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut buf = [0u8; 300];
    let n = 40_000u64;
    for i in 0..n {
        let len = 1 + (rng() % 299) as usize;
        let d = &mut buf[..len];
        for b in d.iter_mut() {
            *b = rng() as u8;
        }
        if i % 2 == 0 && len >= good.len() {
            // Header-shaped: the real version, kind and epoch.
            d[..8].copy_from_slice(&good[..8]);
        }
        let action = west.open(d);
        assert!(reason(action).before_auth());
    }
    let s = stats(&west);
    assert_eq!(s.drops_before_auth(), n);
    assert_eq!(s.gateways.len(), 3, "only registered gateways");
    assert_eq!(s.peerings.len(), 1);
    assert_eq!(west.tunnel.counters().opened, 0);
    // The genuine datagram still opens.
    assert!(matches!(open(&mut west, &good), Action::Deliver { .. }));
}

#[test]
fn counters_survive_table_changes_and_go_with_their_peering() {
    let (mut east, _) = pair();
    seal(&mut east, PCX, &frame("10.1.1.10", "10.3.0.10", 10)).unwrap();
    east.set_table(table(false, true));
    assert_eq!(stats(&east).peerings["pcx-9"].sealed, 1);
    let mut empty = table(false, true);
    empty.peers.clear();
    east.set_table(empty);
    assert!(stats(&east).peerings.is_empty());
    assert_eq!(stats(&east).gateways["us-west-2"].sealed, 1);
}

/// A host with no MAC is named for resolution, on the port it lies behind.
#[test]
fn an_unresolved_host_is_handed_out_for_resolution() {
    let (mut east, mut west) = pair();
    let d = seal_raw(&mut east, PCX, &ipv4("10.1.1.10", "10.3.0.11", 0));
    match open(&mut west, &d) {
        Action::Resolve { host, .. } => {
            assert_eq!(host, "10.3.0.11".parse::<std::net::Ipv4Addr>().unwrap())
        }
        other => panic!("not a resolve: {other:?}"),
    }
    assert_eq!(west.shared().drops(DropReason::NoNeighbour), 1);
}

/// Two workers of the west gateway: a datagram opened on one is refused
/// as a replay on the other (the outer headers, which pick the queue and
/// so the worker, are not authenticated), counted there under `replay`
/// and charged to the claimed sender; the workers' counters sum.
#[test]
fn a_replay_onto_a_second_worker_is_refused_and_counted() {
    let mut east = core_from(config(EAST), false);
    let shared = crate::tunnel::TunnelShared::new(1000);
    let mut workers: Vec<GatewayCore> = (0..2)
        .map(|_| {
            let mut w = GatewayCore::worker(config(WEST).worker_share(2), shared.clone());
            w.install_key(key(1), 0).unwrap();
            w.set_table(table(true, true));
            w
        })
        .collect();
    let d = seal(&mut east, PCX, &frame("10.1.1.10", "10.3.0.10", 10)).unwrap();
    assert!(matches!(open(&mut workers[0], &d), Action::Deliver { .. }));
    assert_eq!(reason(open(&mut workers[1], &d)), DropReason::Replay);
    assert_eq!(reason(open(&mut workers[0], &d)), DropReason::Replay);
    let (w0, w1) = (stats(&workers[0]), stats(&workers[1]));
    assert_eq!(w1.drop_count("replay"), 1);
    assert_eq!(w1.gateways["us-east-1"].replays, 1);
    let mut all = w0.clone();
    all.absorb(w1);
    assert_eq!(all.drop_count("replay"), 2);
    assert_eq!(all.gateways["us-east-1"].opened, 1);
    // Both workers seal without sharing a nonce.
    let back: Vec<Vec<u8>> = (0..2)
        .flat_map(|i| {
            let w = &mut workers[i];
            (0..3)
                .map(|_| seal(w, PCX, &frame("10.3.0.10", "10.1.1.10", 0)).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let nonce = |d: &[u8]| {
        let p = crate::tunnel::wire::Packet::new_checked(d).unwrap();
        crate::tunnel::wire::TunnelHeader::parse(&p)
            .unwrap()
            .nonce()
    };
    let nonces: BTreeSet<[u8; 12]> = back.iter().map(|d| nonce(d)).collect();
    assert_eq!(nonces.len(), 6);
    for d in &back {
        assert!(matches!(open(&mut east, d), Action::Deliver { .. }));
    }
}
