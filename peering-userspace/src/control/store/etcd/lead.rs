//! [`Kv::lead`](crate::control::store::kv::Kv::lead) on etcd: whoever holds
//! the `PREFIX leader` key leads. It is put only if absent, attached to a
//! lease of [`EtcdOptions::lead_ttl`](super::EtcdOptions) that a background
//! task keeps alive while `lead()` keeps being called.
//!
//! Never two leaders: the holder counts its term from the moment it *sent*
//! the grant or the last acknowledged keepalive, so its own deadline
//! (`sent + ttl - margin`) falls before the cluster can expire the lease
//! and let another process put the key. `lead()` answers from that deadline
//! alone: a holder that loses its connection turns false within the TTL
//! even while no RPC returns. A holder that stops calling for a TTL gives
//! the lease back (revokes it), as does dropping the store.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use etcd_client::{Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp};
use rand::RngCore;

use super::Inner;

/// How often a candidate looks at the leader key at most.
const RETRY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    started: bool,
    stopped: bool,
    last_call: Option<Instant>,
    valid_until: Option<Instant>,
    lease: Option<i64>,
}

pub(crate) struct Campaign {
    /// This store's identity in the leader key (random per instance).
    id: Vec<u8>,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl Campaign {
    pub fn new() -> Arc<Self> {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Arc::new(Self {
            id: hex::encode(id).into_bytes(),
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while this store holds the leader key; starts the campaign on
    /// the first call.
    pub fn lead(self: &Arc<Self>, rt: &tokio::runtime::Runtime, inner: &Arc<Inner>) -> bool {
        let now = Instant::now();
        let mut s = self.state();
        s.last_call = Some(now);
        if !s.started {
            s.started = true;
            rt.spawn(run(self.clone(), inner.clone()));
        }
        let held = s.valid_until.is_some_and(|v| now < v);
        drop(s);
        self.wake.notify_one();
        held
    }

    /// Stops campaigning; returns the lease to revoke, if one is held.
    pub fn resign(&self) -> Option<i64> {
        let mut s = self.state();
        s.stopped = true;
        s.valid_until = None;
        s.lease.take()
    }

    fn wanted(&self, ttl: Duration) -> bool {
        let s = self.state();
        !s.stopped && s.last_call.is_some_and(|t| t.elapsed() < ttl)
    }

    fn stopped(&self) -> bool {
        self.state().stopped
    }

    /// Records a confirmed term: the lease (granted or kept alive by a
    /// request sent at `sent`) lasts at least `ttl_secs` from then. The
    /// term counted is never longer than the TTL asked for (`asked`), what
    /// ever the answer says.
    fn confirm(&self, lease: i64, sent: Instant, ttl_secs: i64, asked: Duration) {
        let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0)).min(asked);
        let mut s = self.state();
        if !s.stopped {
            s.lease = Some(lease);
            s.valid_until = sent.checked_add(ttl - margin(ttl));
        }
    }

    fn lost(&self) {
        let mut s = self.state();
        s.lease = None;
        s.valid_until = None;
    }
}

/// Slack for clock rate differences and the time a request takes to be
/// applied: a sixth of the TTL.
fn margin(ttl: Duration) -> Duration {
    ttl / 6
}

async fn run(c: Arc<Campaign>, inner: Arc<Inner>) {
    let ttl = inner.opts.lead_ttl;
    loop {
        if c.stopped() {
            return;
        }
        if !c.wanted(ttl) {
            let _ = tokio::time::timeout(RETRY, c.wake.notified()).await;
            continue;
        }
        match acquire(&c, &inner).await {
            Some(lease) => hold(&c, &inner, lease).await,
            None => tokio::time::sleep(RETRY).await,
        }
    }
}

/// Puts the leader key if it is absent; Some(lease) when this store now
/// holds it.
async fn acquire(c: &Campaign, inner: &Inner) -> Option<i64> {
    let t = inner.opts.rpc_timeout;
    let key = inner.layout.leader_key();
    let mut kv = inner.client.kv_client();
    let current = tokio::time::timeout(t, kv.get(key.clone(), None))
        .await
        .ok()?
        .ok()?;
    if let Some(holder) = current.kvs().first() {
        if holder.value() == c.id.as_slice() {
            // Ours from a term this store already counted as lost: give it
            // up so that the next round starts clean.
            let mut l = inner.client.lease_client();
            let _ = tokio::time::timeout(t, l.revoke(holder.lease())).await;
        }
        return None;
    }
    let secs = super::layout::lease_seconds(inner.opts.lead_ttl);
    let sent = Instant::now();
    let mut leases = inner.client.lease_client();
    let grant = tokio::time::timeout(t, leases.grant(secs, None))
        .await
        .ok()?
        .ok()?;
    let lease = grant.id();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            c.id.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    match tokio::time::timeout(t, kv.txn(txn)).await {
        Ok(Ok(r)) if r.succeeded() => {
            c.confirm(lease, sent, grant.ttl(), inner.opts.lead_ttl);
            Some(lease)
        }
        _ => {
            // Lost the race, or unknown: revoking removes the key if the
            // put did land, so nobody is left holding it unknowingly.
            let _ = tokio::time::timeout(t, leases.revoke(lease)).await;
            None
        }
    }
}

/// Keeps the lease alive while wanted; returns when the term ends.
async fn hold(c: &Campaign, inner: &Inner, lease: i64) {
    let t = inner.opts.rpc_timeout;
    let tick = (inner.opts.lead_ttl / 3).max(Duration::from_millis(100));
    let mut leases = inner.client.lease_client();
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        tokio::time::sleep(tick).await;
        if c.stopped() {
            return;
        }
        if !c.wanted(inner.opts.lead_ttl) {
            c.lost();
            let _ = tokio::time::timeout(t, leases.revoke(lease)).await;
            return;
        }
        if c.state().valid_until.is_none_or(|v| Instant::now() >= v) {
            c.lost();
            return;
        }
        let sent = Instant::now();
        let ttl = match stream.as_mut() {
            // A new stream's first answer is read by keep_alive() itself
            // (it fails if the lease is gone).
            None => match tokio::time::timeout(t, leases.keep_alive(lease)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    Some(super::layout::lease_seconds(inner.opts.lead_ttl))
                }
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => Some(0),
                _ => None,
            },
            Some((keeper, replies)) => {
                let asked = keeper.keep_alive().await.is_ok();
                match tokio::time::timeout(t, replies.message()).await {
                    Ok(Ok(Some(r))) if asked => Some(r.ttl()),
                    _ => None,
                }
            }
        };
        match ttl {
            Some(secs) if secs > 0 => c.confirm(lease, sent, secs, inner.opts.lead_ttl),
            // The cluster says the lease is gone: the term is over.
            Some(_) => {
                c.lost();
                return;
            }
            // No answer: try a new stream next tick; the term runs out by
            // itself if none comes.
            None => stream = None,
        }
    }
}
