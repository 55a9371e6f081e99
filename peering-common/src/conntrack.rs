//! Connection tracking for security groups: the key and entry of
//! [`maps::CONNTRACK`](crate::maps::CONNTRACK) and the state machine over
//! them, as plain functions. With [`crate::sg::rule_matches`], the only
//! logic in this crate: the programs run it per packet and the host tests
//! it exhaustively, so there is one state machine, not a kernel one and a
//! model of it.
//!
//! A flow's entry is keyed by the 5-tuple of the packet that opened it
//! (the *original* direction); a packet whose own tuple misses is looked
//! up reversed (the *reply* direction). Established flows never look at
//! rules again (AWS's behaviour: removing a rule does not cut tracked
//! flows); an entry idle longer than its state's timeout is gone, and the
//! next packet is judged by the rules as a new flow.

/// Capacity of `CONNTRACK`: the LRU evicts the least recently
/// used flow when full, so a flood of new flows costs old idle ones, never
/// memory. The map is preallocated: ~100 bytes per entry, 25 MiB.
pub const MAX_CONNTRACK: u32 = 1 << 18;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// TCP header flag bits (RFC 9293 §3.1).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Key of `CONNTRACK`: a 5-tuple, ports in host order. ICMP queries put
/// their identifier in both ports and the request's type in `icmp` (an
/// echo reply keys as its request), so the reply's reversed key is the
/// request's; other protocols without ports use 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// ICMP queries: the request's type; else 0.
    pub icmp: u8,
    pub _pad: [u8; 2],
}

impl CtKey {
    pub const fn new(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto,
            icmp: 0,
            _pad: [0; 2],
        }
    }

    /// The key of an ICMP query (or its reply) of type `t` and identifier
    /// `id`.
    pub const fn icmp_query(src: [u8; 4], dst: [u8; 4], t: u8, id: u16) -> Self {
        let mut k = Self::new(IPPROTO_ICMP, src, dst, id, id);
        k.icmp = icmp_request_type(t);
        k
    }

    /// The key the other direction of the same flow carries.
    pub const fn reversed(&self) -> Self {
        let mut k = Self::new(self.proto, self.dst, self.src, self.dport, self.sport);
        k.icmp = self.icmp;
        k
    }
}

/// Value of `CONNTRACK`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the flow's last packet.
    pub last_seen_ns: u64,
    /// A [`CtState`] as u8.
    pub state: u8,
    pub _pad: [u8; 7],
}

/// Where a packet goes relative to the packet that opened its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Orig,
    Reply,
}

