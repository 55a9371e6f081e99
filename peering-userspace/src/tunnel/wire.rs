//! Typed views over tunnel datagrams, in the smoltcp style: a zero-copy
//! `Packet<T>` / `InnerPacket<T>` over raw bytes with getters and setters,
//! and small "Repr" structs (`TunnelHeader`, `InnerHeader`) with
//! `parse`/`emit`. All multi-byte fields are big-endian. See
//! `docs/protocol.md` for the byte diagrams.

use crate::tunnel::INNER_MTU;

/// Protocol version carried in byte 0. Any other value is refused.
pub const VERSION: u8 = 1;
/// Message kind of a data datagram (byte 1). It is the only kind so far;
/// the field exists so that control messages can be added without a new
/// version.
pub const KIND_DATA: u8 = 1;
/// Length of the cleartext tunnel header, which is also the AEAD's
/// additional authenticated data.
pub const HEADER_LEN: usize = 20;
/// Length of the encrypted inner header that precedes the inner packet.
pub const INNER_HEADER_LEN: usize = 8;
/// AEAD tag length; both AES-256-GCM and ChaCha20-Poly1305 use 128 bits.
pub const TAG_LEN: usize = 16;
/// AEAD nonce length (96 bits, as RFC 5116 recommends for both algorithms).
pub const NONCE_LEN: usize = 12;
/// Bytes the tunnel adds to an inner packet (outer IPv4/UDP not included).
pub const OVERHEAD: usize = HEADER_LEN + INNER_HEADER_LEN + TAG_LEN;
/// Shortest well-formed datagram: an empty inner packet.
pub const MIN_DATAGRAM_LEN: usize = OVERHEAD;
/// Longest well-formed datagram. Padding never grows the inner part past
/// [`INNER_MTU`], so this bounds every datagram and lets the receiver drop
/// oversized input before doing any cryptography.
pub const MAX_DATAGRAM_LEN: usize = OVERHEAD + INNER_MTU;

mod field {
    use core::ops::Range;
    pub const VERSION: usize = 0;
    pub const KIND: usize = 1;
    pub const RESERVED: Range<usize> = 2..4;
    pub const EPOCH: Range<usize> = 4..8;
    pub const SENDER: Range<usize> = 8..12;
    pub const COUNTER: Range<usize> = 12..20;

    pub const PCX_DP_ID: Range<usize> = 0..4;
    pub const INNER_LEN: Range<usize> = 4..6;
    pub const FLAGS: usize = 6;
    pub const INNER_RESERVED: usize = 7;
}

