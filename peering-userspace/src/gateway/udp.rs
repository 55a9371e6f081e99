//! The underlay side: one UDP socket on the tunnel port, moved in batches
//! with sendmmsg(2) and recvmmsg(2) so a burst costs one syscall.

use std::{
    io,
    net::{SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
};

use anyhow::{Context as _, Result};

use crate::sys::setsockopt_int;

/// Datagrams per syscall.
pub const BATCH: usize = 64;
/// Room for the largest datagram (1500-byte inner packet plus overhead) and
/// then some, so an oversized datagram shows up truncated, not split.
pub const SLOT: usize = 2048;
/// Socket buffers: bursts from an XDP-speed sender outrun one thread.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// A batch of datagrams in fixed slots, each with its peer address, and
/// the syscall headers that point at them (allocated once, rewritten before
/// each call).
pub struct Batch {
    bufs: Vec<[u8; SLOT]>,
    lens: Vec<usize>,
    addrs: Vec<SocketAddrV4>,
    len: usize,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs` and `msgs` point into this batch's own
// heap buffers and are only used by syscalls made through `&mut self`,
// after `headers` rewrote them.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        // SAFETY (all three): plain C structs for which all-zero is valid.
        Batch {
            bufs: vec![[0u8; SLOT]; BATCH],
            lens: vec![0; BATCH],
            addrs: vec![SocketAddrV4::new(0.into(), 0); BATCH],
            len: 0,
            iovs: vec![unsafe { std::mem::zeroed() }; BATCH],
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }
}

impl Batch {
    /// Points the first `n` message headers at their slots and addresses:
    /// for sending, the datagram lengths and peers; for receiving, whole
    /// slots and blank addresses for the kernel to fill.
    fn headers(&mut self, n: usize, receive: bool) {
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: if receive { SLOT } else { self.lens[i] },
            };
            self.names[i] = sockaddr(if receive {
                SocketAddrV4::new(0.into(), 0)
            } else {
                self.addrs[i]
            });
            // SAFETY: plain C struct; all-zero is valid.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = &mut self.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            self.msgs[i] = m;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The next free slot; commit it with [`Batch::push`].
    pub fn slot(&mut self) -> &mut [u8; SLOT] {
        &mut self.bufs[self.len]
    }

    /// Commits the slot returned by [`Batch::slot`] as `len` bytes to `to`.
    pub fn push(&mut self, len: usize, to: SocketAddrV4) {
        self.lens[self.len] = len.min(SLOT);
        self.addrs[self.len] = to;
        self.len += 1;
    }

    /// Datagram `i` (mutable: opened in place) and its source.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddrV4) {
        let len = self.lens[i];
        (&mut self.bufs[i][..len], self.addrs[i])
    }
}

pub struct Underlay {
    socket: UdpSocket,
}

impl Underlay {
    pub fn bind(addr: SocketAddrV4) -> Result<Self> {
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))?;
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // Best effort: FORCE needs CAP_NET_ADMIN, which the agent has.
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, opt, SOCKET_BUFFER);
        }
        // The tunnel never fragments: inner packets are capped at 1500
        // bytes so datagrams fit a 1500-byte underlay path with room.
        let _ = setsockopt_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        );
        Ok(Underlay { socket })
    }

    /// Another handle on the same socket (for another tunnel worker to
    /// send through; the kernel serializes sends).
    pub fn try_clone(&self) -> Result<Self> {
        let socket = self
            .socket
            .try_clone()
            .context("duplicating the UDP socket")?;
        Ok(Underlay { socket })
    }

    pub fn fd(&self) -> libc::c_int {
        self.socket.as_raw_fd()
    }

    /// Sends every datagram of `batch`; returns how many the kernel took.
    /// Datagrams refused (buffer full, no route) are dropped, like a router
    /// does, and reported through the return value.
    pub fn send(&self, batch: &mut Batch) -> usize {
        let n = batch.len;
        batch.headers(n, false);
        let mut done = 0;
        while done < n {
            // SAFETY: msgs[done..n] point at live slots and addresses.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    batch.msgs[done..].as_mut_ptr(),
                    (n - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                done += rc as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // EAGAIN (socket buffer full) or a per-datagram error: skip the
            // datagram that failed and carry on with the rest.
            done += 1;
        }
        let sent = batch.msgs[..n].iter().filter(|m| m.msg_len > 0).count();
        batch.clear();
        sent
    }

    /// Receives up to a batch of datagrams into `batch` (cleared first).
    pub fn recv(&self, batch: &mut Batch) -> usize {
        batch.clear();
        batch.headers(BATCH, true);
        // SAFETY: every message points at a live SLOT-sized buffer.
        let rc = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                batch.msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc <= 0 {
            return 0;
        }
        let n = rc as usize;
        for i in 0..n {
            let m = &batch.msgs[i];
            let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // A truncated datagram is kept at full slot length: it then
            // fails authentication and is counted, not silently shortened.
            batch.lens[i] = if truncated { SLOT } else { m.msg_len as usize };
            batch.addrs[i] = from_sockaddr(&batch.names[i]);
        }
        batch.len = n;
        n
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        sa.sin_addr.s_addr.to_ne_bytes().into(),
        u16::from_be(sa.sin_port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_over_loopback() {
        let a = Underlay::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = Underlay::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let std::net::SocketAddr::V4(to) = b.socket.local_addr().unwrap() else {
            panic!("v4 bound")
        };
        let mut out = Batch::default();
        for i in 0..10u8 {
            out.slot()[..3].copy_from_slice(&[i, i, i]);
            out.push(3 + usize::from(i), to);
        }
        assert_eq!(a.send(&mut out), 10);
        assert!(out.is_empty());
        let mut got = Batch::default();
        let mut seen = Vec::new();
        for _ in 0..100 {
            b.recv(&mut got);
            for i in 0..got.len() {
                let (d, _) = got.get_mut(i);
                seen.push((d[0], d.len()));
            }
            if seen.len() == 10 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let want: Vec<_> = (0..10u8).map(|i| (i, 3 + usize::from(i))).collect();
        assert_eq!(seen, want);
    }
}
