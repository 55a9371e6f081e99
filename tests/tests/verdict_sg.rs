//! BPF_PROG_TEST_RUN verdicts for security groups and connection tracking
//! (`peering-ebpf/src/sg.rs`) on both VPC programs, XDP and TC, in the
//! routing world of `verdict_routing.rs` with groups added:
//!
//! - `client` (A's host 10.1.0.5): egress TCP any port to 10.2.0.0/16,
//!   UDP any port to members of `web`, ICMP any, protocol 47 anywhere; no
//!   ingress;
//! - `web` (B's host 10.2.0.5): ingress TCP 80–443 from 10.1.0.0/16, UDP 53
//!   from members of `client`, ICMP echo requests from 10.1.0.0/24,
//!   protocol 47 from anywhere; egress everything;
//! - each VPC's default group (every other address of its blocks): AWS's,
//!   all traffic from its own members and all egress.
//!
//! B's host sends on VLAN 100 for XDP; the TC run cannot set an ingress
//! VLAN, so B's packets are sent with loopback's untagged entry switched
//! to B's subnet for the one packet.

use etherparse::IpNumber;
use ipnet::Ipv4Net;
use peering_common::{conntrack::CtState, CtKey, Stat, MAX_CONNTRACK};
use peering_tests::{
    frame::Frame,
    verdict::{Harness, LO, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_REDIRECT},
    world::*,
};
use peering_userspace::{
    control::sg_view::{InterfaceView, SecurityGroupView, SgPeer, SgProtocol, SgRuleView},
    dataplane::{iface_info, sg::VpcGroups},
};

const A_DEFAULT: u32 = 100;
const B_DEFAULT: u32 = 200;
const WEB: u32 = 300;
const CLIENT: u32 = 400;
/// A host of VPC A with no interface record: in A's default group.
const A_OTHER: [u8; 4] = [10, 1, 0, 200];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// Rule dataplane ids (counter names).
const R_WEB_TCP: u32 = 31;
const R_WEB_UDP: u32 = 32;
const R_WEB_ECHO: u32 = 33;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    Xdp,
    Tc,
}

const BOTH: [Prog; 2] = [Prog::Xdp, Prog::Tc];