macro_rules! states {
    ($( $(#[$doc:meta])* $name:ident = $v:literal, $secs:expr; )+) => {
        /// A tracked flow's state.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum CtState { $( $(#[$doc])* $name = $v, )+ }

        impl CtState {
            pub const ALL: &'static [CtState] = &[$(CtState::$name),+];

            pub const fn from_u8(v: u8) -> Option<Self> {
                match v { $($v => Some(Self::$name),)+ _ => None }
            }

            /// Idle seconds after which the entry is gone.
            pub const fn timeout_secs(self) -> u64 {
                match self { $(Self::$name => $secs,)+ }
            }
        }
    };
}

/// AWS: idle established TCP connections 432,000 s (5 days); UDP 30 s,
/// 180 s once "a stream" (more than one request-response). EC2 API
/// Reference, `ConnectionTrackingConfiguration` (the defaults).
pub const AWS_TCP_ESTABLISHED_SECS: u64 = 432_000;
pub const AWS_UDP_SECS: u64 = 30;
pub const AWS_UDP_STREAM_SECS: u64 = 180;
/// AWS documents no ICMP or handshake timeouts; these are Linux's
/// nf_conntrack defaults (`nf_conntrack_icmp_timeout`,
/// `nf_conntrack_tcp_timeout_*`). ICMP once answered keeps twice as long.
pub const ICMP_SECS: u64 = 30;
pub const ICMP_REPLIED_SECS: u64 = 60;

states! {
    /// A SYN went out; nothing came back yet.
    TcpSynSent = 1, 120;
    /// The SYN was answered (SYN-ACK, or a SYN in a simultaneous open).
    TcpSynRecv = 2, 60;
    TcpEstablished = 3, AWS_TCP_ESTABLISHED_SECS;
    /// The original side sent a FIN.
    TcpFinWaitOrig = 4, 120;
    /// The reply side sent a FIN.
    TcpFinWaitReply = 5, 120;
    /// Both sides sent a FIN.
    TcpTimeWait = 6, 120;
    /// Reset: kept briefly so the last segments of the close pass.
    TcpClose = 7, 10;
    /// UDP or another protocol: only the original side spoke.
    Unreplied = 8, AWS_UDP_SECS;
    /// One answer (one request-response transaction).
    Replied = 9, AWS_UDP_SECS;
    /// More than one request-response transaction.
    Stream = 10, AWS_UDP_STREAM_SECS;
    IcmpUnreplied = 11, ICMP_SECS;
    IcmpReplied = 12, ICMP_REPLIED_SECS;
}

impl CtState {
    pub const fn timeout_ns(self) -> u64 {
        self.timeout_secs() * 1_000_000_000
    }
}

/// What the first packet of an untracked flow may do, once rules allow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Start tracking in this state.
    Track(CtState),
    /// Pass if the rules allow it, without an entry (a TCP reset).
    Untracked,
    /// Can never start a flow (TCP flags no connection begins with): drop
    /// without looking at rules.
    Invalid,
}

/// How a flow starts with a packet of `proto` (for TCP, with `flags`).
/// A TCP segment with ACK and no SYN is picked up mid-stream, as Linux's
/// conntrack does by default (`nf_conntrack_tcp_loose`): a gateway that
/// restarted keeps its flows as long as the rules still allow them.
pub const fn open(proto: u8, flags: u8) -> Open {
    match proto {
        IPPROTO_TCP => open_tcp(flags),
        IPPROTO_ICMP => Open::Track(CtState::IcmpUnreplied),
        _ => Open::Track(CtState::Unreplied),
    }
}

/// How a flow starts with a packet leaving for another region. The
/// receiving gateway of an inter-region flow does not track it yet (its
/// packets reach hosts through the tunnel workers, which no program sees),
/// so the SYN-ACK answering a SYN from another region is the first this
/// gateway sees of the flow: it is picked up as established, like a
/// mid-stream ACK, when the rules allow it. Everything else as [`open`].
pub const fn open_toward_remote(proto: u8, flags: u8) -> Open {
    let handshake = TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST;
    if proto == IPPROTO_TCP && flags & handshake == TCP_SYN | TCP_ACK {
        return Open::Track(CtState::TcpEstablished);
    }
    open(proto, flags)
}

const fn open_tcp(flags: u8) -> Open {
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    let fin = flags & TCP_FIN != 0;
    let rst = flags & TCP_RST != 0;
    if syn && (fin || rst || ack) {
        // SYN-FIN and SYN-RST are scans; a SYN-ACK answers a SYN that was
        // never seen.
        return Open::Invalid;
    }
    if syn {
        return Open::Track(CtState::TcpSynSent);
    }
    if rst {
        return Open::Untracked;
    }
    match (ack, fin) {
        (true, true) => Open::Track(CtState::TcpFinWaitOrig),
        (true, false) => Open::Track(CtState::TcpEstablished),
        // No SYN, ACK or RST: null and FIN-only segments.
        _ => Open::Invalid,
    }
}

/// What a packet of a tracked, unexpired flow does to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Pass, and the flow is now in this state.
    Admit(CtState),
    /// A new connection on the tuple of a closed one: judged by the rules
    /// as a new flow (a removed rule must not live on through port reuse).
    Reopen,
}

