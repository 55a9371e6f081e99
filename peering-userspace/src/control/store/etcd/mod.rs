//! [`Kv`] on an etcd v3 cluster (`etcd-client`, gRPC).
//!
//! - **Layout**: see [`layout`]: data keys under `PREFIX data/`, and a
//!   `PREFIX head` key that the backend itself writes in every commit. Ops
//!   name data keys only; callers never see or write the head.
//! - **commit** is one etcd Txn: `if mod_revision(head) < base + 1 then
//!   (ops, put head = nonce) else get head`. A lease expiry deletes keys at
//!   a revision of its own without touching the head, so it does not count
//!   as a commit, as [`Kv::commit`] asks. The nonce (16 random bytes per
//!   commit) lets a retried Txn tell "my earlier attempt landed" (the head
//!   still holds my nonce: [`Commit::Done`] at its revision) from "someone
//!   else's did". When an attempt failed in flight and the head has moved
//!   on to another nonce since, the outcome is unknown and commit returns
//!   an error, as the contract says; callers that want to find their own
//!   write later include a key of their own in the ops.
//! - **snapshot**: a range over the data prefix at one revision, in pages
//!   (restarted if compaction overtakes it).
//! - **changes**: an etcd watch over the prefix from `since + 1`, events
//!   grouped by revision. The watch is kept between calls and reused when
//!   the next call continues where the last one ended (the usual
//!   catch-up loop), so tailing costs one stream, not one per call. A
//!   watch on compacted history is [`StoreError::Compacted`].
//! - **PutLeased**: each commit grants one lease per distinct TTL (rounded
//!   up to whole seconds) and attaches its leased keys to it; a re-put
//!   attaches the key to the new lease, and the old lease expires by itself
//!   with nothing on it. Nothing keeps these leases alive: a key lives
//!   `ttl` after its last put, and its expiry is a delete in `changes`.
//!   Leases granted for a commit that did not land are revoked.
//! - **lead**: a lease-held `PREFIX leader` key, see [`lead`].
//!
//! The client is async; the blocking [`Kv`] methods hand each call to a
//! runtime of the store's own (one worker thread) and wait on a channel, so
//! they may be called from any thread that may block, tokio's
//! `spawn_blocking` threads included. Every RPC has a timeout and calls
//! retry until a deadline (reads always; commits as described above), so a
//! dead member costs one timeout and the client moves on to another
//! endpoint.
//!
//! **TLS** ([`tls`]): with [`EtcdOptions::tls`] set, every member is
//! reached over TLS (rustls, *ring*), verified against the CA given, and
//! presents the client certificate if one is given. When no member
//! answers at connect, one direct TLS handshake per member says why
//! (certificate not trusted, client certificate refused), since the gRPC
//! balancer itself only reports a timeout.

pub mod layout;
mod lead;
pub mod tls;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use rand::RngCore;

use crate::control::store::kv::{Batch, Commit, Entry, Kv, Op};
use crate::control::store::StoreError;
use layout::{Layout, RawEvent};

/// Timeouts and sizes; the defaults suit a LAN cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// One RPC attempt (a dead or partitioned member costs this much).
    pub rpc_timeout: Duration,
    /// A whole call (commit, snapshot, reading changes), retries included.
    pub deadline: Duration,
    /// TCP connect to one member.
    pub connect_timeout: Duration,
    /// The leader key's lease.
    pub lead_ttl: Duration,
    /// Keys per snapshot page.
    pub page: i64,
    /// TLS to the members (see [`tls`]); `None` is plain gRPC.
    pub tls: Option<tls::EtcdTls>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(1),
            lead_ttl: Duration::from_secs(3),
            page: 1000,
            tls: None,
        }
    }
}

/// A watch kept between [`Kv::changes`] calls: everything up to `at` has
/// been handed out.
struct Cursor {
    at: u64,
    stream: WatchStream,
}

pub(crate) struct Inner {
    client: Client,
    layout: Layout,
    opts: EtcdOptions,
    cursor: tokio::sync::Mutex<Option<Cursor>>,
}

pub struct EtcdKv {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
    lead: Arc<lead::Campaign>,
}

