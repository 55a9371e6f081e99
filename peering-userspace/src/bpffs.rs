//! Is the pin directory on the host's bpf filesystem? The pins are the
//! running dataplane (maps, programs, links), so an agent that cannot see
//! them must stop before it loads anything, and say why.
//!
//! The usual way to miss them is `ip netns exec NS peering-agent …`: `ip`
//! unshares the mount namespace and mounts a fresh sysfs on `/sys` (so
//! that it shows NS's interfaces), which hides the host's `/sys/fs/bpf`.
//! Mounting a bpffs there would give an empty one of its own, on which the
//! agent would load a second dataplane beside the one attached to the
//! interfaces. The fix is to stay in the host's mount namespace and let the
//! agent enter the network namespace itself (`--netns NS`).
//!
//! [`observe`] gathers the facts (IO); [`verdict`] decides (pure).

use std::{
    collections::BTreeSet,
    ffi::CString,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Result};

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// What this process can see of the pin directory's file system and of
/// its own namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The nearest existing ancestor of the pin directory.
    pub mount: PathBuf,
    /// That ancestor is on a bpf filesystem.
    pub on_bpffs: bool,
    /// The `ip netns` name of our network namespace, if it has one.
    pub netns: Option<String>,
    /// We run in a mount namespace other than the host's: known from
    /// PID 1's (when readable), or because `/sys` shows the interfaces of
    /// a named network namespace we are in (only a sysfs mounted inside
    /// that namespace does). None: cannot tell.
    pub private_mounts: Option<bool>,
}

/// Fails unless the pin directory is on the host's bpffs; the message says
/// what to do instead. Call it before entering another network namespace
/// (`--netns`), so the namespace found is the caller's.
pub fn require(dir: &Path) -> Result<()> {
    if let Err(msg) = verdict(dir, &observe(dir)?) {
        bail!("{msg}");
    }
    Ok(())
}

/// The decision, from what [`observe`] saw.
pub fn verdict(dir: &Path, v: &View) -> Result<(), String> {
    let ns = v.netns.as_deref().unwrap_or("NAME");
    let instead = format!(
        "run it from the host's namespaces and let it enter the network namespace itself: \
         `peering-agent --netns {ns} …` (not `ip netns exec {ns} peering-agent …`)"
    );
    let private = v.private_mounts == Some(true);
    match (v.on_bpffs, private) {
        (false, true) => Err(format!(
            "{} is not on a bpf filesystem in this mount namespace, which is not the host's \
             (`ip netns exec` remounts /sys and hides the host's /sys/fs/bpf, where the \
             dataplane is pinned); {instead}. Do not mount a bpffs here: it would be a new, \
             empty one.",
            dir.display()
        )),
        // Under a remounted /sys, any bpffs below it was mounted in this
        // namespace after the fact: a new, empty one, not the host's.
        (true, true) if v.netns.is_some() && v.mount.starts_with("/sys") => Err(format!(
            "{} is on a bpf filesystem mounted inside this private mount namespace, not on the \
             host's, so the running dataplane's pins are not there; {instead}.",
            dir.display()
        )),
        (true, _) => Ok(()),
        (false, false) if v.private_mounts.is_none() => Err(format!(
            "{} is not on a bpf filesystem. If the host has one on /sys/fs/bpf and this \
             process runs in a mount namespace of its own (`ip netns exec`, unshare), {instead}; \
             if the host has none, mount it with: mount -t bpf bpf /sys/fs/bpf",
            dir.display()
        )),
        (false, _) => Err(format!(
            "{} is not on a bpf filesystem; mount it with: mount -t bpf bpf /sys/fs/bpf",
            dir.display()
        )),
    }
}

/// Looks at the pin directory's file system and our namespaces.
pub fn observe(dir: &Path) -> Result<View> {
    let mount = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"))
        .to_path_buf();
    let netns = netns_name();
    let private_mounts = differs_from_pid1("mnt").or_else(|| {
        // PID 1's namespaces may be unreadable (containers): a sysfs that
        // shows the named namespace we are in was mounted inside it.
        netns.as_ref().map(|_| sysfs_shows_our_netns())
    });
    Ok(View {
        on_bpffs: fs_magic(&mount)? == BPF_FS_MAGIC,
        mount,
        netns,
        private_mounts,
    })
}

