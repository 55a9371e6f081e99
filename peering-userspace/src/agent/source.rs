//! Where the agent learns its region: a controller reached over the
//! network, behind [`ControlSource`]. Two threads talk to it, so a long
//! poll never delays a lease renewal:
//!
//! - the sync thread long-polls for changes since the last revision it
//!   handed over, and passes each answer to the agent's loop;
//! - the lease thread renews this gateway's registration every
//!   [`RENEW_EVERY`] and forwards early-rotation requests.
//!
//! Both retry with backoff while no controller answers; the agent keeps
//! forwarding on what it holds meanwhile. The threads are spawned before
//! the agent enters its `--netns`: they keep the namespace the agent was
//! started in, where the controllers are reachable.

use std::{
    net::SocketAddrV4,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use anyhow::Result;
use log::{info, warn};

use crate::control::{
    delta::RegionDelta,
    store::{GatewayRecord, TunnelSettings},
    view::RegionView,
};
use crate::tunnel::key::EpochKey;

/// The region's view as a controller sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewUpdate {
    /// The whole view (first sync, or the controller lacks the history).
    Full(RegionView),
    /// What changed since the revision asked for.
    Delta(RegionDelta),
}

/// One answer of a controller.
#[derive(Debug)]
pub struct Sync {
    pub revision: u64,
    pub view: ViewUpdate,
    pub keys: Vec<EpochKey>,
    pub settings: Option<TunnelSettings>,
    pub gateways: Vec<GatewayRecord>,
}

/// The operations the agent needs from its controllers.
pub trait ControlSource: Send {
    /// Changes since `since` (None: the full view), waiting up to `wait`
    /// for one.
    fn sync(&mut self, since: Option<u64>, wait: Duration) -> Result<Sync>;
    /// Registers or renews this gateway's endpoint; its gateway id.
    fn register(&mut self, endpoint: SocketAddrV4) -> Result<u32>;
    fn request_rotation(&mut self) -> Result<()>;
    /// The controller in use (for logs).
    fn current(&self) -> String;
}

/// Makes a source for each thread.
pub type MakeSource = Box<dyn Fn() -> Result<Box<dyn ControlSource>> + Send + std::marker::Sync>;

/// A controller's lease on a registration lasts about 15 s: renewing
/// every 5 s survives two lost renewals.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// How long one sync waits for a change.
pub const SYNC_WAIT: Duration = Duration::from_secs(15);

/// What the control threads tell the agent's loop.
#[derive(Debug)]
pub enum Event {
    Sync(Box<Sync>),
    Registered(u32),
    /// No controller answered (said once per outage).
    Offline(String),
}

/// Doubling waits between failed attempts, reset by a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// The wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub fn succeeded(&mut self) {
        self.next = self.min;
    }
}

/// The agent's end of the control threads.
pub struct Link {
    pub events: mpsc::Receiver<Event>,
    resync: Arc<AtomicBool>,
    rotate: Option<mpsc::Sender<()>>,
}

impl Link {
    /// Starts the sync thread, and the lease thread when the gateway has
    /// an underlay endpoint to register.
    pub fn spawn(make: MakeSource, endpoint: Option<SocketAddrV4>) -> Result<Link> {
        let make = Arc::new(make);
        let (tx, events) = mpsc::channel();
        let resync = Arc::new(AtomicBool::new(false));
        let source = make()?;
        let flag = resync.clone();
        let sync_tx = tx.clone();
        thread::Builder::new()
            .name("control-sync".into())
            .spawn(move || sync_loop(source, sync_tx, flag))?;
        let rotate = match endpoint {
            Some(endpoint) => {
                let source = make()?;
                let (rotate, requests) = mpsc::channel();
                thread::Builder::new()
                    .name("control-lease".into())
                    .spawn(move || lease_loop(source, endpoint, tx, requests))?;
                Some(rotate)
            }
            None => None,
        };
        Ok(Link {
            events,
            resync,
            rotate,
        })
    }

    /// The next sync asks for the full view (a delta did not fit).
    pub fn resync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }

    /// Asks the controllers to rotate the tunnel key early.
    pub fn request_rotation(&self) {
        if let Some(r) = &self.rotate {
            let _ = r.send(());
        }
    }
}

fn sync_loop(mut source: Box<dyn ControlSource>, tx: mpsc::Sender<Event>, resync: Arc<AtomicBool>) {
    let mut since = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let mut online = true;
    loop {
        if resync.swap(false, Ordering::Relaxed) {
            since = None;
        }
        match source.sync(since, SYNC_WAIT) {
            Ok(s) => {
                if !online {
                    info!("controller {} answers again", source.current());
                    online = true;
                }
                backoff.succeeded();
                since = Some(s.revision);
                if tx.send(Event::Sync(Box::new(s))).is_err() {
                    return; // the agent has stopped
                }
            }
            Err(e) => {
                if online {
                    online = false;
                    let said = format!("{e:#}");
                    if tx.send(Event::Offline(said)).is_err() {
                        return;
                    }
                }
                thread::sleep(backoff.failed());
            }
        }
    }
}

fn lease_loop(
    mut source: Box<dyn ControlSource>,
    endpoint: SocketAddrV4,
    tx: mpsc::Sender<Event>,
    requests: mpsc::Receiver<()>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let mut rotation_due = false;
    loop {
        let wait = match source.register(endpoint) {
            Ok(id) => {
                backoff.succeeded();
                if tx.send(Event::Registered(id)).is_err() {
                    return;
                }
                RENEW_EVERY
            }
            Err(e) => {
                warn!("registering {endpoint}: {e:#}");
                backoff.failed()
            }
        };
        if rotation_due {
            rotation_due = source.request_rotation().is_err();
        }
        match requests.recv_timeout(wait) {
            Ok(()) => {
                while requests.try_recv().is_ok() {}
                rotation_due = source.request_rotation().is_err();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<_> = (0..4).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        b.succeeded();
        assert_eq!(b.failed().as_millis(), 100);
    }
}