impl EtcdKv {
    /// Connects to `endpoints` (`host:port` each) and checks that one
    /// answers within the deadline. `prefix` is the deployment's (see
    /// [`layout::Layout::new`]).
    pub fn connect(
        endpoints: &[String],
        prefix: &str,
        opts: EtcdOptions,
    ) -> Result<Self, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Etcd("no endpoints given".into()));
        }
        let layout = Layout::new(prefix)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-kv")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Etcd(format!("cannot start the etcd client runtime: {e}")))?;
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            // HTTP/2 pings find a dead member on an idle connection (a
            // watch or a keepalive stream) instead of waiting forever.
            .with_keep_alive(Duration::from_secs(1), opts.rpc_timeout)
            .with_keep_alive_while_idle(true)
            // A member cut off from the cluster's leader refuses requests
            // (and cancels watches) instead of serving stale data.
            .with_require_leader(true);
        if let Some(t) = &opts.tls {
            options = options.with_tls(t.client_options(opts.connect_timeout));
        }
        let client = on(&runtime, async move {
            Client::connect(urls, Some(options)).await
        })?
        .map_err(|e| StoreError::Etcd(format!("cannot set up a client: {e}")))?;
        let inner = Arc::new(Inner {
            client,
            layout,
            opts,
            cursor: tokio::sync::Mutex::new(None),
        });
        let kv = Self {
            lead: lead::Campaign::new(),
            runtime: Some(runtime),
            inner,
        };
        // Fails fast (with the endpoints in the message) when no member
        // answers, rather than at the first write.
        let i = kv.inner.clone();
        let answered = kv.run(async move { i.head().await.map(|_| ()) });
        if let Err(e) = answered {
            let why = match &kv.inner.opts.tls {
                Some(t) => {
                    let (t, eps) = (t.clone(), endpoints.to_vec());
                    let timeout = kv.inner.opts.connect_timeout;
                    on(kv.runtime(), async move { t.diagnose(&eps, timeout).await })?
                }
                None => String::new(),
            };
            return Err(StoreError::Etcd(format!(
                "no answer from {}: {e}{why}",
                endpoints.join(",")
            )));
        }
        Ok(kv)
    }

    /// The deployment's key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        on(self.runtime(), f)?
    }
}

/// Runs `f` on `rt` and waits for it from this (blocking) thread.
fn on<T, F>(rt: &tokio::runtime::Runtime, f: F) -> Result<T, StoreError>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .map_err(|_| StoreError::Etcd("the etcd client task ended without an answer".into()))
}

impl Drop for EtcdKv {
    fn drop(&mut self) {
        // Hand the leadership over at once rather than after the lease.
        if let Some(lease) = self.lead.resign() {
            let mut c = self.inner.client.clone();
            let t = self.inner.opts.rpc_timeout;
            let _ = self.run(async move {
                let _ = tokio::time::timeout(t, c.lease_revoke(lease)).await;
                Ok(())
            });
        }
        if let Some(rt) = self.runtime.take() {
            // Never blocks, so dropping the store inside async code is fine.
            rt.shutdown_background();
        }
    }
}

impl Kv for EtcdKv {
    fn snapshot(&self) -> Result<(u64, Vec<Entry>), StoreError> {
        let i = self.inner.clone();
        self.run(async move { i.snapshot().await })
    }

    fn commit(&self, base: u64, ops: &[Op]) -> Result<Commit, StoreError> {
        let i = self.inner.clone();
        let ops = ops.to_vec();
        self.run(async move { i.commit(base, ops).await })
    }

    fn changes(&self, since: u64, wait: Duration) -> Result<Vec<Batch>, StoreError> {
        let i = self.inner.clone();
        self.run(async move { i.changes(since, wait).await })
    }

    fn lead(&self) -> Result<bool, StoreError> {
        Ok(self.lead.lead(self.runtime(), &self.inner))
    }
}

fn etcd_err(what: &str, e: etcd_client::Error) -> StoreError {
    StoreError::Etcd(format!("{what}: {e}"))
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("compacted"))
}