#[derive(Debug, PartialEq, Eq)]
enum V {
    Fwd,
    Drop,
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn rule(dp_id: u32, protocol: SgProtocol, peer: SgPeer) -> SgRuleView {
    SgRuleView {
        rule_id: format!("sgr-{dp_id}"),
        dp_id,
        protocol,
        peer,
    }
}

fn sg(
    dp_id: u32,
    vpc: u32,
    ingress: Vec<SgRuleView>,
    egress: Vec<SgRuleView>,
) -> SecurityGroupView {
    SecurityGroupView {
        group_id: format!("sg-{dp_id}"),
        dp_id,
        vpc_dp_id: vpc,
        ingress,
        egress,
    }
}

fn anywhere() -> SgPeer {
    SgPeer::Cidr(net("0.0.0.0/0"))
}

fn default_group(dp_id: u32, vpc: u32) -> SecurityGroupView {
    let me = SgPeer::Group { group_dp_id: dp_id };
    sg(
        dp_id,
        vpc,
        vec![rule(dp_id * 10, SgProtocol::All, me)],
        vec![rule(dp_id * 10 + 1, SgProtocol::All, anywhere())],
    )
}

struct Groups {
    vpcs: Vec<VpcGroups>,
    groups: Vec<SecurityGroupView>,
    ifaces: Vec<InterfaceView>,
}

fn groups() -> Groups {
    let web = sg(
        WEB,
        VPC_B,
        vec![
            rule(
                R_WEB_TCP,
                SgProtocol::Tcp {
                    from_port: 80,
                    to_port: 443,
                },
                SgPeer::Cidr(net("10.1.0.0/16")),
            ),
            rule(
                R_WEB_UDP,
                SgProtocol::Udp {
                    from_port: 53,
                    to_port: 53,
                },
                SgPeer::Group {
                    group_dp_id: CLIENT,
                },
            ),
            rule(
                R_WEB_ECHO,
                SgProtocol::Icmp {
                    icmp_type: Some(8),
                    code: None,
                },
                SgPeer::Cidr(net("10.1.0.0/24")),
            ),
            rule(34, SgProtocol::Other(47), anywhere()),
        ],
        vec![rule(35, SgProtocol::All, anywhere())],
    );
    let client = sg(
        CLIENT,
        VPC_A,
        vec![],
        vec![
            rule(
                41,
                SgProtocol::Tcp {
                    from_port: 0,
                    to_port: 65535,
                },
                SgPeer::Cidr(net("10.2.0.0/16")),
            ),
            rule(
                42,
                SgProtocol::Udp {
                    from_port: 0,
                    to_port: 65535,
                },
                SgPeer::Group { group_dp_id: WEB },
            ),
            rule(
                43,
                SgProtocol::Icmp {
                    icmp_type: None,
                    code: None,
                },
                anywhere(),
            ),
            rule(44, SgProtocol::Other(47), anywhere()),
        ],
    );
    let iface = |n: &str, vpc, addr: [u8; 4], g| InterfaceView {
        eni_id: n.into(),
        vpc_dp_id: vpc,
        address: addr.into(),
        group_dp_ids: vec![g],
    };
    Groups {
        vpcs: vec![
            VpcGroups {
                vpc_dp_id: VPC_A,
                default_group_dp_id: A_DEFAULT,
                cidrs: vec![net("10.1.0.0/16")],
            },
            VpcGroups {
                vpc_dp_id: VPC_B,
                default_group_dp_id: B_DEFAULT,
                cidrs: vec![net("10.2.0.0/16"), net("10.3.0.0/24")],
            },
        ],
        groups: vec![
            default_group(A_DEFAULT, VPC_A),
            default_group(B_DEFAULT, VPC_B),
            web,
            client,
        ],
        ifaces: vec![
            iface("eni-a", VPC_A, A_HOST, CLIENT),
            iface("eni-b", VPC_B, B_HOST, WEB),
        ],
    }
}

fn program(h: &mut Harness, g: &Groups) {
    h.dp.maps
        .program_security_groups(&g.vpcs, &g.groups, &g.ifaces)
        .expect("program security groups");
}

fn enforced() -> Harness {
    let mut h = harness();
    program(&mut h, &groups());
    h
}

fn l4_frame(src: [u8; 4], dst: [u8; 4], proto: IpNumber, l4: &[u8]) -> Frame {
    let mut f = Frame::udp(src, dst, 20 + l4.len().max(8)).proto(proto);
    f.payload[..l4.len()].copy_from_slice(l4);
    f
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Frame {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    l4_frame(src, dst, IpNumber::TCP, &h)
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Frame {
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&12u16.to_be_bytes());
    l4_frame(src, dst, IpNumber::UDP, &h)
}

fn icmp(src: [u8; 4], dst: [u8; 4], t: u8, code: u8, id: u16) -> Frame {
    let idb = id.to_be_bytes();
    l4_frame(
        src,
        dst,
        IpNumber::ICMP,
        &[t, code, 0, 0, idb[0], idb[1], 0, 1],
    )
}

/// An ICMP error (`t`/`code`) from `src` to `dst` quoting `quoted`'s IPv4
/// header and first 8 data bytes.
fn icmp_error(src: [u8; 4], dst: [u8; 4], t: u8, code: u8, quoted: &Frame) -> Frame {
    let q = quoted.bytes();
    let l3 = if quoted.vlan.is_some() { 18 } else { 14 };
    let mut body = vec![t, code, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&q[l3..l3 + 28]);
    l4_frame(src, dst, IpNumber::ICMP, &body)
}

/// Runs the program on a frame from VPC A's port.
fn from_a(h: &Harness, p: Prog, f: &Frame) -> V {
    match p {
        Prog::Xdp => xdp_verdict(h.run(LO, &f.bytes()).verdict),
        Prog::Tc => tc_verdict(h.run_tc(LO, &f.bytes(), (0, 0)).verdict),
    }
}

/// Runs the program on a frame from VPC B's port.
fn from_b(h: &mut Harness, p: Prog, f: &Frame) -> V {
    match p {
        Prog::Xdp => xdp_verdict(h.run(LO, &f.clone().vlan(VLAN_B).bytes()).verdict),
        Prog::Tc => {
            let b = iface_info(VPC_B, RTB_B, [10, 2, 0, 1].into(), net("10.2.0.0/24"), 0);
            h.dp.maps.set_iface(LO, 0, b).unwrap();
            let v = tc_verdict(h.run_tc(LO, &f.bytes(), (0, 0)).verdict);
            h.dp.maps.set_iface(LO, 0, iface_a(RTB_A)).unwrap();
            v
        }
    }
}

fn xdp_verdict(v: u32) -> V {
    match v {
        XDP_REDIRECT => V::Fwd,
        XDP_DROP => V::Drop,
        other => panic!("XDP verdict {other}"),
    }
}

fn tc_verdict(v: u32) -> V {
    match v {
        TC_ACT_REDIRECT => V::Fwd,
        TC_ACT_SHOT => V::Drop,
        other => panic!("TC verdict {other}"),
    }
}

fn flow_state(h: &Harness, k: &CtKey) -> Option<CtState> {
    let e = h.dp.maps.sg.flow(k).unwrap()?;
    CtState::from_u8(e.state)
}

#[test]
fn enforcement_is_off_until_policies_are_programmed() {
    for p in BOTH {
        let mut h = harness();
        // Nothing any group would allow: a new inbound TCP flow to A.
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 5000, 22, SYN)),
            V::Fwd,
            "{p:?}"
        );
        assert!(h.dp.maps.sg.flows().unwrap().is_empty(), "nothing tracked");
        program(&mut h, &groups());
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 5001, 22, SYN)),
            V::Drop,
            "{p:?}"
        );
        // Clearing turns it off again.
        h.dp.maps.program_security_groups(&[], &[], &[]).unwrap();
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 5002, 22, SYN)),
            V::Fwd,
            "{p:?}"
        );
    }
}

