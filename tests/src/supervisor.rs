//! Plays systemd's part for lab tests (systemd is not PID 1 here): starts a
//! process, and whenever it exits starts it again after a delay, as a unit
//! with `Restart=always` and `RestartSec=` would. Dropping it stops the
//! supervision and then the process.

use std::{
    process::Child,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How often the supervisor looks for an exit (systemd learns of it from
/// SIGCHLD at once; 2 ms is close enough and needs no signal handling).
const POLL: Duration = Duration::from_millis(2);

/// Starts the supervised process.
pub type Spawn = Box<dyn FnMut() -> Child + Send>;

pub struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    child: Mutex<Option<Child>>,
    /// When each process started (the first one included).
    starts: Mutex<Vec<Instant>>,
}

impl Supervisor {
    /// Starts the process with `spawn` and keeps it running, restarting it
    /// `restart_sec` after each exit.
    pub fn start(mut spawn: Spawn, restart_sec: Duration) -> Self {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            child: Mutex::new(Some(spawn())),
            starts: Mutex::new(vec![Instant::now()]),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                let exited = s
                    .child
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                    .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
                if exited {
                    std::thread::sleep(restart_sec);
                    if s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let child = spawn();
                    *s.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                    s.starts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Instant::now());
                }
                std::thread::sleep(POLL);
            }
        });
        Supervisor {
            shared,
            thread: Some(thread),
        }
    }

    /// Sends SIGKILL to the running process (kill -9); returns when.
    pub fn kill9(&self) -> Instant {
        let child = self.shared.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = child.as_ref() {
            // SAFETY: signalling a child we have not reaped yet.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGKILL) };
        }
        Instant::now()
    }

    /// The process id of the current process (it may have exited and be
    /// waiting for its restart).
    pub fn pid(&self) -> Option<u32> {
        let child = self.shared.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_ref().map(Child::id)
    }

    /// Start times of every process so far.
    pub fn starts(&self) -> Vec<Instant> {
        self.shared
            .starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut child = self.shared.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
