//! Thin wrappers over the few system facilities the loader needs: privilege
//! and bpffs checks, network namespaces, interface lookups.

use std::{
    ffi::CString,
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// Fails with a clear message unless we run as root (or with CAP_BPF and
/// CAP_NET_ADMIN, which euid 0 stands in for here).
pub fn require_root() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("peering needs root to load XDP programs and edit BPF maps: run it with sudo");
    }
    Ok(())
}

/// Fails with a clear message unless `dir` is on the host's bpffs: pinned
/// maps and links can only live on a bpf filesystem, and only the host's
/// holds the running dataplane (see [`crate::bpffs`]).
pub fn require_bpffs(dir: &Path) -> Result<()> {
    crate::bpffs::require(dir)
}

/// Moves the calling thread into the named network namespace (as created by
/// `ip netns add`). Call it before spawning threads: new threads inherit it.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = PathBuf::from("/run/netns").join(name);
    let f = File::open(&path).with_context(|| format!("network namespace {name} not found"))?;
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({name}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).context("interface name contains NUL")?;
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("interface {name} does not exist in this network namespace"),
        i => Ok(i),
    }
}

/// MAC address of interface `name`, read through SIOCGIFHWADDR on a socket
/// of the current network namespace (sysfs may show another namespace).
pub fn mac(name: &str) -> Result<[u8; 6]> {
    let req = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut out = [0u8; 6];
    for (o, b) in out.iter_mut().zip(sa.sa_data.iter()) {
        *o = *b as u8;
    }
    Ok(out)
}

/// MTU of interface `name` (SIOCGIFMTU, current network namespace).
pub fn mtu(name: &str) -> Result<u32> {
    let req = ifreq_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).with_context(|| format!("interface {name}: MTU {mtu}"))
}

/// Runs an interface ioctl that fills a `struct ifreq` for `name`.
fn ifreq_ioctl(name: &str, request: libc::Ioctl) -> Result<libc::ifreq> {
    ifreq_call(name, request, "", |_| {})
}

/// Runs interface ioctl `request` on a `struct ifreq` naming `name`, after
/// `fill` has set the rest of it; returns the struct as the kernel left it.
/// `what` names the operation in the error, if it needs naming.
fn ifreq_call(
    name: &str,
    request: libc::Ioctl,
    what: &str,
    fill: impl FnOnce(&mut libc::ifreq),
) -> Result<libc::ifreq> {
    // SAFETY: plain C struct; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        bail!("interface name {name:?} is too long");
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    fill(&mut req);
    // SAFETY: a socket we close below; the ioctl touches `req` and what
    // `fill` pointed it at only.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    let rc = unsafe { libc::ioctl(sock, request, &mut req) };
    let err = std::io::Error::last_os_error();
    unsafe { libc::close(sock) };
    if rc != 0 {
        if what.is_empty() {
            bail!("interface {name}: {err}");
        }
        bail!("interface {name}: {what}: {err}");
    }
    Ok(req)
}

