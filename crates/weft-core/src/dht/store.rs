//! Records held under keys: the store for others and the lookup cache.
//!
//! A map from key to the records held under it (one per node id, newest
//! sequence wins), bounded in total entries and per key. The same type
//! serves as the store (records that others asked this node to keep, taken
//! only under a key they belong to) and as the cache of lookup results.
//! IPv6 lookups match by prefix: the key of an IPv6 target is the 96 id bits
//! of the address, zero-padded, and the records whose node id starts with
//! those bits are found by a range over the id keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::record::SignedRecord;
use super::{Key, Target};

/// Records of distinct nodes under one key, at most (name collisions after
/// re-keying, nothing more in practice).
const MAX_PER_KEY: usize = 4;

/// What became of a record offered to [`RecordMap::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Taken (new, or newer than the one held).
    Stored,
    /// The one held is as new or newer.
    Stale,
    /// No room.
    Full,
}

/// Records by key.
#[derive(Debug)]
pub(crate) struct RecordMap {
    map: BTreeMap<Key, Vec<Arc<SignedRecord>>>,
    len: usize,
    capacity: usize,
}

impl RecordMap {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            len: 0,
            capacity,
        }
    }

    /// Entries held (a record under three keys counts three times).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Holds `record` under `key`, unless a newer one of the same node is
    /// there or the map is full. With `evict`, a full map drops an entry to
    /// make room (the cache does; the store refuses instead, so a flood of
    /// records cannot push out the ones it holds).
    pub(crate) fn insert(&mut self, key: Key, record: Arc<SignedRecord>, evict: bool) -> Insert {
        let id = record.record.node_id();
        if let Some(held) = self.map.get_mut(&key)
            && let Some(old) = held.iter_mut().find(|r| r.record.node_id() == id)
        {
            if old.record.sequence >= record.record.sequence {
                return Insert::Stale;
            }
            *old = record;
            return Insert::Stored;
        }
        if self.len >= self.capacity && (!evict || !self.evict_one()) {
            return Insert::Full;
        }
        let held = self.map.entry(key).or_default();
        if held.len() >= MAX_PER_KEY {
            // Keep the newest: replace the oldest if this one is newer.
            let Some((at, oldest)) = held
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.record.sequence)
            else {
                return Insert::Full;
            };
            if oldest.record.sequence >= record.record.sequence {
                return Insert::Full;
            }
            held[at] = record;
            return Insert::Stored;
        }
        held.push(record);
        self.len += 1;
        Insert::Stored
    }

    /// The newest unexpired record that `target` asks for.
    pub(crate) fn find(&self, target: &Target, unix_now: u64) -> Option<&Arc<SignedRecord>> {
        let usable = |r: &&Arc<SignedRecord>| {
            r.record.expires > unix_now
                && r.record.certificate.not_after() > unix_now
                && target.matches(&r.record)
        };
        match target {
            Target::Ipv6(_) => {
                let start = target.key();
                let mut end = start;
                end.0[12..].fill(0xff);
                self.map
                    .range(start..=end)
                    .flat_map(|(_, held)| held.iter())
                    .filter(usable)
                    .max_by_key(|r| r.record.sequence)
            }
            Target::Id(_) | Target::Name(_) | Target::Ipv4(_) => self
                .map
                .get(&target.key())?
                .iter()
                .filter(usable)
                .max_by_key(|r| r.record.sequence),
        }
    }

    /// Drops records that have expired (or whose certificate has).
    pub(crate) fn purge(&mut self, unix_now: u64) {
        let mut removed = 0;
        self.map.retain(|_, held| {
            let before = held.len();
            held.retain(|r| {
                r.record.expires > unix_now && r.record.certificate.not_after() > unix_now
            });
            removed += before - held.len();
            !held.is_empty()
        });
        self.len -= removed;
    }

    fn evict_one(&mut self) -> bool {
        // Any entry will do for a cache; the first key is the cheapest to
        // find and, keys being hashes, unrelated to who asked.
        let Some(mut entry) = self.map.first_entry() else {
            return false;
        };
        entry.get_mut().pop();
        if entry.get().is_empty() {
            entry.remove();
        }
        self.len -= 1;
        true
    }
}
