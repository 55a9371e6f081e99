//! The tunnel's wire parser and [`TunnelCore`]: arbitrary datagrams never
//! panic and are opened identically by `open` and `open_in_place`; any
//! inner packet survives seal → open; any change to a sealed datagram is
//! refused.

use peering_userspace::tunnel::{
    wire::{InnerHeader, InnerPacket, Packet, TunnelHeader, HEADER_LEN, INNER_HEADER_LEN},
    wire::{MAX_DATAGRAM_LEN, OVERHEAD},
    Algorithm, Counters, EpochKey, KeyMaterial, OpenError, RotationPolicy, SealError, TunnelConfig,
    TunnelCore, INNER_MTU,
};

/// The receiving gateway of every target, and the two senders.
pub const RECEIVER: u32 = 2;
pub const SENDER: u32 = 1;
/// Epoch 1 (AES-256-GCM) is current from 0 ms, epoch 2
/// (ChaCha20-Poly1305) from [`EPOCH2_AT`]; the receiver runs at [`NOW`],
/// where both are accepted (epoch 1 within its overlap).
pub const EPOCH2_AT: u64 = 10;
pub const NOW: u64 = 20;

fn key(epoch: u32, algorithm: Algorithm, activate_at: u64) -> EpochKey {
    EpochKey {
        epoch,
        algorithm,
        activate_at,
        material: KeyMaterial::from_bytes([0xa5 ^ epoch as u8; 32]),
    }
}

fn config(id: u32, pad_multiple: u16) -> TunnelConfig {
    let policy = RotationPolicy::new(1000, 100, 100).expect("valid policy");
    TunnelConfig {
        pad_multiple,
        ..TunnelConfig::new(id, &policy, 1000)
    }
}

/// A core holding both epochs at `now`.
fn core(id: u32, pad_multiple: u16, now: u64) -> TunnelCore {
    let mut core = TunnelCore::new(config(id, pad_multiple));
    core.install_key(key(1, Algorithm::Aes256Gcm, 0), 0)
        .expect("epoch 1");
    core.install_key(key(2, Algorithm::ChaCha20Poly1305, EPOCH2_AT), 0)
        .expect("epoch 2");
    core.tick(now);
    core
}

/// The receiving gateway, both epochs open.
pub fn receiver() -> TunnelCore {
    core(RECEIVER, 0, NOW)
}

/// A sender sealing with epoch 1 (`later` false) or 2.
pub fn sender(later: bool, pad_multiple: u16) -> TunnelCore {
    core(SENDER, pad_multiple, if later { NOW } else { 0 })
}

/// Seals `inner` for `pcx` (helper for the seeds).
pub fn sealed(sender: &mut TunnelCore, pcx: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM_LEN];
    let len = sender.seal(pcx, inner, &mut out).expect("seal");
    out.truncate(len);
    out
}

/// Header views over arbitrary bytes: no panic, and whatever parses emits
/// back to the same bytes.
pub fn wire(data: &[u8]) {
    match Packet::new_checked(data) {
        Err(_) => assert!(data.len() < HEADER_LEN),
        Ok(packet) => {
            if let Ok(header) = TunnelHeader::parse(&packet) {
                let mut bytes = [0u8; HEADER_LEN];
                header.emit(&mut Packet::new_unchecked(&mut bytes[..]));
                assert_eq!(&bytes[..], &data[..HEADER_LEN], "header round trip");
                assert_eq!(&header.nonce()[..], &data[8..HEADER_LEN], "nonce");
            }
            assert_eq!(packet.payload().len(), data.len() - HEADER_LEN);
        }
    }
    if let Ok(inner) = InnerPacket::new_checked(data) {
        let len = usize::from(inner.inner_len());
        assert!(len <= INNER_MTU && INNER_HEADER_LEN + len <= data.len());
        assert_eq!(
            inner.inner(),
            &data[INNER_HEADER_LEN..INNER_HEADER_LEN + len]
        );
        if let Ok(header) = InnerHeader::parse(&inner) {
            let mut bytes = [0u8; INNER_HEADER_LEN];
            header.emit(&mut InnerPacket::new_unchecked(&mut bytes[..]));
            assert_eq!(&bytes[..], &data[..INNER_HEADER_LEN], "inner round trip");
        }
    }
}

/// Which counter an open result must bump.
fn counted(result: &Result<(), OpenError>) -> fn(&Counters) -> u64 {
    match result {
        Ok(()) => |c| c.opened,
        Err(OpenError::AuthenticationFailed) => |c| c.auth_failures,
        Err(OpenError::Replay) => |c| c.replays,
        Err(OpenError::UnknownOrErasedEpoch(_)) => |c| c.unknown_epoch,
        Err(OpenError::OutputTooSmall { .. }) => |_| 0,
        Err(_) => |c| c.malformed,
    }
}

