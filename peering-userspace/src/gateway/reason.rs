//! Why the gateway dropped a packet: one named reason per exit, counted in
//! a fixed array indexed by the reason (the userspace twin of the XDP
//! programs' `peering_common::Stat`).
//!
//! Reasons up to [`DropReason::AuthFailed`] are decided before the AEAD
//! authenticated anything: they are all an unauthenticated datagram can
//! reach, and they are counted here and nowhere that grows.

use crate::tunnel::{OpenError, SealError};

use super::table::PolicyDrop;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident = $idx:literal, $label:literal; )+) => {
        /// Every way a packet can leave the gateway other than sealed or
        /// delivered.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum DropReason {
            $( $(#[$doc])* $name = $idx, )+
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name),+];

            /// A stable, lower-case name for counters output.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$name => $label,)+ }
            }
        }
    };
}

/// Number of reasons: the length of a per-reason counter array.
pub const DROP_REASONS: usize = DropReason::ALL.len();

reasons! {
    /// Shorter than a tunnel header plus tag.
    Truncated = 0, "truncated";
    /// Unknown kind, reserved bits set, oversized, bad inner length.
    Malformed = 1, "malformed";
    /// Version byte other than 1.
    BadVersion = 2, "bad_version";
    /// Claims to come from this gateway.
    Reflected = 3, "reflected";
    /// The claimed epoch's key is not held (never installed or erased).
    UnknownEpoch = 4, "unknown_epoch";
    /// Counter seen before or older than the replay window (the check
    /// before the AEAD, or the commit after it).
    Replay = 5, "replay";
    /// The AEAD tag did not verify.
    AuthFailed = 6, "auth_failed";
    /// Authentic, but the sender is not in the gateway registry.
    UnknownSender = 7, "unknown_sender";
    /// No active inter-region peering with this id here.
    UnknownPeering = 8, "unknown_peering";
    /// The peer region has no registered gateway.
    NoRemoteGateway = 9, "no_remote_gateway";
    /// The destination is not in the peer VPC (no transitive routing).
    DstOutsidePeer = 10, "dst_outside_peer";
    /// The source is not in the sending side's VPC.
    SrcOutsidePeer = 11, "src_outside_peer";
    /// The sender does not serve the peering's remote region.
    WrongSender = 12, "wrong_sender";
    /// In the peer VPC, but in no subnet attached to this gateway.
    NoSubnet = 13, "no_subnet";
    /// The destination host is not resolved on its port.
    NoNeighbour = 14, "no_neighbour";
    /// Not a well-formed IPv4 packet.
    BadInner = 15, "bad_inner";
    /// No key is active to seal with.
    NoCurrentKey = 16, "no_current_key";
    /// Inner packet above the tunnel MTU.
    MtuExceeded = 17, "mtu_exceeded";
    /// The caller's buffer could not hold the sealed datagram.
    OutputTooSmall = 18, "output_too_small";
    /// The current key reached its hard usage limit.
    KeyUsageExhausted = 19, "key_usage_exhausted";
    /// The 64-bit send counter is spent.
    CounterExhausted = 20, "counter_exhausted";
    /// The AEAD refused to seal.
    SealFailed = 21, "seal_failed";
    /// The sealed datagram does not fit the underlay interface's MTU.
    UnderlayMtuExceeded = 22, "underlay_mtu_exceeded";
    /// The delivery port has no AF_XDP socket (IO edge).
    NoSocket = 23, "no_socket";
    /// A host without a MAC could not be queued for resolution (the queue
    /// to the agent was full); its packet counts as `no_neighbour` too.
    ResolveQueueFull = 24, "resolve_queue_full";
}

impl DropReason {
    /// True for the reasons decided before authentication.
    pub const fn before_auth(self) -> bool {
        (self as u8) <= DropReason::AuthFailed as u8
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

impl From<OpenError> for DropReason {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Truncated => DropReason::Truncated,
            OpenError::Malformed => DropReason::Malformed,
            OpenError::BadVersion(_) => DropReason::BadVersion,
            OpenError::Reflected => DropReason::Reflected,
            OpenError::UnknownOrErasedEpoch(_) => DropReason::UnknownEpoch,
            OpenError::AuthenticationFailed => DropReason::AuthFailed,
            OpenError::Replay => DropReason::Replay,
            // Only the copying open returns it; the gateway opens in place.
            OpenError::OutputTooSmall { .. } => DropReason::Malformed,
        }
    }
}

impl From<SealError> for DropReason {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NoCurrentKey => DropReason::NoCurrentKey,
            SealError::MtuExceeded { .. } => DropReason::MtuExceeded,
            SealError::OutputTooSmall { .. } => DropReason::OutputTooSmall,
            SealError::KeyUsageExhausted { .. } => DropReason::KeyUsageExhausted,
            SealError::CounterExhausted => DropReason::CounterExhausted,
            SealError::Crypto => DropReason::SealFailed,
        }
    }
}

impl From<PolicyDrop> for DropReason {
    fn from(p: PolicyDrop) -> Self {
        match p {
            PolicyDrop::UnknownPeering => DropReason::UnknownPeering,
            PolicyDrop::NoRemoteGateway => DropReason::NoRemoteGateway,
            PolicyDrop::DstOutsidePeer => DropReason::DstOutsidePeer,
            PolicyDrop::SrcOutsidePeer => DropReason::SrcOutsidePeer,
            PolicyDrop::WrongSender => DropReason::WrongSender,
            PolicyDrop::NoSubnet => DropReason::NoSubnet,
            PolicyDrop::NoNeighbour => DropReason::NoNeighbour,
            PolicyDrop::BadInner => DropReason::BadInner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_positions_and_names_are_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DROP_REASONS);
    }

    #[test]
    fn policy_drops_keep_their_names() {
        for p in PolicyDrop::ALL {
            assert_eq!(DropReason::from(p).name(), p.name());
            assert!(!DropReason::from(p).before_auth());
        }
    }

    #[test]
    fn every_open_error_is_a_reason_of_the_fixed_pre_auth_group() {
        let errors = [
            OpenError::Truncated,
            OpenError::Malformed,
            OpenError::BadVersion(2),
            OpenError::Reflected,
            OpenError::UnknownOrErasedEpoch(3),
            OpenError::AuthenticationFailed,
            OpenError::Replay,
            OpenError::OutputTooSmall { needed: 9 },
        ];
        for e in errors {
            assert!(DropReason::from(e).before_auth(), "{e:?}");
        }
        assert!(!DropReason::UnknownSender.before_auth());
    }
}
