//! The gateway's per-packet core (`gateway::core::GatewayCore`), driven the
//! way the IO worker drives it: frames from a VPC port sealed, datagrams
//! from the underlay opened. Properties:
//!
//! - arbitrary bytes offered to `open` never authenticate: the answer is a
//!   drop decided before the AEAD (the only reasons an unauthenticated
//!   datagram can reach), and no counter outside the fixed drop array moves;
//! - a frame sealed by the peer gateway is delivered when its inner packet
//!   is a well-formed IPv4 packet between the peered subnets, with the same
//!   bytes, or dropped for a policy reason; never a panic;
//! - every call is counted exactly once: delivered or sealed, or one drop.

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use peering_common::EgressPort;
use peering_userspace::{
    control::view::{PeeringView, RegionView},
    dataplane::reconcile::Desired,
    gateway::{
        core::{Action, GatewayCore},
        reason::DropReason,
        TunnelTable,
    },
    tunnel::{Algorithm, EpochKey, KeyMaterial, RotationPolicy, TunnelConfig},
};

const EAST: u32 = 1;
const WEST: u32 = 2;
const PCX: u32 = 9;

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("net")
}

/// Peering `PCX` joins 10.1.0.0/16 (us-east-1, subnet 10.1.1.0/24, host
/// .10 resolved) and 10.3.0.0/16 (us-west-2, subnet 10.3.0.0/24, host .10
/// resolved).
fn table(west: bool) -> TunnelTable {
    let (region, remote, vpc, local, far, subnet, host) = if west {
        (
            "us-west-2",
            "us-east-1",
            3,
            "10.3.0.0/16",
            "10.1.0.0/16",
            "10.3.0.0/24",
            [10, 3, 0, 10],
        )
    } else {
        (
            "us-east-1",
            "us-west-2",
            1,
            "10.1.0.0/16",
            "10.3.0.0/16",
            "10.1.1.0/24",
            [10, 1, 1, 10],
        )
    };
    let view = RegionView {
        revision: 1,
        region: region.into(),
        security_groups: vec![],
        interfaces: vec![],
        vpcs: vec![],
        subnets: vec![],
        routes: vec![],
        peerings: vec![PeeringView {
            pcx_id: "pcx-9".into(),
            dp_id: PCX,
            local_vpc_dp_id: vpc,
            remote_region: remote.into(),
            remote_vpc_cidrs: vec![net(far)],
            local_vpc_cidrs: vec![net(local)],
            remote_allows_dns: false,
        }],
    };
    let mut desired = Desired::default();
    let port = 7;
    let egress = EgressPort {
        ifindex: port,
        vlan: 0,
        src_mac: [2, 0, 0, 0, 0, 1],
    };
    desired.subnets.insert((vpc, net(subnet)), egress);
    desired
        .neighbours
        .insert((port, Ipv4Addr::from(host)), [2, 0, 0, 0, 0, 2]);
    let registry: Vec<(String, u32, SocketAddrV4)> = vec![
        (
            "us-east-1".into(),
            EAST,
            SocketAddrV4::new([198, 18, 0, 1].into(), 51900),
        ),
        (
            "us-west-2".into(),
            WEST,
            SocketAddrV4::new([198, 18, 1, 2].into(), 51900),
        ),
    ];
    TunnelTable::build(&view, &desired, &registry)
}

fn core(id: u32, west: bool) -> GatewayCore {
    core_keyed(id, west, KEY)
}

/// The key both gateways of the check hold.
const KEY: [u8; 32] = [0x5c; 32];

fn core_keyed(id: u32, west: bool, material: [u8; 32]) -> GatewayCore {
    let policy = RotationPolicy::new(1000, 100, 100).expect("policy");
    let mut core = GatewayCore::new(TunnelConfig::new(id, &policy, 1000));
    let key = EpochKey {
        epoch: 1,
        algorithm: Algorithm::Aes256Gcm,
        activate_at: 0,
        material: KeyMaterial::from_bytes(material),
    };
    core.install_key(key, 0).expect("key");
    core.set_table(table(west));
    core
}

fn drops(core: &GatewayCore) -> u64 {
    DropReason::ALL
        .iter()
        .map(|r| core.shared().drops(*r))
        .sum()
}

/// `data[0]` picks the path: even, `data[1..]` is a datagram from the
/// underlay; odd, `data[1..]` is the inner IPv4 packet of a frame the east
/// gateway seals (after an Ethernet header) and the west gateway opens.
pub fn check(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let mut west = core(WEST, true);
    if op % 2 == 0 {
        let mut datagram = rest.to_vec();
        match west.open(&mut datagram) {
            Action::Drop(reason) => {
                assert!(reason.before_auth(), "forged bytes reached {reason:?}")
            }
            other => panic!("forged bytes were accepted: {other:?}"),
        }
        assert_eq!(drops(&west), 1, "one drop counted");
        let stats = west.shared().snapshot();
        assert!(
            stats.gateways.values().all(|g| g.opened == 0),
            "nothing opened"
        );
        return;
    }
    let mut east = core(EAST, false);
    let mut frame = vec![0u8; 14];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(rest);
    let mut out = vec![0u8; 2048];
    let len = match east.seal(PCX, &frame, &mut out) {
        Action::Transmit { len, .. } => len,
        Action::Drop(_) => {
            assert_eq!(drops(&east), 1, "one drop counted");
            return;
        }
        other => panic!("seal answered {other:?}"),
    };
    assert_eq!(drops(&east), 0);
    let mut datagram = out[..len].to_vec();
    match west.open(&mut datagram) {
        Action::Deliver { inner, .. } => {
            // The packet as sealed: the frame's IPv4 packet up to its total
            // length.
            let total = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            assert_eq!(&datagram[inner], &rest[..total], "delivered as sealed");
            assert_eq!(drops(&west), 0);
        }
        Action::Drop(_) | Action::Resolve { .. } => {
            let reason = reason_of(&west).expect("one drop counted");
            assert!(!reason.before_auth(), "a sealed datagram failed {reason:?}");
        }
        other => panic!("a sealed datagram was refused as {other:?}"),
    }
}

/// The one reason counted so far on `core`, if exactly one was.
fn reason_of(core: &GatewayCore) -> Option<DropReason> {
    let mut counted = DropReason::ALL
        .iter()
        .filter(|r| core.shared().drops(**r) > 0);
    let first = counted.next().copied();
    counted.next().is_none().then_some(first).flatten()
}

/// An ICMP-over-IPv4 packet `src -> dst` with `payload` bytes of body
/// (for the seeds).
pub fn packet(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// A well-formed datagram sealed under a key the check's gateways do not
/// hold (for the seeds): no mutation of it authenticates, unlike one sealed
/// under their own key, which a single flipped bit would restore.
pub fn sealed_example() -> Vec<u8> {
    let mut east = core_keyed(EAST, false, [0x33; 32]);
    let mut frame = vec![0u8; 14];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame.extend(packet([10, 1, 1, 10], [10, 3, 0, 10], 32));
    let mut out = vec![0u8; 2048];
    let Action::Transmit { len, .. } = east.seal(PCX, &frame, &mut out) else {
        panic!("the example seals");
    };
    out.truncate(len);
    out
}
