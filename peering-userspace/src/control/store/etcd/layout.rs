//! Where a deployment's keys live in etcd's flat key space, and how watch
//! events become [`Batch`]es. No I/O: unit-tested here.
//!
//! Under one prefix (default `/peering/`):
//! - `PREFIX data/KEY`: the [`Kv`](crate::control::store::kv::Kv) keys, one
//!   etcd key each;
//! - `PREFIX head`: written by every commit (value: the commit's nonce), so
//!   "nothing committed after `base`" is one compare on its mod revision;
//! - `PREFIX leader`: the lease-held key of [`Kv::lead`](crate::control::store::kv::Kv::lead).
//!
//! `head` and `leader` are the backend's own: they never appear in
//! snapshots or batches.

use crate::control::store::kv::Batch;
use crate::control::store::StoreError;

/// The prefix used when a store URL names none.
pub const DEFAULT_PREFIX: &str = "/peering/";

/// What a raw etcd key is, within a deployment's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Data(String),
    Head,
    Leader,
    /// Under the prefix but none of ours (a newer layout, or a stray key).
    Other,
}

/// One watch event, reduced to what a batch needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub revision: u64,
    pub key: Vec<u8>,
    /// None: deleted (by a commit, or because its lease expired).
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` must start and end with `/` and hold only printable ASCII
    /// without spaces, e.g. `/peering/` or `/lab-7/peering/`.
    pub fn new(prefix: &str) -> Result<Self, StoreError> {
        let ok = prefix.len() >= 2
            && prefix.starts_with('/')
            && prefix.ends_with('/')
            && !prefix.contains("//")
            && prefix.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(StoreError::Etcd(format!(
                "invalid key prefix {prefix:?}: it must start and end with '/', e.g. /peering/"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn join(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.prefix).into_bytes()
    }

    pub fn data_key(&self, key: &str) -> Vec<u8> {
        self.join(&format!("data/{key}"))
    }

    pub fn data_prefix(&self) -> Vec<u8> {
        self.join("data/")
    }

    pub fn head_key(&self) -> Vec<u8> {
        self.join("head")
    }

    pub fn leader_key(&self) -> Vec<u8> {
        self.join("leader")
    }

    /// The whole deployment: what a watch covers.
    pub fn all(&self) -> Vec<u8> {
        self.prefix.clone().into_bytes()
    }

    pub fn classify(&self, raw: &[u8]) -> Class {
        let Some(rest) = raw.strip_prefix(self.prefix.as_bytes()) else {
            return Class::Other;
        };
        match rest {
            b"head" => Class::Head,
            b"leader" => Class::Leader,
            _ => match rest.strip_prefix(b"data/") {
                Some(k) => match std::str::from_utf8(k) {
                    Ok(k) => Class::Data(k.to_owned()),
                    Err(_) => Class::Other,
                },
                None => Class::Other,
            },
        }
    }

    /// A data key back from its etcd key (snapshot rows).
    pub fn data_name(&self, raw: &[u8]) -> Result<String, StoreError> {
        match self.classify(raw) {
            Class::Data(k) => Ok(k),
            _ => Err(StoreError::Corrupt(format!(
                "etcd key {:?} is not a data key under {}",
                String::from_utf8_lossy(raw),
                self.prefix
            ))),
        }
    }

    /// Groups events (in revision order, as a watch delivers them) into
    /// batches. A revision is a batch when it wrote a data key or the head
    /// (a commit, even one whose ops were all on keys it then deleted);
    /// revisions that only touched the leader key are not commits and are
    /// left out.
    pub fn batches(&self, events: &[RawEvent]) -> Vec<Batch> {
        let mut out: Vec<Batch> = Vec::new();
        let mut open: Option<(Batch, bool)> = None;
        for ev in events {
            if open
                .as_ref()
                .is_some_and(|(b, _)| b.revision != ev.revision)
            {
                close(&mut out, open.take());
            }
            let (batch, commit) = open.get_or_insert_with(|| {
                (
                    Batch {
                        revision: ev.revision,
                        changes: Vec::new(),
                    },
                    false,
                )
            });
            match self.classify(&ev.key) {
                Class::Data(k) => {
                    batch.changes.push((k, ev.value.clone()));
                    *commit = true;
                }
                Class::Head => *commit = true,
                Class::Leader | Class::Other => {}
            }
        }
        close(&mut out, open);
        out
    }
}

fn close(out: &mut Vec<Batch>, open: Option<(Batch, bool)>) {
    if let Some((batch, true)) = open {
        out.push(batch);
    }
}

/// The end of the range of keys starting with `prefix` (etcd's convention:
/// the prefix with its last byte below 0xff incremented; `\0` for all keys).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A lease's TTL in whole seconds, rounded up (etcd counts seconds; a
/// shorter lease than asked would drop a key early), at least 1 and at most
/// etcd's maximum (9,000,000,000 s, `MaxLeaseTTL` in etcd's lessor).
pub fn lease_seconds(ttl: std::time::Duration) -> i64 {
    const MAX: u64 = 9_000_000_000;
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    secs.clamp(1, MAX) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ev(revision: u64, key: &str, value: Option<&str>) -> RawEvent {
        RawEvent {
            revision,
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(Layout::new("/peering/").is_ok());
        assert!(Layout::new("/a/b/").is_ok());
        for bad in ["", "/", "peering/", "/peering", "/a//b/", "/a b/", "/é/"] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_classify_back() {
        let l = Layout::new("/p/").unwrap();
        assert_eq!(l.data_key("vpc/1"), b"/p/data/vpc/1");
        assert_eq!(
            l.classify(&l.data_key("vpc/1")),
            Class::Data("vpc/1".into())
        );
        assert_eq!(l.classify(&l.data_key("")), Class::Data(String::new()));
        assert_eq!(l.classify(&l.head_key()), Class::Head);
        assert_eq!(l.classify(&l.leader_key()), Class::Leader);
        assert_eq!(l.classify(b"/p/other"), Class::Other);
        assert_eq!(l.classify(b"/q/data/x"), Class::Other);
        assert_eq!(l.classify(b"/p/data/\xff"), Class::Other);
        assert_eq!(l.data_name(b"/p/data/a").unwrap(), "a");
        assert!(l.data_name(b"/p/head").is_err());
    }

    #[test]
    fn events_group_by_revision() {
        let l = Layout::new("/p/").unwrap();
        let got = l.batches(&[
            ev(5, "/p/data/a", Some("1")),
            ev(5, "/p/data/b", None),
            ev(5, "/p/head", Some("n1")),
            ev(6, "/p/leader", Some("me")),
            ev(7, "/p/head", Some("n2")),
            ev(9, "/p/data/c", None),
        ]);
        assert_eq!(
            got,
            vec![
                Batch {
                    revision: 5,
                    changes: vec![("a".into(), Some(b"1".to_vec())), ("b".into(), None)],
                },
                // A commit that wrote only the head still moves the revision.
                Batch {
                    revision: 7,
                    changes: vec![],
                },
                // A lease expiry: deletes without a head write.
                Batch {
                    revision: 9,
                    changes: vec![("c".into(), None)],
                },
            ]
        );
        assert!(l.batches(&[]).is_empty());
        assert!(l.batches(&[ev(3, "/p/leader", None)]).is_empty());
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/p/"), b"/p0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn lease_ttls_round_up() {
        assert_eq!(lease_seconds(Duration::ZERO), 1);
        assert_eq!(lease_seconds(Duration::from_millis(1)), 1);
        assert_eq!(lease_seconds(Duration::from_secs(2)), 2);
        assert_eq!(lease_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(lease_seconds(Duration::MAX), 9_000_000_000);
    }
}