/// The transition for a packet going `dir` with TCP `flags` (ignored for
/// other protocols) in a flow in `state`.
pub const fn step(state: CtState, dir: Dir, flags: u8) -> Step {
    use CtState::*;
    let reply = matches!(dir, Dir::Reply);
    let next = match state {
        TcpSynSent | TcpSynRecv | TcpEstablished | TcpFinWaitOrig | TcpFinWaitReply
        | TcpTimeWait | TcpClose => return step_tcp(state, dir, flags),
        Unreplied if reply => Replied,
        Replied if !reply => Stream,
        IcmpUnreplied if reply => IcmpReplied,
        s => s,
    };
    Step::Admit(next)
}

const fn step_tcp(state: CtState, dir: Dir, flags: u8) -> Step {
    use CtState::*;
    let reply = matches!(dir, Dir::Reply);
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    let fin = flags & TCP_FIN != 0;
    if flags & TCP_RST != 0 {
        return Step::Admit(TcpClose);
    }
    let next = match state {
        TcpTimeWait | TcpClose if syn && !ack => return Step::Reopen,
        TcpSynSent if reply && syn => TcpSynRecv,
        TcpSynRecv if !reply && ack && !syn => TcpEstablished,
        TcpSynRecv | TcpEstablished if fin => fin_by(dir),
        TcpFinWaitOrig if reply && fin => TcpTimeWait,
        TcpFinWaitReply if !reply && fin => TcpTimeWait,
        s => s,
    };
    Step::Admit(next)
}

const fn fin_by(dir: Dir) -> CtState {
    match dir {
        Dir::Orig => CtState::TcpFinWaitOrig,
        Dir::Reply => CtState::TcpFinWaitReply,
    }
}

/// True when an entry last seen at `last_seen_ns` in `state` is gone at
/// `now_ns`. Wrapping: a test may age an entry past the clock's start.
pub const fn expired(state: CtState, last_seen_ns: u64, now_ns: u64) -> bool {
    now_ns.wrapping_sub(last_seen_ns) > state.timeout_ns()
}

/// ICMP types that report on another packet and quote its header
/// (destination unreachable, with fragmentation needed; time exceeded;
/// parameter problem): admitted only when the quoted packet belongs to a
/// tracked flow.
pub const fn icmp_is_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 11 | 12)
}