/// Why bytes are not a well-formed tunnel header or inner header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("buffer shorter than the header")]
    Truncated,
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("reserved field is not zero")]
    ReservedNonZero,
    #[error("length field exceeds the buffer or the MTU")]
    BadLength,
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Zero-copy view of a tunnel datagram (cleartext header + sealed payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps bytes without checking; getters may panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps untrusted bytes, checking they hold a whole header so that no
    /// getter can panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::KIND]
    }

    pub fn reserved(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::RESERVED])
    }

    pub fn epoch(&self) -> u32 {
        be_u32(&self.buffer.as_ref()[field::EPOCH])
    }

    pub fn sender(&self) -> u32 {
        be_u32(&self.buffer.as_ref()[field::SENDER])
    }

    pub fn counter(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::COUNTER])
    }

    /// The header bytes, authenticated as AEAD additional data.
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// Everything after the header: ciphertext followed by the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, value: u8) {
        self.buffer.as_mut()[field::VERSION] = value;
    }

    pub fn set_kind(&mut self, value: u8) {
        self.buffer.as_mut()[field::KIND] = value;
    }

    pub fn set_reserved(&mut self, value: u16) {
        self.buffer.as_mut()[field::RESERVED].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_epoch(&mut self, value: u32) {
        self.buffer.as_mut()[field::EPOCH].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_sender(&mut self, value: u32) {
        self.buffer.as_mut()[field::SENDER].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_counter(&mut self, value: u64) {
        self.buffer.as_mut()[field::COUNTER].copy_from_slice(&value.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Parsed cleartext header of a data datagram. Version and kind are implied
/// (only version 1 data datagrams parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelHeader {
    pub epoch: u32,
    pub sender: u32,
    pub counter: u64,
}

impl TunnelHeader {
    /// Validates everything a receiver can check without a key. The version
    /// is checked first so that a future version is reported as such even if
    /// its other fields differ.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Self, WireError> {
        packet.check_len()?;
        if packet.version() != VERSION {
            return Err(WireError::BadVersion(packet.version()));
        }
        if packet.kind() != KIND_DATA {
            return Err(WireError::UnknownKind(packet.kind()));
        }
        if packet.reserved() != 0 {
            return Err(WireError::ReservedNonZero);
        }
        Ok(TunnelHeader {
            epoch: packet.epoch(),
            sender: packet.sender(),
            counter: packet.counter(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version(VERSION);
        packet.set_kind(KIND_DATA);
        packet.set_reserved(0);
        packet.set_epoch(self.epoch);
        packet.set_sender(self.sender);
        packet.set_counter(self.counter);
    }

    /// The AEAD nonce: sender id (4 bytes) || counter (8 bytes). It is unique
    /// under a key as long as gateway ids are unique and no gateway repeats a
    /// counter under one key (see docs/protocol.md, "Nonce invariant").
    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.sender.to_be_bytes());
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        nonce
    }
}

/// Zero-copy view of the decrypted payload: inner header, inner packet,
/// then zero padding.
#[derive(Debug, Clone)]
pub struct InnerPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> InnerPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        InnerPacket { buffer }
    }

    /// Checks the header fits and that the length field stays inside both
    /// the buffer and the MTU, so `inner()` cannot panic.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < INNER_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let inner_len = usize::from(packet.inner_len());
        if inner_len > INNER_MTU || inner_len > len - INNER_HEADER_LEN {
            return Err(WireError::BadLength);
        }
        Ok(packet)
    }

    pub fn pcx_dp_id(&self) -> u32 {
        be_u32(&self.buffer.as_ref()[field::PCX_DP_ID])
    }

    pub fn inner_len(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::INNER_LEN])
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::INNER_RESERVED]
    }

    /// The inner IPv4 packet, without padding.
    pub fn inner(&self) -> &[u8] {
        let end = INNER_HEADER_LEN + usize::from(self.inner_len());
        &self.buffer.as_ref()[INNER_HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> InnerPacket<T> {
    pub fn set_pcx_dp_id(&mut self, value: u32) {
        self.buffer.as_mut()[field::PCX_DP_ID].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_inner_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::INNER_LEN].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    pub fn set_reserved(&mut self, value: u8) {
        self.buffer.as_mut()[field::INNER_RESERVED] = value;
    }
}

/// Parsed inner header: which peering connection the packet belongs to and
/// how long the inner packet is (the rest is padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerHeader {
    pub pcx_dp_id: u32,
    pub inner_len: u16,
}

impl InnerHeader {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &InnerPacket<&T>) -> Result<Self, WireError> {
        if packet.flags() != 0 || packet.reserved() != 0 {
            return Err(WireError::ReservedNonZero);
        }
        Ok(InnerHeader {
            pcx_dp_id: packet.pcx_dp_id(),
            inner_len: packet.inner_len(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        INNER_HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut InnerPacket<T>) {
        packet.set_pcx_dp_id(self.pcx_dp_id);
        packet.set_inner_len(self.inner_len);
        packet.set_flags(0);
        packet.set_reserved(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HEADER_BYTES: [u8; 20] = [
        0x01, 0x01, 0x00, 0x00, // version, kind, reserved
        0x00, 0x00, 0x00, 0x07, // epoch 7
        0x0a, 0x0b, 0x0c, 0x0d, // sender 0x0a0b0c0d
        0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, // counter
    ];

    static INNER_BYTES: [u8; 12] = [
        0x00, 0x00, 0x30, 0x39, // pcx_dp_id 12345
        0x00, 0x03, 0x00, 0x00, // inner_len 3, flags, reserved
        0x45, 0x00, 0x00, 0xff, // 3 inner bytes + 1 padding byte
    ];

    fn header() -> TunnelHeader {
        TunnelHeader {
            epoch: 7,
            sender: 0x0a0b_0c0d,
            counter: 0x0001_0203_0405,
        }
    }

    #[test]
    fn test_parse() {
        let packet = Packet::new_checked(&HEADER_BYTES[..]).unwrap();
        assert_eq!(packet.version(), 1);
        assert_eq!(packet.kind(), KIND_DATA);
        assert_eq!(packet.reserved(), 0);
        assert_eq!(TunnelHeader::parse(&packet), Ok(header()));
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn test_emit() {
        let mut bytes = [0xffu8; 20];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        header().emit(&mut packet);
        assert_eq!(bytes, HEADER_BYTES);
        assert_eq!(header().buffer_len(), HEADER_LEN);
    }

    #[test]
    fn test_nonce_layout() {
        let nonce = header().nonce();
        assert_eq!(nonce, [0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_every_truncation() {
        for len in 0..HEADER_LEN {
            let result = Packet::new_checked(&HEADER_BYTES[..len]);
            assert_eq!(result.err(), Some(WireError::Truncated), "len {len}");
            let unchecked = Packet::new_unchecked(&HEADER_BYTES[..len]);
            assert_eq!(TunnelHeader::parse(&unchecked), Err(WireError::Truncated));
        }
    }

    #[test]
    fn test_wrong_version() {
        for version in [0u8, 2, 0x10, 0xff] {
            let mut bytes = HEADER_BYTES;
            bytes[0] = version;
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                TunnelHeader::parse(&packet),
                Err(WireError::BadVersion(version))
            );
        }
    }

    #[test]
    fn test_unknown_kind_and_reserved() {
        let mut bytes = HEADER_BYTES;
        bytes[1] = 2;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(TunnelHeader::parse(&packet), Err(WireError::UnknownKind(2)));
        for index in 2..4 {
            let mut bytes = HEADER_BYTES;
            bytes[index] = 0x80;
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                TunnelHeader::parse(&packet),
                Err(WireError::ReservedNonZero)
            );
        }
    }

    #[test]
    fn test_payload_view() {
        let mut bytes = [0u8; 24];
        bytes[..20].copy_from_slice(&HEADER_BYTES);
        bytes[20..].copy_from_slice(&[9, 8, 7, 6]);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &[9, 8, 7, 6]);
        assert_eq!(packet.header_bytes(), &HEADER_BYTES[..]);
    }

    #[test]
    fn test_inner_parse() {
        let packet = InnerPacket::new_checked(&INNER_BYTES[..]).unwrap();
        let repr = InnerHeader::parse(&packet).unwrap();
        assert_eq!(
            repr,
            InnerHeader {
                pcx_dp_id: 12345,
                inner_len: 3
            }
        );
        assert_eq!(packet.inner(), &[0x45, 0x00, 0x00]);
    }

    #[test]
    fn test_inner_emit() {
        let mut bytes = [0xffu8; 12];
        bytes[8..].copy_from_slice(&INNER_BYTES[8..]);
        let repr = InnerHeader {
            pcx_dp_id: 12345,
            inner_len: 3,
        };
        repr.emit(&mut InnerPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, INNER_BYTES);
        assert_eq!(repr.buffer_len(), INNER_HEADER_LEN);
    }

    #[test]
    fn test_inner_every_truncation() {
        // Shorter than the header: Truncated; header present but the
        // declared 3-byte inner packet cut: BadLength.
        for len in 0..INNER_HEADER_LEN {
            let result = InnerPacket::new_checked(&INNER_BYTES[..len]);
            assert_eq!(result.err(), Some(WireError::Truncated), "len {len}");
        }
        for len in INNER_HEADER_LEN..INNER_HEADER_LEN + 3 {
            let result = InnerPacket::new_checked(&INNER_BYTES[..len]);
            assert_eq!(result.err(), Some(WireError::BadLength), "len {len}");
        }
        assert!(InnerPacket::new_checked(&INNER_BYTES[..11]).is_ok());
    }

    #[test]
    fn test_inner_len_above_mtu() {
        let mut bytes = vec![0u8; INNER_HEADER_LEN + INNER_MTU + 1];
        let mut packet = InnerPacket::new_unchecked(&mut bytes[..]);
        packet.set_inner_len((INNER_MTU + 1) as u16);
        let result = InnerPacket::new_checked(&bytes[..]);
        assert_eq!(result.err(), Some(WireError::BadLength));
    }

    #[test]
    fn test_inner_reserved_bits() {
        for index in [6usize, 7] {
            let mut bytes = INNER_BYTES;
            bytes[index] = 1;
            let packet = InnerPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(InnerHeader::parse(&packet), Err(WireError::ReservedNonZero));
        }
    }

    #[test]
    fn test_size_constants() {
        assert_eq!(OVERHEAD, 44);
        assert_eq!(MAX_DATAGRAM_LEN, 1544);
        assert_eq!(NONCE_LEN, ring::aead::NONCE_LEN);
        assert_eq!(TAG_LEN, ring::aead::AES_256_GCM.tag_len());
        assert_eq!(TAG_LEN, ring::aead::CHACHA20_POLY1305.tag_len());
    }
}
