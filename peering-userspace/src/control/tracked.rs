//! A map that remembers what a write changed, so a controller stores (and
//! re-derives views for) only the objects an operation touched.
//!
//! [`Tracked`] derefs to the `BTreeMap` for every read; its few mutating
//! methods record, the first time a key is touched, the value it had
//! before (None: absent). [`Tracked::take_log`] hands that record over
//! (the dirty set with previous values), and [`Tracked::undo`] puts the
//! previous values back: an operation that fails, or whose commit
//! conflicts, leaves the map as it was, at a cost that grows with what the
//! operation touched.
//!
//! Serialization, equality and cloning see the map only: the log is a
//! per-write scratchpad, empty between writes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::ops::Deref;

/// Previous values of the keys a write touched (None: the key was absent).
pub type Log<V> = BTreeMap<String, Option<V>>;

#[derive(Debug, Clone)]
pub struct Tracked<V> {
    map: BTreeMap<String, V>,
    log: Log<V>,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked {
            map: BTreeMap::new(),
            log: BTreeMap::new(),
        }
    }
}

impl<V: PartialEq> PartialEq for Tracked<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V: Eq> Eq for Tracked<V> {}

impl<V> Deref for Tracked<V> {
    type Target = BTreeMap<String, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V: Serialize> Serialize for Tracked<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Tracked<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Tracked {
            map: BTreeMap::deserialize(d)?,
            log: BTreeMap::new(),
        })
    }
}

impl<V: Clone> Tracked<V> {
    /// Records `key`'s current value unless the key is already recorded.
    fn touch(&mut self, key: &str) {
        if !self.log.contains_key(key) {
            self.log.insert(key.to_owned(), self.map.get(key).cloned());
        }
    }

    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        self.touch(&key);
        self.map.insert(key, value)
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        if !self.map.contains_key(key) {
            return None;
        }
        self.touch(key);
        self.map.remove(key)
    }

    /// Mutable access to one value: recorded as touched (its previous value
    /// cloned) even if the caller ends up not changing it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        if !self.map.contains_key(key) {
            return None;
        }
        self.touch(key);
        self.map.get_mut(key)
    }

    /// Keeps the values `keep` accepts; records the removed ones.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &V) -> bool) {
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(k, v)| !keep(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// The record of touched keys since the last call (emptying it).
    pub fn take_log(&mut self) -> Log<V> {
        std::mem::take(&mut self.log)
    }

    /// Whether nothing was touched since the last [`Tracked::take_log`].
    pub fn log_is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// Puts back the previous values of `log` (from [`Tracked::take_log`]),
    /// recording nothing.
    pub fn undo(&mut self, log: Log<V>) {
        for (key, prev) in log {
            match prev {
                Some(v) => self.map.insert(key, v),
                None => self.map.remove(&key),
            };
        }
    }

    /// Sets or removes a value without recording (how a controller applies
    /// changes it reads from the store).
    pub fn set_untracked(&mut self, key: String, value: Option<V>) -> Option<V> {
        match value {
            Some(v) => self.map.insert(key, v),
            None => self.map.remove(&key),
        }
    }
}

impl<V> FromIterator<(String, V)> for Tracked<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        Tracked {
            map: iter.into_iter().collect(),
            log: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_holds_first_previous_values_and_undo_restores() {
        let mut m: Tracked<u32> = [("a".to_string(), 1), ("b".to_string(), 2)]
            .into_iter()
            .collect();
        let before = m.clone();
        m.insert("a".into(), 10);
        m.insert("a".into(), 11);
        *m.get_mut("b").unwrap() = 20;
        m.insert("c".into(), 3);
        m.remove("c");
        assert_eq!(m.remove("zz"), None);
        assert!(m.get_mut("zz").is_none());
        let log = m.take_log();
        assert_eq!(
            log.into_iter().collect::<Vec<_>>(),
            vec![
                ("a".to_string(), Some(1)),
                ("b".to_string(), Some(2)),
                ("c".to_string(), None)
            ]
        );
        assert!(m.log_is_empty());
        m.retain(|_, v| *v > 15);
        assert_eq!(m.len(), 1);
        let log = m.take_log();
        m.undo(log);
        m.undo(
            [("a".to_string(), Some(1)), ("b".to_string(), Some(2))]
                .into_iter()
                .collect(),
        );
        assert_eq!(m, before);
        assert!(m.log_is_empty());
    }

    #[test]
    fn serializes_as_the_plain_map() {
        let mut m: Tracked<u32> = Tracked::default();
        m.insert("x".into(), 7);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"x":7}"#);
        let back: Tracked<u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert!(back.log_is_empty());
    }
}