fn revision(i: i64) -> u64 {
    u64::try_from(i).unwrap_or(0)
}

/// Retries `attempt` (each bounded by the RPC timeout) until it succeeds
/// or the deadline passes; for reads, which are safe to repeat.
async fn retry<T, F, Fut>(opts: &EtcdOptions, what: &str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + opts.deadline;
    loop {
        let last = match tokio::time::timeout(opts.rpc_timeout, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if is_compacted(&e) => return Err(etcd_err(what, e)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", opts.rpc_timeout),
        };
        if Instant::now() + BACKOFF >= deadline {
            return Err(StoreError::Etcd(format!(
                "{what}: {last} (gave up after {:?})",
                opts.deadline
            )));
        }
        tokio::time::sleep(BACKOFF).await;
    }
}

/// Pause between attempts (lets the client's balancer notice a dead member).
const BACKOFF: Duration = Duration::from_millis(100);

impl Inner {
    /// The head key's mod revision (0: no commit yet) and the cluster's
    /// current revision.
    async fn head(&self) -> Result<(u64, u64), StoreError> {
        let key = self.layout.head_key();
        let resp = retry(&self.opts, "reading the head", || {
            let mut kv = self.client.kv_client();
            let key = key.clone();
            async move { kv.get(key, None).await }
        })
        .await?;
        let now = resp.header().map_or(0, |h| revision(h.revision()));
        let head = resp
            .kvs()
            .first()
            .map_or(0, |kv| revision(kv.mod_revision()));
        Ok((head, now))
    }

    async fn snapshot(&self) -> Result<(u64, Vec<Entry>), StoreError> {
        // Compaction may overtake a paged read; a fresh start then reads
        // at a newer revision. Bounded: compaction that fast is a fault.
        for _ in 0..5 {
            match self.snapshot_once().await {
                Err(SnapErr::Compacted) => continue,
                Err(SnapErr::Store(e)) => return Err(e),
                Ok(s) => return Ok(s),
            }
        }
        Err(StoreError::Etcd(
            "snapshot: compaction kept overtaking the read".into(),
        ))
    }

    async fn snapshot_once(&self) -> Result<(u64, Vec<Entry>), SnapErr> {
        let prefix = self.layout.data_prefix();
        let end = layout::prefix_end(&prefix);
        let mut from = prefix;
        let mut at: i64 = 0;
        let mut entries = Vec::new();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(self.opts.page);
            if at != 0 {
                opts = opts.with_revision(at);
            }
            let resp = retry(&self.opts, "snapshot", || {
                let mut kv = self.client.kv_client();
                let (from, opts) = (from.clone(), opts.clone());
                async move { kv.get(from, Some(opts)).await }
            })
            .await
            .map_err(|e| match e {
                StoreError::Etcd(m) if m.contains("compacted") => SnapErr::Compacted,
                e => SnapErr::Store(e),
            })?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                entries.push(Entry {
                    key: self.layout.data_name(kv.key()).map_err(SnapErr::Store)?,
                    value: kv.value().to_vec(),
                    mod_revision: revision(kv.mod_revision()),
                });
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((revision(at), entries)),
            }
        }
    }

    async fn commit(&self, base: u64, ops: Vec<Op>) -> Result<Commit, StoreError> {
        let below = i64::try_from(base)
            .ok()
            .and_then(|b| b.checked_add(1))
            .ok_or(StoreError::OutOfRange("base revision"))?;
        let leases = self.grant_leases(&ops).await?;
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce).into_bytes();
        let head = self.layout.head_key();
        let mut then: Vec<TxnOp> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => {
                    TxnOp::put(self.layout.data_key(key), value.clone(), None)
                }
                Op::PutLeased { key, value, ttl } => {
                    let lease = leases
                        .iter()
                        .find(|(s, _)| *s == layout::lease_seconds(*ttl))
                        .map_or(0, |(_, id)| *id);
                    TxnOp::put(
                        self.layout.data_key(key),
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                }
                Op::Delete { key } => TxnOp::delete(self.layout.data_key(key), None),
            })
            .collect();
        then.push(TxnOp::put(head.clone(), nonce.clone(), None));
        let txn = Txn::new()
            .when([Compare::mod_revision(head.clone(), CompareOp::Less, below)])
            .and_then(then)
            .or_else([TxnOp::get(head, None)]);
        let outcome = self.commit_txn(txn, &nonce).await;
        if !matches!(outcome, Ok(Commit::Done(_))) {
            self.revoke_later(leases.into_iter().map(|(_, id)| id).collect());
        }
        outcome
    }

    /// Sends the commit's Txn until an answer or the deadline.
    async fn commit_txn(&self, txn: Txn, nonce: &[u8]) -> Result<Commit, StoreError> {
        let deadline = Instant::now() + self.opts.deadline;
        // Whether an earlier attempt may have landed without our knowing.
        let mut in_doubt = false;
        loop {
            let mut kv = self.client.kv_client();
            let err = match tokio::time::timeout(self.opts.rpc_timeout, kv.txn(txn.clone())).await {
                Ok(Ok(resp)) if resp.succeeded() => {
                    let rev = resp.header().map_or(0, |h| revision(h.revision()));
                    return Ok(Commit::Done(rev));
                }
                Ok(Ok(resp)) => {
                    let head = resp.op_responses().into_iter().find_map(|r| match r {
                        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                        _ => None,
                    });
                    return match head {
                        Some(h) if h.value() == nonce => {
                            Ok(Commit::Done(revision(h.mod_revision())))
                        }
                        _ if in_doubt => Err(StoreError::Etcd(
                            "commit outcome unknown: an attempt failed in flight and the head \
                             has moved since"
                                .into(),
                        )),
                        _ => Ok(Commit::Conflict),
                    };
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", self.opts.rpc_timeout),
            };
            in_doubt = true;
            if Instant::now() + BACKOFF >= deadline {
                return Err(StoreError::Etcd(format!(
                    "commit outcome unknown: {err} (gave up after {:?})",
                    self.opts.deadline
                )));
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }

    /// One lease per distinct TTL among the leased puts: (seconds, id).
    async fn grant_leases(&self, ops: &[Op]) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut ttls: Vec<i64> = ops
            .iter()
            .filter_map(|op| match op {
                Op::PutLeased { ttl, .. } => Some(layout::lease_seconds(*ttl)),
                _ => None,
            })
            .collect();
        ttls.sort_unstable();
        ttls.dedup();
        let mut out = Vec::with_capacity(ttls.len());
        for secs in ttls {
            let granted = retry(&self.opts, "granting a lease", || {
                let mut c = self.client.lease_client();
                async move { c.grant(secs, None).await }
            })
            .await;
            match granted {
                Ok(g) => out.push((secs, g.id())),
                Err(e) => {
                    self.revoke_later(out.into_iter().map(|(_, id)| id).collect());
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Revokes leases in the background (they would expire anyway).
    fn revoke_later(&self, leases: Vec<i64>) {
        if leases.is_empty() {
            return;
        }
        let mut c = self.client.lease_client();
        let t = self.opts.rpc_timeout;
        tokio::spawn(async move {
            for id in leases {
                let _ = tokio::time::timeout(t, c.revoke(id)).await;
            }
        });
    }

    async fn changes(&self, since: u64, wait: Duration) -> Result<Vec<Batch>, StoreError> {
        // Any longer wait is a caller's "forever"; bounded so that clock
        // arithmetic cannot overflow.
        let wait = wait.min(MAX_WAIT);
        let start = i64::try_from(since)
            .ok()
            .and_then(|s| s.checked_add(1))
            .ok_or(StoreError::OutOfRange("revision"))?;
        // Commits after `since` that must be read before answering (so a
        // caller sees its own commit, whatever `wait` is).
        let (head, _) = self.head().await?;
        let deadline = Instant::now() + self.opts.deadline;
        // The kept watch is taken out for the call (not locked across it),
        // so concurrent callers never wait for each other: the one that
        // does not continue where it ended opens a watch of its own.
        let kept = self.cursor.lock().await.take().filter(|c| c.at == since);
        let reused = kept.is_some();
        let mut cursor = match kept {
            Some(c) => c,
            None => Cursor {
                at: since,
                stream: self.open_watch(start).await?,
            },
        };
        let mut result = self.read_watch(&mut cursor, head, wait, deadline).await;
        // A kept watch may have died with its member since the last call:
        // one more try on a fresh watch (another member) before failing.
        if reused && matches!(result, Err(StoreError::Etcd(_))) {
            cursor = Cursor {
                at: since,
                stream: self.open_watch(start).await?,
            };
            result = self.read_watch(&mut cursor, head, wait, deadline).await;
        }
        if let Ok(batches) = &result {
            if let Some(last) = batches.last() {
                cursor.at = last.revision;
            }
            *self.cursor.lock().await = Some(cursor);
        }
        result
    }

    async fn open_watch(&self, start: i64) -> Result<WatchStream, StoreError> {
        let key = self.layout.all();
        let opts = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut w = retry(&self.opts, "opening a watch", || {
            let mut c = self.client.watch_client();
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.watch(key, Some(opts)).await }
        })
        .await?;
        // The first message confirms the watch, or says it starts in
        // compacted history.
        match tokio::time::timeout(self.opts.rpc_timeout, w.message()).await {
            Ok(Ok(Some(r))) if r.compact_revision() > 0 => Err(StoreError::Compacted {
                oldest: revision(r.compact_revision()),
            }),
            Ok(Ok(Some(r))) if r.canceled() => Err(StoreError::Etcd(format!(
                "watch refused: {}",
                r.cancel_reason()
            ))),
            Ok(Ok(Some(_))) => Ok(w),
            Ok(Ok(None)) => Err(StoreError::Etcd("watch closed at once".into())),
            Ok(Err(e)) => Err(etcd_err("opening a watch", e)),
            Err(_) => Err(StoreError::Etcd("no watch confirmation in time".into())),
        }
    }

    /// Reads watch messages: until revision `head` has been seen (bounded
    /// by `deadline`), else up to `wait` for the first batch; then whatever
    /// else is already there.
    async fn read_watch(
        &self,
        cursor: &mut Cursor,
        head: u64,
        wait: Duration,
        deadline: Instant,
    ) -> Result<Vec<Batch>, StoreError> {
        let mut events: Vec<RawEvent> = Vec::new();
        let mut seen = cursor.at;
        let started = Instant::now();
        loop {
            let must = seen < head;
            let until = if must { deadline } else { started + wait };
            let batches = self.layout.batches(&events);
            let have = !batches.is_empty();
            // Once something is in hand, take only what is already there.
            let budget = if have && !must {
                Duration::ZERO
            } else {
                until.saturating_duration_since(Instant::now())
            };
            if events.len() >= MAX_EVENTS_PER_CALL || (budget.is_zero() && !have && !must) {
                return Ok(batches);
            }
            let msg = match tokio::time::timeout(budget, cursor.stream.message()).await {
                Err(_) if must => {
                    return Err(StoreError::Etcd(format!(
                        "watch did not deliver revision {head} in time"
                    )))
                }
                Err(_) => return Ok(batches),
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => return Err(StoreError::Etcd("watch closed".into())),
                Ok(Err(e)) => return Err(etcd_err("watch", e)),
            };
            if msg.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    oldest: revision(msg.compact_revision()),
                });
            }
            if msg.canceled() {
                return Err(StoreError::Etcd(format!(
                    "watch cancelled: {}",
                    msg.cancel_reason()
                )));
            }
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                let rev = revision(kv.mod_revision());
                seen = seen.max(rev);
                events.push(RawEvent {
                    revision: rev,
                    key: kv.key().to_vec(),
                    // 1 is DELETE in etcd's mvccpb.Event.EventType.
                    value: (ev.0.r#type != 1).then(|| kv.value().to_vec()),
                });
            }
        }
    }
}

/// The longest [`Kv::changes`] waits for a first batch.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Bounds one answer of [`Kv::changes`]; the caller asks again for more.
/// Watch messages are never split, so this is a soft bound.
const MAX_EVENTS_PER_CALL: usize = 10_000;

enum SnapErr {
    Compacted,
    Store(StoreError),
}
