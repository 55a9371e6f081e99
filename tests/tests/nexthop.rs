//! Next-hop resolution through rtnetlink, against a real kernel: a
//! namespace "gw" (where the resolver runs) joined by veth pairs to two
//! neighbour namespaces. Needs root; everything lives in namespaces made
//! for the test and removed when it ends, failed or not.
//!
//! ```text
//! gw: ul0 198.18.0.1/24 ---- ul1 198.18.0.2/24 :peer
//!     ul2 198.18.1.1/24 ---- ul3 198.18.1.2/24 :router
//!     198.18.5.0/24 via 198.18.1.2
//! ```

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use peering_tests::lab::{veth, Netns};
use peering_userspace::{
    gateway::nexthop::{NextHop, Resolution, Resolver},
    sys,
};

const GW_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const BEHIND_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 7);

struct Lab {
    gw: Netns,
    peer: Netns,
    router: Netns,
}

impl Lab {
    fn new() -> Self {
        let lab = Lab {
            gw: Netns::new("nh-gw"),
            peer: Netns::new("nh-peer"),
            router: Netns::new("nh-rtr"),
        };
        veth(&lab.gw, "ul0", &lab.peer, "ul1");
        veth(&lab.gw, "ul2", &lab.router, "ul3");
        lab.gw
            .exec_ok(&["ip", "addr", "add", "198.18.0.1/24", "dev", "ul0"]);
        lab.gw
            .exec_ok(&["ip", "addr", "add", "198.18.1.1/24", "dev", "ul2"]);
        lab.peer
            .exec_ok(&["ip", "addr", "add", "198.18.0.2/24", "dev", "ul1"]);
        lab.router
            .exec_ok(&["ip", "addr", "add", "198.18.1.2/24", "dev", "ul3"]);
        lab
    }

    /// The MAC of `iface` in `ns`.
    fn mac(ns: &Netns, iface: &str) -> [u8; 6] {
        sys::parse_mac(&ns.mac(iface)).unwrap()
    }

    /// Runs `f` on a thread inside the gw namespace.
    fn in_gw<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let name = self.gw.name.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                sys::enter_netns(&name).unwrap();
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

/// Resolves until Ready, nudging once first; fails after `limit`.
fn resolve_ready(r: &mut Resolver, dst: Ipv4Addr, src: Ipv4Addr, limit: Duration) -> NextHop {
    let start = Instant::now();
    loop {
        match r.resolve(dst, src).unwrap() {
            Resolution::Ready(hop) => return hop,
            Resolution::Unresolved { .. } if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Resolution::Unresolved { ifindex, via } => {
                panic!("{dst}: still unresolved after {limit:?} (ifindex {ifindex}, via {via})")
            }
        }
    }
}

#[test]
fn on_link_destination_resolves_after_a_nudge() {
    let lab = Lab::new();
    let peer_mac = Lab::mac(&lab.peer, "ul1");
    lab.in_gw(|| {
        let ifindex = sys::ifindex("ul0").unwrap();
        let own_mac = sys::mac("ul0").unwrap();
        let mut r = Resolver::new().unwrap();

        // Nothing has talked to the peer: no neighbour entry yet.
        assert_eq!(
            r.resolve(PEER, GW_ADDR).unwrap(),
            Resolution::Unresolved { ifindex, via: PEER }
        );
        r.nudge(ifindex, PEER).unwrap();
        let hop = resolve_ready(&mut r, PEER, GW_ADDR, Duration::from_secs(1));
        assert_eq!(
            hop,
            NextHop {
                ifindex,
                src_mac: own_mac,
                dst_mac: peer_mac,
                via: PEER,
            }
        );
        // Nudging a resolved entry is harmless, and so is an unspecified
        // source (the kernel picks one).
        r.nudge(ifindex, PEER).unwrap();
        assert_eq!(
            r.resolve(PEER, Ipv4Addr::UNSPECIFIED).unwrap(),
            Resolution::Ready(hop)
        );

        // An address nobody answers for stays unresolved.
        let silent = Ipv4Addr::new(198, 18, 0, 99);
        r.nudge(ifindex, silent).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            r.resolve(silent, GW_ADDR).unwrap(),
            Resolution::Unresolved {
                ifindex,
                via: silent
            }
        );
    });
}

#[test]
fn destination_behind_a_gateway_resolves_to_the_gateway() {
    let lab = Lab::new();
    lab.gw
        .exec_ok(&["ip", "route", "add", "198.18.5.0/24", "via", "198.18.1.2"]);
    let router_mac = Lab::mac(&lab.router, "ul3");
    lab.in_gw(|| {
        let ifindex = sys::ifindex("ul2").unwrap();
        let own_mac = sys::mac("ul2").unwrap();
        let mut r = Resolver::new().unwrap();
        let src = Ipv4Addr::new(198, 18, 1, 1);
        assert_eq!(
            r.resolve(BEHIND_ROUTER, src).unwrap(),
            Resolution::Unresolved {
                ifindex,
                via: ROUTER
            }
        );
        r.nudge(ifindex, ROUTER).unwrap();
        let hop = resolve_ready(&mut r, BEHIND_ROUTER, src, Duration::from_secs(1));
        assert_eq!(
            hop,
            NextHop {
                ifindex,
                src_mac: own_mac,
                dst_mac: router_mac,
                via: ROUTER,
            }
        );
    });
}

#[test]
fn unroutable_destinations_are_errors() {
    let lab = Lab::new();
    for route in [
        &["blackhole", "198.18.6.0/24"][..],
        &["unreachable", "198.18.7.0/24"],
        &["prohibit", "198.18.8.0/24"],
        &["198.18.9.0/24", "dev", "lo"],
    ] {
        let mut argv = vec!["ip", "route", "add"];
        argv.extend(route);
        lab.gw.exec_ok(&argv);
    }
    lab.in_gw(|| {
        let mut r = Resolver::new().unwrap();
        let mut err = |dst: [u8; 4], src: Ipv4Addr| match r.resolve(dst.into(), src) {
            Ok(res) => panic!("{dst:?} from {src}: {res:?}, not an error"),
            Err(e) => format!("{e:#}"),
        };
        // No route at all: the namespace has no default route.
        let e = err([198, 19, 0, 1], GW_ADDR);
        assert!(e.contains("no route"), "{e}");
        for dst in [[198, 18, 6, 1], [198, 18, 7, 1], [198, 18, 8, 1]] {
            let e = err(dst, GW_ADDR);
            assert!(e.contains("no route"), "{dst:?}: {e}");
        }
        // A source that is not local to this namespace.
        let e = err([198, 18, 0, 2], Ipv4Addr::new(198, 18, 3, 3));
        assert!(e.contains("no route"), "{e}");
        // A local destination.
        let e = err([198, 18, 0, 1], GW_ADDR);
        assert!(e.contains("local"), "{e}");
        // A route out of a non-Ethernet interface.
        let e = err([198, 18, 9, 1], GW_ADDR);
        assert!(e.contains("not Ethernet"), "{e}");
        // A nudge on an interface that does not exist.
        let e = Resolver::new().unwrap().nudge(999_999, PEER).unwrap_err();
        assert!(e.to_string().contains("RTM_NEWNEIGH"), "{e}");
    });
}
