//! One AF_XDP socket on one queue of a VPC-facing interface (xdpilone).
//!
//! It serves both directions of the tunnel on that interface: the XDP
//! program redirects packets bound for a remote region into its RX ring,
//! and packets opened from the underlay leave through its TX ring.
//!
//! The UMEM is split in two fixed halves: receive frames circulate between
//! the fill and RX rings, transmit frames between a free list and the
//! TX/completion rings. A frame is never dropped from either cycle (the
//! XDP-NOTES pitfall: a starved fill ring stops reception for good).

use std::{
    num::NonZeroU32,
    ptr::NonNull,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _, Result};
use xdpilone::{
    xdp::XdpDesc, BufIdx, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem,
    UmemConfig, User,
};

/// Frames per half of the UMEM, and the size of every ring.
const RING: u32 = 2048;
/// Frames of the transmit half.
pub const TX_FRAMES: usize = RING as usize;
/// 2 KiB frames: after the kernel's 256-byte XDP headroom a frame still
/// holds 1792 bytes, above the 1518 of an inter-region packet with a tag.
const FRAME: u32 = 2048;
/// `SOL_XDP` option raising how many frames one `sendto` moves in copy mode
/// (Linux 6.16+; older kernels refuse it and keep 32).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const SOL_XDP: libc::c_int = 283;
/// How long, and how often, a bind is retried (see [`XskPort::bind`]).
const BIND_RETRY_FOR: Duration = Duration::from_secs(1);
const BIND_RETRY_EVERY: Duration = Duration::from_millis(3);
/// Other failures are retried too (as they always were), less often.
const BIND_RETRY_OTHER: Duration = Duration::from_millis(25);

/// A bind refused with EBUSY: the queue's previous socket is still being
/// released.
#[derive(Debug)]
struct QueueBusy;

impl std::fmt::Display for QueueBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the queue's previous AF_XDP socket is still being released")
    }
}
/// Bytes of XDP metadata the program writes in front of a frame.
pub const META_LEN: usize = 4;

/// Page-aligned anonymous memory for a UMEM, unmapped on drop.
pub struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    pub fn new(len: usize) -> Result<Self> {
        // SAFETY: anonymous private mapping, no file descriptor involved.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap for the UMEM");
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| anyhow!("mmap returned null"))?;
        Ok(Area { ptr, len })
    }

    /// The whole mapping, for `Umem::new`.
    pub fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length; its
        // owner drops the UMEM and sockets using it first (field order in
        // `XskPort`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the area is plain memory owned by one `XskPort`.
unsafe impl Send for Area {}

/// Counters of one socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XskCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// TX frames refused because every TX frame was in flight (the
    /// underlay then falls back to its UDP socket; a VPC port drops).
    pub tx_ring_full: u64,
    /// The kernel's XDP_STATISTICS for the socket: frames dropped on the
    /// way in (no room in the RX ring, no frame in the fill ring, other).
    #[serde(default)]
    pub rx_dropped: u64,
    #[serde(default)]
    pub rx_ring_full: u64,
    #[serde(default)]
    pub rx_fill_ring_empty: u64,
    /// TX descriptors the kernel refused.
    #[serde(default)]
    pub tx_invalid: u64,
}

/// An AF_XDP socket bound to (`ifindex`, `queue`).
pub struct XskPort {
    pub ifindex: u32,
    pub queue: u32,
    // Field order is drop order: rings and socket before the UMEM, the UMEM
    // before its memory.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    user: User,
    _socket: Socket,
    umem: Umem,
    _area: Area,
    /// Offsets of TX frames not in flight.
    tx_free: Vec<u64>,
    /// RX frames consumed but not yet back in the fill ring.
    fill_pending: Vec<u64>,
    /// TX descriptors staged since the last `flush`.
    tx_staged: Vec<XdpDesc>,
    pub counters: XskCounters,
}

// SAFETY: every ring and the UMEM are owned by this value and used by one
// thread at a time (the tunnel thread).
unsafe impl Send for XskPort {}