#[test]
fn tcp_port_range_edges() {
    for p in BOTH {
        let h = enforced();
        for (port, want) in [
            (79, V::Drop),
            (80, V::Fwd),
            (443, V::Fwd),
            (444, V::Drop),
            (0, V::Drop),
            (65535, V::Drop),
        ] {
            let f = tcp(A_HOST, B_HOST, 40000 + port % 1000, port, SYN);
            assert_eq!(from_a(&h, p, &f), want, "{p:?} port {port}");
        }
        assert_eq!(h.packets(Stat::DropSgIngress), 4, "{p:?}");
        assert_eq!(h.packets(Stat::FwdLocal), 2);
        let hits = h.dp.maps.sg.rule_hits(R_WEB_TCP).unwrap().unwrap();
        assert_eq!(hits.packets, 2, "the web TCP rule counted its hits");
    }
}

#[test]
fn udp_rules_naming_a_group_match_its_members_only() {
    for p in BOTH {
        let h = enforced();
        assert_eq!(
            from_a(&h, p, &udp(A_HOST, B_HOST, 4000, 53)),
            V::Fwd,
            "{p:?} member"
        );
        assert_eq!(
            from_a(&h, p, &udp(A_HOST, B_HOST, 4000, 54)),
            V::Drop,
            "{p:?} port"
        );
        // A's other host is in A's default group, not `client`: its egress
        // (all) allows it, web's ingress does not.
        assert_eq!(
            from_a(&h, p, &udp(A_OTHER, B_HOST, 4000, 53)),
            V::Drop,
            "{p:?} non-member"
        );
        assert_eq!(h.packets(Stat::DropSgIngress), 2);
        assert_eq!(
            h.dp.maps.sg.rule_hits(R_WEB_UDP).unwrap().unwrap().packets,
            1
        );
    }
}

#[test]
fn icmp_type_rules_and_other_protocols() {
    for p in BOTH {
        let h = enforced();
        assert_eq!(
            from_a(&h, p, &icmp(A_HOST, B_HOST, 8, 0, 7)),
            V::Fwd,
            "{p:?} echo"
        );
        assert_eq!(
            from_a(&h, p, &icmp(A_HOST, B_HOST, 13, 0, 7)),
            V::Drop,
            "{p:?} timestamp"
        );
        assert_eq!(
            h.dp.maps.sg.rule_hits(R_WEB_ECHO).unwrap().unwrap().packets,
            1
        );
        let gre = l4_frame(A_HOST, B_HOST, IpNumber::GRE, &[0; 8]);
        assert_eq!(from_a(&h, p, &gre), V::Fwd, "{p:?} protocol 47");
        // ESP: client's egress has no rule for it.
        let esp = l4_frame(
            A_HOST,
            B_HOST,
            IpNumber::ENCAPSULATING_SECURITY_PAYLOAD,
            &[0; 8],
        );
        assert_eq!(from_a(&h, p, &esp), V::Drop, "{p:?} protocol 50");
        assert_eq!(h.packets(Stat::DropSgEgress), 1);
        assert_eq!(h.packets(Stat::DropSgIngress), 1);
    }
}

