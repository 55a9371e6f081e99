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

use crate::control::remote::{Backoff, RemoteError, AUTH_RETRY};

pub use crate::api::gateway::wire::ViewUpdate;
pub use crate::control::remote::Sync;

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
            .spawn(move || sync_loop(source, sync_tx, flag, retry()))?;
        let rotate = match endpoint {
            Some(endpoint) => {
                let source = make()?;
                let (rotate, requests) = mpsc::channel();
                thread::Builder::new()
                    .name("control-lease".into())
                    .spawn(move || {
                        lease_loop(source, endpoint, tx, requests, retry(), RENEW_EVERY)
                    })?;
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

/// Retries start 200 ms after a failure and wait at most 2 s: a returning
/// controller is found within 2 s.
fn retry() -> Retry {
    Retry::new(
        Duration::from_millis(200),
        Duration::from_secs(2),
        AUTH_RETRY,
    )
}

/// The waits after failed calls. A refused credential backs off on a scale
/// of its own, from the same first step up to a long pause: a credential
/// issued a moment ago may not have reached the answering controller's copy
/// of the store yet (another process wrote it; a controller on etcd learns
/// it through its watch), so the first refusals are retried soon, and a
/// revoked one settles at one try per long pause.
struct Retry {
    down: Backoff,
    refused: Backoff,
}

impl Retry {
    fn new(first: Duration, max: Duration, refused_max: Duration) -> Retry {
        Retry {
            down: Backoff::new(first, max),
            refused: Backoff::new(first, refused_max),
        }
    }

    /// The wait after the failed call `e`.
    fn after(&mut self, e: &anyhow::Error) -> Duration {
        match e.downcast_ref::<RemoteError>() {
            Some(r) if r.is_auth() => self.refused.next_delay(),
            _ => self.down.next_delay(),
        }
    }

    /// Back to the first steps (after a success).
    fn reset(&mut self) {
        self.down.reset();
        self.refused.reset();
    }
}

fn sync_loop(
    mut source: Box<dyn ControlSource>,
    tx: mpsc::Sender<Event>,
    resync: Arc<AtomicBool>,
    mut retry: Retry,
) {
    let mut since = None;
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
                retry.reset();
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
                thread::sleep(retry.after(&e));
            }
        }
    }
}

