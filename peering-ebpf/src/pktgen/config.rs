//! Reads of the loader-set globals. Each field is read on its own with a
//! volatile load: the compiler would otherwise fold the globals' initial
//! values (zeros) into the code, and copying the whole struct would cost a
//! stack copy per frame.

use core::ptr::{addr_of, read_volatile};

use peering_common::pktgen::SIZE_SLOTS;

use crate::{GEN_CONFIG, SINK_PORT};

macro_rules! field {
    ($name:ident, $ty:ty) => {
        #[inline(always)]
        pub fn $name() -> $ty {
            // SAFETY: a field of a static; the loader wrote it before load.
            unsafe { read_volatile(addr_of!(GEN_CONFIG.$name)) }
        }
    };
}

field!(dst_mac, [u8; 6]);
field!(src_mac, [u8; 6]);
field!(src_ip, [u8; 4]);
field!(dst_ip, [u8; 4]);
field!(src_port, u16);
field!(dst_port, u16);
field!(src_ips, u32);
field!(flows, u32);
field!(size_period, u32);
field!(ns_per_frame, u64);

/// Frame size of pattern slot `slot`; the mask keeps the index in bounds
/// in a form the verifier follows.
#[inline(always)]
pub fn size(slot: u32) -> u16 {
    let i = slot as usize & (SIZE_SLOTS - 1);
    // SAFETY: i < SIZE_SLOTS.
    unsafe { read_volatile(addr_of!(GEN_CONFIG.sizes).cast::<u16>().add(i)) }
}

#[inline(always)]
pub fn sink_port() -> u16 {
    // SAFETY: a static the loader wrote before load.
    unsafe { read_volatile(addr_of!(SINK_PORT)) }
}