#[test]
fn egress_rules_and_the_default_group_fallback() {
    for p in BOTH {
        let h = enforced();
        // client's TCP egress covers 10.2.0.0/16 only.
        assert_eq!(
            from_a(&h, p, &tcp(A_HOST, B_SECONDARY, 4000, 80, SYN)),
            V::Drop,
            "{p:?}"
        );
        assert_eq!(h.packets(Stat::DropSgEgress), 1);
        // A's default group may send anything ("all"), but 10.3.0.5 has no
        // interface: B's default group admits only its own members.
        assert_eq!(
            from_a(&h, p, &tcp(A_OTHER, B_SECONDARY, 4000, 80, SYN)),
            V::Drop,
            "{p:?}"
        );
        assert_eq!(h.packets(Stat::DropSgIngress), 1);
        // And "all" reaches web's TCP rule by CIDR.
        assert_eq!(
            from_a(&h, p, &tcp(A_OTHER, B_HOST, 4000, 80, SYN)),
            V::Fwd,
            "{p:?}"
        );
    }
}

#[test]
fn return_traffic_passes_while_new_inbound_flows_are_refused() {
    for p in BOTH {
        let mut h = enforced();
        let (a, b) = ((A_HOST, 40000), (B_HOST, 443));
        assert_eq!(from_a(&h, p, &tcp(a.0, b.0, a.1, b.1, SYN)), V::Fwd);
        assert_eq!(
            from_b(&mut h, p, &tcp(b.0, a.0, b.1, a.1, SYN | ACK)),
            V::Fwd,
            "{p:?} reply"
        );
        assert_eq!(from_a(&h, p, &tcp(a.0, b.0, a.1, b.1, ACK)), V::Fwd);
        let k = CtKey::new(6, A_HOST, B_HOST, 40000, 443);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpEstablished));
        // client has no ingress rule: B may not open a flow to A.
        assert_eq!(
            from_b(&mut h, p, &tcp(b.0, a.0, 5000, 22, SYN)),
            V::Drop,
            "{p:?}"
        );
        assert_eq!(h.packets(Stat::DropSgIngress), 1);
        // A SYN-ACK that answers nothing can never start a flow.
        assert_eq!(
            from_b(&mut h, p, &tcp(b.0, a.0, 443, 40001, SYN | ACK)),
            V::Drop
        );
        assert_eq!(h.packets(Stat::DropSgTcpInvalid), 1);
        // UDP: the answer to A's query comes back.
        assert_eq!(from_a(&h, p, &udp(A_HOST, B_HOST, 5353, 53)), V::Fwd);
        assert_eq!(
            from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5353)),
            V::Fwd,
            "{p:?} udp reply"
        );
        assert_eq!(
            from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5354)),
            V::Drop,
            "{p:?} udp new"
        );
        // ICMP: the echo reply comes back, another id does not.
        assert_eq!(from_a(&h, p, &icmp(A_HOST, B_HOST, 8, 0, 9)), V::Fwd);
        assert_eq!(
            from_b(&mut h, p, &icmp(B_HOST, A_HOST, 0, 0, 9)),
            V::Fwd,
            "{p:?} echo reply"
        );
        assert_eq!(from_b(&mut h, p, &icmp(B_HOST, A_HOST, 0, 0, 10)), V::Drop);
    }
}

#[test]
fn established_flows_outlive_the_rule_that_allowed_them() {
    for p in BOTH {
        let mut h = enforced();
        assert_eq!(from_a(&h, p, &tcp(A_HOST, B_HOST, 40000, 80, SYN)), V::Fwd);
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 80, 40000, SYN | ACK)),
            V::Fwd
        );
        let mut g = groups();
        g.groups[2].ingress.retain(|r| r.dp_id != R_WEB_TCP);
        program(&mut h, &g);
        // AWS: removing a rule does not cut tracked flows; new ones stop.
        assert_eq!(
            from_a(&h, p, &tcp(A_HOST, B_HOST, 40000, 80, ACK)),
            V::Fwd,
            "{p:?}"
        );
        assert_eq!(
            from_a(&h, p, &tcp(A_HOST, B_HOST, 40001, 80, SYN)),
            V::Drop,
            "{p:?}"
        );
    }
}

