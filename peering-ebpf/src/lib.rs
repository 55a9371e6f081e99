//! Host-side stub: the eBPF program is the `peering` binary of this crate,
//! built for `bpfel-unknown-none` by the userspace crate's build script.
//! This library exists so the userspace crate can name this crate as a
//! build dependency and be rebuilt when it changes.
#![no_std]