fn total(c: &Counters) -> u64 {
    c.opened + c.auth_failures + c.replays + c.unknown_epoch + c.malformed
}

/// Opens `data` into a copy and in place on two identical receivers: the
/// same verdict, the same inner packet, exactly one counter moved, and a
/// second open of an accepted datagram is a replay.
pub fn open(data: &[u8]) {
    let (mut copy, mut in_place) = (receiver(), receiver());
    let mut out = vec![0u8; MAX_DATAGRAM_LEN + 64];
    let copied = copy.open(data, &mut out);
    let mut buf = data.to_vec();
    let placed = in_place.open_in_place(&mut buf);
    match (&copied, &placed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.sender, a.epoch, a.pcx_dp_id),
                (b.sender, b.epoch, b.pcx_dp_id)
            );
            assert_eq!(&out[..a.inner_len], &buf[b.inner.clone()]);
            assert!(a.inner_len + OVERHEAD <= data.len());
            let mut again = data.to_vec();
            assert_eq!(in_place.open_in_place(&mut again), Err(OpenError::Replay));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("open {copied:?} but open_in_place {placed:?}"),
    }
    let result = copied.map(|_| ());
    let which = counted(&result);
    let c = copy.counters();
    assert_eq!(
        (total(&c), which(&c)),
        (1, 1),
        "{result:?} counted as {c:?}"
    );
}

/// Input of [`seal`]: a fixed-size prefix, then the inner packet.
pub struct SealInput<'a> {
    /// Seal with epoch 2 (ChaCha20-Poly1305) instead of epoch 1.
    pub later: bool,
    pub pad_multiple: u16,
    pub pcx: u32,
    /// Where and how to change the sealed datagram (see [`mutate`]).
    pub position: u16,
    pub mask: u8,
    pub how: u8,
    pub inner: &'a [u8],
}

pub const SEAL_PREFIX_LEN: usize = 10;

impl<'a> SealInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (head, inner) = data.split_at_checked(SEAL_PREFIX_LEN)?;
        Some(SealInput {
            later: head[0] & 1 == 1,
            pad_multiple: u16::from(head[1]),
            pcx: u32::from_be_bytes([head[2], head[3], head[4], head[5]]),
            position: u16::from_be_bytes([head[6], head[7]]),
            mask: head[8],
            how: head[9],
            inner,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![u8::from(self.later), self.pad_multiple as u8];
        v.extend_from_slice(&self.pcx.to_be_bytes());
        v.extend_from_slice(&self.position.to_be_bytes());
        v.extend_from_slice(&[self.mask, self.how]);
        v.extend_from_slice(self.inner);
        v
    }
}

/// A changed copy of `datagram`: a flipped byte, a cut, or appended bytes.
fn mutate(datagram: &[u8], input: &SealInput) -> Vec<u8> {
    let mut d = datagram.to_vec();
    let at = usize::from(input.position) % d.len();
    match input.how % 3 {
        0 => d[at] ^= input.mask.max(1),
        1 => d.truncate(at),
        _ => d.extend(std::iter::repeat_n(input.mask, 1 + at % 16)),
    }
    d
}

/// Seal → open returns the packet; a replay and any change are refused.
pub fn seal(data: &[u8]) {
    let Some(input) = SealInput::parse(data) else {
        return;
    };
    let mut sender = sender(input.later, input.pad_multiple);
    let mut out = vec![0u8; MAX_DATAGRAM_LEN + 64];
    let len = match sender.seal(input.pcx, input.inner, &mut out) {
        Err(SealError::MtuExceeded { len }) => {
            assert!(len > INNER_MTU);
            return;
        }
        other => other.expect("seal within the MTU"),
    };
    assert!(len >= input.inner.len() + OVERHEAD && len <= MAX_DATAGRAM_LEN);
    let datagram = &out[..len];
    let mut rx = receiver();
    let mut plain = vec![0u8; MAX_DATAGRAM_LEN];
    let opened = rx
        .open(datagram, &mut plain)
        .expect("a sealed datagram opens");
    let epoch = if input.later { 2 } else { 1 };
    assert_eq!(
        (opened.sender, opened.epoch, opened.pcx_dp_id),
        (SENDER, epoch, input.pcx)
    );
    assert_eq!(&plain[..opened.inner_len], input.inner);
    assert_eq!(rx.open(datagram, &mut plain), Err(OpenError::Replay));
    let changed = mutate(datagram, &input);
    let result = receiver().open_in_place(&mut changed.clone());
    assert!(result.is_err(), "a changed datagram opened: {result:?}");
}