impl XskPort {
    /// Creates the socket and binds it. Copy mode: veth has no zero-copy.
    /// Binding right after a previous socket on the same queue closed (an
    /// agent restarting after a crash) fails with EBUSY for 20–40 ms on a
    /// veth, so it is retried, often: each retry is traffic the tunnel is
    /// not carrying yet.
    pub fn bind(ifindex: u32, queue: u32) -> Result<Self> {
        let deadline = Instant::now() + BIND_RETRY_FOR;
        let mut tries = 0u32;
        loop {
            tries += 1;
            match Self::try_bind(ifindex, queue) {
                Ok(port) => {
                    if tries > 1 {
                        log::info!("ifindex {ifindex} queue {queue}: bound at try {tries}");
                    }
                    return Ok(port);
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                // Each try maps and populates a UMEM: only a busy queue,
                // which frees itself soon, is worth trying often.
                Err(e) if e.downcast_ref::<QueueBusy>().is_some() => {
                    std::thread::sleep(BIND_RETRY_EVERY)
                }
                Err(_) => std::thread::sleep(BIND_RETRY_OTHER),
            }
        }
    }

    fn try_bind(ifindex: u32, queue: u32) -> Result<Self> {
        let area = Area::new((2 * RING * FRAME) as usize)?;
        let config = UmemConfig {
            fill_size: RING,
            complete_size: RING,
            frame_size: FRAME,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is page aligned, sized for 2*RING frames, and
        // outlives the UMEM (it is dropped after it).
        let umem = unsafe { Umem::new(config, area.slice()) }
            .map_err(|e| anyhow!("creating the UMEM: errno {}", e.get_raw()))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| anyhow!("interface {ifindex}: errno {}", e.get_raw()))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem)
            .map_err(|e| anyhow!("AF_XDP socket: errno {}", e.get_raw()))?;
        let mut device = umem
            .fq_cq(&socket)
            .map_err(|e| anyhow!("fill/completion rings: errno {}", e.get_raw()))?;
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RING),
                    tx_size: NonZeroU32::new(RING),
                    bind_flags: 0,
                },
            )
            .map_err(|e| anyhow!("RX/TX rings: errno {}", e.get_raw()))?;
        let rx = user
            .map_rx()
            .map_err(|e| anyhow!("mapping the RX ring: errno {}", e.get_raw()))?;
        let tx = user
            .map_tx()
            .map_err(|e| anyhow!("mapping the TX ring: errno {}", e.get_raw()))?;
        umem.bind(&user).map_err(|e| {
            let err = anyhow!(
                "binding to ifindex {ifindex} queue {queue}: errno {}",
                e.get_raw()
            );
            if e.get_raw() == libc::EBUSY {
                err.context(QueueBusy)
            } else {
                err
            }
        })?;
        raise_tx_budget(user.as_raw_fd());
        // The first half of the UMEM feeds the fill ring, once.
        let rx_frames: Vec<u64> = (0..RING).map(|i| frame_offset(&umem, i)).collect();
        let filled = {
            let mut writer = device.fill(RING);
            let n = writer.insert(rx_frames.iter().copied());
            writer.commit();
            n
        };
        let fill_pending = rx_frames[filled as usize..].to_vec();
        let tx_free = (RING..2 * RING).map(|i| frame_offset(&umem, i)).collect();
        Ok(XskPort {
            ifindex,
            queue,
            rx,
            tx,
            device,
            user,
            _socket: socket,
            umem,
            _area: area,
            tx_free,
            fill_pending,
            tx_staged: Vec::with_capacity(RING as usize),
            counters: XskCounters::default(),
        })
    }

    /// The socket's descriptor, for the XSKMAP and for poll(2).
    pub fn fd(&self) -> libc::c_int {
        self.rx.as_raw_fd()
    }

    /// Hands up to `max` received frames to `f` as (metadata, frame), then
    /// gives the frames back to the kernel. The frame is writable (packets
    /// are opened in place). Returns how many were read.
    pub fn receive(&mut self, max: u32, mut f: impl FnMut(&[u8], &mut [u8])) -> u32 {
        // Frames a previous refill could not place go back first: the
        // kernel drops what arrives while the fill ring is empty.
        self.refill();
        let mut n = 0;
        {
            let mut reader = self.rx.receive(max);
            while let Some(desc) = reader.read() {
                n += 1;
                let base = desc.addr & !u64::from(FRAME - 1);
                if let Some((meta, frame)) = view(&mut self.umem, base, desc.addr, desc.len) {
                    f(meta, frame);
                }
                self.fill_pending.push(base);
            }
            reader.release();
        }
        self.counters.rx_frames += u64::from(n);
        self.refill();
        n
    }

    /// Gives consumed RX frames back to the fill ring, all of them if the
    /// ring has room. As for TX (see `enqueue_from`), one reservation can
    /// come back short of the room there is (xdpilone reserves against a
    /// cached consumer index): reserve again until one comes back empty.
    /// The fill ring holds as many entries as there are RX frames, so it
    /// always has room for every frame the process holds.
    pub fn refill(&mut self) {
        let mut placed = 0;
        while placed < self.fill_pending.len() {
            let n = {
                let rest = &self.fill_pending[placed..];
                let mut writer = self.device.fill(rest.len() as u32);
                let n = writer.insert(rest.iter().copied()) as usize;
                writer.commit();
                n
            };
            if n == 0 {
                break;
            }
            placed += n;
        }
        self.fill_pending.drain(..placed);
    }

    /// RX frames waiting to go back to the fill ring.
    pub fn fill_pending(&self) -> usize {
        self.fill_pending.len()
    }

    /// Builds one frame in a free TX buffer with `build`, which writes into
    /// the buffer and returns the frame length (0: nothing to send). The
    /// frame goes out on the next [`XskPort::flush`]. Returns false when no
    /// buffer was free.
    pub fn stage(&mut self, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        if self.tx_free.is_empty() {
            // Every frame is in flight: have the kernel send what the ring
            // holds (copy mode completes frames inside sendto) and look again.
            self.kick();
            self.reclaim();
        }
        let Some(offset) = self.tx_free.pop() else {
            self.counters.tx_ring_full += 1;
            return false;
        };
        let Some(chunk) = self.umem.frame(BufIdx((offset / u64::from(FRAME)) as u32)) else {
            // Cannot happen for offsets we made; keep the frame in the
            // cycle all the same rather than lose it.
            self.tx_free.push(offset);
            return false;
        };
        // SAFETY: the frame is on our free list: the kernel does not hold it.
        let buf = unsafe { &mut *chunk.addr.as_ptr() };
        let len = build(buf).min(buf.len());
        if len == 0 {
            self.tx_free.push(offset);
            return true;
        }
        self.tx_staged.push(XdpDesc {
            addr: offset,
            len: len as u32,
            options: 0,
        });
        true
    }

    /// Puts staged frames on the TX ring and kicks the kernel (copy mode
    /// transmits only inside sendto). Frames the ring has no room for stay
    /// staged for the next flush: never dropped here.
    pub fn flush(&mut self) {
        let mut sent = self.enqueue_from(0);
        if sent < self.tx_staged.len() {
            // The ring is really full: let the kernel move it, then retry.
            self.kick();
            sent += self.enqueue_from(sent);
        }
        self.tx_staged.drain(..sent);
        self.counters.tx_frames += sent as u64;
        // Also moves frames an earlier sendto left on the ring.
        self.kick();
    }

    /// Puts `tx_staged[from..]` on the TX ring, as much as fits; returns how
    /// many went. xdpilone reserves against its cached copy of the kernel's
    /// consumer index and re-reads it only when that copy shows no room at
    /// all, so one reservation can come back short of what the ring holds:
    /// reserve again until one comes back empty.
    fn enqueue_from(&mut self, from: usize) -> usize {
        let mut sent = from;
        while sent < self.tx_staged.len() {
            let n = {
                let rest = &self.tx_staged[sent..];
                let mut writer = self.tx.transmit(rest.len() as u32);
                let n = writer.insert(rest.iter().copied());
                writer.commit();
                n as usize
            };
            if n == 0 {
                break;
            }
            sent += n;
        }
        sent - from
    }

    /// Asks the kernel to move whatever the TX ring holds.
    pub fn kick(&mut self) {
        if self.tx.pending() > 0 {
            self.tx.wake();
        }
    }

    /// Reads the kernel's statistics of the socket into `counters`.
    pub fn refresh_kernel_counters(&mut self) {
        if let Ok(k) = self.user.statistics_v2() {
            self.counters.rx_dropped = k.rx_dropped;
            self.counters.rx_ring_full = k.rx_ring_full;
            self.counters.rx_fill_ring_empty = k.rx_fill_ring_empty_descs;
            self.counters.tx_invalid = k.tx_invalid_descs;
        }
    }

    /// TX frames on the free list: all of them ([`TX_FRAMES`]) once
    /// everything sent has completed, unless a path lost one.
    pub fn tx_frames_free(&self) -> usize {
        self.tx_free.len()
    }

    /// Frames staged but not yet on the TX ring (it was full at the last
    /// flush).
    pub fn tx_staged(&self) -> usize {
        self.tx_staged.len()
    }

    /// Frames still queued for transmission.
    pub fn tx_pending(&self) -> u32 {
        self.tx.pending()
    }

    /// Returns transmitted frames to the free list.
    pub fn reclaim(&mut self) {
        let mut reader = self.device.complete(RING);
        while let Some(offset) = reader.read() {
            self.tx_free.push(offset & !u64::from(FRAME - 1));
        }
        reader.release();
    }
}

