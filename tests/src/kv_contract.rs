//! The [`Kv`] contract as a test suite, written once over `&dyn Kv` and run
//! against every backend (etcd with one and three members, SQLite): what
//! `peering_userspace::control::store::kv` promises, checked on a real
//! store. Each check uses keys of its own, so they run one after another on
//! one store that starts empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peering_userspace::control::store::kv::{Batch, Commit, Entry, Kv, Op};
use peering_userspace::control::store::StoreError;

/// A backend under test.
pub struct Backend<'a> {
    pub name: &'a str,
    /// A new handle (as another process would have) on the same store,
    /// which is empty before the suite runs.
    pub open: &'a (dyn Fn() -> Arc<dyn Kv> + Sync),
    /// Drops history up to a revision, as the backend does by itself when
    /// it compacts; None when the backend cannot be told to.
    pub compact: Option<&'a dyn Fn(u64)>,
    /// Whether `lead()` elects one holder among handles (false: a backend
    /// for one process, whose `lead()` is always true).
    pub elects: bool,
}

/// Runs every check; panics (with the backend's name) on the first failure.
pub fn run_all(b: &Backend) {
    let kv = (b.open)();
    let kv = kv.as_ref();
    step(b, "empty snapshot", || empty(kv));
    step(b, "commit then snapshot", || commit_then_snapshot(kv));
    step(b, "conflict", || conflict(kv));
    step(b, "changes in order", || changes_in_order(kv));
    step(b, "changes wait", || changes_wait(kv, b));
    step(b, "leased expiry", || leased_expiry(kv));
    step(b, "leased re-put", || leased_reput(kv));
    if let Some(compact) = b.compact {
        step(b, "compaction", || compaction(kv, b, compact));
    }
    if b.elects {
        step(b, "lead takeover", || lead_takeover(b));
    }
}

fn step(b: &Backend, name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    eprintln!("kv contract [{}] {name}: ok ({:?})", b.name, t.elapsed());
}

pub fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

pub fn del(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

fn leased(key: &str, value: &str, ttl: Duration) -> Op {
    Op::PutLeased {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ttl,
    }
}

pub fn done(c: Result<Commit, StoreError>) -> u64 {
    match c {
        Ok(Commit::Done(r)) => r,
        other => panic!("commit did not land: {other:?}"),
    }
}

fn find<'e>(entries: &'e [Entry], key: &str) -> Option<&'e Entry> {
    entries.iter().find(|e| e.key == key)
}

/// Commits `ops` on top of whatever is there now.
pub fn commit_now(kv: &dyn Kv, ops: &[Op]) -> u64 {
    for _ in 0..20 {
        let (rev, _) = kv.snapshot().expect("snapshot");
        match kv.commit(rev, ops).expect("commit") {
            Commit::Done(r) => return r,
            Commit::Conflict => continue,
        }
    }
    panic!("20 conflicts in a row on an idle store");
}

/// Batches after `since` until one at or past `until` (or `deadline`).
fn collect(kv: &dyn Kv, since: u64, until: u64, within: Duration) -> Vec<Batch> {
    let deadline = Instant::now() + within;
    let mut out: Vec<Batch> = Vec::new();
    let mut at = since;
    while at < until && Instant::now() < deadline {
        let got = kv.changes(at, Duration::from_millis(200)).expect("changes");
        for b in got {
            assert!(b.revision > at, "batch {} not after {at}", b.revision);
            at = b.revision;
            out.push(b);
        }
    }
    out
}

fn empty(kv: &dyn Kv) {
    let (_, entries) = kv.snapshot().expect("snapshot");
    assert!(entries.is_empty(), "a new store holds {entries:?}");
}

fn commit_then_snapshot(kv: &dyn Kv) {
    let (r0, _) = kv.snapshot().unwrap();
    let r1 = done(kv.commit(r0, &[put("s/b", "2"), put("s/a", "1")]));
    assert!(r1 > r0);
    let (r, entries) = kv.snapshot().unwrap();
    assert!(r >= r1, "snapshot at {r} before commit {r1}");
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "snapshot not in key order");
    let a = find(&entries, "s/a").expect("s/a");
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"1"[..], r1));
    assert_eq!(find(&entries, "s/b").unwrap().value, b"2");
    // Overwrite and delete in one commit.
    let r2 = done(kv.commit(r, &[put("s/a", "3"), del("s/b")]));
    let (_, entries) = kv.snapshot().unwrap();
    let a = find(&entries, "s/a").unwrap();
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"3"[..], r2));
    assert!(find(&entries, "s/b").is_none());
}

fn conflict(kv: &dyn Kv) {
    let (base, _) = kv.snapshot().unwrap();
    let r1 = done(kv.commit(base, &[put("c/1", "x")]));
    // Same base again: something landed since, nothing is written.
    assert_eq!(
        kv.commit(base, &[put("c/2", "y")]).unwrap(),
        Commit::Conflict
    );
    assert_eq!(
        kv.commit(r1 - 1, &[put("c/2", "y")]).unwrap(),
        Commit::Conflict
    );
    let (_, entries) = kv.snapshot().unwrap();
    assert!(
        find(&entries, "c/2").is_none(),
        "a conflicting commit wrote"
    );
    // Caught up: it lands.
    let r2 = done(kv.commit(r1, &[put("c/2", "y")]));
    assert!(r2 > r1);
    // Two handles racing from one base: exactly one lands.
    let (base, _) = kv.snapshot().unwrap();
    let a = kv.commit(base, &[put("c/race", "a")]).unwrap();
    let b = kv.commit(base, &[put("c/race", "b")]).unwrap();
    assert!(matches!(a, Commit::Done(_)) && b == Commit::Conflict);
}