#[test]
fn tcp_close_states_and_a_syn_on_a_closed_tuple() {
    for p in BOTH {
        let mut h = enforced();
        let k = CtKey::new(6, A_HOST, B_HOST, 40000, 80);
        let a = |f| tcp(A_HOST, B_HOST, 40000, 80, f);
        let b = |f| tcp(B_HOST, A_HOST, 80, 40000, f);
        assert_eq!(from_a(&h, p, &a(SYN)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpSynSent));
        assert_eq!(from_b(&mut h, p, &b(SYN | ACK)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpSynRecv));
        assert_eq!(from_a(&h, p, &a(ACK)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpEstablished));
        assert_eq!(from_b(&mut h, p, &b(FIN | ACK)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpFinWaitReply));
        assert_eq!(from_a(&h, p, &a(FIN | ACK)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpTimeWait));
        assert_eq!(from_b(&mut h, p, &b(ACK)), V::Fwd, "the last ACK");
        // Reusing the tuple is a new flow, judged by the rules again.
        let mut g = groups();
        g.groups[2].ingress.retain(|r| r.dp_id != R_WEB_TCP);
        program(&mut h, &g);
        assert_eq!(
            from_a(&h, p, &a(SYN)),
            V::Drop,
            "{p:?} reopened against the rules"
        );
        assert_eq!(flow_state(&h, &k), None, "the closed entry is gone");
        // A reset closes at once.
        program(&mut h, &groups());
        assert_eq!(from_a(&h, p, &a(SYN)), V::Fwd);
        assert_eq!(from_b(&mut h, p, &b(RST | ACK)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpClose));
    }
}

#[test]
fn icmp_errors_pass_only_for_tracked_flows() {
    for p in BOTH {
        let mut h = enforced();
        let query = udp(A_HOST, B_HOST, 5353, 53);
        assert_eq!(from_a(&h, p, &query), V::Fwd);
        // Port unreachable from B about A's query; fragmentation needed.
        for (t, code) in [(3, 3), (3, 4), (11, 0)] {
            let err = icmp_error(B_HOST, A_HOST, t, code, &query);
            assert_eq!(from_b(&mut h, p, &err), V::Fwd, "{p:?} {t}/{code}");
        }
        let other = udp(A_HOST, B_HOST, 5354, 53);
        let err = icmp_error(B_HOST, A_HOST, 3, 3, &other);
        assert_eq!(from_b(&mut h, p, &err), V::Drop, "{p:?} unrelated");
        assert_eq!(h.packets(Stat::DropSgIcmpUnrelated), 1);
        // A redirect is no error we relate: judged as a new flow (refused).
        let redirect = icmp_error(B_HOST, A_HOST, 5, 1, &query);
        assert_eq!(from_b(&mut h, p, &redirect), V::Drop, "{p:?} redirect");
        assert_eq!(h.packets(Stat::DropSgIngress), 1);
    }
}

/// Ages the flow `k` by `secs` seconds (its last-seen time moves back).
fn age(h: &mut Harness, k: &CtKey, secs: u64) {
    let mut e = h.dp.maps.sg.flow(k).unwrap().expect("tracked");
    e.last_seen_ns = e.last_seen_ns.wrapping_sub(secs * 1_000_000_000);
    h.dp.maps.sg.set_flow(k, e).unwrap();
}

