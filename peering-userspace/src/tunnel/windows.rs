//! Replay windows shared by the tunnel workers of one gateway.
//!
//! Which worker receives a datagram depends on the receive queue the NIC
//! (RSS) or veth picked from the outer headers, which are not
//! authenticated: an attacker replaying a datagram chooses its queue. So a
//! window per worker would let a datagram captured on one worker's queue be
//! accepted once more on every other. There is one window per (sender,
//! epoch) for the whole gateway: [`ReplayWindows`] holds them, each behind
//! its own mutex, and every worker keeps handles to the windows it has used
//! so the registry's lock is taken only when a worker meets a (sender,
//! epoch) pair for the first time.
//!
//! A window is created only for an authentic datagram, never for an epoch
//! any worker has already erased (an erased epoch's fresh window would
//! accept its old datagrams again), and at most [`MAX_REPLAY_WINDOWS`]
//! exist.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use super::replay::ReplayWindow;

/// Upper bound on replay windows (2 KiB each): three epochs times 1024
/// senders, far above any realistic number of regions. Windows are only
/// created after authentication, so only a key holder could hit this.
pub const MAX_REPLAY_WINDOWS: usize = super::keyring::MAX_HELD_KEYS * 1024;

/// One (sender, epoch) window, shared by every worker.
pub type SharedWindow = Arc<Mutex<ReplayWindow>>;

/// Why no window could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoWindow {
    /// The epoch was erased (by some worker): it is refused forever.
    Erased,
    /// [`MAX_REPLAY_WINDOWS`] exist.
    Full,
}

#[derive(Debug, Default)]
struct Registry {
    windows: HashMap<(u32, u32), SharedWindow>,
    /// Epochs below this are erased; no window is made for them again.
    erased_below: u32,
}

/// The gateway's replay windows, by (sender, epoch).
#[derive(Debug, Default)]
pub struct ReplayWindows {
    registry: Mutex<Registry>,
}

impl ReplayWindows {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A poisoned lock means a panic elsewhere; the windows themselves
        // are only ever changed whole by `commit`.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The window of (`sender`, `epoch`), created if needed. Call only for
    /// an authentic datagram.
    pub fn get_or_create(&self, sender: u32, epoch: u32) -> Result<SharedWindow, NoWindow> {
        let mut registry = self.lock();
        if epoch < registry.erased_below {
            return Err(NoWindow::Erased);
        }
        if let Some(w) = registry.windows.get(&(sender, epoch)) {
            return Ok(w.clone());
        }
        if registry.windows.len() >= MAX_REPLAY_WINDOWS {
            return Err(NoWindow::Full);
        }
        let window = SharedWindow::default();
        registry.windows.insert((sender, epoch), window.clone());
        Ok(window)
    }

    /// Drops the windows of epochs below `erased_below` (a worker's key ring
    /// erased them) and refuses to create them again. Never moves back.
    pub fn erase_below(&self, erased_below: u32) {
        let mut registry = self.lock();
        if erased_below <= registry.erased_below {
            return;
        }
        registry.erased_below = erased_below;
        registry
            .windows
            .retain(|&(_, epoch), _| epoch >= erased_below);
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.lock().windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks one window (poison is ignored as in [`ReplayWindows`]).
pub fn lock(window: &SharedWindow) -> MutexGuard<'_, ReplayWindow> {
    window.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_per_sender_and_epoch() {
        let w = ReplayWindows::new();
        let a = w.get_or_create(1, 5).unwrap();
        let b = w.get_or_create(1, 5).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = w.get_or_create(2, 5).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        lock(&a).commit(9).unwrap();
        assert!(lock(&b).check(9).is_err());
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn erased_epochs_get_no_window_again() {
        let w = ReplayWindows::new();
        w.get_or_create(1, 5).unwrap();
        w.get_or_create(1, 6).unwrap();
        w.erase_below(6);
        assert_eq!(w.len(), 1);
        assert_eq!(w.get_or_create(1, 5).unwrap_err(), NoWindow::Erased);
        assert_eq!(w.get_or_create(3, 2).unwrap_err(), NoWindow::Erased);
        // Never moves back.
        w.erase_below(2);
        assert_eq!(w.get_or_create(1, 5).unwrap_err(), NoWindow::Erased);
        assert!(w.get_or_create(1, 6).is_ok());
    }

    #[test]
    fn bounded() {
        let w = ReplayWindows::new();
        for sender in 0..MAX_REPLAY_WINDOWS as u32 {
            w.get_or_create(sender, 1).unwrap();
        }
        assert_eq!(w.get_or_create(u32::MAX, 1).unwrap_err(), NoWindow::Full);
        // Existing windows are still handed out.
        assert!(w.get_or_create(0, 1).is_ok());
    }
}