/// ICMP query types (echo, timestamp, information, address mask requests
/// and replies) carry an identifier that names the flow.
pub const fn icmp_has_id(icmp_type: u8) -> bool {
    matches!(icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
}

/// The request type of an ICMP query type: a reply's request, a request
/// itself (RFC 792, RFC 950: echo 8/0, timestamp 13/14, information 15/16,
/// address mask 17/18).
pub const fn icmp_request_type(icmp_type: u8) -> u8 {
    match icmp_type {
        0 => 8,
        14 | 16 | 18 => icmp_type - 1,
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{vec, vec::Vec};
    use CtState::*;

    const SYN: u8 = TCP_SYN;
    const SYNACK: u8 = TCP_SYN | TCP_ACK;
    const ACK: u8 = TCP_ACK;
    const FINACK: u8 = TCP_FIN | TCP_ACK;
    const RST: u8 = TCP_RST;

    #[test]
    fn toward_another_region_a_syn_ack_is_picked_up_and_nothing_else_changes() {
        const IPPROTO_UDP: u8 = 17;
        assert_eq!(
            open_toward_remote(IPPROTO_TCP, SYNACK),
            Open::Track(TcpEstablished)
        );
        assert_eq!(open(IPPROTO_TCP, SYNACK), Open::Invalid, "within a region");
        for flags in 0..=u8::MAX {
            if flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST) != SYNACK {
                assert_eq!(
                    open_toward_remote(IPPROTO_TCP, flags),
                    open(IPPROTO_TCP, flags),
                    "{flags:#04x}"
                );
            }
        }
        for proto in [IPPROTO_ICMP, IPPROTO_UDP] {
            assert_eq!(open_toward_remote(proto, SYNACK), open(proto, SYNACK));
        }
    }

    fn run(first: u8, rest: &[(Dir, u8)]) -> Vec<CtState> {
        let Open::Track(mut s) = open(IPPROTO_TCP, first) else {
            panic!("{first:#x} does not open")
        };
        let mut seen = vec![s];
        for (d, f) in rest {
            match step(s, *d, *f) {
                Step::Admit(n) => s = n,
                Step::Reopen => panic!("reopened at {s:?}"),
            }
            seen.push(s);
        }
        seen
    }

    #[test]
    fn a_handshake_data_and_an_orderly_close() {
        use Dir::*;
        let seen = run(
            SYN,
            &[
                (Reply, SYNACK),
                (Orig, ACK),
                (Reply, ACK),
                (Orig, FINACK),
                (Reply, ACK),
                (Reply, FINACK),
                (Orig, ACK),
            ],
        );
        let want = [
            TcpSynSent,
            TcpSynRecv,
            TcpEstablished,
            TcpEstablished,
            TcpFinWaitOrig,
            TcpFinWaitOrig,
            TcpTimeWait,
            TcpTimeWait,
        ];
        assert_eq!(seen, want);
    }

    #[test]
    fn the_reply_side_may_close_first_and_resets_close_at_once() {
        use Dir::*;
        let seen = run(SYN, &[(Reply, SYNACK), (Orig, ACK), (Reply, FINACK)]);
        assert_eq!(seen.last(), Some(&TcpFinWaitReply));
        assert_eq!(
            step(TcpFinWaitReply, Reply, FINACK),
            Step::Admit(TcpFinWaitReply)
        );
        assert_eq!(
            step(TcpFinWaitReply, Orig, FINACK),
            Step::Admit(TcpTimeWait)
        );
        let tcp = &CtState::ALL[..7];
        assert_eq!(tcp.last(), Some(&TcpClose));
        for s in tcp {
            for d in [Orig, Reply] {
                assert_eq!(step(*s, d, RST), Step::Admit(TcpClose), "{s:?} {d:?}");
                assert_eq!(step(*s, d, RST | ACK), Step::Admit(TcpClose));
            }
        }
    }

    #[test]
    fn simultaneous_open_and_retransmitted_syns() {
        use Dir::*;
        assert_eq!(step(TcpSynSent, Orig, SYN), Step::Admit(TcpSynSent));
        assert_eq!(step(TcpSynSent, Reply, SYN), Step::Admit(TcpSynRecv));
        // The ACK of the SYN-ACK comes from the original side only.
        assert_eq!(step(TcpSynRecv, Reply, ACK), Step::Admit(TcpSynRecv));
        assert_eq!(step(TcpSynRecv, Orig, ACK), Step::Admit(TcpEstablished));
        assert_eq!(step(TcpSynRecv, Orig, SYNACK), Step::Admit(TcpSynRecv));
    }

    #[test]
    fn a_syn_on_a_closed_tuple_is_a_new_flow_for_the_rules() {
        for s in [TcpTimeWait, TcpClose] {
            for d in [Dir::Orig, Dir::Reply] {
                assert_eq!(step(s, d, SYN), Step::Reopen, "{s:?}");
                assert_eq!(step(s, d, ACK), Step::Admit(s));
            }
        }
        // A SYN inside a live flow is a retransmission, not a new flow.
        for s in [TcpSynSent, TcpSynRecv, TcpEstablished, TcpFinWaitOrig] {
            assert!(matches!(step(s, Dir::Orig, SYN), Step::Admit(_)));
        }
    }

    /// Every combination of the four flags that matter, for a new flow.
    #[test]
    fn which_tcp_segments_can_open_a_flow() {
        for bits in 0u8..16 {
            let flags = (bits & 0x7) | if bits & 8 != 0 { TCP_ACK } else { 0 };
            let (syn, rst, fin, ack) = (
                flags & SYN != 0,
                flags & RST != 0,
                flags & TCP_FIN != 0,
                flags & ACK != 0,
            );
            let want = if syn && (rst || fin || ack) {
                Open::Invalid
            } else if syn {
                Open::Track(TcpSynSent)
            } else if rst {
                Open::Untracked
            } else if ack && fin {
                Open::Track(TcpFinWaitOrig)
            } else if ack {
                Open::Track(TcpEstablished)
            } else {
                Open::Invalid
            };
            assert_eq!(open(IPPROTO_TCP, flags), want, "flags {flags:#04x}");
            // PSH and URG change nothing.
            assert_eq!(open(IPPROTO_TCP, flags | 0x28), want);
        }
    }

    #[test]
    fn datagrams_become_replied_then_streams() {
        use Dir::*;
        for (first, replied) in [(Unreplied, Replied), (IcmpUnreplied, IcmpReplied)] {
            assert_eq!(step(first, Orig, 0), Step::Admit(first));
            assert_eq!(step(first, Reply, 0), Step::Admit(replied));
        }
        assert_eq!(step(Replied, Reply, 0), Step::Admit(Replied));
        assert_eq!(step(Replied, Orig, 0), Step::Admit(Stream));
        assert_eq!(step(Stream, Reply, 0), Step::Admit(Stream));
        assert_eq!(step(IcmpReplied, Orig, 0), Step::Admit(IcmpReplied));
        assert_eq!(open(IPPROTO_UDP, 0xff), Open::Track(Unreplied));
        assert_eq!(open(47, 0), Open::Track(Unreplied));
        assert_eq!(open(IPPROTO_ICMP, 0), Open::Track(IcmpUnreplied));
    }

    #[test]
    fn timeouts_follow_aws_where_documented() {
        assert_eq!(TcpEstablished.timeout_secs(), 432_000);
        assert_eq!(Unreplied.timeout_secs(), 30);
        assert_eq!(Replied.timeout_secs(), 30);
        assert_eq!(Stream.timeout_secs(), 180);
        for s in CtState::ALL {
            assert_eq!(CtState::from_u8(*s as u8), Some(*s));
            let t = s.timeout_ns();
            assert!(!expired(*s, 1000, 1000 + t));
            assert!(expired(*s, 1000, 1001 + t));
            // An entry aged past the clock's start (wrapping) expires too.
            assert!(expired(*s, 5u64.wrapping_sub(t + 1), 5));
        }
        assert_eq!(CtState::from_u8(0), None);
        assert_eq!(CtState::from_u8(13), None);
    }

    #[test]
    fn keys_reverse_to_the_other_direction() {
        let k = CtKey::new(IPPROTO_TCP, [10, 1, 0, 5], [10, 2, 0, 5], 4000, 22);
        let r = k.reversed();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (k.dst, k.src, 22, 4000));
        assert_eq!(r.reversed(), k);
        assert!(icmp_is_error(3) && icmp_is_error(11) && icmp_is_error(12));
        assert!(!icmp_is_error(5) && !icmp_is_error(0) && !icmp_is_error(8));
        assert!(icmp_has_id(8) && icmp_has_id(0) && !icmp_has_id(3));
        // An echo reply keys as its request, reversed; a timestamp does not.
        let echo = CtKey::icmp_query([1; 4], [2; 4], 8, 7);
        assert_eq!(CtKey::icmp_query([2; 4], [1; 4], 0, 7).reversed(), echo);
        assert_ne!(CtKey::icmp_query([1; 4], [2; 4], 13, 7), echo);
        assert_eq!(CtKey::icmp_query([2; 4], [1; 4], 14, 7).reversed().icmp, 13);
    }
}