fn lease_loop(
    mut source: Box<dyn ControlSource>,
    endpoint: SocketAddrV4,
    tx: mpsc::Sender<Event>,
    requests: mpsc::Receiver<()>,
    mut retry: Retry,
    renew: Duration,
) {
    let mut rotation_due = false;
    let mut failing = false;
    loop {
        let wait = match source.register(endpoint) {
            Ok(id) => {
                if std::mem::take(&mut failing) {
                    info!("registration of {endpoint} renewed as gateway {id}");
                }
                retry.reset();
                if tx.send(Event::Registered(id)).is_err() {
                    return;
                }
                renew
            }
            Err(e) => {
                // Said once per outage; the sync thread says the rest.
                if !std::mem::replace(&mut failing, true) {
                    warn!("registering {endpoint}: {e:#}; retrying");
                }
                retry.after(&e)
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
    use crate::control::view::RegionView;

    /// Answers each call with what the test sends, after telling the test
    /// which revision it was asked from.
    struct Scripted {
        calls: mpsc::Sender<Option<u64>>,
        answers: mpsc::Receiver<Result<u64>>,
        rotations: mpsc::Sender<()>,
    }

    impl ControlSource for Scripted {
        fn sync(&mut self, since: Option<u64>, _: Duration) -> Result<Sync> {
            self.calls.send(since)?;
            let revision = self.answers.recv()??;
            let view = RegionView {
                revision,
                region: "r1".into(),
                vpcs: vec![],
                subnets: vec![],
                security_groups: vec![],
                interfaces: vec![],
                routes: vec![],
                peerings: vec![],
            };
            Ok(Sync {
                revision,
                view: ViewUpdate::Full(view),
                keys: vec![],
                settings: None,
                gateways: vec![],
            })
        }

        fn register(&mut self, _: SocketAddrV4) -> Result<u32> {
            self.calls.send(None)?;
            Ok(self.answers.recv()?? as u32)
        }

        fn request_rotation(&mut self) -> Result<()> {
            Ok(self.rotations.send(())?)
        }

        fn current(&self) -> String {
            "scripted".into()
        }
    }

    /// The source, the revisions it is asked from, where its answers go
    /// in, and the rotation requests it forwarded.
    type Script = (
        Box<Scripted>,
        mpsc::Receiver<Option<u64>>,
        mpsc::Sender<Result<u64>>,
        mpsc::Receiver<()>,
    );

    fn scripted() -> Script {
        let (calls, asked) = mpsc::channel();
        let (answer, answers) = mpsc::channel();
        let (rotations, rotated) = mpsc::channel();
        let source = Scripted {
            calls,
            answers,
            rotations,
        };
        (Box::new(source), asked, answer, rotated)
    }

    fn quick() -> Retry {
        let ms = Duration::from_millis(1);
        Retry::new(ms, ms, ms)
    }

    fn refused() -> anyhow::Error {
        RemoteError::Auth {
            url: "https://c1".into(),
            status: 401,
            code: "AuthFailure".into(),
            message: "unknown".into(),
        }
        .into()
    }

    /// A refused credential is tried again soon at first (it may be new),
    /// then at most once per AUTH_RETRY; an unreachable controller keeps
    /// its own, shorter scale; a success starts both over.
    #[test]
    fn refusals_back_off_from_a_short_first_wait_to_the_long_pause() {
        let mut r = retry();
        let first = r.after(&refused());
        assert!(first <= Duration::from_millis(200), "{first:?}");
        let waits: Vec<Duration> = (0..12).map(|_| r.after(&refused())).collect();
        assert!(waits.iter().all(|w| *w <= AUTH_RETRY));
        assert!(*waits.last().unwrap() >= AUTH_RETRY / 2, "{waits:?}");
        let down = r.after(&anyhow::anyhow!("connection refused"));
        assert!(down <= Duration::from_millis(200), "{down:?}");
        r.reset();
        assert!(r.after(&refused()) <= Duration::from_millis(200));
    }

    #[test]
    fn the_sync_loop_resumes_from_its_revision_says_offline_once_and_resyncs_on_request() {
        let (source, asked, answer, _) = scripted();
        let (tx, events) = mpsc::channel();
        let resync = Arc::new(AtomicBool::new(false));
        let flag = resync.clone();
        let t = thread::spawn(move || sync_loop(source, tx, flag, quick()));
        assert_eq!(asked.recv().unwrap(), None, "the first sync asks for all");
        answer.send(Ok(5)).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Sync(s) if s.revision == 5));
        assert_eq!(asked.recv().unwrap(), Some(5));
        // Two failures: one Offline event; the retries ask from 5 still.
        answer.send(Err(anyhow::anyhow!("down"))).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Offline(e) if e.contains("down")));
        assert_eq!(asked.recv().unwrap(), Some(5));
        answer.send(Err(anyhow::anyhow!("down"))).unwrap();
        assert_eq!(asked.recv().unwrap(), Some(5));
        // The agent asks for the full view before this answer is handled.
        resync.store(true, Ordering::Relaxed);
        answer.send(Ok(6)).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Sync(s) if s.revision == 6));
        assert_eq!(asked.recv().unwrap(), None, "resync: the full view");
        // The agent goes: the loop ends at its next event.
        drop(events);
        answer.send(Ok(7)).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn the_lease_loop_renews_and_forwards_rotation_requests() {
        let (source, asked, answer, rotated) = scripted();
        let (tx, events) = mpsc::channel();
        let (rotate, requests) = mpsc::channel();
        let endpoint = "198.18.0.1:51900".parse().unwrap();
        let renew = Duration::from_millis(5);
        let t = thread::spawn(move || lease_loop(source, endpoint, tx, requests, quick(), renew));
        asked.recv().unwrap();
        answer.send(Ok(3)).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Registered(3)));
        // Renewed after `renew`, and again after a failure.
        asked.recv().unwrap();
        answer.send(Err(anyhow::anyhow!("down"))).unwrap();
        asked.recv().unwrap();
        rotate.send(()).unwrap();
        answer.send(Ok(3)).unwrap();
        assert!(matches!(events.recv().unwrap(), Event::Registered(3)));
        rotated
            .recv_timeout(Duration::from_secs(5))
            .expect("the rotation request went to the controller");
        drop(rotate);
        // Disconnected: the loop ends after its next registration.
        asked.recv().unwrap();
        answer.send(Ok(3)).unwrap();
        t.join().unwrap();
    }
}