fn fs_magic(path: &Path) -> Result<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: plain C struct; all-zero is valid, statfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!(
            "statfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(st.f_type as i64)
}

/// Some(true) when our namespace of `kind` is not PID 1's; None when
/// PID 1's cannot be read (no ptrace access to it, as in containers).
fn differs_from_pid1(kind: &str) -> Option<bool> {
    let ours = std::fs::read_link(format!("/proc/self/ns/{kind}")).ok()?;
    let init = std::fs::read_link(format!("/proc/1/ns/{kind}")).ok()?;
    Some(ours != init)
}

/// The name under /run/netns of the network namespace we are in.
fn netns_name() -> Option<String> {
    let ours = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// True when /sys/class/net lists exactly the interfaces of the network
/// namespace we are in: sysfs shows the namespace of whoever mounted it,
/// so in a named namespace this means /sys was mounted inside it.
fn sysfs_shows_our_netns() -> bool {
    let sysfs: BTreeSet<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    !sysfs.is_empty() && sysfs == interfaces()
}

/// Names of the interfaces of our network namespace (if_nameindex).
fn interfaces() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // SAFETY: if_nameindex returns an array ending in a zeroed entry, freed
    // below and not used afterwards.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut cur = list;
        while (*cur).if_index != 0 && !(*cur).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*cur).if_name);
            names.insert(name.to_string_lossy().into_owned());
            cur = cur.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(on_bpffs: bool, netns: Option<&str>, private: Option<bool>) -> View {
        View {
            mount: PathBuf::from("/sys/fs/bpf"),
            on_bpffs,
            netns: netns.map(String::from),
            private_mounts: private,
        }
    }

    fn dir() -> &'static Path {
        Path::new("/sys/fs/bpf/peering")
    }

    #[test]
    fn the_hosts_bpffs_is_accepted() {
        assert_eq!(verdict(dir(), &view(true, None, Some(false))), Ok(()));
        assert_eq!(verdict(dir(), &view(true, None, None)), Ok(()));
        // A service's own mount namespace (ProtectSystem=) still shows it.
        assert_eq!(verdict(dir(), &view(true, None, Some(true))), Ok(()));
        // Entered with nsenter --net or setns: mounts are the host's.
        assert_eq!(
            verdict(dir(), &view(true, Some("gw1"), Some(false))),
            Ok(())
        );
    }

    #[test]
    fn ip_netns_exec_is_refused_with_what_to_do_instead() {
        let e = verdict(dir(), &view(false, Some("gw1"), Some(true))).unwrap_err();
        assert!(e.contains("`peering-agent --netns gw1 …`"), "{e}");
        assert!(e.contains("ip netns exec"), "{e}");
        assert!(
            !e.contains("mount -t bpf"),
            "never suggest a fresh bpffs: {e}"
        );
    }

    #[test]
    fn a_bpffs_mounted_under_a_private_sys_is_refused() {
        let e = verdict(dir(), &view(true, Some("gw1"), Some(true))).unwrap_err();
        assert!(e.contains("--netns gw1"), "{e}");
        assert!(!e.contains("mount -t bpf"), "{e}");
        // Elsewhere (a bpffs mounted before the namespace was entered and
        // still visible), it is the host's and may be used.
        let mut v = view(true, Some("gw1"), Some(true));
        v.mount = PathBuf::from("/run/peering-bpf");
        assert_eq!(verdict(Path::new("/run/peering-bpf/x"), &v), Ok(()));
    }

    #[test]
    fn a_host_without_bpffs_is_told_to_mount_it() {
        let e = verdict(dir(), &view(false, None, Some(false))).unwrap_err();
        assert!(
            e.ends_with("mount it with: mount -t bpf bpf /sys/fs/bpf"),
            "{e}"
        );
        assert!(!e.contains("--netns"), "{e}");
    }

    #[test]
    fn when_it_cannot_tell_it_names_both_cases() {
        let e = verdict(dir(), &view(false, None, None)).unwrap_err();
        assert!(e.contains("--netns NAME"), "{e}");
        assert!(e.contains("if the host has none"), "{e}");
    }

    #[test]
    fn this_process_sees_its_own_namespaces() {
        let v = observe(Path::new("/nonexistent/peering")).unwrap();
        assert_eq!(v.mount, PathBuf::from("/"));
        assert!(!v.on_bpffs);
    }
}
