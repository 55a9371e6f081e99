//! Everything the labs create outside this process — child processes,
//! network namespaces, bpffs pin directories, temporary files — is
//! registered here as it is created and released here when its owner is
//! dropped. The same list serves an interrupted run:
//!
//! - **SIGINT, SIGTERM, SIGHUP**: the first registration installs a handler
//!   (the `ctrlc` crate: the signal only wakes a thread of its own; nothing
//!   runs in signal context) that takes the list, kills and reaps every
//!   child still running, deletes the namespaces, removes the files and
//!   exits with status 130. It keeps the list locked until the exit, so
//!   nothing is created or half-released behind its back.
//! - **SIGKILL of this process**: every child is started with
//!   `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills it when the thread
//!   that spawned it ends. That is why children must be spawned by a
//!   thread that outlives them (the test's or the binary's main thread, as
//!   the fixtures do). Namespaces and files cannot be removed then: nothing
//!   of this process runs any more. A child that changes credentials or
//!   executes a set-user-ID binary loses the setting (tcpdump dropping
//!   privileges would); the signal handler still stops those.
//! - **panics**: the owners' drops run while unwinding, as on success.

use std::{
    io,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, Once},
};

struct Held {
    /// Children not yet reaped (so their pids cannot have been reused).
    procs: Vec<u32>,
    netns: Vec<String>,
    /// Files and directories, removed recursively.
    paths: Vec<PathBuf>,
}

static HELD: Mutex<Held> = Mutex::new(Held {
    procs: Vec::new(),
    netns: Vec::new(),
    paths: Vec::new(),
});
static HANDLER: Once = Once::new();

/// Exit status after a signal's teardown (128 + SIGINT, as shells report
/// an interrupted command).
pub const EXIT_INTERRUPTED: i32 = 130;

fn held() -> MutexGuard<'static, Held> {
    HANDLER.call_once(|| {
        // Fails only if the binary installed a handler of its own.
        let _ = ctrlc::set_handler(stop_all_and_exit);
    });
    // A panic while the list was held (a failed `ip netns add`) leaves it
    // consistent: entries are pushed only after what they name exists.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes a command's process die with the thread that spawns it.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, raise).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        })
    }
}

/// A running child, killed and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the child to end by itself.
    pub fn wait(mut self) -> io::Result<std::process::ExitStatus> {
        let status = self.0.wait();
        held().procs.retain(|&p| p != self.0.id());
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut h = held();
        let pid = self.0.id();
        if h.procs.contains(&pid) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            h.procs.retain(|&p| p != pid);
        }
    }
}

/// Starts `cmd` as a registered child that dies with its spawning thread.
pub fn spawn(cmd: &mut Command) -> io::Result<Proc> {
    let mut h = held();
    let child = die_with_parent(cmd).spawn()?;
    h.procs.push(child.id());
    Ok(Proc(child))
}

/// Creates network namespace `name` and registers it.
pub fn add_netns(name: &str) {
    let mut h = held();
    crate::lab::ok(Command::new("ip").args(["netns", "add", name]));
    h.netns.push(name.to_owned());
}

/// Deletes namespace `name` and forgets it.
pub fn del_netns(name: &str) {
    let mut h = held();
    delete_netns(name);
    h.netns.retain(|n| n != name);
}

fn delete_netns(name: &str) {
    let _ = die_with_parent(Command::new("ip").args(["netns", "del", name]))
        .stderr(Stdio::null())
        .status();
}

/// Registers a file or directory (that exists or is about to) for removal.
pub fn add_path(path: &Path) {
    held().paths.push(path.to_owned());
}

/// Removes a registered file or directory and forgets it.
pub fn remove_path(path: &Path) {
    let mut h = held();
    remove(path);
    h.paths.retain(|p| p != path);
}

fn remove(path: &Path) {
    if std::fs::remove_dir_all(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// The signal path: stops and removes everything registered, in the order
/// the drops would (processes before the namespaces they run in), then
/// exits without releasing the list.
fn stop_all_and_exit() {
    let h = held();
    eprintln!("\ninterrupted: stopping processes, removing namespaces and files");
    for &pid in &h.procs {
        let pid = pid as libc::pid_t;
        // SAFETY: `pid` is an unreaped child of ours: it cannot name
        // another process.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    for name in &h.netns {
        delete_netns(name);
    }
    for path in &h.paths {
        remove(path);
    }
    std::process::exit(EXIT_INTERRUPTED);
}