fn changes_in_order(kv: &dyn Kv) {
    let (since, _) = kv.snapshot().unwrap();
    let r1 = commit_now(kv, &[put("o/x", "1")]);
    let r2 = commit_now(kv, &[put("o/x", "2"), put("o/y", "1")]);
    let r3 = commit_now(kv, &[del("o/x")]);
    let got = collect(kv, since, r3, Duration::from_secs(10));
    let want = vec![
        Batch {
            revision: r1,
            changes: vec![("o/x".into(), Some(b"1".to_vec()))],
        },
        Batch {
            revision: r2,
            changes: vec![
                ("o/x".into(), Some(b"2".to_vec())),
                ("o/y".into(), Some(b"1".to_vec())),
            ],
        },
        Batch {
            revision: r3,
            changes: vec![("o/x".into(), None)],
        },
    ];
    assert_eq!(got, want);
    // From the middle: only what came after.
    let tail = collect(kv, r1, r3, Duration::from_secs(10));
    assert_eq!(tail, want[1..]);
    // Nothing new: an empty answer after the wait.
    assert!(kv
        .changes(r3, Duration::from_millis(100))
        .unwrap()
        .is_empty());
    // A commit is visible to the next call even without waiting.
    let r4 = commit_now(kv, &[put("o/z", "1")]);
    let now = kv.changes(r3, Duration::ZERO).unwrap();
    assert_eq!(now.last().map(|b| b.revision), Some(r4), "{now:?}");
}

fn changes_wait(kv: &dyn Kv, b: &Backend) {
    let (since, _) = kv.snapshot().unwrap();
    let other = (b.open)();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        commit_now(other.as_ref(), &[put("w/late", "1")])
    });
    let t = Instant::now();
    let got = kv.changes(since, Duration::from_secs(20)).unwrap();
    let rev = writer.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the wait did not end"
    );
    let got = if got.is_empty() {
        collect(kv, since, rev, Duration::from_secs(5))
    } else {
        got
    };
    assert!(
        got.iter()
            .any(|b| b.revision == rev
                && b.changes == vec![("w/late".to_string(), Some(b"1".to_vec()))]),
        "waiting caller missed the commit at {rev}: {got:?}"
    );
}

/// Waits for `key`'s delete in the changes after `since`.
fn wait_deleted(kv: &dyn Kv, since: u64, key: &str, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut at = since;
    while Instant::now() < deadline {
        for b in kv.changes(at, Duration::from_millis(500)).unwrap() {
            at = b.revision;
            if b.changes.iter().any(|(k, v)| k == key && v.is_none()) {
                return b.revision;
            }
        }
    }
    panic!("{key} not deleted within {within:?}");
}

fn leased_expiry(kv: &dyn Kv) {
    let t = Instant::now();
    let r = commit_now(kv, &[leased("l/gw", "up", Duration::from_secs(1))]);
    let (_, entries) = kv.snapshot().unwrap();
    assert_eq!(
        find(&entries, "l/gw").map(|e| e.value.as_slice()),
        Some(&b"up"[..])
    );
    wait_deleted(kv, r, "l/gw", Duration::from_secs(20));
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "expired before its ttl"
    );
    let (_, entries) = kv.snapshot().unwrap();
    assert!(find(&entries, "l/gw").is_none());
    // An expiry is not a commit: a caller at `r` still commits.
    done(kv.commit(r, &[put("l/after", "1")]));
}

fn leased_reput(kv: &dyn Kv) {
    let ttl = Duration::from_secs(2);
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(5) {
        last = commit_now(kv, &[leased("l/keep", "v", ttl)]);
        std::thread::sleep(Duration::from_millis(500));
        let (_, entries) = kv.snapshot().unwrap();
        assert!(
            find(&entries, "l/keep").is_some(),
            "a key re-put every 0.5 s expired (ttl {ttl:?})"
        );
    }
    wait_deleted(kv, last, "l/keep", Duration::from_secs(20));
}

fn compaction(kv: &dyn Kv, b: &Backend, compact: &dyn Fn(u64)) {
    let (old, _) = kv.snapshot().unwrap();
    commit_now(kv, &[put("k/1", "1")]);
    let latest = commit_now(kv, &[put("k/2", "2")]);
    compact(latest);
    // A fresh handle: one that was already following (an open etcd watch)
    // may still deliver what it had, which is correct too.
    let fresh = (b.open)();
    match fresh.changes(old, Duration::ZERO) {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("changes from compacted history: {other:?}"),
    }
    // A new snapshot and the changes after it work again.
    let (rev, entries) = kv.snapshot().unwrap();
    assert!(find(&entries, "k/2").is_some());
    let r = commit_now(kv, &[put("k/3", "3")]);
    let got = collect(kv, rev, r, Duration::from_secs(10));
    assert_eq!(got.last().map(|b| b.revision), Some(r));
}

/// Polls `lead()` until it is true (or `within` passes).
pub fn until_leader(kv: &dyn Kv, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        if kv.lead().expect("lead") {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn lead_takeover(b: &Backend) {
    let a = (b.open)();
    let c = (b.open)();
    until_leader(a.as_ref(), Duration::from_secs(10)).expect("first leader");
    // While `a` keeps calling, `c` never leads.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let (la, lc) = (a.lead().unwrap(), c.lead().unwrap());
        assert!(!(la && lc), "two leaders");
        assert!(la, "the leader lost its lead while calling");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(a);
    let took = until_leader(c.as_ref(), Duration::from_secs(10));
    assert!(
        took.is_some(),
        "no takeover within 10 s after the leader went"
    );
}