/// (metadata, frame) of a received descriptor, if it lies in its frame.
/// Frames too close to the start of their chunk for metadata get none.
fn view(umem: &mut Umem, base: u64, addr: u64, len: u32) -> Option<(&[u8], &mut [u8])> {
    let chunk = umem.frame(BufIdx(u32::try_from(base / u64::from(FRAME)).ok()?))?;
    let start = usize::try_from(addr - base).ok()?;
    let end = start.checked_add(len as usize)?;
    // SAFETY: the kernel handed this frame to us through the RX ring and
    // neither reads nor writes it until it is back in the fill ring; no
    // other reference to it exists while `f` runs.
    let bytes = unsafe { &mut *chunk.addr.as_ptr() };
    if end > bytes.len() {
        return None;
    }
    let (head, rest) = bytes.split_at_mut(start);
    let meta = head.get(start.saturating_sub(META_LEN)..).unwrap_or(&[]);
    Some((meta, &mut rest[..end - start]))
}

fn frame_offset(umem: &Umem, idx: u32) -> u64 {
    umem.frame(BufIdx(idx))
        .map(|c| c.offset)
        .unwrap_or_default()
}

/// Best effort: 256 frames per sendto instead of 32 (+11 % on veth).
fn raise_tx_budget(fd: libc::c_int) {
    let _ = crate::sys::setsockopt_int(fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, 256);
}