#[test]
fn idle_flows_expire_after_their_state_timeout() {
    for p in BOTH {
        let mut h = enforced();
        // UDP: a query and its answer: 30 s.
        let k = CtKey::new(17, A_HOST, B_HOST, 5353, 53);
        assert_eq!(from_a(&h, p, &udp(A_HOST, B_HOST, 5353, 53)), V::Fwd);
        assert_eq!(from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5353)), V::Fwd);
        age(&mut h, &k, 29);
        assert_eq!(
            from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5353)),
            V::Fwd,
            "{p:?} 29 s"
        );
        age(&mut h, &k, 31);
        assert_eq!(
            from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5353)),
            V::Drop,
            "{p:?} 31 s"
        );
        // A second query makes a stream: 180 s.
        assert_eq!(from_a(&h, p, &udp(A_HOST, B_HOST, 5353, 53)), V::Fwd);
        assert_eq!(from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5353)), V::Fwd);
        assert_eq!(from_a(&h, p, &udp(A_HOST, B_HOST, 5353, 53)), V::Fwd);
        assert_eq!(flow_state(&h, &k), Some(CtState::Stream));
        age(&mut h, &k, 179);
        assert_eq!(
            from_b(&mut h, p, &udp(B_HOST, A_HOST, 53, 5353)),
            V::Fwd,
            "{p:?} 179 s"
        );
        // Established TCP: five days.
        let t = CtKey::new(6, A_HOST, B_HOST, 40000, 80);
        assert_eq!(from_a(&h, p, &tcp(A_HOST, B_HOST, 40000, 80, SYN)), V::Fwd);
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 80, 40000, SYN | ACK)),
            V::Fwd
        );
        assert_eq!(from_a(&h, p, &tcp(A_HOST, B_HOST, 40000, 80, ACK)), V::Fwd);
        age(&mut h, &t, 431_999);
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 80, 40000, ACK)),
            V::Fwd,
            "{p:?}"
        );
        age(&mut h, &t, 432_001);
        assert_eq!(
            from_b(&mut h, p, &tcp(B_HOST, A_HOST, 80, 40000, ACK)),
            V::Drop,
            "{p:?}"
        );
    }
}

#[test]
fn a_full_table_evicts_the_least_recently_used_flow() {
    let mut h = enforced();
    // Fill the table from userspace with flows nobody sends on.
    let old = peering_common::CtEntry {
        last_seen_ns: 1,
        state: CtState::TcpEstablished as u8,
        _pad: [0; 7],
    };
    for i in 0..MAX_CONNTRACK {
        let [_, b, c, d] = i.to_be_bytes();
        let k = CtKey::new(6, [172, 16 + b, c, d], [10, 2, 0, 5], 1, 1);
        h.dp.maps.sg.set_flow(&k, old).unwrap();
    }
    // New flows still get tracked (an LRU never refuses an insert).
    for port in 0..64 {
        assert_eq!(
            from_a(&h, Prog::Xdp, &tcp(A_HOST, B_HOST, 30000 + port, 80, SYN)),
            V::Fwd
        );
        let k = CtKey::new(6, A_HOST, B_HOST, 30000 + port, 80);
        assert_eq!(flow_state(&h, &k), Some(CtState::TcpSynSent), "flow {port}");
    }
    let n = h.dp.maps.sg.flows().unwrap().len();
    assert!(n <= MAX_CONNTRACK as usize, "{n} entries");
}

#[test]
fn non_first_fragments_match_only_rules_spanning_every_port() {
    for p in BOTH {
        let h = enforced();
        // The first fragment carries the ports: allowed by web's UDP rule.
        let first = udp(A_HOST, B_HOST, 5353, 53).fragment(0, true);
        assert_eq!(from_a(&h, p, &first), V::Fwd, "{p:?}");
        let rest = udp(A_HOST, B_HOST, 5353, 53).fragment(2, false);
        assert_eq!(from_a(&h, p, &rest), V::Drop, "{p:?}");
        // Protocol 47's rule spans everything.
        let gre = l4_frame(A_HOST, B_HOST, IpNumber::GRE, &[0; 8]).fragment(2, false);
        assert_eq!(from_a(&h, p, &gre), V::Fwd, "{p:?}");
    }
}

#[test]
fn inter_region_flows_are_judged_on_egress_only() {
    let h = enforced();
    // client may send TCP to 10.2.0.0/16 only: not to the remote peer.
    let f = tcp(A_HOST, REMOTE_HOST, 4000, 80, SYN);
    assert_eq!(h.run(LO, &f.bytes()).verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropSgEgress), 1);
    // ICMP anywhere: allowed out (no socket here, so the drop that
    // follows is the tunnel's, not a security group's).
    let f = icmp(A_HOST, REMOTE_HOST, 8, 0, 1);
    assert_eq!(h.run(LO, &f.bytes()).verdict, XDP_DROP);
    assert_eq!(h.packets(Stat::DropNoXsk), 1);
    assert_eq!(h.packets(Stat::DropSgEgress), 1);
    let tc = h.run_tc(LO, &f.bytes(), (0, 0));
    assert_eq!(tc.verdict, TC_ACT_SHOT);
    assert_eq!(h.packets(Stat::DropNoXsk), 2, "TC: no tunnel entry");
}