/// The interface holding IPv4 address `addr` in the current network
/// namespace (getifaddrs).
pub fn iface_with_addr(addr: std::net::Ipv4Addr) -> Result<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        bail!("getifaddrs: {}", std::io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null; its family says how to read it.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
        if sin.sin_addr.s_addr.to_ne_bytes() == addr.octets() {
            // SAFETY: ifa_name is a NUL-terminated string in the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: the list came from getifaddrs and is not used afterwards.
    unsafe { libc::freeifaddrs(list) };
    found.with_context(|| format!("no interface has the address {addr}"))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
/// setsockopt(2) with an `int` value.
pub fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    setsockopt(fd, level, opt, &value)
}

/// setsockopt(2) with `value` (a plain C type, such as `int` or `timeval`).
pub fn setsockopt<T: Copy>(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: the option value is a live T of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Receive queues of an interface, from ETHTOOL_GCHANNELS or else sysfs
/// (1 if neither answers:
/// every device has at least one).
pub fn rx_queues(name: &str) -> u32 {
    // The ioctl asks the current network namespace; /sys/class/net shows
    // the namespace sysfs was mounted in, which an agent started with
    // --netns is not in.
    match channels(name) {
        Ok(c) if c.rx_count.max(c.combined_count) > 0 => c.rx_count.max(c.combined_count),
        _ => rx_queues_sysfs(name),
    }
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The interface's queue counts (ETHTOOL_GCHANNELS).
fn channels(name: &str) -> Result<EthtoolChannels> {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool(name, &mut ch, "ETHTOOL_GCHANNELS")?;
    Ok(ch)
}

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver of interface `name` (ETHTOOL_GDRVINFO, current network
/// namespace), e.g. `veth`, `mlx5_core`, `ice`.
pub fn driver(name: &str) -> Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x03;
    // SAFETY: plain C struct; all-zero is valid.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ethtool(name, &mut info, "ETHTOOL_GDRVINFO")?;
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// `struct ethtool_value` (linux/ethtool.h).
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// An offload of an interface that can be switched by one ethtool command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// Generic receive offload (ETHTOOL_SGRO).
    Gro,
    /// Generic segmentation offload (ETHTOOL_SGSO).
    Gso,
    /// TCP segmentation offload (ETHTOOL_STSO).
    Tso,
    /// Transmit checksum offload (ETHTOOL_STXCSUM).
    TxChecksum,
}

impl Offload {
    /// (get command, set command) of linux/ethtool.h.
    fn commands(self) -> (u32, u32, &'static str) {
        match self {
            Offload::Gro => (0x2b, 0x2c, "ETHTOOL_SGRO"),
            Offload::Gso => (0x23, 0x24, "ETHTOOL_SGSO"),
            Offload::Tso => (0x1e, 0x1f, "ETHTOOL_STSO"),
            Offload::TxChecksum => (0x16, 0x17, "ETHTOOL_STXCSUM"),
        }
    }
}

/// Whether `offload` is on for interface `name`.
pub fn offload(name: &str, offload: Offload) -> Result<bool> {
    let (get, _, what) = offload.commands();
    let mut v = EthtoolValue { cmd: get, data: 0 };
    ethtool(name, &mut v, what)?;
    Ok(v.data != 0)
}

/// Switches `offload` of interface `name` on or off (a no-op when it is
/// so already).
pub fn set_offload(name: &str, offload: Offload, on: bool) -> Result<()> {
    if self::offload(name, offload)? == on {
        return Ok(());
    }
    let (_, set, what) = offload.commands();
    let mut v = EthtoolValue {
        cmd: set,
        data: u32::from(on),
    };
    ethtool(name, &mut v, what)
}

/// Runs the SIOCETHTOOL ioctl with command block `data` on `name`.
fn ethtool<T>(name: &str, data: &mut T, what: &str) -> Result<()> {
    const SIOCETHTOOL: libc::Ioctl = 0x8946;
    // The command block outlives the call, which reads and writes it only.
    ifreq_call(name, SIOCETHTOOL, what, |req| {
        req.ifr_ifru.ifru_data = (data as *mut T).cast();
    })?;
    Ok(())
}

/// Name of the interface with index `ifindex` (current network namespace).
pub fn ifname(ifindex: u32) -> Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        bail!("no interface has index {ifindex} in this network namespace");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

fn rx_queues_sysfs(name: &str) -> u32 {
    let dir = Path::new("/sys/class/net").join(name).join("queues");
    let count = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(0);
    u32::try_from(count).unwrap_or(1).max(1)
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in out.iter_mut() {
        let p = parts
            .next()
            .with_context(|| format!("bad MAC {s:?}: too short"))?;
        if p.len() != 2 {
            bail!("bad MAC {s:?}: each part is two hex digits");
        }
        *o = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {s:?}"))?;
    }
    if parts.next().is_some() {
        bail!("bad MAC {s:?}: too long");
    }
    Ok(out)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_format() {
        let m = parse_mac("02:00:0a:01:00:ff").unwrap();
        assert_eq!(m, [2, 0, 10, 1, 0, 255]);
        assert_eq!(format_mac(&m), "02:00:0a:01:00:ff");
        for bad in [
            "",
            "02:00",
            "02:00:0a:01:00:ff:11",
            "2:00:0a:01:00:ff",
            "zz:00:0a:01:00:ff",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interfaces_without_a_driver_are_clear_errors() {
        // `lo` exists in every namespace and answers no ETHTOOL_GDRVINFO.
        let e = driver("lo").unwrap_err().to_string();
        assert!(e.contains("ETHTOOL_GDRVINFO"), "{e}");
        assert!(driver("peering-nope0").is_err());
        assert_eq!(ifname(ifindex("lo").unwrap()).unwrap(), "lo");
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = ifindex("peering-nope0").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
